//! A batch of programs in the guest: boot, collect each program's messages,
//! judge it as it ends, boot again after a crash or a hang; and `vm exec`'s
//! executables.

use super::console::console_segment;
use super::judge::{judge, judge_with, GuestRun};
use super::protocol::{Batch, End, ExitStatus, Msg};
use super::qemu::{boot, remove_stale_run_dirs, Session, VmOptions};
use crate::host;
use crate::model::policy::Policy;
use crate::prog::Program;
use crate::verdict::Verdict;
use anyhow::{bail, Context, Result};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// The folder of a run's initramfs and serial logs: --keep's, else
/// `cache/run/<prefix><pid>` (removed at the end; `remove_stale_run_dirs`
/// removes those of runs that are gone).
fn run_dir(o: &VmOptions, prefix: &str) -> Result<PathBuf> {
    let dir = match &o.keep {
        Some(d) => d.clone(),
        None => super::build::cache_dir()
            .join("run")
            .join(format!("{prefix}{}", std::process::id())),
    };
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    Ok(dir)
}

/// A program, its display name, and the policy it is judged under.
pub struct Job {
    pub name: String,
    pub prog: Program,
    pub policy: Policy,
    /// The memcg trigger: the ops run with the program's memory cgroup at its
    /// limit (memcg.rs); the fault plan is not injected. None: inject the plan.
    pub memcg: Option<Vec<(usize, u64)>>,
}

/// The result of one job.
pub struct Judged {
    pub verdict: Verdict,
    pub run: GuestRun,
}

/// Run `jobs` in the guest; `on_done(index, judged)` sees each as it ends.
/// Returns the number of boots.
pub fn run_batch(
    o: &VmOptions,
    jobs: &[Job],
    on_done: &mut dyn FnMut(usize, &Judged),
) -> Result<usize> {
    let exe = &o.exe;
    remove_stale_run_dirs();
    let dir = run_dir(o, "")?;
    let batch = Batch {
        programs: jobs
            .iter()
            .map(|j| (j.prog.clone(), j.memcg.clone()))
            .collect(),
    };
    let initrd = dir.join("initramfs.cpio");
    std::fs::write(&initrd, super::initramfs::build(exe, &batch.to_text())?)?;
    let stall = Duration::from_secs(o.timeout * 4 + 120);
    let mut next = 0usize;
    let mut boots = 0usize;
    while next < jobs.len() {
        boots += 1;
        let mut s = boot(o, &dir, &initrd, next, boots)?;
        let mut ready = false;
        let mut linux = crate::model::mm::LINUX_DEFAULT;
        let mut cur: Option<(usize, GuestRun, usize)> = None;
        let mut done = false;
        let t_boot = Instant::now();
        loop {
            for l in s.lines() {
                let Some(m) = Msg::parse(&l)? else { continue };
                match m {
                    Msg::Ready(rest) => {
                        ready = true;
                        linux = host::probe::linux_version(&rest);
                        if boots == 1 {
                            say!("guest: {rest}");
                        }
                    }
                    Msg::Begin(k) => {
                        if k >= jobs.len() {
                            bail!("guest: program {k} out of range");
                        }
                        let mut g = GuestRun::new(jobs[k].prog.ops.len());
                        g.linux = linux;
                        cur = Some((k, g, usize::MAX));
                    }
                    Msg::End { k, end } => {
                        let Some((ck, mut g, _)) = cur.take() else {
                            bail!("guest: end {k} without begin");
                        };
                        if ck != k {
                            bail!("guest: end {k} inside program {ck}");
                        }
                        g.end = end;
                        finish(&s, k, &mut g, &jobs[k], &mut |j| on_done(k, j), true);
                        next = k + 1;
                    }
                    Msg::Done => done = true,
                    Msg::Fatal(e) => bail!("the guest executor failed: {e}"),
                    m => {
                        if let Some((_, g, c)) = cur.as_mut() {
                            g.feed(&m, c);
                        }
                    }
                }
            }
            if done {
                s.kill();
                break;
            }
            if s.exited() {
                // Read what was written before the exit.
                for l in s.lines() {
                    if let (Ok(Some(m)), Some((_, g, c))) = (Msg::parse(&l), cur.as_mut()) {
                        g.feed(&m, c);
                    }
                }
                if let Some((k, mut g, _)) = cur.take() {
                    g.end = End::Crashed;
                    finish(&s, k, &mut g, &jobs[k], &mut |j| on_done(k, j), false);
                    next = k + 1;
                } else if !ready {
                    let con = s.console();
                    let tail: Vec<&str> = con.lines().collect();
                    bail!(
                        "the guest did not start the executor; console tail:\n{}",
                        tail[tail.len().saturating_sub(25)..].join("\n")
                    );
                }
                break;
            }
            if !ready && t_boot.elapsed() > Duration::from_secs(600) {
                s.kill();
                bail!(
                    "the guest did not boot within 600 s (console: {})",
                    s.console.display()
                );
            }
            if ready && s.last_data.elapsed() > stall {
                s.kill();
                match cur.take() {
                    Some((k, mut g, _)) => {
                        g.end = End::Stalled;
                        finish(&s, k, &mut g, &jobs[k], &mut |j| on_done(k, j), false);
                        next = k + 1;
                    }
                    None => bail!("the guest stopped answering between programs"),
                }
                break;
            }
            std::thread::sleep(Duration::from_millis(40));
        }
    }
    if o.keep.is_none() {
        let _ = std::fs::remove_dir_all(&dir);
    }
    Ok(boots)
}

fn finish(
    s: &Session,
    k: usize,
    g: &mut GuestRun,
    job: &Job,
    on_done: &mut dyn FnMut(&Judged),
    wait_marker: bool,
) {
    let n = job.prog.ops.len();
    let mut con = s.console();
    if wait_marker {
        // The end marker precedes the data channel's end line; give the
        // console file a moment to catch up.
        let marker = format!("splitfuzz: end {k}");
        let t0 = Instant::now();
        while !con.contains(&marker) && t0.elapsed() < Duration::from_secs(3) {
            std::thread::sleep(Duration::from_millis(50));
            con = s.console();
        }
    }
    let (log, last) = console_segment(&con, k, n);
    g.log = log;
    g.last_op = last;
    if let End::Hung(i) = g.end {
        g.last_op = Some(i);
    }
    let verdict = match &job.memcg {
        None => judge(&job.prog, &job.policy, g),
        Some(limited) => {
            let ops: Vec<usize> = limited.iter().map(|l| l.0).collect();
            judge_with(&job.prog, &job.policy, g, &|f| {
                crate::observe::memcg::model_at_limits(&job.prog, &job.policy, g.linux, &ops, f)
            })
        }
    };
    on_done(&Judged {
        verdict,
        run: g.clone(),
    });
}

/// `splitfuzz vm exec BINARY...`: run executables (e.g. `emit-c` reproducers,
/// built on this machine) in the guest and print their output. Returns the
/// exit codes in order (None: killed after `timeout` or no answer).
pub fn exec_binaries(
    o: &VmOptions,
    bins: &[PathBuf],
) -> Result<Vec<(String, Option<i32>, String)>> {
    let dir = run_dir(o, "exec-")?;
    let initrd = dir.join("initramfs.cpio");
    std::fs::write(&initrd, super::initramfs::build_with(&o.exe, "", bins)?)?;
    let mut s = boot(o, &dir, &initrd, 0, 1)?;
    let mut out: Vec<(String, Option<i32>, String)> = Vec::new();
    let t0 = Instant::now();
    let stall = Duration::from_secs(o.timeout.max(60) * 2 + 120);
    let mut done = false;
    while !done {
        for l in s.lines() {
            match Msg::parse(&l) {
                Ok(Some(Msg::Exec(p))) => out.push((p, None, String::new())),
                Ok(Some(Msg::Exit { status, .. })) => {
                    if let Some(last) = out.last_mut() {
                        last.1 = match status {
                            ExitStatus::Code(c) => Some(c),
                            ExitStatus::Killed | ExitStatus::SpawnError(_) => None,
                        };
                    }
                }
                Ok(Some(Msg::Out(t) | Msg::Err(t))) => {
                    if let Some(last) = out.last_mut() {
                        last.2.push_str(&t);
                        last.2.push('\n');
                    }
                }
                Ok(Some(Msg::Done)) => done = true,
                Ok(Some(Msg::Fatal(e))) => {
                    s.kill();
                    bail!("the guest failed: {e}");
                }
                _ => {}
            }
        }
        if done {
            break;
        }
        if s.exited() || s.last_data.elapsed() > stall || t0.elapsed() > Duration::from_secs(3600) {
            let con = s.console();
            let tail: Vec<&str> = con.lines().collect();
            s.kill();
            if let Some(last) = out.last_mut() {
                last.2.push_str(&format!(
                    "(the guest stopped; console tail:)\n{}\n",
                    tail[tail.len().saturating_sub(30)..].join("\n")
                ));
            }
            break;
        }
        std::thread::sleep(Duration::from_millis(40));
    }
    s.kill();
    if o.keep.is_none() {
        let _ = std::fs::remove_dir_all(&dir);
    }
    Ok(out)
}
