//! The host kernel as an oracle (`splitfuzz real`, `emit-c`). Skipped with a
//! message where the host has no usable THP.

mod common;

use splitfuzz::host::{self, Host};
use splitfuzz::observe;
use splitfuzz::verdict::{check_program, Verdict};
use splitfuzz::Program;

fn host() -> Option<Host> {
    let h = Host::read();
    match h.thp_usable() {
        Ok(()) => Some(h),
        Err(why) => {
            eprintln!("SKIPPED: the host cannot run THP programs: {why}");
            None
        }
    }
}

/// The host-runnable programs of tests/programs/deposit/ (`host-*.txt`).
fn host_programs() -> Vec<(String, Program)> {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/programs/deposit");
    let mut v: Vec<(String, Program)> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_str()
                .unwrap()
                .starts_with("host-")
        })
        .map(|p| {
            let prog = Program::parse(&std::fs::read_to_string(&p).unwrap()).unwrap();
            (p.display().to_string(), prog)
        })
        .collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

#[test]
fn deposit_programs_run_or_say_why_not() {
    let Some(h) = host() else { return };
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/programs");
    let (mut n, mut agreed) = (0, 0);
    for sub in ["deposit", "ops"] {
        for e in std::fs::read_dir(format!("{dir}/{sub}")).unwrap() {
            let path = e.unwrap().path();
            let p = Program::parse(&std::fs::read_to_string(&path).unwrap()).unwrap();
            if p.policy.as_deref() != Some("deposit") {
                continue;
            }
            n += 1;
            let c = check_program(&h, &p).unwrap();
            match c.verdict {
                Verdict::Agree { .. } => agreed += 1,
                Verdict::Unsupported { why, .. } => {
                    eprintln!("{}: unsupported on this host: {why}", path.display());
                    assert!(h.program_unsupported(&p).is_some());
                }
                Verdict::Diverge { detail, .. } => {
                    panic!("{}: diverged at {detail}", path.display())
                }
                Verdict::Finding { text, .. } => panic!("{}: {text}", path.display()),
            }
        }
    }
    assert!(n > 0);
    // Every host-runnable program ran (and agreed above).
    assert_eq!(agreed, host_programs().len());
    assert!(agreed >= 10, "{agreed}");
}

/// The model encodes Linux 6.17+ semantics (multi-VMA mremap, 6.17; zero-page
/// remap on split, 6.12). On such a host every generated program must agree.
fn host_is_at_least(h: &Host, want: (u32, u32)) -> bool {
    let mut it = h
        .kernel
        .split(|c: char| !c.is_ascii_digit())
        .filter(|s| !s.is_empty())
        .map(|s| s.parse::<u32>().unwrap_or(0));
    let (a, b) = (it.next().unwrap_or(0), it.next().unwrap_or(0));
    (a, b) >= want
}

#[test]
fn generated_batch_agrees() {
    let Some(h) = host() else { return };
    let mut skipped = Default::default();
    let n = 200;
    let progs = h.generate(n, 1, false, "deposit", &mut skipped);
    let strict = host_is_at_least(&h, (6, 17));
    let mut diverged = Vec::new();
    for p in &progs {
        let c = check_program(&h, p).unwrap();
        match c.verdict {
            Verdict::Agree { .. } => {}
            Verdict::Diverge { detail, .. } => diverged.push(format!("{detail}\n{}", p.to_text())),
            Verdict::Unsupported { why, .. } => {
                panic!("generator produced an unsupported program: {why}")
            }
            Verdict::Finding { text, .. } => panic!("model violation: {text}"),
        }
    }
    if strict {
        assert!(
            diverged.is_empty(),
            "{} of {n} diverged; first:\n{}",
            diverged.len(),
            diverged[0]
        );
    } else {
        eprintln!(
            "host kernel {} predates the 6.17 semantics the model encodes: {} of {n} diverged",
            h.kernel,
            diverged.len()
        );
        assert!(diverged.len() * 10 <= n, "{}", diverged.join("\n"));
    }
}

/// The transcript `text` before op `k`'s lines.
fn before_op(text: &str, k: usize) -> &str {
    match text.find(&format!("op {k} res ")) {
        Some(at) => &text[..at],
        None => text,
    }
}

/// One program through both executors on this kernel: the Rust one
/// (`host_run`) and the compiled `emit-c` reproducer, whose stdout is the
/// same transcript: equal, or where the host cannot run an op of it, equal up
/// to that op (the callers of the Rust executor leave such programs out; the
/// reproducer reports the op it cannot run, exit 2, or runs on). Returns
/// whether the whole program ran, the transcript lines compared, the
/// reproducer's exit status and stderr.
fn run_both(
    h: &Host,
    dir: &std::path::Path,
    name: &str,
    p: &Program,
) -> (bool, usize, Option<i32>, String) {
    let c = splitfuzz::csource::emit_c(p).unwrap();
    let bin = common::compile_c(dir, name, &c);
    let run = std::process::Command::new(&bin).output().unwrap();
    let stderr = String::from_utf8_lossy(&run.stderr).to_string();
    let c_text = String::from_utf8(run.stdout).unwrap();
    let rust = host::host_run(p).unwrap();
    let rust_text = rust.t.text();
    let what = format!("{name}: the executors differ\n{}", p.to_text());
    assert!(
        rust.hung.is_none() && rust.broken.is_none(),
        "{what}: the Rust executor hung or broke: {:?} {:?}",
        rust.hung,
        rust.broken
    );
    if h.program_unsupported(p).is_none() {
        assert!(rust.unsupported.is_none(), "{what}: {:?}", rust.unsupported);
        assert_eq!(c_text, rust_text, "{what}");
        assert_ne!(run.status.code(), Some(2), "{what}: {stderr}");
        return (true, c_text.lines().count(), run.status.code(), stderr);
    }
    // The first op this host cannot run (0: the program as a whole).
    let k = p
        .ops
        .iter()
        .position(|l| h.unsupported(&l.op).is_some())
        .unwrap_or(0);
    let upto = before_op(&c_text, k);
    assert_eq!(upto, before_op(&rust_text, k), "{what}");
    (false, upto.lines().count(), run.status.code(), stderr)
}

/// The two executors (docs/csource.md) agree: the deposit programs without a
/// fault plan and generated programs give the same transcript, byte for byte,
/// through the Rust executor and through the C reproducer.
#[test]
fn c_and_rust_executors_agree() {
    let Some(h) = host() else { return };
    let Some(dir) = common::c_scratch_dir("emit-c-agree") else {
        return;
    };
    let deposit = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/programs/deposit");
    let mut files: Vec<_> = std::fs::read_dir(deposit)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    let (mut n, mut unsupported, mut lines) = (0, 0, 0);
    for (i, path) in files.iter().enumerate() {
        let p = Program::parse(&std::fs::read_to_string(path).unwrap()).unwrap();
        if !p.faults.pte_alloc.is_never() || !p.faults.thp.is_never() {
            continue;
        }
        let name = path.display().to_string();
        let (ran, l, code, stderr) = run_both(&h, &dir, &format!("d{i}"), &p);
        n += 1;
        lines += l;
        if !ran {
            unsupported += 1;
            continue;
        }
        // The embedded prediction is Linux 7.2's: it judges this host only
        // where this host's version behaves the same.
        let here = observe::model_run(&p, h.linux(), &[]).t.text();
        let v72 = observe::model_run(&p, (7, 2), &[]).t.text();
        if here == v72 {
            assert_eq!(code, Some(0), "{name}: {stderr}");
        } else {
            eprintln!("{name}: 7.2 and this host's kernel differ; exit status not checked");
        }
    }
    let mut skipped = Default::default();
    let generated = h.generate(40, 1, false, "deposit", &mut skipped);
    for (i, p) in generated.iter().enumerate() {
        let (ran, l, _, _) = run_both(&h, &dir, &format!("g{i}"), p);
        unsupported += !ran as usize;
        lines += l;
    }
    println!(
        "executors agree on {n} deposit programs and {} generated ones, {lines} transcript lines ({unsupported} only up to an op this host cannot run)",
        generated.len()
    );
    assert!(n >= 11 && generated.len() == 40, "{n}");
    assert!(host_programs().len() <= n - unsupported, "{unsupported}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn unsupported_ops_are_reported_not_faked() {
    let h = Host::read();
    let p = Program::parse("mmap 0 2M thp\npin 0 4K\n").unwrap();
    // Pins are io_uring fixed buffers: unsupported exactly where io_uring is.
    assert_eq!(
        h.program_unsupported(&p)
            .is_some_and(|w| w.starts_with("pin")),
        !h.io_uring
    );
    // drop_caches is machine-wide: never on the host.
    let p = Program::parse("mmap 0 2M thp\ndrop-caches\n").unwrap();
    assert!(h
        .program_unsupported(&p)
        .unwrap()
        .starts_with("drop-caches"));
    let p = Program::parse("fail pte_alloc nth=1\nmmap 0 2M thp\n").unwrap();
    assert_eq!(
        h.program_unsupported(&p)
            .is_some_and(|w| w.starts_with("fault plan")),
        !h.fail_plans
    );
    // emit-c writes every op (an op the running kernel cannot do is reported
    // by the reproducer itself, exit 2).
    let c = splitfuzz::csource::emit_c(&Program::parse("mmap 0 2M\nreclaim 0\n").unwrap()).unwrap();
    assert!(c.contains("do_reclaim(0x0)"));
}
