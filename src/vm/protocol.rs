//! The one typed protocol between the host (`vm run`, `vm exec`) and the guest
//! (`vm guest`), in both directions.
//!
//! Host → guest: the programs file `/programs.txt` in the initramfs
//! ([`Batch`]: `=== K` or `=== K limit=I:S,...` headers, each followed by a
//! program's text), the executables list `/exec.list` (`vm exec`), and two
//! kernel command-line values (`sfstart=K`, `sftimeout=S`). `vm fuzz` boots
//! with `sfstream=1` instead of a programs file and streams programs on the
//! data channel ([`write_streamed`], [`read_streamed`]): `=== K`, the
//! program's text, `=== run`.
//!
//! Guest → host: one [`Msg`] per line on the data channel (the second serial
//! port; the console on the first carries the kernel log). [`Msg`]'s
//! `Display` is the only writer and [`Msg::parse`] the only reader:
//!
//! ```text
//! ready <kernel release> | <host description>
//! begin K
//! op I res R            (an op that ran)
//! alloc I P T           (pte_alloc_one() and THP calls counted after op I)
//! fb I N                (THP fallbacks the kernel made by itself during op I)
//! memcg I EVENTS        (memcg trigger: memory.events after limited op I)
//! cov I F P E           (vm fuzz: op I's kernel PCs P and edges E not sent
//!                        before in this boot, comma-separated hex or `-`;
//!                        F 1: an allocation failed by plan during the op)
//! mm ...                (observation lines after op I, one per live mm)
//! kh 0|1                (khugepaged collapsed something during the program)
//! faults N              (after a hang: page faults completed in 300 ms of it)
//! killable 0|1          (after a hang: SIGKILL ended the op's task while its failures went on)
//! stuck 0|1             (after a hang: 1 if a task survived SIGKILL; then reboot)
//! end K ok | end K hung I | end K unsupported I WHY | end K broken I WHY
//! exec PATH | out LINE | err LINE | exit PATH CODE|killed|spawn-error WHY
//! fatal WHY
//! done
//! ```

use crate::prog::Program;
use anyhow::{anyhow, bail, Result};
use std::fmt;

/// The programs file in the guest's initramfs.
pub const PROGRAMS: &str = "/programs.txt";
/// Executables to run instead of programs (`vm exec`), one path a line.
pub const EXEC_LIST: &str = "/exec.list";
/// Kernel command-line key: the index of the first program this boot runs.
pub const CMDLINE_START: &str = "sfstart=";
/// Kernel command-line key: programs come on the third serial port (`vm fuzz`).
pub const CMDLINE_STREAM: &str = "sfstream=";
/// Kernel command-line key: seconds an op may take before it is hung.
pub const CMDLINE_TIMEOUT: &str = "sftimeout=";

/// How a program's run in the guest ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum End {
    Ok,
    Hung(usize),
    Unsupported(usize, String),
    Broken(usize, String),
    /// The kernel went down (QEMU exited) during the program (host side only).
    Crashed,
    /// No word from the guest for too long; QEMU was killed (host side only).
    Stalled,
}

/// How an executable ended in the guest (`vm exec`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ExitStatus {
    Code(i32),
    Killed,
    SpawnError(String),
}

/// One guest → host line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Msg {
    /// The executor is up: the kernel release and the host description.
    Ready(String),
    Begin(usize),
    /// Op `i` ran with result `res`.
    Op {
        i: usize,
        res: String,
    },
    /// pte_alloc_one() and THP allocation calls counted after op `i`.
    Alloc {
        i: usize,
        pte: u32,
        thp: u32,
    },
    /// THP fallbacks the kernel made by itself during op `i`.
    Fallbacks {
        i: usize,
        n: u64,
    },
    /// memory.events after the limited op `i`.
    Memcg {
        i: usize,
        events: String,
    },
    /// An observation line (`mm ...`) of the op last reported.
    Obs(String),
    /// Op `i`'s kernel coverage new to this boot (low 32 bits of the PCs,
    /// edges); `failed`: an allocation failed by plan during the op.
    Cov {
        i: usize,
        failed: bool,
        pcs: Vec<u32>,
        edges: Vec<u32>,
    },
    Khugepaged(bool),
    /// After a hang: page faults the program's processes completed in a
    /// moment of it (min_flt + maj_flt of /proc/PID/stat).
    Faults(u64),
    /// After a hang: SIGKILL ended the op's process while its failures went on.
    Killable(bool),
    Stuck(bool),
    End {
        k: usize,
        end: End,
    },
    Exec(String),
    Out(String),
    Err(String),
    Exit {
        path: String,
        status: ExitStatus,
    },
    Fatal(String),
    Done,
}

fn one_line(s: &str) -> String {
    s.replace('\n', " ")
}

impl fmt::Display for Msg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Msg::Ready(s) => write!(f, "ready {s}"),
            Msg::Begin(k) => write!(f, "begin {k}"),
            Msg::Op { i, res } => write!(f, "op {i} res {res}"),
            Msg::Alloc { i, pte, thp } => write!(f, "alloc {i} {pte} {thp}"),
            Msg::Fallbacks { i, n } => write!(f, "fb {i} {n}"),
            Msg::Memcg { i, events } => write!(f, "memcg {i} {events}"),
            Msg::Obs(l) => f.write_str(l),
            Msg::Cov {
                i,
                failed,
                pcs,
                edges,
            } => write!(
                f,
                "cov {i} {} {} {}",
                *failed as u8,
                hex_list(pcs),
                hex_list(edges)
            ),
            Msg::Khugepaged(b) => write!(f, "kh {}", *b as u8),
            Msg::Faults(n) => write!(f, "faults {n}"),
            Msg::Killable(b) => write!(f, "killable {}", *b as u8),
            Msg::Stuck(b) => write!(f, "stuck {}", *b as u8),
            Msg::End { k, end } => match end {
                End::Ok => write!(f, "end {k} ok"),
                End::Hung(i) => write!(f, "end {k} hung {i}"),
                End::Unsupported(i, why) => write!(f, "end {k} unsupported {i} {}", one_line(why)),
                End::Broken(i, why) => write!(f, "end {k} broken {i} {}", one_line(why)),
                // Never sent: the host infers them from QEMU.
                End::Crashed => write!(f, "end {k} broken 0 crashed"),
                End::Stalled => write!(f, "end {k} broken 0 stalled"),
            },
            Msg::Exec(p) => write!(f, "exec {p}"),
            Msg::Out(l) => write!(f, "out {l}"),
            Msg::Err(l) => write!(f, "err {l}"),
            Msg::Exit { path, status } => match status {
                ExitStatus::Code(c) => write!(f, "exit {path} {c}"),
                ExitStatus::Killed => write!(f, "exit {path} killed"),
                ExitStatus::SpawnError(e) => write!(f, "exit {path} spawn-error {}", one_line(e)),
            },
            Msg::Fatal(e) => write!(f, "fatal {}", one_line(e)),
            Msg::Done => f.write_str("done"),
        }
    }
}

fn hex_list(v: &[u32]) -> String {
    if v.is_empty() {
        return "-".into();
    }
    v.iter()
        .map(|x| format!("{x:x}"))
        .collect::<Vec<_>>()
        .join(",")
}

fn parse_hex_list(s: &str) -> Option<Vec<u32>> {
    if s == "-" {
        return Some(Vec::new());
    }
    s.split(',')
        .map(|x| u32::from_str_radix(x, 16).ok())
        .collect()
}

/// One program for the persistent executor (host → guest, `vm fuzz`);
/// `observe`: observe the processes after the first N ops only.
pub fn write_streamed(k: usize, p: &Program, observe: Option<usize>) -> String {
    let mut q = p.clone();
    q.expect = None;
    let obs = observe.map(|n| format!(" obs={n}")).unwrap_or_default();
    format!("=== {k}{obs}\n{}=== run\n", q.to_text())
}

/// A streamed program: its index, the program, and how many ops to observe
/// after (None: every op).
pub type Streamed = (usize, Program, Option<usize>);

/// The next streamed program, or None at the end of the input.
pub fn read_streamed(rd: &mut impl std::io::BufRead) -> Result<Option<Streamed>> {
    let mut k: Option<usize> = None;
    let mut obs: Option<usize> = None;
    let mut text = String::new();
    let mut line = String::new();
    loop {
        line.clear();
        if rd.read_line(&mut line)? == 0 {
            return Ok(None);
        }
        let l = line.trim_end_matches(['\n', '\r']);
        if let Some(h) = l.strip_prefix("=== ") {
            if h == "run" {
                if let Some(k) = k {
                    let p = Program::parse(&text).map_err(|e| anyhow!("program {k}: {e}"))?;
                    return Ok(Some((k, p, obs)));
                }
                continue;
            }
            let mut w = h.split_whitespace();
            k = w.next().and_then(|x| x.parse().ok());
            obs = w
                .next()
                .and_then(|x| x.strip_prefix("obs="))
                .and_then(|x| x.parse().ok());
            text.clear();
        } else if k.is_some() {
            text.push_str(l);
            text.push('\n');
        }
    }
}

/// Parse an `end K ...` tail (after `K `) into the End.
fn parse_end(rest: &str) -> End {
    let w: Vec<&str> = rest.splitn(3, ' ').collect();
    let op = |s: Option<&&str>| s.and_then(|x| x.parse().ok()).unwrap_or(0);
    let why = |s: Option<&&str>| s.map(|s| s.to_string()).unwrap_or_default();
    match w.first().copied() {
        Some("ok") => End::Ok,
        Some("hung") => End::Hung(op(w.get(1))),
        Some("unsupported") => End::Unsupported(op(w.get(1)), why(w.get(2))),
        Some("broken") => End::Broken(op(w.get(1)), why(w.get(2))),
        _ => End::Broken(0, format!("bad end line: {rest}")),
    }
}

impl Msg {
    /// Parse one data-channel line. Lines of the op messages whose numbers do
    /// not parse are `None` (ignored, as a garbled serial line must be);
    /// `begin` and `end` with a bad index are errors (the batch cannot go on).
    pub fn parse(line: &str) -> Result<Option<Msg>> {
        let (head, rest) = line.split_once(' ').unwrap_or((line, ""));
        let num = |s: &str| s.parse::<usize>().ok();
        let bad = || anyhow!("guest: bad line {line}");
        Ok(match head {
            "done" if rest.is_empty() => Some(Msg::Done),
            "ready" => Some(Msg::Ready(rest.to_string())),
            "fatal" => Some(Msg::Fatal(rest.to_string())),
            "begin" => Some(Msg::Begin(num(rest.trim()).ok_or_else(bad)?)),
            "end" => {
                let (k, tail) = rest.split_once(' ').unwrap_or((rest, ""));
                Some(Msg::End {
                    k: num(k).ok_or_else(bad)?,
                    end: parse_end(tail),
                })
            }
            "op" => {
                let w: Vec<&str> = rest.splitn(3, ' ').collect();
                match w.as_slice() {
                    [i, "res", r] => num(i).map(|i| Msg::Op {
                        i,
                        res: r.to_string(),
                    }),
                    _ => None,
                }
            }
            "alloc" => {
                let w: Vec<&str> = rest.split(' ').collect();
                match w.as_slice() {
                    [i, p, t] => match (num(i), p.parse(), t.parse()) {
                        (Some(i), Ok(pte), Ok(thp)) => Some(Msg::Alloc { i, pte, thp }),
                        _ => None,
                    },
                    _ => None,
                }
            }
            "fb" => {
                let (i, n) = rest.split_once(' ').unwrap_or((rest, ""));
                match (num(i), n.parse()) {
                    (Some(i), Ok(n)) => Some(Msg::Fallbacks { i, n }),
                    _ => None,
                }
            }
            "memcg" => {
                let (i, ev) = rest.split_once(' ').unwrap_or((rest, ""));
                num(i).map(|i| Msg::Memcg {
                    i,
                    events: ev.to_string(),
                })
            }
            "mm" => Some(Msg::Obs(line.to_string())),
            "cov" => {
                let w: Vec<&str> = rest.split(' ').collect();
                match w.as_slice() {
                    [i, f, p, e] => match (num(i), parse_hex_list(p), parse_hex_list(e)) {
                        (Some(i), Some(pcs), Some(edges)) => Some(Msg::Cov {
                            i,
                            failed: *f == "1",
                            pcs,
                            edges,
                        }),
                        _ => None,
                    },
                    _ => None,
                }
            }
            "kh" => Some(Msg::Khugepaged(rest == "1")),
            "stuck" => Some(Msg::Stuck(rest == "1")),
            "faults" => rest.parse().ok().map(Msg::Faults),
            "killable" => Some(Msg::Killable(rest == "1")),
            "exec" => Some(Msg::Exec(rest.to_string())),
            "out" => Some(Msg::Out(rest.to_string())),
            "err" => Some(Msg::Err(rest.to_string())),
            "exit" => {
                let (path, st) = rest.rsplit_once(' ').unwrap_or((rest, ""));
                if let Some(e) = rest.split_once(" spawn-error ") {
                    Some(Msg::Exit {
                        path: e.0.to_string(),
                        status: ExitStatus::SpawnError(e.1.to_string()),
                    })
                } else {
                    let status = match st {
                        "killed" => ExitStatus::Killed,
                        c => ExitStatus::Code(c.parse().map_err(|_| bad())?),
                    };
                    Some(Msg::Exit {
                        path: path.to_string(),
                        status,
                    })
                }
            }
            _ => None,
        })
    }
}

/// The memcg trigger's limited ops of a program, each with the pages it may
/// free (`=== K limit=I:S,J:T`, the header of a program run in a memory
/// cgroup; `limit=` alone: no op limited). None: the plan is injected.
pub type Limits = Option<Vec<(usize, u64)>>;

/// The batch a boot runs: programs with their memcg limits (host → guest).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Batch {
    pub programs: Vec<(Program, Limits)>,
}

impl Batch {
    /// The programs file's text. The guest needs the ops and the fault plan;
    /// the policy is the kernel's, and `expect` lines are the host's business.
    pub fn to_text(&self) -> String {
        let mut s = String::new();
        for (i, (p, limits)) in self.programs.iter().enumerate() {
            match limits {
                Some(l) => s.push_str(&format!(
                    "=== {i} limit={}\n",
                    l.iter()
                        .map(|(i, sl)| format!("{i}:{sl}"))
                        .collect::<Vec<_>>()
                        .join(",")
                )),
                None => s.push_str(&format!("=== {i}\n")),
            }
            let mut q = p.clone();
            q.expect = None;
            s.push_str(&q.to_text());
        }
        s
    }

    /// Parse a programs file.
    pub fn parse(text: &str) -> Result<Batch> {
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
                    Some(x) => Some(
                        parse_limits(x)
                            .ok_or_else(|| anyhow!("programs file: bad header `{l}`"))?,
                    ),
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
        Ok(Batch { programs: out })
    }
}

/// `limit=I:S,J:T` → [(I, S), (J, T)].
fn parse_limits(x: &str) -> Option<Vec<(usize, u64)>> {
    x.strip_prefix("limit=")?
        .split(',')
        .filter(|s| !s.is_empty())
        .map(|s| {
            let (i, sl) = s.split_once(':')?;
            Some((i.parse::<usize>().ok()?, sl.parse::<u64>().ok()?))
        })
        .collect()
}

/// A value of the kernel command line (`key` ends in `=`).
pub fn cmdline_value(cmdline: &str, key: &str) -> Option<String> {
    cmdline
        .split_whitespace()
        .find_map(|w| w.strip_prefix(key).map(String::from))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn programs_file_round_trip() {
        let a = Program::parse("fail pte_alloc nth=2\nmmap 0 2M thp\ntouch 0 2M write\n").unwrap();
        let b = Program::parse("mmap 4M 2M\nfork\n").unwrap();
        let plain = Batch {
            programs: vec![(a.clone(), None), (b.clone(), None)],
        };
        let back = Batch::parse(&plain.to_text()).unwrap();
        assert_eq!(back.programs.len(), 2);
        assert_eq!(back.programs[0].0.to_text(), a.to_text());
        let with = Batch {
            programs: vec![(a, Some(vec![(1, 0), (3, 448)])), (b, Some(vec![]))],
        };
        let back2 = Batch::parse(&with.to_text()).unwrap();
        assert_eq!(back2.programs[0].1, Some(vec![(1, 0), (3, 448)]));
        assert_eq!(back2.programs[1].1, Some(vec![]));
        assert!(Batch::parse("=== 1\nmmap 0 2M\n").is_err());
        assert!(Batch::parse("=== 0 limit=x\nmmap 0 2M\n").is_err());
    }

    #[test]
    fn streamed_programs_round_trip() {
        let a =
            Program::parse("fail pte_alloc op=1:nth=2\nmmap 0 2M thp\ntouch 0 2M write\n").unwrap();
        let b = Program::parse("mmap 4M 2M\nfork\n").unwrap();
        let text = format!(
            "noise\n{}{}",
            write_streamed(7, &a, Some(2)),
            write_streamed(8, &b, None)
        );
        let mut rd = std::io::BufReader::new(text.as_bytes());
        let (k, p, o) = read_streamed(&mut rd).unwrap().unwrap();
        assert_eq!((k, p.to_text(), o), (7, a.to_text(), Some(2)));
        let (k, p, o) = read_streamed(&mut rd).unwrap().unwrap();
        assert_eq!((k, p.to_text(), o), (8, b.to_text(), None));
        assert!(read_streamed(&mut rd).unwrap().is_none());
    }

    #[test]
    fn every_message_round_trips() {
        let msgs = [
            Msg::Ready("7.2.13 | thp madvise".into()),
            Msg::Begin(3),
            Msg::Op {
                i: 2,
                res: "ENOMEM".into(),
            },
            Msg::Alloc {
                i: 2,
                pte: 5,
                thp: 1,
            },
            Msg::Fallbacks { i: 0, n: 2 },
            Msg::Memcg {
                i: 1,
                events: "max 3 oom 1 oom_kill 0".into(),
            },
            Msg::Obs("mm 0 pte 1 anon 512 thp 1 vmas 0-2M:rw+h pages H512 data w1*512".into()),
            Msg::Khugepaged(true),
            Msg::Cov {
                i: 1,
                failed: true,
                pcs: vec![0x8100_1234, 0x8100_2000],
                edges: vec![],
            },
            Msg::Faults(1234),
            Msg::Killable(true),
            Msg::Stuck(false),
            Msg::End { k: 3, end: End::Ok },
            Msg::End {
                k: 3,
                end: End::Hung(4),
            },
            Msg::End {
                k: 3,
                end: End::Unsupported(2, "reclaim: shared".into()),
            },
            Msg::End {
                k: 0,
                end: End::Broken(1, "mm 1 died".into()),
            },
            Msg::Exec("/bin/x".into()),
            Msg::Out("op 0 res ok".into()),
            Msg::Err("# model predicted: x".into()),
            Msg::Exit {
                path: "/bin/x".into(),
                status: ExitStatus::Code(1),
            },
            Msg::Exit {
                path: "/bin/x".into(),
                status: ExitStatus::Killed,
            },
            Msg::Exit {
                path: "/bin/x".into(),
                status: ExitStatus::SpawnError("No such file".into()),
            },
            Msg::Fatal("no debugfs".into()),
            Msg::Done,
        ];
        for m in msgs {
            assert_eq!(Msg::parse(&m.to_string()).unwrap(), Some(m.clone()), "{m}");
        }
        // Garbled op lines are ignored; a garbled begin/end stops the batch.
        assert_eq!(Msg::parse("op x res ok").unwrap(), None);
        assert_eq!(Msg::parse("alloc 1 2").unwrap(), None);
        assert!(Msg::parse("begin x").is_err());
        assert!(Msg::parse("end x ok").is_err());
        assert_eq!(
            Msg::parse("end 1 weird").unwrap(),
            Some(Msg::End {
                k: 1,
                end: End::Broken(0, "bad end line: weird".into())
            })
        );
    }
}
