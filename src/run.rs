//! The one entry point every engine calls: bytes (or a program) + policy →
//! outcome. Runs each op against the model, then every invariant.

use crate::base::Geometry;
use crate::check::reference::{op_pages, tag, Reference};
use crate::check::{self, op_function, Violation};
use crate::model::alloc::FaultInjector;
use crate::model::mm::{Errno, KErr, Kernel};
use crate::model::policy::Policy;
use crate::prog::{Op, OpLine, Program};

#[derive(Clone, Debug)]
pub struct RunConfig {
    pub policy: Policy,
    pub geometry: Geometry,
}

impl RunConfig {
    pub fn new(policy: Policy, geometry: Geometry) -> Self {
        RunConfig { policy, geometry }
    }
}

/// What happened to one op.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpResult {
    Ok,
    Err(Errno),
    /// The op's mm does not exist (never forked, or exited).
    NoSuchMm,
    /// The op never returns: a user fault retried after VM_FAULT_OOM while every
    /// allocation fails (`KErr::OomLoop`). The task is killed and the program ends.
    OomLoop,
}

impl OpResult {
    /// The name an `expect op N RESULT` line uses.
    pub fn name(&self) -> String {
        match self {
            OpResult::Ok => "ok".into(),
            OpResult::Err(e) => format!("{e:?}"),
            OpResult::NoSuchMm => "no-mm".into(),
            OpResult::OomLoop => "oom-loop".into(),
        }
    }
}

/// Check every expectation of a program against a run: the `expect` line and
/// each `expect op N RESULT` line. `Err` lists, in words, what did not hold.
pub fn check_expectations(prog: &Program, out: &Outcome) -> Result<(), String> {
    let mut bad = Vec::new();
    if let Some(e) = &prog.expect {
        if let Err(why) = e.check(out.violation.as_ref()) {
            bad.push(why);
        }
    }
    for (i, want) in &prog.expect_results {
        let got = out
            .results
            .get(*i)
            .map(|r| r.name())
            .unwrap_or_else(|| "not run".into());
        if got != *want {
            bad.push(format!("expected op {i} to return {want}, got {got}"));
        }
    }
    if bad.is_empty() {
        Ok(())
    } else {
        Err(bad.join("; "))
    }
}

#[derive(Clone, Debug)]
pub struct Outcome {
    pub violation: Option<Violation>,
    pub results: Vec<OpResult>,
    /// Model branch coverage (hit counts, saturating).
    pub cov: Vec<u8>,
    pub stats: crate::model::mm::Stats,
    pub pte_alloc_calls: u32,
}

impl Outcome {
    pub fn signature(&self) -> Option<String> {
        self.violation.as_ref().map(|v| v.signature())
    }
}

/// Decode any bytes and run them. Never panics on input.
pub fn run_program(bytes: &[u8], cfg: &RunConfig) -> Outcome {
    run(&Program::decode(bytes), cfg)
}

/// Run a program; on a violation, return it (the program stops there).
pub fn run(prog: &Program, cfg: &RunConfig) -> Outcome {
    let mut k = build(prog, cfg);
    let mut results = Vec::with_capacity(prog.ops.len());
    let violation = run_on(&mut k, prog, &mut results, &mut |_, _, _| {}, true);
    Outcome {
        violation,
        results,
        cov: k.cov,
        stats: k.stats,
        pte_alloc_calls: k.alloc.calls(crate::model::alloc::AllocKind::PteTable),
    }
}

pub fn build(prog: &Program, cfg: &RunConfig) -> Kernel {
    let alloc = FaultInjector::from_fault_plan(&prog.faults);
    let mut k = Kernel::new(cfg.geometry, cfg.policy.clone(), alloc);
    k.uffd_async = prog.uffd_async;
    k
}

/// Run on an existing kernel; `hook(kernel, op_index, phase)` sees the state
/// before (phase 0) and after (phase 1) each op (used by `repro` to dump state).
/// With `teardown`, every mm exits at the end and the teardown is checked.
pub fn run_on(
    k: &mut Kernel,
    prog: &Program,
    results: &mut Vec<OpResult>,
    hook: &mut dyn FnMut(&Kernel, usize, u8),
    teardown: bool,
) -> Option<Violation> {
    let mut reference = Reference::new(k.pages());
    for (i, line) in prog.ops.iter().enumerate() {
        k.op_index = i;
        k.alloc.begin_op(i);
        k.events.clear();
        if line.mm >= k.mms.len() || !k.mms[line.mm].alive {
            results.push(OpResult::NoSuchMm);
            continue;
        }
        hook(k, i, 0);
        let span = tracing::debug_span!(target: "splitfuzz::op", "op", i, mm = line.mm);
        let _g = span.enter();
        tracing::debug!(target: "splitfuzz::op", "op #{i}: {line}");
        let exp = reference.expected(line, i, k.geom);
        let r = exec_op(k, line, i);
        let func = op_function(&line.op);
        let res = match r {
            Ok(()) => OpResult::Ok,
            Err(KErr::Errno(e)) => OpResult::Err(e),
            Err(KErr::OomLoop(f)) => {
                tracing::debug!(target: "splitfuzz::op", "op #{i} never returns: VM_FAULT_OOM retried in {f} while every allocation fails; the task is killed");
                OpResult::OomLoop
            }
            Err(KErr::Bug(v)) => {
                hook(k, i, 1);
                tracing::debug!(target: "splitfuzz::op", "{v}");
                return Some(*v);
            }
        };
        tracing::debug!(target: "splitfuzz::op", "op #{i} -> {res:?}");
        results.push(res);
        hook(k, i, 1);
        if let Err(v) = check::check_state(k, func) {
            return Some(v);
        }
        match check::reference::check_reference(
            k,
            &reference,
            &exp,
            res == OpResult::Ok,
            func,
            &line.to_string(),
        ) {
            Ok(next) => reference = next,
            Err(v) => return Some(v),
        }
        if let OpResult::Err(e) = res {
            if k.alloc.failed_in_op() {
                if let Some(v) = errno_contract(k, prog, i, e) {
                    return Some(v);
                }
            }
        }
        if res == OpResult::OomLoop {
            break;
        }
    }
    if !teardown {
        return None;
    }
    // Implicit exit of every live mm, then the global teardown check.
    k.op_index = prog.ops.len();
    k.events.clear();
    for mm in 0..k.mms.len() {
        if let Err(e) = k.exit_mmap(mm) {
            match e {
                KErr::Bug(v) => return Some(*v),
                e => unreachable!("exit_mmap cannot fail: {e:?}"),
            }
        }
    }
    if let Err(v) = check::check_state(k, "exit_mmap") {
        return Some(v);
    }
    check::check_teardown(k).err()
}

/// The errno half of the contract (check/contract.rs, the rules `vm check`
/// holds a kernel to), in the model: op `i` returned `e` while an allocation
/// inside it failed. That is clean when `e` is in the op's contract, or when
/// the op returns `e` anyway: the same program up to op `i`, with nothing
/// failing in op `i`, is run again to ask (an EINVAL or EEXIST of the op's
/// own is not the failure's doing).
fn errno_contract(k: &Kernel, prog: &Program, i: usize, e: Errno) -> Option<Violation> {
    let line = &prog.ops[i];
    if check::contract::allows(&line.op, &format!("{e:?}")) {
        return None;
    }
    let alloc = FaultInjector::from_fault_plan_sparing(&prog.faults, i);
    let mut again = Kernel::new(k.geom, k.policy.clone(), alloc);
    again.uffd_async = prog.uffd_async;
    let mut prefix = prog.clone();
    prefix.ops.truncate(i + 1);
    let mut results = Vec::with_capacity(i + 1);
    run_on(&mut again, &prefix, &mut results, &mut |_, _, _| {}, false);
    let without = results.get(i).copied();
    if without == Some(OpResult::Err(e)) {
        return None;
    }
    let func = check::attribute(
        k,
        line.mm,
        op_pages(&line.op, k.geom).0,
        op_function(&line.op),
    );
    let mut v = k.violation(
        check::Invariant::ErrnoContract,
        func,
        line.mm,
        op_pages(&line.op, k.geom).0,
        format!(
            "{line} returned {e:?} when an allocation inside it failed: not an errno of its contract ({}), and without the failure it returns {}",
            check::contract::may_fail_with(&line.op).join(", "),
            without.map_or("nothing".into(), |r| r.name())
        ),
    );
    v.severity = check::contract::Breach::Errno.severity();
    Some(v)
}

/// Run one op.
fn exec_op(k: &mut Kernel, line: &OpLine, i: usize) -> Result<(), KErr> {
    let g = k.geom;
    let mm = line.mm;
    let (lo, hi) = op_pages(&line.op, g);
    match &line.op {
        Op::Mmap { thp, .. } => k.do_mmap(mm, lo, hi, *thp)?,
        Op::Munmap { .. } => k.do_munmap(mm, lo, hi)?,
        Op::Mprotect { write, .. } => k.mprotect(mm, lo, hi, *write)?,
        Op::Touch { write, .. } => {
            for page in lo..hi {
                match k.access(mm, page, *write, tag(i, page), true) {
                    Ok(_) | Err(KErr::Errno(Errno::EFAULT)) => {}
                    Err(e) => return Err(e),
                }
            }
        }
        Op::Madvise { advice, .. } => k.madvise(mm, lo, hi, *advice)?,
        Op::Fork => {
            k.dup_mmap(mm)?;
        }
        Op::Pin { .. } => k.pin_user_pages(mm, lo, hi)?,
        Op::Unpin { .. } => k.unpin_user_pages(mm, lo, hi)?,
        Op::Mremap { new, .. } => k.mremap(mm, lo, hi - lo, g.page_of(*new, false))?,
        Op::Reclaim { .. } => {
            if let Some(f) = k.folio_at(mm, lo) {
                k.reclaim_op(mm, f)?;
            }
        }
        Op::Migrate { .. } => {
            // move_pages(2) of the page to the other node.
            if let Some(f) = k.folio_at(mm, lo) {
                let to = 1 - k.folios[f as usize].node;
                k.migrate_folio(f, to)?;
            }
        }
        Op::Exit => k.exit_mmap(mm)?,
        Op::UffdWp { on, .. } => k.mwriteprotect_range(mm, lo, hi, *on)?,
        Op::UffdRegister { .. } => k.userfaultfd_register(mm, lo, hi)?,
        Op::UffdUnregister { .. } => k.userfaultfd_unregister(mm, lo, hi)?,
        Op::UffdMove { dst, .. } => k.uffd_move(mm, g.page_of(*dst, false), lo, hi - lo)?,
        Op::PagemapScan { .. } => k.pagemap_scan(mm, lo, hi)?,
        Op::Mlock { .. } => k.do_mlock(mm, lo, hi)?,
        Op::Munlock { .. } => k.do_munlock(mm, lo, hi)?,
        Op::Mbind { node, .. } => k.do_mbind(mm, lo, hi, *node)?,
        Op::DropCaches => k.deferred_split_scan()?,
    }
    Ok(())
}

/// The policy a program runs under: the CLI's choice, else its `policy` line,
/// else lazy-v3; then the program's `override` lines and the CLI's overrides.
pub fn program_policy(
    prog: &Program,
    cli: Option<&str>,
    cli_overrides: &[String],
) -> Result<Policy, String> {
    use crate::model::policy::Preset;
    let name = cli.or(prog.policy.as_deref()).unwrap_or("lazy-v3");
    let mut p = Policy::preset(Preset::parse(name)?);
    for o in prog.overrides.iter().chain(cli_overrides) {
        p.apply_override(o)?;
    }
    Ok(p)
}

/// Minimize a violating program keeping its signature (invariant + kernel
/// function): ops after the violating one go first, then `prog::minimize::
/// shrink`. The result names its policy and overrides and expects its
/// violation. None if the program does not violate.
pub fn minimize(prog: &Program, cfg: &RunConfig) -> Option<Program> {
    let v = run(prog, cfg).violation?;
    let sig = v.signature();
    let mut cur = prog.clone();
    cur.expect = None;
    // Ops after the violating one cannot matter (the implicit exit stays).
    if v.op_index < cur.ops.len() {
        cur.ops.truncate(v.op_index + 1);
    }
    let keeps = |p: &Program| run(p, cfg).signature().as_deref() == Some(sig.as_str());
    let mut cur = crate::prog::minimize::shrink(&cur, &keeps);
    let fin = run(&cur, cfg)
        .violation
        .expect("minimized program keeps its violation");
    name_policy(&mut cur, cfg);
    cur.expect = Some(crate::prog::Expect::Violation {
        invariant: fin.invariant.name().into(),
        function: fin.function,
        severity: Some(fin.severity.name().into()),
    });
    Some(cur)
}

/// Write `cfg`'s policy and overrides into `p`'s `policy` and `override`
/// lines, so the saved program replays under what it ran under.
fn name_policy(p: &mut Program, cfg: &RunConfig) {
    p.policy = Some(cfg.policy.preset.name().to_string());
    p.overrides = cfg
        .policy
        .overrides
        .iter()
        .map(|(c, s)| format!("{}={}", c.name(), s.name()))
        .collect();
}

/// A shortest program found that reaches model coverage point `name`, from
/// `prog` (which must reach it): how a campaign shows a point the
/// unreachable table (`model::coverage::unreachable`) calls dead. None when
/// `prog` does not reach it.
pub fn minimize_reaching(prog: &Program, name: &str, cfg: &RunConfig) -> Option<Program> {
    let slot = crate::model::coverage::slot(name);
    let reaches = |p: &Program| run(p, cfg).cov.get(slot).is_some_and(|c| *c != 0);
    if !reaches(prog) {
        return None;
    }
    let mut cur = prog.clone();
    cur.expect = None;
    cur.expect_results.clear();
    let mut cur = crate::prog::minimize::shrink(&cur, &reaches);
    name_policy(&mut cur, cfg);
    Some(cur)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::Invariant;
    use crate::model::policy::Preset;

    fn ran(text: &str) -> (Program, Kernel, Vec<OpResult>) {
        let prog = Program::parse(text).unwrap();
        let cfg = RunConfig::new(Policy::preset(Preset::LazyFixed), Geometry::SMALL);
        let mut k = build(&prog, &cfg);
        let mut results = Vec::new();
        let v = run_on(&mut k, &prog, &mut results, &mut |_, _, _| {}, false);
        assert!(v.is_none(), "{v:?}");
        (prog, k, results)
    }

    #[test]
    fn the_errno_contract_fires_on_an_errno_the_failure_caused() {
        // The split's table fails inside the DONTNEED (lazy-fixed gives a
        // contract errno, and holds).
        let (prog, k, results) = ran(
            "fail pte_alloc op=2:nth=1\nmmap 0 4M thp\ntouch 0 2M write\nmadvise 0 1M dontneed\n",
        );
        let OpResult::Err(e) = results[2] else {
            panic!("the DONTNEED must fail: {results:?}")
        };
        assert!(errno_contract(&k, &prog, 2, e).is_none());
        // Had it said EINVAL (which it never says without the failure: it
        // succeeds), the errno would break the contract.
        let v = errno_contract(&k, &prog, 2, Errno::EINVAL).expect("an EINVAL the failure caused");
        assert_eq!(v.invariant, Invariant::ErrnoContract);
        assert_eq!(v.severity, crate::base::Severity::WrongErrno);
        assert!(
            v.message.contains("without the failure it returns ok"),
            "{v}"
        );
    }

    #[test]
    fn the_errno_contract_allows_the_ops_own_errno() {
        // UFFDIO_MOVE of a hole returns ENOENT with or without a failure:
        // not the failure's doing.
        let (prog, k, results) = ran("mmap 0 4M thp\nuffd-register 0 4M\nuffd-move 0 2M 2M\n");
        assert_eq!(results[2], OpResult::Err(Errno::ENOENT));
        assert!(!check::contract::allows(&prog.ops[2].op, "ENOENT"));
        assert!(errno_contract(&k, &prog, 2, Errno::ENOENT).is_none());
    }
}
