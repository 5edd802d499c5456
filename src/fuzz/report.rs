//! A campaign's run directory and its HTML report.
//!
//! `splitfuzz fuzz` writes, into its run directory:
//! * `stats.csv`: one row per policy per stats interval (`engine::StatsRow`):
//!   time, executions, exec/s, corpus, coverage features, branches, findings;
//! * `run.json`: the command, each policy's totals, findings (with the
//!   override that removes each) and named model coverage;
//! * `report.html`: this module's page, also made by `splitfuzz report DIR`.
//!
//! The page is one self-contained file: plots are plotters' SVG output inlined.

use crate::fuzz::engine::{Report, StatsRow};
use crate::model::coverage::{self, Branch};
use anyhow::{anyhow, Context, Result};
use plotters::prelude::*;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::Path;

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct RunFile {
    /// The command line of the run.
    pub command: String,
    /// UTC start time, `YYYY-MM-DD HH:MM:SS`.
    pub started: String,
    /// `--time` in seconds (the whole run), if given.
    pub time_budget_s: Option<f64>,
    /// `--runs` (per policy), if given.
    pub runs: Option<u64>,
    pub jobs: usize,
    pub seed: u64,
    pub geometry: String,
    /// Ended by SIGINT/SIGTERM.
    pub interrupted: bool,
    /// Policies the interruption left unrun.
    pub skipped: Vec<String>,
    pub campaigns: Vec<CampaignFile>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct CampaignFile {
    pub policy: String,
    pub execs: u64,
    pub elapsed_s: f64,
    pub exec_per_s: f64,
    pub corpus: usize,
    pub features: usize,
    pub branches_reached: usize,
    pub interrupted: bool,
    pub findings: Vec<FindingFile>,
    pub coverage: Vec<Branch>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct FindingFile {
    /// `invariant function`.
    pub signature: String,
    /// crash, data-loss, unkillable-loop, killable-loop, leak, wrong-errno.
    #[serde(default)]
    pub severity: String,
    /// Where the harm appears.
    pub function: String,
    pub first_exec: u64,
    pub first_time_s: f64,
    pub count: u64,
    pub reproducer: String,
    pub ops: usize,
    pub message: String,
    /// Single overrides that remove the violation from the reproducer.
    pub fixes: Vec<String>,
    pub fix_summary: String,
}

impl CampaignFile {
    pub fn from_report(r: &Report) -> CampaignFile {
        let coverage = r.coverage();
        CampaignFile {
            policy: r.policy.clone(),
            execs: r.execs,
            elapsed_s: r.elapsed.as_secs_f64(),
            exec_per_s: r.exec_per_sec(),
            corpus: r.corpus,
            features: r.features,
            branches_reached: coverage.iter().filter(|b| b.hits > 0).count(),
            interrupted: r.interrupted,
            findings: r
                .findings
                .iter()
                .map(|f| FindingFile {
                    signature: f.signature.clone(),
                    severity: f.severity.name().to_string(),
                    function: f.function.clone(),
                    first_exec: f.first_exec,
                    first_time_s: f.first_time.as_secs_f64(),
                    count: f.count,
                    reproducer: f.path.display().to_string(),
                    ops: f.ops,
                    message: f.message.clone(),
                    fixes: f.fix.removes.clone(),
                    fix_summary: f.fix.summary(),
                })
                .collect(),
            coverage,
        }
    }
}

/// Write `run.json` (replacing it: it is rewritten after every policy).
pub fn write_run_file(dir: &Path, run: &RunFile) -> Result<()> {
    let p = dir.join("run.json");
    let text = serde_json::to_string_pretty(run)?;
    std::fs::write(&p, text + "\n").with_context(|| format!("cannot write {}", p.display()))
}

pub fn read_run_dir(dir: &Path) -> Result<(RunFile, Vec<StatsRow>)> {
    let p = dir.join("run.json");
    let text = std::fs::read_to_string(&p).with_context(|| {
        format!(
            "cannot read {} (is {} a run directory of `splitfuzz fuzz`?)",
            p.display(),
            dir.display()
        )
    })?;
    let run: RunFile =
        serde_json::from_str(&text).with_context(|| format!("{}: not a run file", p.display()))?;
    let p = dir.join("stats.csv");
    let text =
        std::fs::read_to_string(&p).with_context(|| format!("cannot read {}", p.display()))?;
    let mut rows = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if i == 0 || line.trim().is_empty() {
            continue;
        }
        rows.push(
            StatsRow::parse_csv(line)
                .ok_or_else(|| anyhow!("{} line {}: not a stats row", p.display(), i + 1))?,
        );
    }
    Ok((run, rows))
}

/// UTC `YYYY-MM-DD HH:MM:SS` of a Unix time (no time-zone crate needed).
pub fn utc(secs: u64) -> String {
    let days = (secs / 86400) as i64;
    let rem = secs % 86400;
    // Howard Hinnant's civil_from_days.
    let z = days + 719468;
    let era = z.div_euclid(146097);
    let doe = z - era * 146097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + (m <= 2) as i64;
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

const COLORS: [RGBColor; 6] = [
    RGBColor(31, 119, 180),
    RGBColor(214, 39, 40),
    RGBColor(44, 160, 44),
    RGBColor(148, 103, 189),
    RGBColor(255, 127, 14),
    RGBColor(23, 190, 207),
];

/// One line chart (one series per policy) as an SVG string.
fn line_chart(title: &str, y_desc: &str, series: &[(String, Vec<(f64, f64)>)]) -> Result<String> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (640, 360)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| anyhow!("plot: {e}"))?;
        let xmax = series
            .iter()
            .flat_map(|(_, p)| p.iter().map(|x| x.0))
            .fold(0.0f64, f64::max)
            .max(1.0);
        let ymax = series
            .iter()
            .flat_map(|(_, p)| p.iter().map(|x| x.1))
            .fold(0.0f64, f64::max)
            .max(1.0)
            * 1.1;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(64)
            .build_cartesian_2d(0f64..xmax, 0f64..ymax)
            .map_err(|e| anyhow!("plot: {e}"))?;
        chart
            .configure_mesh()
            .x_desc("seconds since the policy's campaign started")
            .y_desc(y_desc)
            .light_line_style(RGBColor(235, 235, 235))
            .x_label_formatter(&|x| format!("{x:.0}"))
            .y_label_formatter(&|y| format!("{y:.0}"))
            .draw()
            .map_err(|e| anyhow!("plot: {e}"))?;
        for (i, (name, pts)) in series.iter().enumerate() {
            let c = COLORS[i % COLORS.len()];
            chart
                .draw_series(LineSeries::new(pts.iter().copied(), c.stroke_width(2)))
                .map_err(|e| anyhow!("plot: {e}"))?
                .label(name.as_str())
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 18, y)], c.stroke_width(2))
                });
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::LowerRight)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .draw()
            .map_err(|e| anyhow!("plot: {e}"))?;
        root.present().map_err(|e| anyhow!("plot: {e}"))?;
    }
    Ok(svg)
}

/// The policy x signature matrix: signature → policy → (count, first time).
type Matrix = BTreeMap<String, BTreeMap<String, (u64, f64)>>;

fn matrix(run: &RunFile) -> Matrix {
    let mut m: Matrix = BTreeMap::new();
    for c in &run.campaigns {
        for f in &c.findings {
            m.entry(f.signature.clone())
                .or_default()
                .insert(c.policy.clone(), (f.count, f.first_time_s));
        }
    }
    m
}

/// Signatures found under `a` and not under `b` (both must be in the run).
fn only_in(m: &Matrix, a: &str, b: &str) -> Vec<String> {
    m.iter()
        .filter(|(_, p)| p.contains_key(a) && !p.contains_key(b))
        .map(|(s, _)| s.clone())
        .collect()
}

/// The comparisons the page states in words, for the policies present.
pub fn comparisons(run: &RunFile) -> Vec<String> {
    let m = matrix(run);
    let has = |p: &str| run.campaigns.iter().any(|c| c.policy == p);
    let list = |v: Vec<String>| {
        if v.is_empty() {
            "none".to_string()
        } else {
            v.join(", ")
        }
    };
    let mut out = Vec::new();
    if has("lazy-v1") && has("lazy-v3") {
        out.push(format!(
            "v3 fixed relative to v1 (found under lazy-v1, not under lazy-v3): {}",
            list(only_in(&m, "lazy-v1", "lazy-v3"))
        ));
        out.push(format!(
            "new in v3 (found under lazy-v3, not under lazy-v1): {}",
            list(only_in(&m, "lazy-v3", "lazy-v1"))
        ));
    }
    if has("lazy-fixed") {
        for c in &run.campaigns {
            if c.policy == "lazy-fixed" {
                continue;
            }
            out.push(format!(
                "lazy-fixed closes, of {}'s findings: {}",
                c.policy,
                list(only_in(&m, &c.policy, "lazy-fixed"))
            ));
        }
        let left: Vec<String> = m
            .iter()
            .filter(|(_, p)| p.contains_key("lazy-fixed"))
            .map(|(s, _)| s.clone())
            .collect();
        out.push(format!(
            "still found under lazy-fixed (must be none): {}",
            list(left)
        ));
    }
    out
}

/// Render the page for a run directory's contents.
pub fn html(run: &RunFile, rows: &[StatsRow]) -> Result<String> {
    let mut h = String::new();
    let policies: Vec<String> = run.campaigns.iter().map(|c| c.policy.clone()).collect();
    head(&mut h, run);
    policies_table(&mut h, run);
    charts(&mut h, &policies, rows)?;
    matrix_table(&mut h, run, &policies);
    findings(&mut h, run);
    coverage_by_function(&mut h, run, &policies);
    coverage_by_branch(&mut h, run, &policies);
    h.push_str("</body></html>\n");
    Ok(h)
}

/// The page's head (style sheet), title and the run's command and options.
fn head(h: &mut String, run: &RunFile) {
    let _ = write!(
        h,
        r#"<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>splitfuzz report</title>
<style>
body {{ font-family: sans-serif; margin: 24px; color: #222; }}
table {{ border-collapse: collapse; margin: 8px 0 20px; }}
th, td {{ border: 1px solid #bbb; padding: 3px 8px; text-align: left; font-size: 13px; }}
th {{ background: #eee; }}
td.num {{ text-align: right; }}
td.found {{ background: #f8c9c4; }}
td.absent {{ background: #d7efd2; color: #555; }}
td.never {{ background: #fde7b0; }}
td.partial {{ background: #fdf5dc; }}
.plots svg {{ margin: 4px; border: 1px solid #ddd; }}
code {{ background: #f4f4f4; padding: 0 3px; }}
</style></head><body>
<h1>splitfuzz campaign report</h1>
<p><code>{}</code><br>started {} UTC; {} job(s), seed {}, {} geometry{}{}{}</p>
"#,
        esc(&run.command),
        esc(&run.started),
        run.jobs,
        run.seed,
        esc(&run.geometry),
        run.time_budget_s
            .map(|t| format!("; --time {t:.0}s for the whole run"))
            .unwrap_or_default(),
        run.runs
            .map(|n| format!("; --runs {n} per policy"))
            .unwrap_or_default(),
        if run.interrupted {
            format!(
                "; <b>interrupted</b>{}",
                if run.skipped.is_empty() {
                    String::new()
                } else {
                    format!(" (not run: {})", esc(&run.skipped.join(", ")))
                }
            )
        } else {
            String::new()
        }
    );
}

/// Each policy's totals.
fn policies_table(h: &mut String, run: &RunFile) {
    h.push_str("<h2>Policies</h2>\n<table><tr><th>policy</th><th>execs</th><th>seconds</th><th>exec/s</th><th>corpus</th><th>coverage features</th><th>model branches reached</th><th>findings</th></tr>\n");
    for c in &run.campaigns {
        let _ = writeln!(
            h,
            "<tr><td>{}</td><td class=num>{}</td><td class=num>{:.1}</td><td class=num>{:.0}</td><td class=num>{}</td><td class=num>{}</td><td class=num>{} of {}</td><td class=num>{}</td></tr>",
            esc(&c.policy),
            c.execs,
            c.elapsed_s,
            c.exec_per_s,
            c.corpus,
            c.features,
            c.branches_reached,
            c.coverage.len(),
            c.findings.len()
        );
    }
    h.push_str("</table>\n");
}

/// One series per policy of `f` over the stats rows' time.
fn series(
    policies: &[String],
    rows: &[StatsRow],
    f: fn(&StatsRow) -> f64,
) -> Vec<(String, Vec<(f64, f64)>)> {
    policies
        .iter()
        .map(|p| {
            (
                p.clone(),
                rows.iter()
                    .filter(|r| &r.policy == p)
                    .map(|r| (r.time, f(r)))
                    .collect(),
            )
        })
        .collect()
}

/// A chart over time: its title, the y axis, the value plotted.
type Chart = (&'static str, &'static str, fn(&StatsRow) -> f64);

/// The charts over time: coverage, branches, findings, exec/s.
fn charts(h: &mut String, policies: &[String], rows: &[StatsRow]) -> Result<()> {
    let charts: [Chart; 4] = [
        ("Coverage features", "features", |r| r.coverage as f64),
        ("Model branches reached", "branches", |r| r.branches as f64),
        ("Findings (distinct signatures)", "findings", |r| {
            r.findings as f64
        }),
        ("Executions per second", "exec/s", |r| r.exec_per_sec),
    ];
    h.push_str("<h2 id=plots>Over time</h2>\n<div class=plots>\n");
    for (title, y, f) in charts {
        h.push_str(&line_chart(title, y, &series(policies, rows, f))?);
        h.push('\n');
    }
    h.push_str("</div>\n");
    Ok(())
}

/// Every policy's findings of signature `sig`.
fn findings_of<'a>(run: &'a RunFile, sig: &'a str) -> impl Iterator<Item = &'a FindingFile> {
    run.campaigns
        .iter()
        .flat_map(|c| c.findings.iter())
        .filter(move |f| f.signature == sig)
}

/// The policy x signature matrix, and the comparisons it supports in words.
fn matrix_table(h: &mut String, run: &RunFile, policies: &[String]) {
    let m = matrix(run);
    h.push_str("<h2 id=matrix>Findings: policy &times; signature</h2>\n");
    if m.is_empty() {
        h.push_str("<p>No violation under any policy of this run.</p>\n");
    } else {
        h.push_str(
            "<table><tr><th>signature (invariant, where the harm appears)</th><th>severity</th>",
        );
        for p in policies {
            let _ = write!(h, "<th>{}</th>", esc(p));
        }
        h.push_str("<th>override that removes it</th></tr>\n");
        for (sig, per) in &m {
            let sev: BTreeSet<&str> = findings_of(run, sig).map(|f| f.severity.as_str()).collect();
            let _ = write!(
                h,
                "<tr><td>{}</td><td>{}</td>",
                esc(sig),
                esc(&sev.into_iter().collect::<Vec<_>>().join(", "))
            );
            for p in policies {
                match per.get(p) {
                    Some((n, t)) => {
                        let _ = write!(h, "<td class=found>{n} hits, first at {t:.2}s</td>");
                    }
                    None => h.push_str("<td class=absent>not found</td>"),
                }
            }
            let fixes: BTreeSet<String> = findings_of(run, sig)
                .filter_map(|f| f.fixes.first().cloned())
                .collect();
            let _ = writeln!(
                h,
                "<td>{}</td></tr>",
                esc(&fixes.into_iter().collect::<Vec<_>>().join(", "))
            );
        }
        h.push_str("</table>\n");
    }
    let cmp = comparisons(run);
    if !cmp.is_empty() {
        h.push_str("<ul>\n");
        for c in &cmp {
            let _ = writeln!(h, "<li>{}</li>", esc(c));
        }
        h.push_str("</ul>\n<p>\"Not found\" means not found within this run's budget, not proven absent.</p>\n");
    }
}

/// One paragraph per finding of each policy: message, reproducer, fix.
fn findings(h: &mut String, run: &RunFile) {
    for c in &run.campaigns {
        for f in &c.findings {
            let _ = writeln!(
                h,
                "<p><b>{}</b> {}: {}<br><code>{}</code> &mdash; {}</p>",
                esc(&c.policy),
                esc(&f.signature),
                esc(&f.message),
                esc(&f.reproducer),
                esc(&f.fix_summary)
            );
        }
    }
}

/// Model coverage per kernel function: branches reached and their hits.
fn coverage_by_function(h: &mut String, run: &RunFile, policies: &[String]) {
    h.push_str("<h2 id=coverage>Model coverage by kernel function</h2>\n<p>Per kernel function: its named branches (<code>cov!</code> points) reached, and the executions that reached them, summed over its branches. Yellow: never reached; light yellow: some branches never reached.</p>\n");
    h.push_str("<table><tr><th>function</th>");
    for p in policies {
        let _ = write!(h, "<th>{} branches</th><th>{} hits</th>", esc(p), esc(p));
    }
    h.push_str("</tr>\n");
    let per: Vec<BTreeMap<String, (usize, usize, u64)>> = run
        .campaigns
        .iter()
        .map(|c| {
            coverage::by_function(&c.coverage)
                .into_iter()
                .map(|(f, r, n, hits)| (f, (r, n, hits)))
                .collect()
        })
        .collect();
    let funcs: BTreeSet<&String> = per.iter().flat_map(|m| m.keys()).collect();
    let shared_funcs: BTreeSet<&str> = run
        .campaigns
        .iter()
        .flat_map(|c| c.coverage.iter())
        .filter(|b| !b.shares_slot_with.is_empty())
        .map(|b| coverage::function_of(&b.name))
        .collect();
    for func in funcs {
        let note = if shared_funcs.contains(func.as_str()) {
            " <i>(a branch shares its bitmap slot: see below)</i>"
        } else {
            ""
        };
        let _ = write!(h, "<tr><td>{}{note}</td>", esc(func));
        for p in &per {
            let (r, n, hits) = p.get(func).copied().unwrap_or_default();
            let cls = if r == 0 {
                " never"
            } else if r < n {
                " partial"
            } else {
                ""
            };
            let _ = write!(
                h,
                "<td class=\"num{cls}\">{r} of {n}</td><td class=\"num{cls}\">{hits}</td>"
            );
        }
        h.push_str("</tr>\n");
    }
    h.push_str("</table>\n");
}

/// Model coverage per named branch: its hits under each policy.
fn coverage_by_branch(h: &mut String, run: &RunFile, policies: &[String]) {
    h.push_str("<h3>Branches</h3>\n<table><tr><th>branch</th>");
    for p in policies {
        let _ = write!(h, "<th>{}</th>", esc(p));
    }
    h.push_str("</tr>\n");
    let per: Vec<BTreeMap<&str, u64>> = run
        .campaigns
        .iter()
        .map(|c| {
            c.coverage
                .iter()
                .map(|b| (b.name.as_str(), b.hits))
                .collect()
        })
        .collect();
    let names: BTreeSet<&str> = per.iter().flat_map(|m| m.keys().copied()).collect();
    let shared: BTreeMap<&str, &Vec<String>> = run
        .campaigns
        .iter()
        .flat_map(|c| c.coverage.iter())
        .filter(|b| !b.shares_slot_with.is_empty())
        .map(|b| (b.name.as_str(), &b.shares_slot_with))
        .collect();
    for name in names {
        let note = match shared.get(name) {
            Some(o) => format!(
                " <i>(one bitmap slot with {}: hits of either)</i>",
                esc(&o.join(", "))
            ),
            None => String::new(),
        };
        let _ = write!(h, "<tr><td>{}{note}</td>", esc(name));
        for p in &per {
            match p.get(name).copied().unwrap_or(0) {
                0 => h.push_str("<td class=\"num never\">never</td>"),
                hits => {
                    let _ = write!(h, "<td class=num>{hits}</td>");
                }
            }
        }
        h.push_str("</tr>\n");
    }
    h.push_str("</table>\n");
}

/// Read a run directory and write its report page to `out`.
pub fn write_report(dir: &Path, out: &Path) -> Result<()> {
    let (run, rows) = read_run_dir(dir)?;
    let page = html(&run, &rows)?;
    std::fs::write(out, page).with_context(|| format!("cannot write {}", out.display()))
}
