//! Inside the guest: `splitfuzz vm guest`, started by the initramfs's /init.
//!
//! Runs the programs of `/programs.txt` from the index the host put on the
//! kernel command line (`sfstart=K`) with the same executor as `splitfuzz
//! real` (`host::host_run_opts`), with the fault plans armed through our
//! kernel patch, and writes one transcript per program to the second serial
//! port (`/dev/ttyS1`, the data channel; the console on ttyS0 carries the
//! kernel log). Protocol, one item per line:
//!
//! ```text
//! ready <kernel release> | <host description>
//! begin K
//! op I res R            (an op that ran)
//! alloc I P T           (pte_alloc_one() and THP calls counted after op I)
//! fb I N                (THP fallbacks the kernel made by itself during op I)
//! memcg I EVENTS        (memcg trigger: memory.events after limited op I)
//! mm ...                (observation lines after op I, one per live mm)
//! kh 0|1                (khugepaged collapsed something during the program)
//! stuck 0|1            (after a hang: 1 if a task survived SIGKILL; then reboot)
//! end K ok | end K hung I | end K unsupported I WHY | end K broken I WHY
//! done
//! ```
//!
//! After a hung op the plan is disarmed and the program's processes are
//! killed; if one survives (a loop in the kernel), the guest asks the kernel
//! for backtraces (sysrq `l` and `w`, into the console log) and reboots, as it
//! does after a broken program; the host starts the next boot at K+1.

use crate::host::{self, ExecOpts};
use crate::prog::Program;
use anyhow::{anyhow, bail, Context, Result};
use nix::libc;
use std::io::Write;
use std::time::Duration;

pub const PROGRAMS: &str = "/programs.txt";
/// Executables to run instead of programs (`vm exec`), one path a line.
pub const EXEC_LIST: &str = "/exec.list";

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

    fn line(&mut self, s: &str) {
        let _ = self.f.write_all(s.as_bytes());
        let _ = self.f.write_all(b"\n");
    }
}

/// Split the programs file: `=== K` headers, each followed by a program's text.
pub fn parse_programs(text: &str) -> Result<Vec<Program>> {
    Ok(parse_programs_with(text)?
        .into_iter()
        .map(|(p, _)| p)
        .collect())
}

/// The memcg trigger's limited ops of a program, each with the pages it may
/// free (`=== K limit=I:S,J:T`, the header of a program run in a memory
/// cgroup; `limit=` alone: no op limited).
pub type Limits = Option<Vec<(usize, u64)>>;

/// `parse_programs` with each program's memcg limits.
pub fn parse_programs_with(text: &str) -> Result<Vec<(Program, Limits)>> {
    let mut out: Vec<(Program, Limits)> = Vec::new();
    let mut cur: Option<(String, Limits)> = None;
    let finish = |out: &mut Vec<(Program, Limits)>, t: String, l: Limits| -> Result<()> {
        let p = Program::parse(&t).map_err(|e| anyhow!("program {}: {e}", out.len()))?;
        out.push((p, l));
        Ok(())
    };
    for l in text.lines() {
        if let Some(h) = l.strip_prefix("=== ") {
            if let Some((t, lim)) = cur.take() {
                finish(&mut out, t, lim)?;
            }
            let mut w = h.split_whitespace();
            if w.next().and_then(|k| k.parse::<usize>().ok()) != Some(out.len()) {
                bail!("programs file: header `{l}` out of order");
            }
            let lim = match w.next() {
                None => None,
                Some(x) => {
                    let v = x
                        .strip_prefix("limit=")
                        .ok_or_else(|| anyhow!("programs file: bad header `{l}`"))?;
                    Some(
                        v.split(',')
                            .filter(|s| !s.is_empty())
                            .map(|s| {
                                let (i, sl) = s.split_once(':')?;
                                Some((i.parse::<usize>().ok()?, sl.parse::<u64>().ok()?))
                            })
                            .collect::<Option<Vec<_>>>()
                            .ok_or_else(|| anyhow!("programs file: bad header `{l}`"))?,
                    )
                }
            };
            cur = Some((String::new(), lim));
        } else if let Some((t, _)) = cur.as_mut() {
            t.push_str(l);
            t.push('\n');
        }
    }
    if let Some((t, lim)) = cur.take() {
        finish(&mut out, t, lim)?;
    }
    Ok(out)
}

pub fn format_programs(progs: &[&Program]) -> String {
    format_programs_with(progs, &[])
}

/// `format_programs` with memcg limits (`limits[k]`; missing: none).
pub fn format_programs_with(progs: &[&Program], limits: &[Limits]) -> String {
    let mut s = String::new();
    for (i, p) in progs.iter().enumerate() {
        match limits.get(i).cloned().flatten() {
            Some(l) => s.push_str(&format!(
                "=== {i} limit={}\n",
                l.iter()
                    .map(|(i, sl)| format!("{i}:{sl}"))
                    .collect::<Vec<_>>()
                    .join(",")
            )),
            None => s.push_str(&format!("=== {i}\n")),
        }
        // The guest needs the ops and the fault plan; the policy is the kernel's.
        let mut q = (*p).clone();
        q.expect = None;
        s.push_str(&q.to_text());
    }
    s
}

fn cmdline_value(cmdline: &str, key: &str) -> Option<String> {
    cmdline
        .split_whitespace()
        .find_map(|w| w.strip_prefix(key).map(String::from))
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
        ch.line(&format!("fatal {e:#}"));
    }
    reboot()
}

fn run(ch: &mut Channel) -> Result<()> {
    let cmdline = std::fs::read_to_string("/proc/cmdline").unwrap_or_default();
    let start: usize = cmdline_value(&cmdline, "sfstart=")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let timeout: u64 = cmdline_value(&cmdline, "sftimeout=")
        .and_then(|v| v.parse().ok())
        .unwrap_or(10);
    configure()?;
    let mut host = host::Host::read();
    host.drop_caches = true;
    ch.line(&format!("ready {} | {}", host.kernel, host.describe()));
    if !host.fail_plans {
        bail!(
            "this kernel has no /sys/kernel/debug/splitfuzz (not built by `splitfuzz vm build`?)"
        );
    }
    if let Ok(list) = std::fs::read_to_string(EXEC_LIST) {
        return run_execs(ch, &list, timeout.max(60));
    }
    let text = std::fs::read_to_string(PROGRAMS).context("reading /programs.txt")?;
    let progs = parse_programs_with(&text)?;
    for (k, (prog, limits)) in progs.iter().enumerate().skip(start) {
        // Fault plans through our kernel patch; or, with the memcg trigger,
        // the plans disarmed (the patch only counts) and the program in a
        // memory cgroup at its limit during the limited ops.
        let opts = ExecOpts {
            inject: true,
            markers: true,
            op_timeout: Duration::from_secs(timeout),
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
        ch.line(&format!("begin {k}"));
        host::driver::kmsg(&format!("splitfuzz: begin {k}"));
        // Free the huge zero folio (its shrinker) so its first use in this
        // program allocates, as in the model's fresh kernel.
        let _ = std::fs::write("/proc/sys/vm/drop_caches", "2");
        let r = host::host_run_opts(prog, &opts);
        let r = match r {
            Ok(r) => r,
            Err(e) => {
                ch.line(&format!(
                    "end {k} broken 0 {}",
                    format!("{e:#}").replace('\n', " ")
                ));
                return Ok(());
            }
        };
        for i in 0..prog.ops.len() {
            if r.t.results[i].is_none() {
                // A hung limited op still has its memory.events.
                if let Some(ev) = &r.memcg_events[i] {
                    ch.line(&format!("memcg {i} {ev}"));
                }
            }
            let Some(res) = &r.t.results[i] else { continue };
            ch.line(&format!("op {i} res {res}"));
            if let Some((p, t)) = r.t.allocs[i] {
                ch.line(&format!("alloc {i} {p} {t}"));
            }
            if r.fallbacks[i] > 0 {
                ch.line(&format!("fb {i} {}", r.fallbacks[i]));
            }
            if let Some(ev) = &r.memcg_events[i] {
                ch.line(&format!("memcg {i} {ev}"));
            }
            for o in &r.t.obs[i] {
                ch.line(o);
            }
        }
        ch.line(&format!("kh {}", r.khugepaged as u8));
        if let Some(i) = r.hung {
            // The plan is disarmed now. A task retrying a failed fault in user
            // space ends on SIGKILL; one looping in the kernel may not.
            let gone = kill_and_reap(&r.pids, Duration::from_secs(3));
            if !gone {
                // Backtraces of the CPUs and blocked tasks into the console log.
                sysrq("l");
                sysrq("w");
                std::thread::sleep(Duration::from_millis(500));
            }
            ch.line(&format!("stuck {}", !gone as u8));
            host::driver::kmsg(&format!("splitfuzz: end {k}"));
            ch.line(&format!("end {k} hung {i}"));
            if gone {
                continue;
            }
            return Ok(());
        }
        host::driver::kmsg(&format!("splitfuzz: end {k}"));
        if let Some((i, why)) = &r.broken {
            ch.line(&format!("end {k} broken {i} {}", why.replace('\n', " ")));
            return Ok(());
        }
        match &r.unsupported {
            Some((i, why)) => ch.line(&format!("end {k} unsupported {i} {why}")),
            None => ch.line(&format!("end {k} ok")),
        }
    }
    ch.line("done");
    Ok(())
}

/// `vm exec`: run each executable (stdout and stderr to the data channel as
/// `out ...` / `err ...` lines), killing it after `timeout` seconds.
fn run_execs(ch: &mut Channel, list: &str, timeout: u64) -> Result<()> {
    use std::io::BufRead;
    for path in list.lines().filter(|l| !l.is_empty()) {
        ch.line(&format!("exec {path}"));
        host::driver::kmsg(&format!("splitfuzz: exec {path}"));
        let mut child = match std::process::Command::new(path)
            .current_dir("/tmp")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
        {
            Ok(c) => c,
            Err(e) => {
                ch.line(&format!("exit {path} spawn-error {e}"));
                continue;
            }
        };
        let out = child.stdout.take().unwrap();
        let err = child.stderr.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel::<String>();
        let tx2 = tx.clone();
        let a = std::thread::spawn(move || {
            for l in std::io::BufReader::new(out).lines().map_while(Result::ok) {
                let _ = tx.send(format!("out {l}"));
            }
        });
        let b = std::thread::spawn(move || {
            for l in std::io::BufReader::new(err).lines().map_while(Result::ok) {
                let _ = tx2.send(format!("err {l}"));
            }
        });
        let t0 = std::time::Instant::now();
        let status = loop {
            while let Ok(l) = rx.try_recv() {
                ch.line(&l);
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
            ch.line(&l);
        }
        match status.and_then(|s| s.code()) {
            Some(c) => ch.line(&format!("exit {path} {c}")),
            None => ch.line(&format!("exit {path} killed")),
        }
        host::driver::kmsg(&format!("splitfuzz: exec end {path}"));
    }
    ch.line("done");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn programs_file_round_trip() {
        let a = Program::parse("fail pte_alloc nth=2\nmmap 0 2M thp\ntouch 0 2M write\n").unwrap();
        let b = Program::parse("mmap 4M 2M\nfork\n").unwrap();
        let text = format_programs(&[&a, &b]);
        let back = parse_programs(&text).unwrap();
        assert_eq!(back.len(), 2);
        let with = format_programs_with(&[&a, &b], &[Some(vec![(1, 0), (3, 448)]), Some(vec![])]);
        let back2 = parse_programs_with(&with).unwrap();
        assert_eq!(back2[0].1, Some(vec![(1, 0), (3, 448)]));
        assert_eq!(back2[1].1, Some(vec![]));
        assert_eq!(parse_programs_with(&text).unwrap()[0].1, None);
        assert!(parse_programs_with("=== 0 limit=x\nmmap 0 2M\n").is_err());
        assert!(parse_programs_with("=== 0 limit=1\nmmap 0 2M\n").is_err());
        assert_eq!(back[0].to_text(), a.to_text());
        assert_eq!(back[1].to_text(), b.to_text());
        assert!(parse_programs("=== 1\nmmap 0 2M\n").is_err());
    }

    #[test]
    fn cmdline_values() {
        let c = "console=ttyS0 sfstart=12 sftimeout=9";
        assert_eq!(cmdline_value(c, "sfstart=").as_deref(), Some("12"));
        assert_eq!(cmdline_value(c, "sftimeout=").as_deref(), Some("9"));
        assert_eq!(cmdline_value(c, "nothing="), None);
    }
}
