//! The kernel in a VM (`splitfuzz vm run`): the guest's kernel against the
//! model, op by op. These tests need the kernel `splitfuzz vm build` makes (in
//! the cache) and QEMU; without them each test prints `SKIPPED: <why>` and
//! returns (it asserts nothing then, and says so).
//!
//! The tests boot one guest each, one test at a time (a lock), so two QEMUs
//! never share the machine's cores.

mod common;

use splitfuzz::model::policy::{Policy, Preset};
use splitfuzz::prog::Program;
use splitfuzz::verdict::Verdict;
use splitfuzz::vm::batch::{run_batch, Job, Judged};
use splitfuzz::vm::qemu::VmOptions;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

static ONE_GUEST: Mutex<()> = Mutex::new(());

fn options() -> Option<VmOptions> {
    let Some(kernel) = splitfuzz::vm::build::default_kernel() else {
        println!("SKIPPED: no kernel in cache (run splitfuzz vm build)");
        return None;
    };
    if let Err(e) = splitfuzz::vm::qemu::qemu_binary() {
        println!("SKIPPED: {e}");
        return None;
    }
    if let Err(e) = splitfuzz::vm::initramfs::busybox() {
        println!("SKIPPED: {e}");
        return None;
    }
    Some(VmOptions {
        kernel,
        exe: PathBuf::from(env!("CARGO_BIN_EXE_splitfuzz")),
        // A livelock is an op that never returns: 5 s tells it from any op here.
        timeout: 5,
        smp: 2,
        memory: "2G".into(),
        kvm: false,
        verbose: false,
        keep: None,
    })
}

fn job(name: &str, text: &str, preset: Preset) -> Job {
    Job {
        name: name.into(),
        prog: Program::parse(text).unwrap_or_else(|e| panic!("{name}: {e}")),
        policy: Policy::preset(preset),
        memcg: None,
    }
}

/// Run jobs in one guest; the verdicts (and runs) in job order.
fn run(o: &VmOptions, jobs: &[Job]) -> Vec<Judged> {
    let mut out: Vec<Option<Judged>> = (0..jobs.len()).map(|_| None).collect();
    run_batch(o, jobs, &mut |i, j| {
        out[i] = Some(Judged {
            verdict: j.verdict.clone(),
            run: j.run.clone(),
        })
    })
    .expect("the guest runs the batch");
    out.into_iter()
        .enumerate()
        .map(|(i, j)| j.unwrap_or_else(|| panic!("{}: no verdict", jobs[i].name)))
        .collect()
}

fn assert_agree(jobs: &[Job], judged: &[Judged]) {
    let bad: Vec<String> = jobs
        .iter()
        .zip(judged)
        .filter(|(_, j)| !matches!(j.verdict, Verdict::Agree { .. }))
        .map(|(job, j)| {
            // The kernel's last lines (a crash or complaint says why there).
            let log: Vec<&str> = j.run.log.iter().map(|(_, l)| l.as_str()).collect();
            format!(
                "{}: {:?}\n{}kernel log (last 40 lines):\n{}",
                job.name,
                j.verdict,
                job.prog.to_text(),
                log[log.len().saturating_sub(40)..].join("\n")
            )
        })
        .collect();
    assert!(
        bad.is_empty(),
        "{} of {} disagree:\n{}",
        bad.len(),
        jobs.len(),
        bad.join("\n")
    );
}

/// Programs that reach every allocation site the plans count: THP faults and
/// their deposits, the huge zero folio and its deposit, fork's copies of huge
/// PMDs and of PTE tables, PTE faults, mremap, pins, MADV_COLLAPSE, migration.
const SITES: &[&str] = &[
    "mmap 0 8M thp\ntouch 0 2M write\ntouch 2M 2M read\nfork\ntouch 4M 64K write\nmremap 4M 2M 16M\ntouch 16M 8K write mm=1\n",
    "mmap 0 4M thp\ntouch 0 1M write\nmadvise 0 2M collapse\nmigrate 0\ntouch 2M 4K write\nfork\nmigrate 2M mm=1\n",
    "mmap 6M 4M thp\npin 6M 8K\nfork\nunpin 6M 8K\ntouch 8M 2M write mm=1\nreclaim 8M mm=1\nmadvise 8M 2M pageout mm=1\n",
];

#[test]
fn allocation_counts_match_the_model_op_by_op_then_every_failure_lands_on_the_same_call() {
    let _g = ONE_GUEST.lock().unwrap_or_else(|e| e.into_inner());
    let Some(o) = options() else { return };
    // Without failures: the kernel counts each op's pte_alloc_one() and THP
    // allocations exactly as the model does (the `alloc` field of the verdict).
    let plain: Vec<Job> = SITES
        .iter()
        .enumerate()
        .map(|(i, t)| job(&format!("sites{i}"), t, Preset::Deposit))
        .collect();
    let judged = run(&o, &plain);
    assert_agree(&plain, &judged);
    let mut sweep = Vec::new();
    for (i, j) in judged.iter().enumerate() {
        let allocs = &j.run.hr.t.allocs;
        let ran = j.run.hr.t.results.iter().filter(|r| r.is_some()).count();
        assert_eq!(
            allocs.iter().filter(|a| a.is_some()).count(),
            ran,
            "sites{i}: the guest counted allocations after every op"
        );
        let (pte, thp) = allocs.iter().flatten().last().copied().unwrap_or((0, 0));
        assert!(
            pte >= 3 && thp >= 1,
            "sites{i}: too few allocations to prove anything ({pte}, {thp})"
        );
        // Then each call failed in turn: the same call fails on both sides (a
        // different one would change the result or the state of some op).
        for n in 1..=pte {
            sweep.push(job(
                &format!("sites{i} pte nth={n}"),
                &format!("fail pte_alloc nth={n}\n{}", SITES[i]),
                Preset::Deposit,
            ));
        }
        for n in 1..=thp {
            sweep.push(job(
                &format!("sites{i} thp nth={n}"),
                &format!("fail thp nth={n}\n{}", SITES[i]),
                Preset::Deposit,
            ));
        }
    }
    let judged = run(&o, &sweep);
    assert_agree(&sweep, &judged);
    // The kernel did fail the planned call (our patch logs each failure).
    for (job, j) in sweep.iter().zip(&judged) {
        let (kind, n) = job.name.rsplit_once(' ').unwrap();
        let kind = if kind.ends_with("pte") {
            "pte_alloc"
        } else {
            "thp"
        };
        let n = n.trim_start_matches("nth=");
        let want = format!("splitfuzz: failing {kind} call {n} ");
        assert!(
            j.run.log.iter().any(|(_, l)| l.contains(&want)),
            "{}: no `{want}` in the kernel log",
            job.name
        );
    }
}

fn programs(dir: &str) -> Vec<PathBuf> {
    common::txt_files(dir)
}

#[test]
fn deposit_programs_and_generated_programs_with_plans_agree() {
    let _g = ONE_GUEST.lock().unwrap_or_else(|e| e.into_inner());
    let Some(o) = options() else { return };
    let mut jobs: Vec<Job> = programs("tests/programs/deposit")
        .iter()
        .map(|f| {
            job(
                &f.display().to_string(),
                &std::fs::read_to_string(f).unwrap(),
                Preset::Deposit,
            )
        })
        .collect();
    let mut skipped = Default::default();
    let host = splitfuzz::vm::guest::capabilities();
    for (i, p) in host
        .generate(40, 11, true, "deposit", &mut skipped)
        .into_iter()
        .enumerate()
    {
        jobs.push(Job {
            name: format!("gen#{i} (seed 11)"),
            prog: p,
            policy: Policy::preset(Preset::Deposit),
            memcg: None,
        });
    }
    let judged = run(&o, &jobs);
    // Reclaim of a folio another process maps has no user-space trigger: such
    // a program is reported unsupported (with the reason), never faked.
    let (unsupported, rest): (Vec<_>, Vec<_>) = jobs
        .into_iter()
        .zip(judged)
        .partition(|(_, j)| matches!(j.verdict, Verdict::Unsupported { .. }));
    for (job, j) in &unsupported {
        let Verdict::Unsupported { why, .. } = &j.verdict else {
            unreachable!()
        };
        assert!(
            why.starts_with("reclaim"),
            "{}: unsupported: {why}",
            job.name
        );
    }
    let (jobs, judged): (Vec<Job>, Vec<Judged>) = rest.into_iter().unzip();
    assert_agree(&jobs, &judged);
}

/// `vm run --trigger memcg` over the deposit programs: each plan the model can
/// predict at a memory-cgroup limit runs with no injection, the program in a
/// cgroup at its limit during the ops holding the planned failures, and must
/// agree with the model at those limits (memcg-thp-charge.txt, whose limit
/// also fails the fallback's page table, hangs in the fault as predicted; if
/// the limit did not hold, its fault would return and it would diverge).
#[test]
fn deposit_programs_agree_at_a_memcg_limit() {
    let _g = ONE_GUEST.lock().unwrap_or_else(|e| e.into_inner());
    let Some(o) = options() else { return };
    let mut jobs = Vec::new();
    let mut inexpressible = Vec::new();
    for f in programs("tests/programs/deposit") {
        let mut j = job(
            &f.display().to_string(),
            &std::fs::read_to_string(&f).unwrap(),
            Preset::Deposit,
        );
        let r = splitfuzz::observe::memcg::realise(&j.prog, &j.policy, (7, 2));
        if !r.inexpressible.is_empty() {
            inexpressible.push(j.name.clone());
            continue;
        }
        j.memcg = Some(r.limits());
        jobs.push(j);
    }
    let limited: Vec<&str> = jobs
        .iter()
        .filter(|j| j.memcg.as_ref().is_some_and(|l| !l.is_empty()))
        .map(|j| j.name.as_str())
        .collect();
    assert!(
        limited.iter().any(|n| n.ends_with("memcg-thp-charge.txt"))
            && limited
                .iter()
                .any(|n| n.ends_with("memcg-huge-zero-table.txt")),
        "limited: {limited:?}"
    );
    assert!(inexpressible.len() < jobs.len(), "{inexpressible:?}");
    let judged = run(&o, &jobs);
    for (job, j) in jobs.iter().zip(&judged) {
        if job.memcg.as_ref().is_some_and(|l| !l.is_empty()) {
            // The limited op's memory.events were read: the limit was hit.
            let (op, _) = job.memcg.as_ref().unwrap()[0];
            let ev = j.run.hr.memcg_events[op].clone().unwrap_or_default();
            assert!(
                ev.starts_with("max ") && !ev.starts_with("max 0 "),
                "{}: {ev}",
                job.name
            );
        }
    }
    assert_agree(&jobs, &judged);
}

#[test]
fn lazy_findings_are_not_reproduced_on_stock_7_2() {
    let _g = ONE_GUEST.lock().unwrap_or_else(|e| e.into_inner());
    let Some(o) = options() else { return };
    let jobs: Vec<Job> = ["lazy-v3", "lazy-v2", "lazy-v1"]
        .iter()
        .flat_map(|d| programs(&format!("tests/programs/{d}")))
        .filter_map(|f| {
            let text = std::fs::read_to_string(&f).unwrap();
            let prog = Program::parse(&text).unwrap();
            // The program's policy with its override lines.
            let policy = splitfuzz::run::program_policy(&prog, None, &[]).ok()?;
            // Only the programs that are findings (a violation is expected).
            text.contains("expect violation").then(|| Job {
                name: f.display().to_string(),
                prog,
                policy,
                memcg: None,
            })
        })
        .collect();
    assert!(!jobs.is_empty());
    let judged = run(&o, &jobs);
    for (job, j) in jobs.iter().zip(&judged) {
        match &j.verdict {
            Verdict::Finding {
                reproduced,
                evidence,
                ..
            } => {
                assert!(
                    !reproduced,
                    "{}: a lazy finding reproduced on stock 7.2: {evidence}",
                    job.name
                );
                // The evidence says what the kernel did instead.
                assert!(!evidence.is_empty(), "{}", job.name);
            }
            // The model shows no violation in the guest's setting: nothing
            // to reproduce (vm run says "not reproduced" with the reason).
            Verdict::Unsupported { .. } | Verdict::Diverge { .. } | Verdict::Agree { .. } => {}
        }
    }
}

#[test]
fn emitted_c_reproducers_inject_at_the_same_call_in_the_guest() {
    let _g = ONE_GUEST.lock().unwrap_or_else(|e| e.into_inner());
    let Some(o) = options() else { return };
    let Some(dir) = common::c_scratch_dir("vm-emit-c") else {
        return;
    };
    // Deposit programs with plans: on stock 7.2 each reproducer sees what the
    // model predicts, allocation counts included (exit 0). Lazy findings: the
    // stock kernel does not show them (exit 1, "not reproduced").
    let mut cases: Vec<(String, String, i32)> = Vec::new();
    for (i, t) in SITES.iter().enumerate() {
        cases.push((
            format!("sites{i}-pte2"),
            format!("policy deposit\nfail pte_alloc nth=2\n{t}"),
            0,
        ));
        cases.push((
            format!("sites{i}-thp1"),
            format!("policy deposit\nfail thp nth=1\n{t}"),
            0,
        ));
    }
    for f in programs("crashes/lazy-v3") {
        let name = f.file_stem().unwrap().to_string_lossy().to_string();
        cases.push((name, std::fs::read_to_string(&f).unwrap(), 1));
    }
    let mut bins = Vec::new();
    for (name, text, _) in &cases {
        let c = splitfuzz::csource::emit_c(&Program::parse(text).unwrap()).unwrap();
        bins.push(common::compile_c(&dir, name, &c));
    }
    let res = splitfuzz::vm::batch::exec_binaries(&o, &bins).expect("the guest runs them");
    assert_eq!(res.len(), cases.len());
    for ((name, _, want), (_, code, text)) in cases.iter().zip(&res) {
        assert_eq!(code, &Some(*want), "{name}:\n{text}");
        if *want == 1 {
            assert!(text.contains("# not reproduced"), "{name}:\n{text}");
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// `emit-c --trigger memcg`: the reproducers create the cgroup and set and
/// lift the limit themselves (no debugfs: HAS_PLAN 0). On stock 7.2 the
/// deposit programs hang in the OOM-retried fault as the model predicts at
/// the limit (exit 0), with memory.events showing failed charges; the v3
/// MADV_DONTNEED retention does not happen (exit 1, not reproduced).
#[test]
fn emitted_memcg_reproducers_set_the_limit_themselves() {
    let _g = ONE_GUEST.lock().unwrap_or_else(|e| e.into_inner());
    let Some(o) = options() else { return };
    let Some(dir) = common::c_scratch_dir("vm-memcg-c") else {
        return;
    };
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let cases = [
        ("tests/programs/deposit/memcg-thp-charge.txt", 0),
        ("tests/programs/deposit/memcg-huge-zero-table.txt", 0),
        ("crashes/lazy-v3/no-silent-skip-zap_pmd_range.txt", 1),
    ];
    let mut bins = Vec::new();
    for (i, (f, _)) in cases.iter().enumerate() {
        let text = std::fs::read_to_string(root.join(f)).unwrap();
        let c = splitfuzz::csource::emit_c_with(&Program::parse(&text).unwrap(), true).unwrap();
        assert!(
            c.contains("#define HAS_PLAN 0") && c.contains("#define MEMCG 1"),
            "{f}"
        );
        bins.push(common::compile_c(&dir, &format!("m{i}"), &c));
    }
    let res = splitfuzz::vm::batch::exec_binaries(&o, &bins).expect("the guest runs them");
    assert_eq!(res.len(), cases.len());
    for ((f, want), (_, code, text)) in cases.iter().zip(&res) {
        assert_eq!(code, &Some(*want), "{f}:\n{text}");
        assert!(
            text.contains("# memory.events after op 2: "),
            "{f}:\n{text}"
        );
        if *want == 0 {
            assert!(text.contains("did not return"), "{f}:\n{text}");
            assert!(!text.contains(" max 0 "), "{f}: no failed charge:\n{text}");
        } else {
            assert!(
                text.contains("# not reproduced without fault injection"),
                "{f}:\n{text}"
            );
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// The transcript lines (`op I res R`, `mm ...`) of a reproducer's output in
/// the guest (`vm exec` interleaves its stdout and stderr).
fn transcript_lines(out: &str) -> String {
    out.lines()
        .filter(|l| l.starts_with("mm ") || l.split(' ').nth(2) == Some("res"))
        .map(|l| format!("{l}\n"))
        .collect()
}

/// The two executors agree in the guest (docs/csource.md), where plans, swap
/// and two NUMA nodes let every op run: each program gives the same
/// transcript through `vm run` (the Rust executor) and through its `emit-c`
/// reproducer in `vm exec` (the C one), up to an op that hangs or that
/// neither can run (a reclaim of a shared folio).
#[test]
fn c_and_rust_executors_agree_in_the_guest() {
    let _g = ONE_GUEST.lock().unwrap_or_else(|e| e.into_inner());
    let Some(o) = options() else { return };
    let Some(dir) = common::c_scratch_dir("vm-agree") else {
        return;
    };
    let mut progs: Vec<(String, Program)> = programs("tests/programs/deposit")
        .into_iter()
        .chain(programs("crashes/lazy-v3"))
        .map(|f| {
            let p = Program::parse(&std::fs::read_to_string(&f).unwrap()).unwrap();
            (f.display().to_string(), p)
        })
        .collect();
    let mut skipped = Default::default();
    let generated =
        splitfuzz::vm::guest::capabilities().generate(20, 12, true, "deposit", &mut skipped);
    progs.extend(
        generated
            .into_iter()
            .enumerate()
            .map(|(i, p)| (format!("gen#{i} (seed 12)"), p)),
    );
    let jobs: Vec<Job> = progs
        .iter()
        .map(|(name, p)| Job {
            name: name.clone(),
            prog: p.clone(),
            policy: Policy::preset(Preset::Deposit),
            memcg: None,
        })
        .collect();
    let judged = run(&o, &jobs);
    let bins: Vec<PathBuf> = progs
        .iter()
        .enumerate()
        .map(|(i, (_, p))| {
            common::compile_c(
                &dir,
                &format!("a{i}"),
                &splitfuzz::csource::emit_c(p).unwrap(),
            )
        })
        .collect();
    let res = splitfuzz::vm::batch::exec_binaries(&o, &bins).expect("the guest runs them");
    assert_eq!(res.len(), progs.len());
    let (mut stopped, mut lines) = (0, 0);
    for (((name, p), j), (_, _, out)) in progs.iter().zip(&judged).zip(&res) {
        let (c, rust) = (transcript_lines(out), j.run.hr.t.text());
        let stop = j.run.hr.hung.or(j.run.hr.unsupported.as_ref().map(|u| u.0));
        let (c, rust) = match stop {
            Some(k) => {
                stopped += 1;
                let cut = |t: &str| t.split(&format!("op {k} res ")).next().unwrap().to_string();
                (cut(&c), cut(&rust))
            }
            None => (c, rust),
        };
        assert_eq!(
            c,
            rust,
            "{name}: the executors differ\n{}{out}",
            p.to_text()
        );
        lines += c.lines().count();
    }
    println!(
        "executors agree in the guest on {} programs, {lines} transcript lines ({stopped} up to an op that hung or could not run)",
        progs.len()
    );
    assert!(lines > 10 * progs.len(), "{lines}");
    let _ = std::fs::remove_dir_all(&dir);
}
