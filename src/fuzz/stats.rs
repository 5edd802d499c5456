//! What a campaign reports: stats rows over time (stats.csv) and the final
//! report with its findings table.

use super::findings::Finding;
use crate::base::Geometry;
use crate::model::coverage;
use std::time::Duration;

/// One sample of a campaign over time.
#[derive(Clone, Debug, PartialEq)]
pub struct StatsRow {
    pub policy: String,
    /// Seconds since this campaign started.
    pub time: f64,
    pub execs: u64,
    /// Executions per second over the interval since the previous row.
    pub exec_per_sec: f64,
    pub corpus: usize,
    /// Coverage features (model branch x hit-count bucket).
    pub coverage: usize,
    /// Model branches (named coverage points) reached.
    pub branches: usize,
    pub findings: usize,
}

impl StatsRow {
    pub const CSV_HEADER: &'static str =
        "policy,time_s,execs,exec_per_s,corpus,coverage,branches,findings";
    pub fn csv(&self) -> String {
        format!(
            "{},{:.3},{},{:.1},{},{},{},{}",
            self.policy,
            self.time,
            self.execs,
            self.exec_per_sec,
            self.corpus,
            self.coverage,
            self.branches,
            self.findings
        )
    }
    pub fn parse_csv(line: &str) -> Option<StatsRow> {
        let f: Vec<&str> = line.trim().split(',').collect();
        if f.len() != 8 {
            return None;
        }
        Some(StatsRow {
            policy: f[0].to_string(),
            time: f[1].parse().ok()?,
            execs: f[2].parse().ok()?,
            exec_per_sec: f[3].parse().ok()?,
            corpus: f[4].parse().ok()?,
            coverage: f[5].parse().ok()?,
            branches: f[6].parse().ok()?,
            findings: f[7].parse().ok()?,
        })
    }
}

#[derive(Clone, Debug)]
pub struct Report {
    pub policy: String,
    pub geometry: Geometry,
    pub jobs: usize,
    pub execs: u64,
    pub elapsed: Duration,
    /// Inputs in the shared corpus (seeds included).
    pub corpus: usize,
    /// Coverage features of the union of every job's runs.
    pub features: usize,
    /// Executions that reached each coverage slot (see `coverage::table`).
    pub hits: Vec<u64>,
    pub findings: Vec<Finding>,
    /// Ended by `stop` (a signal) before its budget.
    pub interrupted: bool,
    /// Reproducers or corpus entries that could not be written.
    pub errors: Vec<String>,
    pub stats: Vec<StatsRow>,
    /// Coverage points no program reaches under this campaign's policy
    /// (`coverage::unreachable`): left out of "N of M reachable".
    pub unreachable: Vec<String>,
    /// Points of `unreachable` the campaign reached anyway, each with the
    /// shortest program found that reaches it (text form): the table is wrong
    /// there, or the model is.
    pub reached_unreachable: Vec<(String, String)>,
}

impl Report {
    pub fn exec_per_sec(&self) -> f64 {
        self.execs as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// The named coverage of the campaign.
    pub fn coverage(&self) -> Vec<coverage::Branch> {
        coverage::table(&self.hits)
    }

    /// The findings table printed at the end of a campaign.
    pub fn table(&self) -> String {
        let cov = self.coverage();
        let dead = |b: &&coverage::Branch| self.unreachable.contains(&b.name);
        let reached = cov.iter().filter(|b| b.hits > 0 && !dead(b)).count();
        let mut s = format!(
            "\n== {} ({} geometry, {} job{}): {} execs in {:.1}s ({:.0} exec/s){}, corpus {}, {} coverage features, {} of {} reachable model branches reached ({} unreachable under this policy), {} finding(s)\n",
            self.policy,
            self.geometry.name(),
            self.jobs,
            if self.jobs == 1 { "" } else { "s" },
            self.execs,
            self.elapsed.as_secs_f64(),
            self.exec_per_sec(),
            if self.interrupted { ", interrupted" } else { "" },
            self.corpus,
            self.features,
            reached,
            cov.len() - self.unreachable.len(),
            self.unreachable.len(),
            self.findings.len()
        );
        let never: Vec<&str> = cov
            .iter()
            .filter(|b| b.hits == 0 && !dead(b))
            .map(|b| b.name.as_str())
            .collect();
        if !never.is_empty() {
            s.push_str(&format!("   never reached: {}\n", never.join(", ")));
        }
        // A point the table calls unreachable that a program reached: the
        // table (src/model/coverage.rs `unreachable`) is wrong.
        let contradicted: Vec<&str> = cov
            .iter()
            .filter(|b| b.hits > 0 && dead(b) && b.shares_slot_with.is_empty())
            .map(|b| b.name.as_str())
            .collect();
        if !contradicted.is_empty() {
            s.push_str(&format!(
                "   reached although listed unreachable (src/model/coverage.rs): {}\n",
                contradicted.join(", ")
            ));
            for (name, prog) in &self.reached_unreachable {
                s.push_str(&format!("     {name} is reached by:\n"));
                for l in prog.lines() {
                    s.push_str(&format!("       {l}\n"));
                }
            }
        }
        if self.findings.is_empty() {
            s.push_str("   no violation found\n");
            return s;
        }
        s.push_str(&format!(
            "   {:<15} {:<52} {:>9} {:>9} {:>4}  {:<28} {}\n",
            "severity",
            "signature (invariant, where the harm appears)",
            "first hit",
            "count",
            "ops",
            "override that removes it",
            "reproducer"
        ));
        for f in &self.findings {
            s.push_str(&format!(
                "   {:<15} {:<52} {:>8.2}s {:>9} {:>4}  {:<28} {}\n",
                f.severity.name(),
                f.signature,
                f.first_time.as_secs_f64(),
                f.count,
                f.ops,
                f.fix.best().unwrap_or("-"),
                f.path.display()
            ));
        }
        for f in &self.findings {
            s.push_str(&format!(
                "   - {}\n     {}\n     reproducer: {}\n",
                f.message,
                f.fix.summary(),
                f.curated.describe(f.ops)
            ));
        }
        s
    }
}
