//! `splitfuzz vm run`: boot a guest kernel under QEMU, run programs in it with
//! the shared executor (`vm guest`), and compare every op with the model under
//! a policy in the kernel geometry, as `real` does on the host.
//!
//! One boot runs the batch's programs in order. A program that hangs the
//! executor (an op that does not return within `--timeout`), crashes the kernel
//! (panic → reboot → QEMU exits), or stalls the guest ends with the kernel's
//! evidence, and the batch boots again at the next program. The kernel's
//! complaints (BUG/Oops, WARNING, bad pmd, Bad rss-counter, Bad page state,
//! soft lockup, hung task) are observations, attributed to the op during which
//! the kernel printed them (the executor marks each op in the kernel log).

use super::guest;
use crate::check::Invariant;
use crate::host::{self, HostRun};
use crate::model::policy::{Policy, Preset};
use crate::observe::{self, Divergence, Transcript};
use crate::prog::Program;
use crate::verdict;
use anyhow::{anyhow, bail, Context, Result};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

/// Kernel log lines that are complaints (substrings).
pub const COMPLAINTS: &[&str] = &[
    "BUG:",
    "kernel BUG",
    "Oops",
    "WARNING:",
    "bad pmd",
    "Bad rss-counter",
    "Bad page state",
    "Bad page map",
    "Bad swap",
    "soft lockup",
    "blocked for more than",
    "Kernel panic",
    "general protection fault",
    "non-zero pgtables_bytes",
];

pub fn is_complaint(line: &str) -> bool {
    COMPLAINTS.iter().any(|c| line.contains(c))
}

#[derive(Clone, Debug)]
pub struct VmOptions {
    pub kernel: PathBuf,
    /// The splitfuzz binary the guest runs (this executable for the CLI).
    pub exe: PathBuf,
    pub timeout: u64,
    pub smp: u32,
    pub memory: String,
    pub kvm: bool,
    pub verbose: bool,
    pub keep: Option<PathBuf>,
}

/// How a program's run in the guest ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum End {
    Ok,
    Hung(usize),
    Unsupported(usize, String),
    Broken(usize, String),
    /// The kernel went down (QEMU exited) during the program.
    Crashed,
    /// No word from the guest for too long; QEMU was killed.
    Stalled,
}

/// One program's run in the guest.
#[derive(Clone, Debug)]
pub struct GuestRun {
    pub hr: HostRun,
    pub end: End,
    /// Kernel log lines of this program, with the op they were printed during
    /// (None: before the first op; `ops.len()`: after the last, the teardown).
    pub log: Vec<(Option<usize>, String)>,
    /// The last op the executor started (from the kernel-log markers).
    pub last_op: Option<usize>,
    /// After a hang: a task of the program survived SIGKILL.
    pub stuck: bool,
    /// The guest kernel's version (from its `ready` line).
    pub linux: (u32, u32),
}

impl GuestRun {
    fn new(n: usize) -> GuestRun {
        GuestRun {
            hr: HostRun {
                t: Transcript {
                    results: vec![None; n],
                    obs: vec![Vec::new(); n],
                    allocs: vec![None; n],
                },
                fallbacks: vec![0; n],
                memcg_events: vec![None; n],
                ..Default::default()
            },
            end: End::Crashed,
            log: Vec::new(),
            last_op: None,
            stuck: false,
            linux: crate::model::mm::LINUX_DEFAULT,
        }
    }

    /// Feed one data-channel line; `cur` is the op the obs lines belong to.
    fn feed(&mut self, line: &str, cur: &mut usize) {
        let n = self.hr.t.results.len();
        let w: Vec<&str> = line.splitn(4, ' ').collect();
        let idx = |s: &str| s.parse::<usize>().ok().filter(|&i| i < n);
        match w.as_slice() {
            ["op", i, "res", r] => {
                if let Some(i) = idx(i) {
                    self.hr.t.results[i] = Some(r.to_string());
                    *cur = i;
                }
            }
            ["alloc", i, p, t] => {
                if let (Some(i), Ok(p), Ok(t)) = (idx(i), p.parse(), t.parse()) {
                    self.hr.t.allocs[i] = Some((p, t));
                }
            }
            ["fb", i, v] => {
                if let (Some(i), Ok(v)) = (idx(i), v.parse()) {
                    self.hr.fallbacks[i] = v;
                }
            }
            ["memcg", i, ..] => {
                if let Some(i) = idx(i) {
                    let ev = line.splitn(3, ' ').nth(2).unwrap_or("").to_string();
                    self.hr.memcg_events[i] = Some(ev);
                }
            }
            ["kh", v] => self.hr.khugepaged = *v == "1",
            ["stuck", v] => self.stuck = *v == "1",
            ["mm", ..] if *cur < n => self.hr.t.obs[*cur].push(line.to_string()),
            _ => {}
        }
    }

    pub fn complaints(&self) -> Vec<(Option<usize>, &str)> {
        self.log
            .iter()
            .filter(|(_, l)| is_complaint(l))
            .map(|(o, l)| (*o, l.as_str()))
            .collect()
    }
}

/// Parse an `end K ...` line into the End.
fn parse_end(rest: &str) -> End {
    let w: Vec<&str> = rest.splitn(3, ' ').collect();
    let op = |s: Option<&&str>| s.and_then(|x| x.parse().ok()).unwrap_or(0);
    match w.first().copied() {
        Some("ok") => End::Ok,
        Some("hung") => End::Hung(op(w.get(1))),
        Some("unsupported") => End::Unsupported(
            op(w.get(1)),
            w.get(2).map(|s| s.to_string()).unwrap_or_default(),
        ),
        Some("broken") => End::Broken(
            op(w.get(1)),
            w.get(2).map(|s| s.to_string()).unwrap_or_default(),
        ),
        _ => End::Broken(0, format!("bad end line: {rest}")),
    }
}

/// The console lines of program `k` in `console` (from its begin marker to its
/// end marker or the end of the log), attributed to ops.
pub fn console_segment(
    console: &str,
    k: usize,
    nops: usize,
) -> (Vec<(Option<usize>, String)>, Option<usize>) {
    let begin = format!("splitfuzz: begin {k}");
    let end = format!("splitfuzz: end {k}");
    let mut out = Vec::new();
    let mut inside = false;
    let mut op: Option<usize> = None;
    let mut last = None;
    for l in console.lines() {
        let l = l.trim_end_matches('\r');
        if !inside {
            if l.ends_with(&begin) {
                inside = true;
                out.clear();
                op = None;
            }
            continue;
        }
        if l.ends_with(&end) {
            inside = false;
            continue;
        }
        if let Some(i) = l
            .rsplit_once("splitfuzz: op ")
            .and_then(|(_, r)| r.trim().parse::<usize>().ok())
        {
            op = Some(i);
            last = Some(i);
            continue;
        }
        if l.ends_with("splitfuzz: teardown") {
            op = Some(nops);
            continue;
        }
        out.push((op, l.to_string()));
    }
    (out, last)
}

/// What a program's run in the guest says about the model.
#[derive(Clone, Debug)]
pub enum VmVerdict {
    Agree {
        thp_fail: Vec<u32>,
    },
    /// `kind`: the field that differs, or hang / crash / stall / broken / complaint.
    Diverge {
        kind: String,
        op: usize,
        detail: String,
        thp_fail: Vec<u32>,
    },
    Unsupported {
        op: usize,
        why: String,
    },
    /// The model broke an invariant: a finding (lazy policies) or a model
    /// error (deposit); `reproduced`: the kernel did what the model did, up to
    /// and including the violating op.
    Finding {
        invariant: Invariant,
        text: String,
        op: usize,
        reproduced: bool,
        evidence: String,
        deposit: bool,
    },
}

fn div_text(p: &Program, d: &Divergence) -> String {
    format!(
        "op {} `{}`{} field {}: model {} kernel {}",
        d.op,
        p.op_text(d.op),
        d.mm.map(|m| format!(" mm {m}")).unwrap_or_default(),
        d.field,
        d.model,
        d.kernel
    )
}

fn evidence_lines(g: &GuestRun, op: Option<usize>, max: usize) -> String {
    let mut s = String::new();
    if let Some(ev) = op.and_then(|i| g.hr.memcg_events.get(i).cloned().flatten()) {
        let _ = write!(s, "\n      memory.events after the op: {ev}");
    }
    let mut n = 0;
    for (o, l) in &g.log {
        if op.is_some() && *o != op {
            continue;
        }
        if n == max {
            s.push_str("\n      ...");
            break;
        }
        let _ = write!(s, "\n      kernel: {}", l.trim());
        n += 1;
    }
    s
}

/// Does the model explain the kernel's hang at op `i`? The model ends an op
/// with `oom-loop` where the real task retries forever: a user fault whose
/// VM_FAULT_OOM the #PF handler retries (arch/x86/mm/fault.c
/// do_user_addr_fault → mm/oom_kill.c pagefault_out_of_memory(), which only
/// logs), or a uffd handler whose UFFDIO_WRITEPROTECT keeps failing.
fn model_oom_loop(mr: &observe::ModelRun, i: usize) -> bool {
    mr.t.results.get(i).and_then(|r| r.as_deref()) == Some("oom-loop")
}

/// Judge one program's guest run against the model under `policy`.
pub fn judge(p: &Program, policy: &Policy, g: &GuestRun) -> VmVerdict {
    judge_with(p, policy, g, &|f| {
        crate::observe::model_run_with(p, policy, g.linux, f)
    })
}

/// `judge` against any model run: `model(thp_fail)` (the memcg trigger's
/// realised plan: `memcg.rs`).
pub fn judge_with(
    p: &Program,
    policy: &Policy,
    g: &GuestRun,
    model: &dyn Fn(&[u32]) -> observe::ModelRun,
) -> VmVerdict {
    let (mr, thp_fail, d) = verdict::fit_model_by(&g.hr, model);
    let n = p.ops.len();
    let complaints = g.complaints();
    let before = |k: usize| {
        if k == 0 {
            None
        } else {
            observe::compare::first_divergence_upto(&mr.t, &g.hr.t, k - 1)
        }
    };
    if let (Some((k, inv)), Some(text)) = (mr.violation_at, &mr.violation) {
        let pre = before(k);
        let at_k_complaints: Vec<&str> = complaints
            .iter()
            .filter(|(o, _)| *o == Some(k))
            .map(|(_, l)| *l)
            .collect();
        let stopped_early = match &g.end {
            End::Hung(i) | End::Unsupported(i, _) | End::Broken(i, _) if *i < k => Some(*i),
            End::Crashed | End::Stalled => g.last_op.filter(|&i| i < k),
            _ => None,
        };
        // A difference before the stop explains more than the stop.
        let stop_first = stopped_early.filter(|&i| pre.as_ref().is_none_or(|d| d.op >= i));
        let (reproduced, evidence) = if let Some(i) = stop_first {
            (
                false,
                format!(
                    "the kernel stopped before the violating op {k}: op {i} `{}` {}{}",
                    p.op_text(i),
                    match &g.end {
                        End::Hung(_) => format!(
                            "did not return within the bound (the model: {})",
                            mr.t.results.get(i).cloned().flatten().unwrap_or_default()
                        ),
                        End::Unsupported(_, why) => format!("cannot run here: {why}"),
                        End::Broken(_, why) => format!("broke: {why}"),
                        End::Crashed => "took the kernel down".into(),
                        _ => "and the guest stopped answering".into(),
                    },
                    evidence_lines(g, Some(i), 12)
                ),
            )
        } else if let Some(dv) = &pre {
            (
                false,
                format!(
                    "the kernel differs before the violating op: {}",
                    div_text(p, dv)
                ),
            )
        } else {
            match inv {
                Invariant::NoLivelock => match &g.end {
                    End::Hung(i) if *i == k => (
                        true,
                        format!(
                            "op {k} `{}` did not return within the bound; {}{}",
                            p.op_text(k),
                            if g.stuck {
                                "its task survived SIGKILL after the failures stopped (kernel backtraces below)"
                            } else {
                                "its task ended once the failures stopped"
                            },
                            evidence_lines(g, Some(k), 30)
                        ),
                    ),
                    _ => (
                        false,
                        format!(
                            "op {k} `{}` returned {}{}",
                            p.op_text(k),
                            g.hr.t.results.get(k).cloned().flatten().unwrap_or_else(|| "nothing".into()),
                            evidence_lines(g, Some(k), 6)
                        ),
                    ),
                },
                Invariant::KernelAssertion => {
                    let crashed = g.end == End::Crashed && g.last_op == Some(k);
                    if crashed || !at_k_complaints.is_empty() {
                        (true, format!("op {k} `{}`: kernel complaint{}", p.op_text(k), evidence_lines(g, Some(k), 20)))
                    } else {
                        (false, format!("op {k} `{}`: no kernel complaint, the op returned {}", p.op_text(k), g.hr.t.results.get(k).cloned().flatten().unwrap_or_else(|| "nothing".into())))
                    }
                }
                _ if k >= n => {
                    let tear: Vec<&str> = complaints.iter().filter(|(o, _)| *o == Some(n)).map(|(_, l)| *l).collect();
                    if tear.is_empty() {
                        (false, "no kernel complaint at teardown".into())
                    } else {
                        (true, format!("kernel complaints at teardown{}", evidence_lines(g, Some(n), 12)))
                    }
                }
                _ => match &d {
                    None if g.hr.t.results.get(k).is_some_and(|r| r.is_some()) => (
                        true,
                        format!(
                            "op {k} `{}`: the kernel's result and state match the model's (the violating state){}",
                            p.op_text(k),
                            evidence_lines(g, Some(k), 6)
                        ),
                    ),
                    None => (false, format!("op {k} `{}` did not complete ({:?})", p.op_text(k), g.end)),
                    Some(dv) => (false, format!("the kernel differs: {}", div_text(p, dv))),
                },
            }
        };
        return VmVerdict::Finding {
            invariant: inv,
            text: text.clone(),
            op: k,
            reproduced,
            evidence,
            deposit: policy.deposit,
        };
    }
    let stop = match &g.end {
        End::Ok => None,
        End::Hung(i) => Some((*i, "hang")),
        End::Unsupported(i, _) => Some((*i, "unsupported")),
        End::Broken(i, _) => Some((*i, "broken")),
        End::Crashed => Some((g.last_op.unwrap_or(0), "crash")),
        End::Stalled => Some((g.last_op.unwrap_or(0), "stall")),
    };
    if let Some((i, kind)) = stop {
        if let Some(dv) = before(i) {
            return VmVerdict::Diverge {
                kind: dv.field.split('@').next().unwrap_or("").to_string(),
                op: dv.op,
                detail: div_text(p, &dv),
                thp_fail,
            };
        }
        return match (&g.end, kind) {
            (End::Unsupported(_, why), _) => VmVerdict::Unsupported {
                op: i,
                why: why.clone(),
            },
            (End::Hung(_), _) if model_oom_loop(&mr, i) => VmVerdict::Agree { thp_fail },
            (_, kind) => VmVerdict::Diverge {
                kind: kind.to_string(),
                op: i,
                detail: format!(
                    "op {i} `{}`: {}{}",
                    p.op_text(i),
                    match &g.end {
                        End::Hung(_) => format!(
                            "did not return within the bound (the model: {})",
                            mr.t.results.get(i).cloned().flatten().unwrap_or_default()
                        ),
                        End::Broken(_, why) => format!("executor: {why}"),
                        End::Crashed => "the kernel went down".into(),
                        _ => "the guest stopped answering".into(),
                    },
                    evidence_lines(g, Some(i), 20)
                ),
                thp_fail,
            },
        };
    }
    if let Some(dv) = d {
        return VmVerdict::Diverge {
            kind: dv.field.split('@').next().unwrap_or("").to_string(),
            op: dv.op,
            detail: div_text(p, &dv),
            thp_fail,
        };
    }
    if let Some((o, l)) = complaints.first() {
        let op = o.unwrap_or(0);
        return VmVerdict::Diverge {
            kind: "complaint".into(),
            op,
            detail: format!(
                "{}: {}{}",
                o.map(|i| format!("op {i} `{}`", p.op_text(i)))
                    .unwrap_or_else(|| "before the first op".into()),
                l.trim(),
                evidence_lines(g, *o, 20)
            ),
            thp_fail,
        };
    }
    VmVerdict::Agree { thp_fail }
}

// ------------------------------------------------------------------ QEMU

struct Session {
    child: Child,
    data: PathBuf,
    console: PathBuf,
    data_off: u64,
    partial: String,
    last_data: Instant,
}

impl Session {
    /// New complete lines on the data channel.
    fn lines(&mut self) -> Vec<String> {
        let mut f = match std::fs::File::open(&self.data) {
            Ok(f) => f,
            Err(_) => return Vec::new(),
        };
        use std::io::Seek;
        if f.seek(std::io::SeekFrom::Start(self.data_off)).is_err() {
            return Vec::new();
        }
        let mut b = Vec::new();
        let _ = f.read_to_end(&mut b);
        if b.is_empty() {
            return Vec::new();
        }
        self.data_off += b.len() as u64;
        self.last_data = Instant::now();
        self.partial.push_str(&String::from_utf8_lossy(&b));
        let mut out = Vec::new();
        while let Some(i) = self.partial.find('\n') {
            let l: String = self.partial.drain(..=i).collect();
            out.push(l.trim_end_matches(['\n', '\r']).to_string());
        }
        out
    }

    fn exited(&mut self) -> bool {
        !matches!(self.child.try_wait(), Ok(None))
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    fn console(&self) -> String {
        std::fs::read(&self.console)
            .map(|b| String::from_utf8_lossy(&b).to_string())
            .unwrap_or_default()
    }
}

/// Run folders (`cache/run/<pid>`, `exec-<pid>`) of `vm run`s that are gone.
fn remove_stale_run_dirs() {
    let Ok(rd) = std::fs::read_dir(super::build::cache_dir().join("run")) else {
        return;
    };
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().to_string();
        let Ok(pid) = name.trim_start_matches("exec-").parse::<i32>() else {
            continue;
        };
        let alive = std::path::Path::new(&format!("/proc/{pid}")).exists();
        if !alive {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

pub fn qemu_binary() -> Result<PathBuf> {
    for p in [
        "/usr/bin/qemu-system-x86_64",
        "/usr/local/bin/qemu-system-x86_64",
    ] {
        if Path::new(p).is_file() {
            return Ok(PathBuf::from(p));
        }
    }
    bail!("qemu-system-x86_64 is not installed: run scripts/vm-deps.sh")
}

fn boot(o: &VmOptions, dir: &Path, initrd: &Path, start: usize, boot_no: usize) -> Result<Session> {
    let data = dir.join(format!("data.{boot_no}.log"));
    let console = dir.join(format!("console.{boot_no}.log"));
    let append = format!(
        "console=ttyS0 nokaslr numa=fake=2 oops=panic panic=-1 softlockup_panic=1 rdinit=/init sfstart={start} sftimeout={}",
        o.timeout
    );
    let mut cmd = Command::new(qemu_binary()?);
    cmd.args(["-nodefaults", "-display", "none", "-no-reboot"])
        .args(["-m", &o.memory, "-smp", &o.smp.to_string()])
        .arg("-kernel")
        .arg(&o.kernel)
        .arg("-initrd")
        .arg(initrd)
        .args(["-append", &append])
        .arg("-serial")
        .arg(format!("file:{}", console.display()))
        .arg("-serial")
        .arg(format!("file:{}", data.display()));
    if o.kvm {
        cmd.args(["-accel", "kvm", "-cpu", "host"]);
    } else {
        cmd.args(["-accel", "tcg", "-cpu", "max"]);
    }
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    // QEMU dies with this process.
    unsafe {
        use std::os::unix::process::CommandExt;
        cmd.pre_exec(|| {
            nix::libc::prctl(nix::libc::PR_SET_PDEATHSIG, nix::libc::SIGKILL);
            Ok(())
        });
    }
    let child = cmd.spawn().context("starting qemu-system-x86_64")?;
    Ok(Session {
        child,
        data,
        console,
        data_off: 0,
        partial: String::new(),
        last_data: Instant::now(),
    })
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
    pub verdict: VmVerdict,
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
    let dir = match &o.keep {
        Some(d) => d.clone(),
        None => super::build::cache_dir()
            .join("run")
            .join(format!("{}", std::process::id())),
    };
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let progs: Vec<&Program> = jobs.iter().map(|j| &j.prog).collect();
    let limits: Vec<guest::Limits> = jobs.iter().map(|j| j.memcg.clone()).collect();
    let initrd = dir.join("initramfs.cpio");
    std::fs::write(
        &initrd,
        super::initramfs::build(exe, &guest::format_programs_with(&progs, &limits))?,
    )?;
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
            let lines = s.lines();
            for l in lines {
                if let Some(rest) = l.strip_prefix("ready ") {
                    ready = true;
                    linux = host::probe::linux_version(rest);
                    if boots == 1 {
                        say!("guest: {rest}");
                    }
                } else if let Some(k) = l.strip_prefix("begin ") {
                    let k: usize = k
                        .trim()
                        .parse()
                        .map_err(|_| anyhow!("guest: bad line {l}"))?;
                    if k >= jobs.len() {
                        bail!("guest: program {k} out of range");
                    }
                    let mut g = GuestRun::new(jobs[k].prog.ops.len());
                    g.linux = linux;
                    cur = Some((k, g, usize::MAX));
                } else if let Some(rest) = l.strip_prefix("end ") {
                    let (k, rest) = rest.split_once(' ').unwrap_or((rest, ""));
                    let k: usize = k.parse().map_err(|_| anyhow!("guest: bad line {l}"))?;
                    let Some((ck, mut g, _)) = cur.take() else {
                        bail!("guest: end {k} without begin");
                    };
                    if ck != k {
                        bail!("guest: end {k} inside program {ck}");
                    }
                    g.end = parse_end(rest);
                    finish(&s, k, &mut g, &jobs[k], &mut |j| on_done(k, j), true);
                    next = k + 1;
                } else if l == "done" {
                    done = true;
                } else if let Some(e) = l.strip_prefix("fatal ") {
                    bail!("the guest executor failed: {e}");
                } else if let Some((_, g, c)) = cur.as_mut() {
                    g.feed(&l, c);
                }
            }
            if done {
                s.kill();
                break;
            }
            if s.exited() {
                // Read what was written before the exit.
                for l in s.lines() {
                    if let Some((_, g, c)) = cur.as_mut() {
                        g.feed(&l, c);
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

// ------------------------------------------------------------------ CLI

#[derive(Default)]
pub struct Stats {
    pub programs: usize,
    pub ops: usize,
    pub agreed: usize,
    pub diverged: BTreeMap<String, usize>,
    pub unsupported: BTreeMap<String, usize>,
    pub model_violations: usize,
    pub reproduced: usize,
    pub not_reproduced: usize,
    pub fed: usize,
}

impl Stats {
    pub fn add(&mut self, p: &Program, v: &VmVerdict) {
        self.programs += 1;
        self.ops += p.ops.len();
        match v {
            VmVerdict::Agree { thp_fail } => {
                self.agreed += 1;
                self.fed += !thp_fail.is_empty() as usize;
            }
            VmVerdict::Diverge { kind, .. } => *self.diverged.entry(kind.clone()).or_default() += 1,
            VmVerdict::Unsupported { why, .. } => {
                let key = why.split(':').next().unwrap_or(why).to_string();
                *self.unsupported.entry(key).or_default() += 1
            }
            VmVerdict::Finding { deposit: true, .. } => self.model_violations += 1,
            VmVerdict::Finding { reproduced, .. } => {
                if *reproduced {
                    self.reproduced += 1
                } else {
                    self.not_reproduced += 1
                }
            }
        }
    }

    pub fn diverged_total(&self) -> usize {
        self.diverged.values().sum()
    }
}

pub fn print_verdict(name: &str, p: &Program, j: &Judged, verbose: bool) {
    match &j.verdict {
        VmVerdict::Agree { thp_fail } => {
            let fb = if thp_fail.is_empty() {
                String::new()
            } else {
                format!(" (kernel THP fallbacks fed to the model: fail thp at={thp_fail:?})")
            };
            say!("{name}: agree, {} ops{fb}", p.ops.len());
        }
        VmVerdict::Unsupported { op, why } => {
            say!("{name}: unsupported at op {op} `{}`: {why}", p.op_text(*op))
        }
        VmVerdict::Diverge { kind, detail, .. } => {
            say!("{name}: DIVERGE ({kind}) at {detail}");
            for l in p.to_text().lines() {
                say!("    | {l}");
            }
        }
        VmVerdict::Finding {
            invariant,
            text,
            reproduced,
            evidence,
            deposit,
            ..
        } => {
            if *deposit {
                say!(
                    "{name}: MODEL VIOLATION under deposit ({}): {text}",
                    invariant.name()
                );
            }
            say!(
                "{name}: {} {}: {}",
                if *reproduced {
                    "reproduced"
                } else {
                    "not reproduced"
                },
                invariant.name(),
                evidence
            );
        }
    }
    if verbose {
        for (o, l) in &j.run.log {
            say!(
                "    kernel[{}]: {l}",
                o.map(|x| x.to_string()).unwrap_or_else(|| "-".into())
            );
        }
        print!("{}", j.run.hr.t.text());
    }
}

pub struct RunRequest {
    pub files: Vec<PathBuf>,
    pub generate: Option<usize>,
    pub seed: u64,
    pub policy: Option<String>,
    /// Realise fault plans with memory-cgroup limits instead of injection.
    pub memcg: bool,
    /// Also run the programs the model cannot predict at the limits.
    pub run_inexpressible: bool,
}

fn policy_named(name: &str) -> Result<Policy> {
    let preset = Preset::from_name(name).ok_or_else(|| {
        anyhow!("unknown policy '{name}' (deposit, lazy-v1, lazy-v3, lazy-fixed)")
    })?;
    Ok(Policy::preset(preset))
}

/// The guest's capabilities, as the generator sees them.
pub fn guest_host() -> host::Host {
    host::Host {
        thp_enabled: "madvise".into(),
        defrag: "madvise".into(),
        use_zero_page: true,
        max_ptes_none: 511,
        swap_kb: 262_144,
        numa_nodes: 2,
        fail_nth: true,
        io_uring: true,
        uffd_wp: true,
        fail_plans: true,
        uffd_move: true,
        uffd_async: true,
        drop_caches: true,
        kernel: "guest".into(),
    }
}

pub fn vm_run_main(o: &VmOptions, r: &RunRequest) -> Result<ExitCode> {
    let mut jobs: Vec<Job> = Vec::new();
    for f in &r.files {
        let text =
            std::fs::read_to_string(f).with_context(|| format!("reading {}", f.display()))?;
        let p = Program::parse(&text).map_err(|e| anyhow!("{}: {e}", f.display()))?;
        let name = r
            .policy
            .clone()
            .or_else(|| p.policy.clone())
            .unwrap_or_else(|| "deposit".into());
        let mut policy = policy_named(&name)?;
        for ov in &p.overrides {
            policy
                .apply_override(ov)
                .map_err(|e| anyhow!("{}: {e}", f.display()))?;
        }
        jobs.push(Job {
            name: f.display().to_string(),
            prog: p,
            policy,
            memcg: None,
        });
    }
    let mut skipped = BTreeMap::new();
    if let Some(n) = r.generate {
        let name = r.policy.clone().unwrap_or_else(|| "deposit".into());
        let policy = policy_named(&name)?;
        for (i, p) in guest_host()
            .generate(n, r.seed, true, &name, &mut skipped)
            .into_iter()
            .enumerate()
        {
            jobs.push(Job {
                name: format!("gen#{i} (seed {})", r.seed),
                prog: p,
                policy: policy.clone(),
                memcg: None,
            });
        }
    }
    if jobs.is_empty() {
        bail!("vm run needs FILE... or --generate N");
    }
    if !o.kernel.is_file() {
        bail!("no kernel at {}", o.kernel.display());
    }
    say!("kernel: {}", o.kernel.display());
    // The memcg trigger: each plan becomes limits on the ops that hold its
    // failures; a program the model cannot predict at those limits is
    // reported and not run.
    let mut notes: Vec<Option<String>> = vec![None; jobs.len()];
    let mut inexpressible = 0usize;
    if r.memcg {
        let mut keep = Vec::new();
        let mut keep_notes = Vec::new();
        for j in jobs {
            let re =
                crate::observe::memcg::realise(&j.prog, &j.policy, crate::model::mm::LINUX_DEFAULT);
            let finding = re.planned.run.violation_at.is_some();
            if !re.inexpressible.is_empty() {
                inexpressible += 1;
                say!(
                    "{}: not expressible without injection{}: {}{}",
                    j.name,
                    if finding {
                        " (finding: reproduced without injection: not expressible)"
                    } else {
                        ""
                    },
                    re.inexpressible.join("; "),
                    if re.summary().is_empty() {
                        String::new()
                    } else {
                        format!(" [{}]", re.summary())
                    }
                );
                if !r.run_inexpressible {
                    continue;
                }
            }
            let note = re.summary();
            keep_notes.push((!note.is_empty()).then_some(note));
            keep.push(Job {
                memcg: Some(re.limits()),
                ..j
            });
        }
        jobs = keep;
        notes = keep_notes;
        if jobs.is_empty() {
            say!("vm run: {inexpressible} programs, none expressible without injection");
            return Ok(ExitCode::SUCCESS);
        }
    }
    let t0 = Instant::now();
    let mut stats = Stats::default();
    let boots = run_batch(o, &jobs, &mut |i, j| {
        let p = &jobs[i].prog;
        // A saved finding whose model shows no violation in the guest's
        // setting (e.g. its plan now fails another allocation because the
        // executor's guard pages keep the arena's PMD tables) has nothing to
        // reproduce: say so, with the kernel's first difference.
        let expects = matches!(p.expect, Some(crate::prog::Expect::Violation { .. }));
        match &j.verdict {
            VmVerdict::Agree { .. } | VmVerdict::Diverge { .. } if expects => {
                stats.programs += 1;
                stats.ops += p.ops.len();
                stats.not_reproduced += 1;
                let how = match &j.verdict {
                    VmVerdict::Diverge { detail, .. } => format!("; the kernel: {detail}"),
                    _ => "; the kernel agrees with it".into(),
                };
                say!(
                    "{}: not reproduced: under {} the model shows no violation in the guest's setting (the arena's PMD tables always present){how}",
                    jobs[i].name,
                    jobs[i].policy
                );
            }
            _ => {
                stats.add(p, &j.verdict);
                print_verdict(&jobs[i].name, p, j, o.verbose);
                if let (
                    Some(_),
                    VmVerdict::Finding {
                        reproduced,
                        deposit: false,
                        ..
                    },
                ) = (&jobs[i].memcg, &j.verdict)
                {
                    say!(
                        "{}: reproduced without injection: {}",
                        jobs[i].name,
                        if *reproduced { "yes" } else { "no" }
                    );
                }
            }
        }
        if let Some(n) = &notes[i] {
            say!("{}: {n}", jobs[i].name);
        }
    })?;
    let t = t0.elapsed().as_secs_f64();
    let run = stats.programs - stats.unsupported.values().sum::<usize>();
    say!(
        "vm run: {}{} programs ({} run, {} unsupported), {} ops; agreed {} ({:.1}% of run), diverged {}, model violations {}; findings reproduced {}, not reproduced {}; {} agreed after feeding kernel THP fallbacks; {} boots; {:.1}s ({:.1} programs/minute)",
        if r.memcg {
            format!("memcg trigger: {inexpressible} not expressible, ")
        } else {
            String::new()
        },
        stats.programs,
        run,
        stats.programs - run,
        stats.ops,
        stats.agreed,
        if run == 0 { 100.0 } else { 100.0 * stats.agreed as f64 / run as f64 },
        stats.diverged_total(),
        stats.model_violations,
        stats.reproduced,
        stats.not_reproduced,
        stats.fed,
        boots,
        t,
        stats.programs as f64 * 60.0 / t.max(1e-9)
    );
    for (k, n) in &stats.diverged {
        say!("  diverged ({k}): {n}");
    }
    for (k, n) in &stats.unsupported {
        say!("  unsupported ({k}): {n}");
    }
    for (why, n) in &skipped {
        say!("  generator skipped {n} unsupported op(s): {why}");
    }
    Ok(
        if stats.diverged_total() > 0 || stats.model_violations > 0 {
            ExitCode::from(1)
        } else {
            ExitCode::SUCCESS
        },
    )
}

// ------------------------------------------------------------------ vm exec

/// `splitfuzz vm exec BINARY...`: run executables (e.g. `emit-c` reproducers,
/// built on this machine) in the guest and print their output. Returns the
/// exit codes in order (None: killed after `timeout` or no answer).
pub fn exec_binaries(
    o: &VmOptions,
    bins: &[PathBuf],
) -> Result<Vec<(String, Option<i32>, String)>> {
    let dir = match &o.keep {
        Some(d) => d.clone(),
        None => super::build::cache_dir()
            .join("run")
            .join(format!("exec-{}", std::process::id())),
    };
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let initrd = dir.join("initramfs.cpio");
    std::fs::write(&initrd, super::initramfs::build_with(&o.exe, "", bins)?)?;
    let mut s = boot(o, &dir, &initrd, 0, 1)?;
    let mut out: Vec<(String, Option<i32>, String)> = Vec::new();
    let t0 = Instant::now();
    let stall = Duration::from_secs(o.timeout.max(60) * 2 + 120);
    let mut done = false;
    while !done {
        for l in s.lines() {
            if let Some(p) = l.strip_prefix("exec ") {
                out.push((p.to_string(), None, String::new()));
            } else if let Some(rest) = l.strip_prefix("exit ") {
                let code = rest.rsplit(' ').next().and_then(|c| c.parse().ok());
                if let Some(last) = out.last_mut() {
                    last.1 = code;
                }
            } else if let Some(t) = l.strip_prefix("out ").or(l.strip_prefix("err ")) {
                if let Some(last) = out.last_mut() {
                    last.2.push_str(t);
                    last.2.push('\n');
                }
            } else if l == "done" {
                done = true;
            } else if let Some(e) = l.strip_prefix("fatal ") {
                s.kill();
                bail!("the guest failed: {e}");
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

pub fn vm_exec_main(o: &VmOptions, bins: &[PathBuf]) -> Result<ExitCode> {
    for b in bins {
        if !b.is_file() {
            bail!("no executable at {}", b.display());
        }
    }
    say!("kernel: {}", o.kernel.display());
    let res = exec_binaries(o, bins)?;
    let mut ok = res.len() == bins.len();
    for (name, code, text) in &res {
        say!("== {name}");
        print!("{text}");
        match code {
            Some(c) => say!("== exit {c}"),
            None => say!("== killed (no exit within the bound)"),
        }
        ok &= *code == Some(0);
    }
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn console_segments_attribute_lines_to_ops() {
        let con = "[ 1.0] boot\n[ 2.0] splitfuzz: begin 3\n[ 2.1] early\n[ 2.2] splitfuzz: op 0\n[ 2.3] WARNING: CPU: 0 PID: 9 at mm/x.c\n[ 2.4] splitfuzz: op 1\n[ 2.5] splitfuzz: teardown\n[ 2.6] BUG: Bad rss-counter state\n[ 2.7] splitfuzz: end 3\n[ 2.8] other\n";
        let (log, last) = console_segment(con, 3, 2);
        assert_eq!(last, Some(1));
        assert_eq!(log.len(), 3);
        assert_eq!(log[0].0, None);
        assert_eq!(log[1].0, Some(0));
        assert!(log[1].1.contains("WARNING"));
        assert_eq!(log[2].0, Some(2));
        assert!(is_complaint(&log[2].1));
        assert!(!is_complaint("splitfuzz: failing pte_alloc call 3"));
    }

    #[test]
    fn end_lines() {
        assert_eq!(parse_end("ok"), End::Ok);
        assert_eq!(parse_end("hung 4"), End::Hung(4));
        assert_eq!(
            parse_end("unsupported 2 reclaim: shared"),
            End::Unsupported(2, "reclaim: shared".into())
        );
    }

    fn guest_run(p: &Program, t: Transcript) -> GuestRun {
        let mut g = GuestRun::new(p.ops.len());
        g.hr.t = t;
        g.end = End::Ok;
        g
    }

    #[test]
    fn judge_agrees_with_the_model_and_catches_each_kind_of_difference() {
        let p = Program::parse(
            "fail pte_alloc nth=2\nmmap 0 2M thp\ntouch 0 2M write\nmadvise 0 256K dontneed\n",
        )
        .unwrap();
        let pol = Policy::preset(Preset::Deposit);
        let m = crate::observe::model_run_with(&p, &pol, (7, 2), &[]);
        assert!(m.violation.is_none());
        // The model's own transcript agrees.
        let g = guest_run(&p, m.t.clone());
        assert!(matches!(judge(&p, &pol, &g), VmVerdict::Agree { .. }));
        // A different allocation count is a divergence in `alloc`.
        let mut t = m.t.clone();
        let a = t.allocs[1].unwrap();
        t.allocs[1] = Some((a.0 + 1, a.1));
        match judge(&p, &pol, &guest_run(&p, t)) {
            VmVerdict::Diverge { kind, op, .. } => assert_eq!((kind.as_str(), op), ("alloc", 1)),
            v => panic!("{v:?}"),
        }
        // A hang where the model returns is a divergence.
        let mut g = guest_run(&p, m.t.clone());
        g.hr.t.results[2] = None;
        g.end = End::Hung(2);
        match judge(&p, &pol, &g) {
            VmVerdict::Diverge { kind, op, .. } => assert_eq!((kind.as_str(), op), ("hang", 2)),
            v => panic!("{v:?}"),
        }
        // A kernel complaint is a divergence even when every line agrees.
        let mut g = guest_run(&p, m.t.clone());
        g.log
            .push((Some(1), "[ 3.0] BUG: Bad page state in process x".into()));
        match judge(&p, &pol, &g) {
            VmVerdict::Diverge { kind, op, .. } => {
                assert_eq!((kind.as_str(), op), ("complaint", 1))
            }
            v => panic!("{v:?}"),
        }
    }

    #[test]
    fn judge_findings_reproduce_only_with_the_kernel_evidence() {
        // lazy-v3 livelock: every pte_alloc_one() fails during a split retry loop.
        let p = Program::parse(
            "policy lazy-v3\nfail pte_alloc from=1\nmmap 0 4M thp\ntouch 0 2M write\nuffd-register 0 4M\nuffd-wp 0 1M on\n",
        )
        .unwrap();
        let pol = Policy::preset(Preset::LazyV3);
        let m = crate::observe::model_run_with(&p, &pol, (7, 2), &[]);
        let (k, inv) = m.violation_at.expect("the finding still violates");
        assert_eq!(inv, Invariant::NoLivelock);
        let mut g = guest_run(&p, m.t.clone());
        g.hr.t.results[k] = None;
        g.end = End::Hung(k);
        assert!(matches!(
            judge(&p, &pol, &g),
            VmVerdict::Finding {
                reproduced: true,
                ..
            }
        ));
        // The op returned: not reproduced.
        let mut g = guest_run(&p, m.t.clone());
        g.hr.t.results[k] = Some("ok".into());
        assert!(matches!(
            judge(&p, &pol, &g),
            VmVerdict::Finding {
                reproduced: false,
                ..
            }
        ));
    }
}
