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
    // The model gaps `real --generate` found (see tests/paths.rs for the model side):
    // mprotect over a hole changes the VMAs before it; unchanged flags split nothing.
    "mmap 0 4M thp\ntouch 0 4M write\nmmap 6M 2M\nmprotect 1M 7M r\nmprotect 0 4M r\nmprotect 0 2M r\n",
    // MADV_COLLAPSE: no anon_vma, inside one PMD, unsuitable VMA, first-error abort.
    "mmap 0 8M thp\nmadvise 0 4M collapse\ntouch 0 4K write\nmadvise 2304K 256K collapse\nmadvise 2M 1M collapse\n",
    "mmap 0 8M\ntouch 0 8M write\nmprotect 0 2560K r\nmadvise 2304K 3840K collapse\nmadvise 2M 4M collapse\nmprotect 5M 1M r\nmadvise 5M 1M collapse\n",
    // remap_move(): several VMAs, gaps kept; a gap at the start is -EFAULT.
    "mmap 0 2M\nmmap 3M 1M\ntouch 0 4M write\nmmap 18M 1M\nmremap 0 4M 16M\nmremap 15M 4M 24M\n",
    // __folio_split() maps zero-filled pages to the shared zero page.
    "mmap 0 2M thp\ntouch 0 4K write\nmadvise 0 1M cold\nmmap 4M 2M thp\ntouch 4M 1M write\nmadvise 4M 1M free\n",
    // MADV_COLD/FREE leave a THP shared with another mm alone; a whole PTE-mapped
    // THP is not split.
    "mmap 0 4M thp\ntouch 0 4M write\nfork\nmadvise 0 1M cold\nmadvise 2M 1M free mm=1\nmprotect 3M 512K r mm=1\nmprotect 3M 512K rw mm=1\nmadvise 2M 2M free mm=1\nexit mm=1\nmadvise 2M 1M cold\n",
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
    let progs = real::generate(&h, n, 1, &mut skipped);
    let strict = host_is_at_least(&h, (6, 17));
    let mut diverged = Vec::new();
    for p in &progs {
        let c = check_program(&h, p).unwrap();
        match c.verdict {
            Verdict::Agree { .. } => {}
            Verdict::Diverge { d, .. } => diverged.push(format!(
                "op {} `{}` mm {:?} field {}: model {} kernel {}\n{}",
                d.op,
                p.ops[d.op],
                d.mm,
                d.field,
                d.model,
                d.kernel,
                p.to_text()
            )),
            Verdict::Unsupported(w) => panic!("generator produced an unsupported program: {w}"),
            Verdict::ModelViolation(v) => panic!("model violation: {v}"),
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
