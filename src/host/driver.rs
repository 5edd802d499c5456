//! The controller: forks the program's mm processes, drives them over pipes op
//! by op, bounds every op in time, and collects the run.

use super::{faults::*, kcov::*, limit::*, op::*, probe::*, proc::*, sys::*};
use crate::observe::line::*;
use crate::prog::{Advice, Op, Program, MAX_MMS};
use anyhow::{anyhow, bail, Result};
use nix::libc;
use std::os::fd::RawFd;
use std::time::{Duration, Instant};
// ---- pipes

pub(crate) struct Pipes {
    /// cmd[k] = (read, write): controller → mm k.
    pub(crate) cmd: Vec<(RawFd, RawFd)>,
    /// resp[k] = (read, write): mm k → controller.
    pub(crate) resp: Vec<(RawFd, RawFd)>,
}

pub(crate) fn pipe() -> Result<(RawFd, RawFd)> {
    let mut fds = [0; 2];
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        bail!("pipe: {}", std::io::Error::last_os_error());
    }
    Ok((fds[0], fds[1]))
}

pub(crate) fn write_all(fd: RawFd, mut b: &[u8]) -> bool {
    while !b.is_empty() {
        let n = unsafe { libc::write(fd, b.as_ptr() as *const libc::c_void, b.len()) };
        if n <= 0 {
            if n < 0 && std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return false;
        }
        b = &b[n as usize..];
    }
    true
}

pub(crate) fn read_exact(fd: RawFd, b: &mut [u8], timeout: Option<Duration>) -> Result<(), String> {
    let mut off = 0;
    let deadline = timeout.map(|t| Instant::now() + t);
    while off < b.len() {
        if let Some(d) = deadline {
            let left = d.saturating_duration_since(Instant::now());
            let mut pfd = libc::pollfd {
                fd,
                events: libc::POLLIN,
                revents: 0,
            };
            let r = unsafe { libc::poll(&mut pfd, 1, left.as_millis().max(1) as i32) };
            if r == 0 {
                return Err("timeout waiting for an mm process".into());
            }
            if r < 0 {
                continue;
            }
        }
        let n = unsafe {
            libc::read(
                fd,
                b[off..].as_mut_ptr() as *mut libc::c_void,
                b.len() - off,
            )
        };
        if n < 0 {
            if std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return Err(format!("read: {}", std::io::Error::last_os_error()));
        }
        if n == 0 {
            return Err("an mm process died (EOF)".into());
        }
        off += n as usize;
    }
    Ok(())
}

pub(crate) fn send_msg(fd: RawFd, s: &str) -> bool {
    let len = (s.len() as u32).to_le_bytes();
    write_all(fd, &len) && write_all(fd, s.as_bytes())
}

pub(crate) fn recv_msg(fd: RawFd, t: Duration) -> Result<String, String> {
    let mut len = [0u8; 4];
    let t = Some(t);
    read_exact(fd, &mut len, t)?;
    let mut b = vec![0u8; u32::from_le_bytes(len) as usize];
    read_exact(fd, &mut b, t)?;
    String::from_utf8(b).map_err(|e| e.to_string())
}

pub(crate) const CMD_OP: u32 = 1;
pub(crate) const CMD_OBSERVE: u32 = 2;
pub(crate) const CMD_QUIT: u32 = 3;
/// CMD_OP with the memory cgroup at its limit for the op (the memcg trigger).
pub(crate) const CMD_OP_LIMITED: u32 = 4;

/// The command loop of the process that is mm `idx`. Never returns.
pub(crate) fn mm_process(prog: &Program, pipes: &Pipes, mut p: Proc) -> ! {
    loop {
        let idx = p.idx;
        let mut cmd = [0u8; 16];
        if read_exact(pipes.cmd[idx].0, &mut cmd, None).is_err() {
            unsafe { libc::_exit(3) };
        }
        let kind = u32::from_le_bytes(cmd[0..4].try_into().unwrap());
        let a = u32::from_le_bytes(cmd[4..8].try_into().unwrap()) as usize;
        let b = u32::from_le_bytes(cmd[8..12].try_into().unwrap()) as usize;
        // CMD_OP_LIMITED: the pages the op may uncharge (see `Limit::set`).
        let slack = u32::from_le_bytes(cmd[12..16].try_into().unwrap()) as u64;
        let resp = pipes.resp[idx].1;
        let limited = kind == CMD_OP_LIMITED;
        let kind = if limited { CMD_OP } else { kind };
        let limit = if limited { p.limit } else { None };
        match kind {
            CMD_OP => {
                let op = &prog.ops[a].op;
                if let Some(l) = &limit {
                    if matches!(op, Op::Touch { .. }) {
                        p.limit_pending = Some(slack);
                    } else {
                        l.set(slack);
                    }
                }
                match op {
                    Op::Fork => {
                        if b >= MAX_MMS {
                            // The program language has at most MAX_MMS mms (dup_mmap: EAGAIN).
                            if let Some(l) = &limit {
                                l.lift();
                            }
                            send_msg(resp, "EAGAIN");
                            continue;
                        }
                        let child = b;
                        let pid = unsafe { libc::fork() };
                        let e = errno();
                        if let Some(l) = &limit {
                            l.lift();
                        }
                        if pid < 0 {
                            send_msg(resp, &errno_name(e));
                            continue;
                        }
                        if pid == 0 {
                            p.idx = child;
                            let r = p.open_pagemap().and_then(|_| p.enable_kcov());
                            p.open_fds();
                            let r = r.and_then(|_| p.start_handler());
                            p.populate_outside_arena();
                            let msg = match r {
                                Ok(()) => format!("ready {}", unsafe { libc::getpid() }),
                                Err(e) => format!("error {e}"),
                            };
                            send_msg(pipes.resp[child].1, &msg);
                            continue;
                        }
                        send_msg(resp, "ok");
                    }
                    Op::Exit => {
                        if let Some(l) = &limit {
                            l.lift();
                        }
                        p.release_pins();
                        send_msg(resp, "ok");
                        unsafe { libc::_exit(0) };
                    }
                    op => {
                        let r = host_op(&mut p, a, op);
                        // (A touch that failed before its reads set nothing.)
                        p.limit_pending = None;
                        if let Some(l) = &limit {
                            l.lift();
                        }
                        send_msg(resp, &r);
                    }
                }
            }
            CMD_OBSERVE => {
                if let Err(e) = p.observe() {
                    p.out.clear();
                    p.out.push_str("error ");
                    p.out.push_str(&e);
                }
                send_msg(resp, &p.out);
            }
            _ => {
                p.release_pins();
                unsafe { libc::_exit(0) }
            }
        }
    }
}

/// How the executor runs a program: on the host (`real`, the defaults) or in
/// the guest (`vm run`: fault plans through our kernel patch, kernel-log markers).
#[derive(Clone, Debug)]
pub struct ExecOpts {
    /// Realise the program's fault plan through /sys/kernel/debug/splitfuzz
    /// (pte_alloc_one() and THP allocations counted across the program's
    /// processes, which have make-it-fail set) and report per-op call counts.
    pub inject: bool,
    /// Write `splitfuzz: op I` to /dev/kmsg before each op, so kernel messages
    /// can be attributed to the op during which they were printed.
    pub markers: bool,
    /// An op (or observation) that does not answer within this is reported hung.
    pub op_timeout: Duration,
    /// The memcg trigger (`memcg.rs`): run the program's processes in this
    /// memory cgroup with oom_score_adj -1000, at its limit during these ops.
    pub memcg: Option<MemcgOpts>,
    /// Collect each op's kernel coverage into these KCOV buffers (`kcov.rs`).
    pub kcov: Option<Kcov>,
    /// Observe the processes only after the ops before this one (None:
    /// after every op). `vm fuzz` needs no observation after a plan's op.
    pub observe_ops: Option<usize>,
}

/// Where and when the memcg trigger puts the program at its memory limit.
#[derive(Clone, Debug, Default)]
pub struct MemcgOpts {
    /// The cgroup-v2 directory to create (its parent must be able to enable
    /// the memory controller), e.g. /sys/fs/cgroup/splitfuzz-3.
    pub dir: String,
    /// The ops run at the limit, each with the pages it may uncharge before
    /// its last charge (the limit is set that much lower: `Limit::set`).
    pub limited: Vec<(usize, u64)>,
}

impl Default for ExecOpts {
    fn default() -> Self {
        ExecOpts {
            inject: false,
            markers: false,
            op_timeout: Duration::from_secs(60),
            memcg: None,
            kcov: None,
            observe_ops: None,
        }
    }
}

/// The kernel side of one program: transcript plus per-op THP fallbacks.
#[derive(Clone, Debug, Default)]
pub struct HostRun {
    pub t: Transcript,
    /// THP allocation fallbacks (/proc/vmstat) during each op, minus the
    /// failures the plan injected.
    pub fallbacks: Vec<u64>,
    /// khugepaged collapsed pages (somewhere) during the run.
    pub khugepaged: bool,
    /// The op that did not return (or whose observation did not) within the
    /// bound; the run stopped there.
    pub hung: Option<usize>,
    /// For a hung op, probed while its failures go on: page faults the
    /// program's processes completed in 300 ms, and whether SIGKILL then
    /// ended the op's process within 2 s.
    pub hang_faults: Option<u64>,
    pub hang_killable: Option<bool>,
    /// The op the executor cannot run here, and why; the run stopped there.
    pub unsupported: Option<(usize, String)>,
    /// An mm process died or answered nonsense during this op.
    pub broken: Option<(usize, String)>,
    /// The program's processes still alive when the run stopped early.
    pub pids: Vec<i32>,
    /// The memcg trigger: memory.events after each limited op.
    pub memcg_events: Vec<Option<String>>,
    /// With `ExecOpts::kcov`: each op's kernel coverage.
    pub cov: Vec<Option<OpCov>>,
}

impl HostRun {
    /// The run of a program of `n` ops before any op ran.
    pub fn new(n: usize) -> HostRun {
        HostRun {
            t: Transcript {
                results: vec![None; n],
                obs: vec![Vec::new(); n],
                allocs: vec![None; n],
            },
            fallbacks: vec![0; n],
            memcg_events: vec![None; n],
            cov: vec![None; n],
            ..Default::default()
        }
    }
}

/// A line in the kernel log (for attributing kernel messages to ops).
pub fn kmsg(line: &str) {
    let _ = std::fs::write("/dev/kmsg", format!("{line}\n"));
}

pub(crate) fn vmstat_fallbacks() -> u64 {
    let s = std::fs::read_to_string("/proc/vmstat").unwrap_or_default();
    s.lines()
        .filter_map(|l| {
            let (k, v) = l.split_once(' ')?;
            matches!(
                k,
                "thp_fault_fallback" | "thp_collapse_alloc_failed" | "thp_zero_page_alloc_failed"
            )
            .then(|| v.trim().parse::<u64>().ok())
            .flatten()
        })
        .sum()
}

pub(crate) fn khugepaged_collapsed() -> u64 {
    read_trim(&format!("{THP}/khugepaged/pages_collapsed"))
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

pub(crate) fn wait_exit(pid: i32) {
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) } as i32;
    if fd < 0 {
        std::thread::sleep(Duration::from_millis(20));
        return;
    }
    let mut pfd = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    unsafe {
        libc::poll(&mut pfd, 1, 10_000);
        libc::close(fd);
    }
}

/// min_flt + maj_flt of the processes (fields 10 and 12 of /proc/PID/stat).
fn faults_of(pids: &[i32]) -> u64 {
    pids.iter()
        .filter_map(|p| std::fs::read_to_string(format!("/proc/{p}/stat")).ok())
        .filter_map(|s| {
            // The command is in parentheses and may hold spaces; the rest
            // starts at field 3 (state): min_flt is field 10, maj_flt 12.
            let f: Vec<&str> = s[s.rfind(')')? + 2..].split(' ').collect();
            Some(f.get(7)?.parse::<u64>().ok()? + f.get(9)?.parse::<u64>().ok()?)
        })
        .sum()
}

/// Page faults the processes complete during `t`. mm/memory.c
/// mm_account_fault() counts no VM_FAULT_ERROR: a fault retrying
/// VM_FAULT_OOM completes none.
fn fault_growth(pids: &[i32], t: Duration) -> u64 {
    let a = faults_of(pids);
    std::thread::sleep(t);
    faults_of(pids).saturating_sub(a)
}

/// SIGKILL `pid`: did it exit (gone, or a zombie) within `t`?
fn exits_on_sigkill(pid: i32, t: Duration) -> bool {
    unsafe { libc::kill(pid, libc::SIGKILL) };
    let t0 = Instant::now();
    loop {
        let state = std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|s| s[s.rfind(')')? + 2..].chars().next());
        if matches!(state, None | Some('Z') | Some('X')) {
            return true;
        }
        if t0.elapsed() > t {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Run a program on the host kernel.
pub fn host_run(prog: &Program) -> Result<HostRun> {
    host_run_opts(prog, &ExecOpts::default())
}

/// Run a program on this machine's kernel (the host's, or the guest's).
pub fn host_run_opts(prog: &Program, opts: &ExecOpts) -> Result<HostRun> {
    let mut pipes = Pipes {
        cmd: Vec::new(),
        resp: Vec::new(),
    };
    for _ in 0..MAX_MMS {
        pipes.cmd.push(pipe()?);
        pipes.resp.push(pipe()?);
    }
    let close_all = |p: &Pipes| {
        for &(r, w) in p.cmd.iter().chain(p.resp.iter()) {
            unsafe {
                libc::close(r);
                libc::close(w);
            }
        }
    };
    if let Some(mc) = &opts.memcg {
        if let Err(e) = memcg_create(&mc.dir) {
            close_all(&pipes);
            return Err(e);
        }
    }
    // Allocate everything the child needs before fork.
    let mut proc0 = Proc::new(0);
    proc0.uffd_use = prog.ops.iter().any(|l| {
        matches!(
            l.op,
            Op::UffdWp { .. }
                | Op::UffdRegister { .. }
                | Op::UffdUnregister { .. }
                | Op::UffdMove { .. }
                | Op::PagemapScan { .. }
        )
    });
    proc0.uffd_async = prog.uffd_async;
    proc0.kcov = opts.kcov.clone();
    proc0.guard_use = prog.ops.iter().any(|l| {
        matches!(
            l.op,
            Op::Madvise {
                advice: Advice::GuardInstall,
                ..
            }
        )
    });
    let pid0 = unsafe { libc::fork() };
    if pid0 < 0 {
        close_all(&pipes);
        bail!("fork: {}", std::io::Error::last_os_error());
    }
    if pid0 == 0 {
        // mm 0.
        unsafe {
            libc::signal(libc::SIGCHLD, libc::SIG_IGN);
            for k in 0..MAX_MMS {
                libc::close(pipes.cmd[k].1);
                libc::close(pipes.resp[k].0);
            }
        }
        let mut p = proc0;
        // The program's processes (and their handler threads) are the only
        // tasks the fault plan counts; fork and new threads inherit the flag.
        // (The plan is armed only after this process is ready.)
        let r = if opts.inject {
            write_file("/proc/self/make-it-fail", "1")
        } else {
            Ok(())
        };
        // The memcg trigger: this process (and every process and thread it
        // forks) joins the cgroup, and the memcg OOM killer may not pick it
        // (mm/oom_kill.c oom_badness(): OOM_SCORE_ADJ_MIN is never chosen).
        let r = r.and_then(|_| match &opts.memcg {
            Some(mc) => write_file(&format!("{}/cgroup.procs", mc.dir), "0")
                .and_then(|_| write_file("/proc/self/oom_score_adj", "-1000"))
                .and_then(|_| Limit::open(&mc.dir))
                .map(|l| p.limit = Some(l)),
            None => Ok(()),
        });
        // A crash of this process must not spend seconds dumping core.
        let nocore = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        unsafe { libc::setrlimit(libc::RLIMIT_CORE, &nocore) };
        let r = r
            .and_then(|_| setup_arena())
            .and_then(|_| p.open_pagemap())
            .and_then(|_| p.enable_kcov())
            .and_then(|_| bind_node0());
        p.open_fds();
        let r = r.and_then(|_| p.start_handler());
        p.populate_outside_arena();
        p.base_pte_kb = p.vm_pte_kb();
        let msg = match r {
            Ok(()) => format!("ready {}", unsafe { libc::getpid() }),
            Err(e) => format!("error {e}"),
        };
        send_msg(pipes.resp[0].1, &msg);
        mm_process(prog, &pipes, p);
    }
    drop(proc0);
    for k in 0..MAX_MMS {
        unsafe {
            libc::close(pipes.cmd[k].0);
            libc::close(pipes.resp[k].1);
        }
    }
    let result = drive(prog, &pipes, pid0, opts);
    for k in 0..MAX_MMS {
        unsafe {
            libc::close(pipes.cmd[k].1);
            libc::close(pipes.resp[k].0);
        }
    }
    // A hung op's process may not die on SIGKILL (a livelock in the kernel):
    // never wait for it.
    let stuck = result.as_ref().is_ok_and(|r| r.hung.is_some());
    unsafe {
        libc::kill(pid0, libc::SIGKILL);
        let mut st = 0;
        libc::waitpid(pid0, &mut st, if stuck { libc::WNOHANG } else { 0 });
    }
    if let Some(mc) = &opts.memcg {
        if !stuck {
            // Empty once its processes are gone (the forked ones may take a moment).
            for _ in 0..100 {
                if std::fs::remove_dir(&mc.dir).is_ok() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }
    result
}

pub(crate) fn drive(prog: &Program, pipes: &Pipes, pid0: i32, opts: &ExecOpts) -> Result<HostRun> {
    let cmd4 = |k: usize, kind: u32, a: u32, c: u32, d: u32| -> bool {
        let mut b = [0u8; 16];
        b[0..4].copy_from_slice(&kind.to_le_bytes());
        b[4..8].copy_from_slice(&a.to_le_bytes());
        b[8..12].copy_from_slice(&c.to_le_bytes());
        b[12..16].copy_from_slice(&d.to_le_bytes());
        write_all(pipes.cmd[k].1, &b)
    };
    let cmd = |k: usize, kind: u32, a: u32, c: u32| cmd4(k, kind, a, c, 0);
    let recv = |k: usize| recv_msg(pipes.resp[k].0, opts.op_timeout);
    let ready = |k: usize| -> Result<i32, String> {
        let m = recv(k)?;
        m.strip_prefix("ready ")
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| format!("mm {k}: {m}"))
    };
    let mut pids: Vec<Option<i32>> = vec![None; MAX_MMS];
    pids[0] = Some(ready(0).map_err(|e| anyhow!("mm 0: {e}"))?);
    let _ = pid0;
    let mut nprocs = 1;
    let kh0 = khugepaged_collapsed();
    let n = prog.ops.len();
    let mut run = HostRun::new(n);
    let limit_of = |i: usize| {
        opts.memcg
            .as_ref()
            .and_then(|mc| mc.limited.iter().find(|l| l.0 == i).map(|l| l.1))
    };
    let limited = |i: usize| limit_of(i).is_some();
    let mut armed = Armed::default();
    if opts.inject {
        sf_set_plans(Some(prog))?;
    }
    let mut thp_failed = 0u32;
    'ops: for (i, line) in prog.ops.iter().enumerate() {
        let m = line.mm;
        if pids.get(m).copied().flatten().is_none() {
            continue;
        }
        if opts.markers {
            kmsg(&format!("splitfuzz: op {i}"));
        }
        if opts.inject {
            armed.before_op(prog, i)?;
        }
        let fb0 = vmstat_fallbacks();
        let failed0 = match (&opts.kcov, opts.inject) {
            (Some(k), true) => {
                k.reset(m);
                failed_calls()
            }
            (Some(k), false) => {
                k.reset(m);
                0
            }
            _ => 0,
        };
        let (kind, slack) = match limit_of(i) {
            Some(s) => (CMD_OP_LIMITED, s.min(u32::MAX as u64) as u32),
            None => (CMD_OP, 0),
        };
        if !cmd4(m, kind, i as u32, nprocs as u32, slack) {
            run.broken = Some((i, format!("mm {m} is gone")));
            break;
        }
        let r = match recv(m) {
            Ok(r) => r,
            Err(e) if e.starts_with("timeout") => {
                run.hung = Some(i);
                // While the failures go on: does the op complete faults
                // (a fault that returns and refaults) or none (an OOM retry,
                // a loop in the kernel), and does SIGKILL end it?
                if let Some(pid) = pids[m] {
                    let all: Vec<i32> = pids.iter().flatten().copied().collect();
                    run.hang_faults = Some(fault_growth(&all, Duration::from_millis(300)));
                    run.hang_killable = Some(exits_on_sigkill(pid, Duration::from_secs(2)));
                }
                break;
            }
            Err(e) => {
                run.broken = Some((i, format!("mm {m}: {e}")));
                break;
            }
        };
        if let Some(k) = &opts.kcov {
            let failed = opts.inject && failed_calls() > failed0;
            run.cov[i] = Some(op_cov(&k.take(m), failed));
        }
        if let Some(why) = r.strip_prefix(UNSUPPORTED) {
            run.unsupported = Some((i, why.to_string()));
            break;
        }
        match line.op {
            Op::Fork if r == "ok" => match ready(nprocs) {
                Ok(pid) => {
                    pids[nprocs] = Some(pid);
                    nprocs += 1;
                }
                Err(e) if e.starts_with("timeout") => {
                    run.hung = Some(i);
                    break;
                }
                Err(e) => {
                    run.broken = Some((i, e));
                    break;
                }
            },
            Op::Exit => {
                if let Some(pid) = pids[m].take() {
                    wait_exit(pid);
                }
            }
            _ => {}
        }
        let mut fb = vmstat_fallbacks().saturating_sub(fb0);
        if opts.inject {
            armed.after_op()?;
            let (pte, thp, failed) = armed.counts()?;
            run.t.allocs[i] = Some((pte, thp));
            fb = fb.saturating_sub(failed.saturating_sub(thp_failed) as u64);
            thp_failed = failed;
        }
        run.fallbacks[i] = fb;
        if let (true, Some(mc)) = (limited(i), &opts.memcg) {
            run.memcg_events[i] = Some(memcg_events(&mc.dir));
        }
        run.t.results[i] = Some(r);
        let observe = opts.observe_ops.is_none_or(|n| i < n);
        for (k, pid) in pids.iter().enumerate() {
            if pid.is_some() && observe {
                if !cmd(k, CMD_OBSERVE, 0, 0) {
                    run.broken = Some((i, format!("mm {k} is gone")));
                    break 'ops;
                }
                match recv(k) {
                    Ok(o) => run.t.obs[i].push(o),
                    Err(e) if e.starts_with("timeout") => {
                        run.hung = Some(i);
                        break 'ops;
                    }
                    Err(e) => {
                        run.broken = Some((i, format!("mm {k}: {e}")));
                        break 'ops;
                    }
                }
            }
        }
    }
    if opts.inject {
        sf_set_plans(None)?;
    }
    if let Some(mc) = &opts.memcg {
        // A hung op's process never got to lift its limit.
        memcg_lift(&mc.dir);
        if let Some(i) = run.hung.filter(|&i| limited(i)) {
            run.memcg_events[i] = Some(memcg_events(&mc.dir));
        }
    }
    if run.hung.is_none() && run.broken.is_none() {
        if opts.markers {
            kmsg("splitfuzz: teardown");
        }
        for (k, pid) in pids.iter().enumerate() {
            if let Some(pid) = pid {
                cmd(k, CMD_QUIT, 0, 0);
                wait_exit(*pid);
            }
        }
    }
    run.khugepaged = khugepaged_collapsed() != kh0;
    run.pids = pids.iter().flatten().copied().collect();
    Ok(run)
}
