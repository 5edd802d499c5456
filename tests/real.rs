//! The host kernel as an oracle (`splitfuzz real`, `emit-c`). Skipped with a
//! message where the host has no usable THP.

use splitfuzz::real::{self, check_program, Host, Verdict};
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

/// Host-runnable programs (no pin, reclaim, migrate, walk, uffd-wp, pageout, fault plan).
const AGREE: &[&str] = &[
    "mmap 0 8M thp\ntouch 0 4M write\ntouch 4M 2M read\nfork\ntouch 1M 4K write mm=1\nmadvise 6M 8K dontneed\nmremap 0 2M 10M\nmprotect 3M 1M r\nmunmap 0 1M\nexit mm=1\n",
    "mmap 0 4M\ntouch 0 2M write\nmmap 0 4M thp\ntouch 0 4M read\ntouch 1M 256K write\nmadvise 0 2M collapse\nmremap 0 4M 20M\ntouch 20M 4M write\n",
    "mmap 14M 4M thp\ntouch 14M 4M write\nmremap 14M 2M 22M\nfork\nmunmap 14M 4M mm=1\ntouch 22M 2M write mm=1\nmadvise 0 32M free\nexit\n",
    "mmap 0 16M thp\ntouch 0 16M write\nmadvise 2M 2M cold\nmadvise 1M 256K dontneed\nmprotect 5M 1M r\nmprotect 5M 1M rw\ntouch 0 16M read\n",
];

#[test]
fn hand_written_programs_agree() {
    let Some(h) = host() else { return };
    for text in AGREE {
        let p = Program::parse(text).unwrap();
        let c = check_program(&h, &p).unwrap();
        match c.verdict {
            Verdict::Agree { .. } => {}
            Verdict::Diverge { d, .. } => panic!(
                "diverged at op {} mm {:?} field {}: model {} kernel {}\n{text}",
                d.op, d.mm, d.field, d.model, d.kernel
            ),
            Verdict::Unsupported(w) => panic!("unsupported: {w}\n{text}"),
            Verdict::ModelViolation(v) => panic!("model violation: {v}\n{text}"),
        }
    }
}

#[test]
fn deposit_programs_run_or_say_why_not() {
    let Some(h) = host() else { return };
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/programs");
    let mut n = 0;
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
                Verdict::Agree { .. } => {}
                Verdict::Unsupported(why) => {
                    eprintln!("{}: unsupported on this host: {why}", path.display());
                    assert!(h.program_unsupported(&p).is_some());
                }
                Verdict::Diverge { d, .. } => panic!(
                    "{}: diverged at op {} field {}: model {} kernel {}",
                    path.display(),
                    d.op,
                    d.field,
                    d.model,
                    d.kernel
                ),
                Verdict::ModelViolation(v) => panic!("{}: {v}", path.display()),
            }
        }
    }
    assert!(n > 0);
}

/// The kinds of divergence known on Linux 6.18 (model gaps, see
/// research/real.md); anything else fails the test.
fn known(p: &Program, d: &real::Divergence) -> bool {
    let op = p.ops[d.op].to_string();
    let field = d.field.split('@').next().unwrap();
    (op.starts_with("mprotect") && matches!(field, "vmas" | "thp" | "pages" | "pte" | "anon"))
        || (op.contains("collapse") && field == "res")
        || (op.starts_with("mremap") && field == "res")
        || ((op.contains(" cold") || op.contains(" free")) && matches!(field, "anon" | "pages"))
}

#[test]
fn generated_batch_agrees_but_for_known_model_gaps() {
    let Some(h) = host() else { return };
    let mut skipped = Default::default();
    let progs = real::generate(&h, 50, 1, &mut skipped);
    let (mut agreed, mut run) = (0, 0);
    for p in &progs {
        let c = check_program(&h, p).unwrap();
        match c.verdict {
            Verdict::Agree { .. } => {
                agreed += 1;
                run += 1;
            }
            Verdict::Diverge { d, .. } => {
                run += 1;
                assert!(
                    known(p, &d),
                    "new kind of divergence at op {} `{}` mm {:?} field {}: model {} kernel {}\n{}",
                    d.op,
                    p.ops[d.op],
                    d.mm,
                    d.field,
                    d.model,
                    d.kernel,
                    p.to_text()
                );
            }
            Verdict::Unsupported(w) => panic!("generator produced an unsupported program: {w}"),
            Verdict::ModelViolation(v) => panic!("model violation: {v}"),
        }
    }
    assert_eq!(run, 50);
    assert!(agreed * 100 >= run * 90, "only {agreed}/{run} agreed");
}

#[test]
fn emitted_c_prints_what_real_observes() {
    let Some(_) = host() else { return };
    let cc = std::process::Command::new("cc").arg("--version").output();
    if cc.is_err() {
        eprintln!("SKIPPED: no C compiler");
        return;
    }
    let dir = std::env::temp_dir().join(format!("splitfuzz-emit-c-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for (i, text) in AGREE.iter().enumerate() {
        let p = Program::parse(text).unwrap();
        let c = splitfuzz::emit_c::emit_c(&p).unwrap();
        let src = dir.join(format!("repro{i}.c"));
        let bin = dir.join(format!("repro{i}"));
        std::fs::write(&src, &c).unwrap();
        let out = std::process::Command::new("cc")
            .args(["-O2", "-Wall", "-Werror", "-o"])
            .arg(&bin)
            .arg(&src)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "cc failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let run = std::process::Command::new(&bin).output().unwrap();
        let c_text = String::from_utf8(run.stdout).unwrap();
        let host = real::host_run(&p).unwrap();
        assert_eq!(c_text, host.t.text(), "program {i}:\n{text}");
        assert_eq!(
            run.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&run.stderr)
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn unsupported_ops_are_reported_not_faked() {
    let h = Host::read();
    let p = Program::parse("mmap 0 2M thp\npin 0 4K\n").unwrap();
    assert!(h.program_unsupported(&p).unwrap().starts_with("pin"));
    let p = Program::parse("fail pte_alloc nth=1\nmmap 0 2M thp\n").unwrap();
    assert!(h.program_unsupported(&p).unwrap().starts_with("fault plan"));
    assert!(splitfuzz::emit_c::emit_c(&Program::parse("walk 0 4K\n").unwrap()).is_err());
}
