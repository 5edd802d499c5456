//! Inside the guest: `splitfuzz vm guest`, started by the initramfs's /init.
//!
//! Runs the programs of `/programs.txt` from the index the host put on the
//! kernel command line (`sfstart=K`) with the same executor as `splitfuzz
//! real` (`host::host_run_opts`), with the fault plans armed through our
//! kernel patch, and writes one transcript per program to the second serial
//! port (`/dev/ttyS1`, the data channel; the console on ttyS0 carries the
//! kernel log) as `protocol::Msg` lines.
//!
//! After a hung op the plan is disarmed and the program's processes are
//! killed; if one survives (a loop in the kernel), the guest asks the kernel
//! for backtraces (sysrq `l` and `w`, into the console log) and reboots, as it
//! does after a broken program; the host starts the next boot at K+1.

use super::protocol::{
    cmdline_value, read_streamed, Batch, End, ExitStatus, Msg, CMDLINE_START, CMDLINE_STREAM,
    CMDLINE_TIMEOUT, EXEC_LIST, PROGRAMS,
};
use crate::host::{self, ExecOpts};
use anyhow::{anyhow, bail, Context, Result};
use nix::libc;
use std::io::Write;
use std::time::Duration;

/// The data channel: the second serial port, raw (no `\n` → `\r\n`).
struct Channel {
    f: std::fs::File,
}

impl Channel {
    fn open() -> Result<Channel> {
        use std::os::fd::AsRawFd;
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open("/dev/ttyS1")
            .context("opening /dev/ttyS1")?;
        unsafe {
            let mut t: libc::termios = std::mem::zeroed();
            if libc::tcgetattr(f.as_raw_fd(), &mut t) == 0 {
                libc::cfmakeraw(&mut t);
                libc::cfsetospeed(&mut t, libc::B115200);
                libc::tcsetattr(f.as_raw_fd(), libc::TCSANOW, &t);
            }
        }
        Ok(Channel { f })
    }

    fn send(&mut self, m: &Msg) {
        let _ = self.f.write_all(format!("{m}\n").as_bytes());
    }
}

/// THP and khugepaged as the model assumes them: THP on MADV_HUGEPAGE only,
/// the huge zero page in use, and khugepaged asleep (its collapses would be
/// unplanned, uncounted THP allocations by a task the plan does not see).
fn configure() -> Result<()> {
    let thp = "/sys/kernel/mm/transparent_hugepage";
    for (f, v) in [
        ("enabled", "madvise"),
        ("defrag", "madvise"),
        ("use_zero_page", "1"),
        ("khugepaged/max_ptes_none", "511"),
        ("khugepaged/scan_sleep_millisecs", "4294967295"),
        ("khugepaged/alloc_sleep_millisecs", "4294967295"),
    ] {
        host::probe::write_file(&format!("{thp}/{f}"), v).map_err(|e| anyhow!(e))?;
    }
    Ok(())
}

fn reboot() -> ! {
    unsafe {
        libc::sync();
        libc::reboot(libc::LINUX_REBOOT_CMD_RESTART);
    }
    std::process::exit(0)
}

/// SIGKILL `pids` and wait until they are gone (reaping the orphans this
/// process, pid 1, inherits). False if any is still there after `t`.
fn kill_and_reap(pids: &[i32], t: Duration) -> bool {
    for &p in pids {
        unsafe { libc::kill(p, libc::SIGKILL) };
    }
    let t0 = std::time::Instant::now();
    loop {
        let mut st = 0;
        while unsafe { libc::waitpid(-1, &mut st, libc::WNOHANG) } > 0 {}
        let alive = pids.iter().any(|&p| unsafe { libc::kill(p, 0) } == 0);
        if !alive {
            return true;
        }
        if t0.elapsed() > t {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn sysrq(c: &str) {
    let _ = std::fs::write("/proc/sysrq-trigger", c);
}

/// `splitfuzz vm guest`: never returns (reboots the guest).
pub fn guest_main() -> ! {
    // The executor writes to its mm processes' pipes and must see EPIPE.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_IGN) };
    let mut ch = match Channel::open() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("splitfuzz guest: {e:#}");
            reboot();
        }
    };
    if let Err(e) = run(&mut ch) {
        ch.send(&Msg::Fatal(format!("{e:#}")));
    }
    reboot()
}

fn run(ch: &mut Channel) -> Result<()> {
    let cmdline = std::fs::read_to_string("/proc/cmdline").unwrap_or_default();
    let start: usize = cmdline_value(&cmdline, CMDLINE_START)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let timeout: u64 = cmdline_value(&cmdline, CMDLINE_TIMEOUT)
        .and_then(|v| v.parse().ok())
        .unwrap_or(10);
    configure()?;
    let mut host = host::Host::read();
    host.drop_caches = true;
    ch.send(&Msg::Ready(format!(
        "{} | {}",
        host.kernel,
        host.describe()
    )));
    if !host.fail_plans {
        bail!(
            "this kernel has no /sys/kernel/debug/splitfuzz (not built by `splitfuzz vm build`?)"
        );
    }
    if let Ok(list) = std::fs::read_to_string(EXEC_LIST) {
        return run_execs(ch, &list, timeout.max(60));
    }
    if cmdline_value(&cmdline, CMDLINE_STREAM).is_some() {
        return run_stream(ch, timeout);
    }
    let text = std::fs::read_to_string(PROGRAMS).context("reading /programs.txt")?;
    let batch = Batch::parse(&text)?;
    for (k, (prog, limits)) in batch.programs.iter().enumerate().skip(start) {
        if run_one(ch, k, prog, limits, timeout, None)? == Next::Reboot {
            return Ok(());
        }
    }
    ch.send(&Msg::Done);
    Ok(())
}

/// After a program: go on, or reboot (a task survived SIGKILL, or the
/// program broke the executor).
#[derive(PartialEq, Eq)]
enum Next {
    Go,
    Reboot,
}

/// What this boot has sent of the kernel coverage (`vm fuzz`): each op's
/// PCs and edges go to the host once per boot, those of ops in which an
/// allocation failed once more as such.
struct CovState {
    /// None: a kernel without KCOV (programs run, no coverage).
    kcov: Option<host::kcov::Kcov>,
    /// The program running now: observe after its first N ops only.
    observe_ops: Option<usize>,
    pcs: std::collections::HashSet<u32>,
    edges: std::collections::HashSet<u32>,
    fail_pcs: std::collections::HashSet<u32>,
    fail_edges: std::collections::HashSet<u32>,
}

impl CovState {
    /// The op's PCs and edges this boot has not sent yet.
    fn news(&mut self, c: &host::kcov::OpCov) -> (Vec<u32>, Vec<u32>) {
        let (pcs, edges) = if c.failed {
            (&mut self.fail_pcs, &mut self.fail_edges)
        } else {
            (&mut self.pcs, &mut self.edges)
        };
        (
            c.pcs.iter().copied().filter(|p| pcs.insert(*p)).collect(),
            c.edges
                .iter()
                .copied()
                .filter(|e| edges.insert(*e))
                .collect(),
        )
    }
}

/// `vm fuzz`: the persistent executor. Programs come from the host on the
/// data channel (`protocol::read_streamed`), one at a time, each run
/// with its op coverage, until the kernel dies or the host stops the guest.
fn run_stream(ch: &mut Channel, timeout: u64) -> Result<()> {
    // The data channel, both ways (raw since `Channel::open`).
    let input = std::fs::File::open("/dev/ttyS1").context("opening /dev/ttyS1 to read")?;
    let mut cov = CovState {
        kcov: host::kcov::Kcov::open()
            .map_err(|e| host::driver::kmsg(&format!("splitfuzz: no coverage: {e}")))
            .ok(),
        observe_ops: None,
        pcs: Default::default(),
        edges: Default::default(),
        fail_pcs: Default::default(),
        fail_edges: Default::default(),
    };
    let mut rd = std::io::BufReader::new(input);
    loop {
        let (k, prog, observe) = match read_streamed(&mut rd)? {
            Some(x) => x,
            None => {
                ch.send(&Msg::Done);
                return Ok(());
            }
        };
        cov.observe_ops = observe;
        if run_one(ch, k, &prog, &None, timeout, Some(&mut cov))? == Next::Reboot {
            return Ok(());
        }
    }
}

/// Run program `k` and send its transcript.
fn run_one(
    ch: &mut Channel,
    k: usize,
    prog: &crate::prog::Program,
    limits: &super::protocol::Limits,
    timeout: u64,
    mut cov: Option<&mut CovState>,
) -> Result<Next> {
    // Fault plans through our kernel patch; or, with the memcg trigger,
    // the plans disarmed (the patch only counts) and the program in a
    // memory cgroup at its limit during the limited ops.
    let opts = ExecOpts {
        inject: true,
        markers: true,
        op_timeout: Duration::from_secs(timeout),
        kcov: cov.as_ref().and_then(|c| c.kcov.clone()),
        observe_ops: cov.as_ref().and_then(|c| c.observe_ops),
        memcg: limits.as_ref().map(|l| host::MemcgOpts {
            dir: format!("/sys/fs/cgroup/splitfuzz-{k}"),
            limited: l.clone(),
        }),
    };
    let mut plain;
    let prog = if limits.is_some() {
        plain = prog.clone();
        plain.faults = Default::default();
        &plain
    } else {
        prog
    };
    ch.send(&Msg::Begin(k));
    host::driver::kmsg(&format!("splitfuzz: begin {k}"));
    // Free the huge zero folio (its shrinker) so its first use in this
    // program allocates, as in the model's fresh kernel.
    let _ = std::fs::write("/proc/sys/vm/drop_caches", "2");
    let r = host::host_run_opts(prog, &opts);
    let r = match r {
        Ok(r) => r,
        Err(e) => {
            ch.send(&Msg::End {
                k,
                end: End::Broken(0, format!("{e:#}")),
            });
            return Ok(Next::Reboot);
        }
    };
    for i in 0..prog.ops.len() {
        if r.t.results[i].is_none() {
            // A hung limited op still has its memory.events.
            if let Some(ev) = &r.memcg_events[i] {
                ch.send(&Msg::Memcg {
                    i,
                    events: ev.clone(),
                });
            }
        }
        let Some(res) = &r.t.results[i] else { continue };
        ch.send(&Msg::Op {
            i,
            res: res.clone(),
        });
        if let Some((p, t)) = r.t.allocs[i] {
            ch.send(&Msg::Alloc { i, pte: p, thp: t });
        }
        if r.fallbacks[i] > 0 {
            ch.send(&Msg::Fallbacks {
                i,
                n: r.fallbacks[i],
            });
        }
        if let Some(ev) = &r.memcg_events[i] {
            ch.send(&Msg::Memcg {
                i,
                events: ev.clone(),
            });
        }
        for o in &r.t.obs[i] {
            ch.send(&Msg::Obs(o.clone()));
        }
        if let (Some(c), Some(oc)) = (cov.as_mut(), &r.cov[i]) {
            let (pcs, edges) = c.news(oc);
            ch.send(&Msg::Cov {
                i,
                failed: oc.failed,
                pcs,
                edges,
            });
        }
    }
    ch.send(&Msg::Khugepaged(r.khugepaged));
    if let Some(i) = r.hung {
        // The driver probed the hung op while its failures went on.
        if let Some(n) = r.hang_faults {
            ch.send(&Msg::Faults(n));
        }
        if let Some(k) = r.hang_killable {
            ch.send(&Msg::Killable(k));
        }
        // The plan is disarmed now. A task retrying a failed fault in user
        // space ends on SIGKILL; one looping in the kernel may not.
        let gone = kill_and_reap(&r.pids, Duration::from_secs(3));
        if !gone {
            // Backtraces of the CPUs and blocked tasks into the console log.
            sysrq("l");
            sysrq("w");
            std::thread::sleep(Duration::from_millis(500));
        }
        ch.send(&Msg::Stuck(!gone));
        host::driver::kmsg(&format!("splitfuzz: end {k}"));
        ch.send(&Msg::End {
            k,
            end: End::Hung(i),
        });
        return Ok(if gone { Next::Go } else { Next::Reboot });
    }
    host::driver::kmsg(&format!("splitfuzz: end {k}"));
    if let Some((i, why)) = &r.broken {
        ch.send(&Msg::End {
            k,
            end: End::Broken(*i, why.clone()),
        });
        return Ok(Next::Reboot);
    }
    match &r.unsupported {
        Some((i, why)) => ch.send(&Msg::End {
            k,
            end: End::Unsupported(*i, why.clone()),
        }),
        None => ch.send(&Msg::End { k, end: End::Ok }),
    }
    Ok(Next::Go)
}

/// `vm exec`: run each executable (stdout and stderr to the data channel as
/// `out ...` / `err ...` lines), killing it after `timeout` seconds.
fn run_execs(ch: &mut Channel, list: &str, timeout: u64) -> Result<()> {
    use std::io::BufRead;
    for path in list.lines().filter(|l| !l.is_empty()) {
        ch.send(&Msg::Exec(path.to_string()));
        host::driver::kmsg(&format!("splitfuzz: exec {path}"));
        let mut child = match std::process::Command::new(path)
            .current_dir("/tmp")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
        {
            Ok(c) => c,
            Err(e) => {
                ch.send(&Msg::Exit {
                    path: path.to_string(),
                    status: ExitStatus::SpawnError(e.to_string()),
                });
                continue;
            }
        };
        let out = child.stdout.take().unwrap();
        let err = child.stderr.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel::<Msg>();
        let tx2 = tx.clone();
        let a = std::thread::spawn(move || {
            for l in std::io::BufReader::new(out).lines().map_while(Result::ok) {
                let _ = tx.send(Msg::Out(l));
            }
        });
        let b = std::thread::spawn(move || {
            for l in std::io::BufReader::new(err).lines().map_while(Result::ok) {
                let _ = tx2.send(Msg::Err(l));
            }
        });
        let t0 = std::time::Instant::now();
        let status = loop {
            while let Ok(l) = rx.try_recv() {
                ch.send(&l);
            }
            if let Ok(Some(st)) = child.try_wait() {
                break Some(st);
            }
            if t0.elapsed() > Duration::from_secs(timeout) {
                let _ = child.kill();
                break None;
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let _ = a.join();
        let _ = b.join();
        while let Ok(l) = rx.try_recv() {
            ch.send(&l);
        }
        match status.and_then(|s| s.code()) {
            Some(c) => ch.send(&Msg::Exit {
                path: path.to_string(),
                status: ExitStatus::Code(c),
            }),
            None => ch.send(&Msg::Exit {
                path: path.to_string(),
                status: ExitStatus::Killed,
            }),
        }
        host::driver::kmsg(&format!("splitfuzz: exec end {path}"));
    }
    ch.send(&Msg::Done);
    Ok(())
}

/// The guest's capabilities, as the generator sees them.
pub fn capabilities() -> host::Host {
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
