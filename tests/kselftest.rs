//! `emit-kselftest`: the test file compiles with `-Wall -Werror` against the
//! pinned kernel tree's selftest headers (tools/testing/selftests of the
//! cached linux-source, scripts/vm-fetch.sh; skipped with a message where it
//! is not cached), and its assertions fire: judged on the model's transcript
//! of each lazy-v3 finding (what the posted v3 does, at the memcg limits or
//! under the plan), the tests fail with the finding's assertion; judged on the
//! deposit model's transcript of the same program (what stock 7.2 does),
//! they pass. The runs in the guest, stock and v3, are
//! scripts/check-kselftests.sh and docs/measurements.md.

mod common;

use splitfuzz::csource::{emit_kselftest, emit_policy, KselftestInput};
use splitfuzz::model::policy::{Policy, Preset};
use splitfuzz::observe::{memcg, model_run_with, ModelRun};
use splitfuzz::Program;
use std::path::{Path, PathBuf};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// tools/testing/selftests of the pinned tree: SPLITFUZZ_KSELFTEST_HEADERS,
/// else the cached linux-source (SPLITFUZZ_CACHE or ~/.cache/splitfuzz).
fn headers() -> Option<PathBuf> {
    if let Some(d) = std::env::var_os("SPLITFUZZ_KSELFTEST_HEADERS") {
        return Some(PathBuf::from(d));
    }
    let cache = std::env::var_os("SPLITFUZZ_CACHE")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cache/splitfuzz")))?;
    let mut trees: Vec<PathBuf> = std::fs::read_dir(cache.join("src"))
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("linux-source-7.2-"))
        })
        .map(|p| p.join("tools/testing/selftests"))
        .filter(|p| p.join("kselftest_harness.h").is_file())
        .collect();
    trees.sort();
    trees.pop()
}

fn findings() -> Vec<(PathBuf, Program)> {
    common::txt_files("crashes/lazy-v3")
        .into_iter()
        .map(|p| {
            let t = std::fs::read_to_string(&p).unwrap();
            (p, Program::parse(&t).unwrap())
        })
        .collect()
}

fn inputs(progs: &[(PathBuf, Program)]) -> Vec<KselftestInput> {
    progs
        .iter()
        .map(|(p, prog)| KselftestInput {
            source: p.strip_prefix(root()).unwrap_or(p).display().to_string(),
            notes: vec![],
            prog: prog.clone(),
            whole_plan: None,
        })
        .collect()
}

/// Compile a test file against the selftest headers in `inc`.
fn compile(dir: &Path, name: &str, c: &str, inc: &Path) -> PathBuf {
    let i = format!("-I{}", inc.display());
    common::compile_c_with(dir, name, c, &[i.as_ref(), "-lpthread".as_ref()])
}

/// What the runtime prints for a model run: its transcript up to an op that
/// does not return (a livelock, or an OOM-retried fault), then that op.
fn runtime_text(mr: &ModelRun) -> String {
    let mut t = mr.t.clone();
    let livelock = mr
        .violation_at
        .filter(|(_, inv)| inv.name() == "no-livelock")
        .map(|(k, _)| k);
    let oom = t
        .results
        .iter()
        .position(|r| r.as_deref() == Some("oom-loop"));
    let hung = [livelock, oom].into_iter().flatten().min();
    if let Some(k) = hung {
        for r in t.results.iter_mut().skip(k) {
            *r = None;
        }
    }
    let mut s = t.text();
    if let Some(k) = hung {
        s.push_str(&format!("op {k} did not return within 10 s\n"));
    }
    s
}

/// The model's transcript of `prog` under `policy`: at the memcg trigger's
/// limits, or under the plan.
fn model_text(prog: &Program, policy: &Policy, memcg_trigger: bool) -> String {
    let linux = splitfuzz::model::mm::LINUX_DEFAULT;
    let mr = if memcg_trigger {
        let re = memcg::realise(prog, &emit_policy(prog).unwrap(), linux);
        memcg::model_at_limits(prog, policy, linux, &re.limited, &[])
    } else {
        model_run_with(prog, policy, linux, &[])
    };
    runtime_text(&mr)
}

#[test]
fn emitted_kselftests_compile_and_their_assertions_fire() {
    let Some(inc) = headers() else {
        println!("SKIPPED: no cached linux-source-7.2 (scripts/vm-fetch.sh) and no SPLITFUZZ_KSELFTEST_HEADERS");
        return;
    };
    let Some(dir) = common::c_scratch_dir("kselftest") else {
        return;
    };
    let progs = findings();
    assert_eq!(progs.len(), 4);
    let (c, _) = emit_kselftest(&inputs(&progs)).unwrap();
    let bin = compile(&dir, "split_failure", &c, &inc);
    let v3 = Policy::preset(Preset::parse("lazy-v3").unwrap());
    let deposit = Policy::preset(Preset::parse("deposit").unwrap());
    for (tag, policy) in [("v3", &v3), ("deposit", &deposit)] {
        let replay = dir.join(tag);
        std::fs::create_dir_all(&replay).unwrap();
        for (p, prog) in &progs {
            let name = p.file_stem().unwrap().to_string_lossy().replace('-', "_");
            let expressible = memcg::realise(prog, &v3, splitfuzz::model::mm::LINUX_DEFAULT)
                .inexpressible
                .is_empty();
            for (fixture, m) in [("memcg", true), ("inject", false)] {
                if !m || expressible {
                    std::fs::write(
                        replay.join(format!("{fixture}.{name}.out")),
                        model_text(prog, policy, m),
                    )
                    .unwrap();
                }
            }
        }
        // The harness's log (stderr) interleaved with its results (stdout).
        let out = std::process::Command::new("sh")
            .args(["-c", "exec \"$0\" 2>&1"])
            .arg(&bin)
            .env("SPLITFUZZ_REPLAY", &replay)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        if tag == "deposit" {
            assert!(out.status.success(), "deposit:\n{text}");
            // inject's `from=1` plans fail the THP fault's deposit: an
            // OOM-retried fault, skipped.
            assert!(text.contains("# Totals: pass:5 fail:0"), "{text}");
            assert!(text.contains("skip:2"), "{text}");
            continue;
        }
        assert!(!out.status.success(), "v3:\n{text}");
        assert!(text.contains("# Totals: pass:0 fail:7"), "{text}");
        for (test, assertion) in [
            ("memcg.no_livelock_change_pmd_range", "sf_hung(&r, 3) (1)"),
            (
                "memcg.no_livelock_madvise_guard_install",
                "sf_hung(&r, 2) (1)",
            ),
            (
                "memcg.no_silent_skip_zap_pmd_range",
                "sf_pages_not_zero(&r, 2, 0, 0x1cc0000, 0x200000) (64)",
            ),
            (
                "inject.no_silent_skip_unmap_source_vma",
                "sf_pages_mapped(&r, 3, 0, 0x1c40000, 0x3c0000) (640)",
            ),
        ] {
            let at = text
                .find(&format!("RUN           {test} "))
                .unwrap_or_else(|| panic!("{test} did not run:\n{text}"));
            let end = text[at..]
                .find("FAIL  ")
                .map(|e| at + e)
                .unwrap_or(text.len());
            assert!(
                text[at..end].contains(assertion),
                "{test}: no `{assertion}`:\n{}",
                &text[at..end]
            );
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_deposit_program_with_a_plan_gets_an_inject_test_that_compiles() {
    let Some(inc) = headers() else {
        println!("SKIPPED: no cached linux-source-7.2");
        return;
    };
    let Some(dir) = common::c_scratch_dir("kselftest-deposit") else {
        return;
    };
    let mut progs = Vec::new();
    for p in common::txt_files("tests/programs/deposit") {
        let prog = Program::parse(&std::fs::read_to_string(&p).unwrap()).unwrap();
        if !prog.faults.pte_alloc.is_never() || !prog.faults.thp.is_never() {
            progs.push((p, prog));
        }
    }
    let (c, _) = emit_kselftest(&inputs(&progs)).unwrap();
    compile(&dir, "deposit", &c, &inc);
    println!("{} deposit programs in one kselftest file", progs.len());
    let _ = std::fs::remove_dir_all(&dir);
}
