#!/usr/bin/env python3
"""Engine measurements for splitfuzz (a benchmark, not a test): a Markdown report.

    scripts/bench-engines.sh [options]      (the shell script runs this file)
    python3 scripts/bench_engines.py --help

Three parts, each optional:

* exec/s of each engine on each target, beside the same engine on the `empty`
  target (a target that ignores its input), measured in the same run;
* time to EACH known signature (the `expect violation` lines of
  crashes/<policy>/*.txt), per engine, target and seed, from a minimal seed
  (one 9-byte input, "mmap 0 8M thp", no fault plan) and/or from the seed
  corpus (corpus/<target>/). An attempt runs until every known signature is
  found or --max seconds have passed;
* the model branches reached over time: the built-in engine's own stats.csv;
  for the other engines, the inputs they kept (their corpus/queue), replayed by
  `splitfuzz fuzz --runs 1 --corpus` per time point, by file modification time.

How an attempt is measured (each defect of the former shell script has a test
in scripts/tests/test_bench_engines.py):

* every engine runs in its own process group (session), and the whole group is
  stopped (SIGTERM, then SIGKILL), so a wrapper such as `cargo afl fuzz` cannot
  leave afl-fuzz running into the next attempt;
* the built-in engine runs without --quiet, and its "new finding" lines give the
  time of each finding ("at N s" after its start, plus its start-up);
* a crash file's time is its modification time (relative to the launch), and the
  crash folder is read again after the engine exits, so a file written just
  before exit is counted at the time it was written;
* nothing is written inside the repository: every engine's output, the
  honggfuzz target dir and the AFL++ target dir go under --work (a temporary
  folder by default).
"""

from __future__ import annotations

import argparse
import dataclasses
import glob
import json
import os
import re
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MINIMAL_SEED = bytes([0x03, 0x00, 0x03, 0x00, 0x00, 0x00, 0x00, 0x1F, 0x01])
POLICY = {
    "lazy_v1": "lazy-v1",
    "lazy_v2": "lazy-v2",
    "lazy_v3": "lazy-v3",
    "lazy_fixed": "lazy-fixed",
    "deposit": "deposit",
}
FINDING_RE = re.compile(r"new finding: (\S+) (\S+ \S+) at ([0-9.]+)s")
VIOLATION_RE = re.compile(r"VIOLATION (\S+) in (\S+)")


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def load() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "?"


def known_signatures(policy: str, crashes: Path) -> list[str]:
    """`INVARIANT FUNCTION` of every `expect violation` line in crashes/<policy>/*.txt."""
    sigs = set()
    for f in sorted((crashes / policy).glob("*.txt")):
        for line in f.read_text(errors="replace").splitlines():
            m = re.match(r"expect violation (\S+) (\S+)", line)
            if m:
                sigs.add(f"{m.group(1)} {m.group(2)}")
    return sorted(sigs)


# ------------------------------------------------------------------ processes


def start_group(cmd, cwd=None, env=None, stdout=None, stderr=None) -> subprocess.Popen:
    """Start CMD as the leader of a new session (its own process group)."""
    return subprocess.Popen(
        cmd,
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=stdout,
        stderr=stderr,
        start_new_session=True,
    )


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


def tagged(token: str) -> list[int]:
    """The processes whose environment holds SPLITFUZZ_BENCH_TOKEN=TOKEN: every
    descendant of an attempt, also those that left its process group (AFL++
    starts its target in a new session)."""
    want = f"SPLITFUZZ_BENCH_TOKEN={token}".encode()
    pids = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit() and int(d.name) != os.getpid():
            try:
                if want in (d / "environ").read_bytes().split(b"\0"):
                    pids.append(int(d.name))
            except OSError:
                pass
    return pids


def stop_tagged(token: str) -> list[int]:
    """SIGKILL every process tagged with TOKEN; the pids that were left."""
    left = tagged(token)
    for pid in left:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return left


def stop_group(p: subprocess.Popen, grace: float = 3.0) -> None:
    """Stop the whole process group of P: SIGTERM, then SIGKILL after GRACE s.
    Returns when no process of the group is left (zombies reaped by their
    parents or by init)."""
    pgid = p.pid
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            pass
        end = time.monotonic() + wait
        while time.monotonic() < end:
            try:
                p.wait(timeout=0.05)
            except subprocess.TimeoutExpired:
                pass
            if p.poll() is not None and not group_alive(pgid):
                return
        if p.poll() is not None and not group_alive(pgid):
            return
    p.wait()


# ------------------------------------------------------------------ engines


@dataclasses.dataclass
class Attempt:
    engine: str
    target: str
    seed: int
    secs: int
    dir: Path  # everything of this attempt
    inputs: Path  # the seed inputs (the engine may add to it)

    @property
    def policy(self) -> str | None:
        return POLICY.get(self.target)


class Engine:
    name = "?"
    # a finding is a file in crash_dir() (the default) or a stdout/stderr line
    lines = False

    def __init__(self, cfg):
        self.cfg = cfg

    def available(self) -> str | None:
        return None

    def build(self) -> None:
        pass

    def launch(self, a: Attempt):
        """(argv, cwd, env) of one attempt."""
        raise NotImplementedError

    def crash_dir(self, a: Attempt) -> Path:
        return a.dir / "crashes"

    def is_crash(self, name: str) -> bool:
        return not name.startswith(".")

    def kept_dir(self, a: Attempt) -> Path | None:
        """The inputs the engine kept (for branches over time)."""
        return a.inputs

    def execs_per_sec(self, a: Attempt, logtext: str) -> float | None:
        return None


def env_with(**kv) -> dict:
    e = dict(os.environ)
    e.update({k: str(v) for k, v in kv.items()})
    return e


class Builtin(Engine):
    name = "builtin"
    lines = True

    def launch(self, a):
        # No --quiet: the "new finding" lines are what this engine's times are read from.
        argv = [
            str(self.cfg.splitfuzz), "fuzz", "--policy", a.policy, "--time", f"{a.secs}s",
            "--seed", str(a.seed), "--crashes", str(a.dir / "crashes"), "--corpus",
            str(a.inputs), "--out", str(a.dir / "run"), "--known", str(a.dir / "no-known"),
            "--log-every", "1s", "--stats-every", "1s",
        ]
        return argv, a.dir, None

    def execs_per_sec(self, a, logtext):
        m = re.findall(r"\((\d+) exec/s\)", logtext)
        return float(m[-1]) if m else None


class LibFuzzer(Engine):
    name = "libfuzzer"

    def available(self):
        ok = subprocess.run(["cargo", "+nightly", "fuzz", "--version"], capture_output=True).returncode == 0
        return None if ok else "cargo-fuzz or nightly not installed (scripts/install-engines.sh libfuzzer)"

    def target_dir(self) -> Path:
        return self.cfg.work / "build" / "libfuzzer"

    def build(self):
        run_build(["cargo", "+nightly", "fuzz", "build", "-s", "none", "--target-dir", str(self.target_dir())],
                  self.cfg, "libfuzzer")

    def launch(self, a):
        triple = host_triple()
        binp = self.target_dir() / triple / "release" / a.target
        argv = [str(binp), str(a.inputs), "-fork=1", "-ignore_crashes=1", "-ignore_timeouts=1",
                "-ignore_ooms=1", f"-max_total_time={a.secs}", f"-seed={a.seed + 1}",
                f"-artifact_prefix={a.dir / 'crashes'}/", "-print_final_stats=1"]
        if self.cfg.dicts:
            argv.append(f"-dict={self.cfg.dict_path}")
        return argv, a.dir, None

    def is_crash(self, name):
        return name.startswith("crash-")

    def execs_per_sec(self, a, logtext):
        rows = re.findall(r"^#(\d+):.* time: (\d+)s", logtext, re.M)
        if rows and int(rows[-1][1]) > 0:
            return int(rows[-1][0]) / int(rows[-1][1])
        return None


# The AFL++ environment, the same as src/engines/afl.rs `ENV` and
# `MUTATOR_ENV` (a test compares them). See afl.rs for why each is there:
# AFL_FRAMESHIFT_DISABLE keeps afl-fuzz from corrupting its heap with the
# custom mutator (it aborted 10-45 s into every such attempt), and
# AFL_CUSTOM_MUTATOR_ONLY gives the shared mutator every mutation instead of
# about 12 per queue entry beside 256+ of AFL++'s byte havoc. No variable
# AFL++ does not know: afl-fuzz sleeps 2 s per check after warning about one.
# honggfuzz's largest input, as src/engines/honggfuzz.rs MAX_INPUT (a test checks).
HFUZZ_MAX_INPUT = "96"

AFL_ENV = {
    "AFL_NO_UI": "1",
    "AFL_SKIP_CPUFREQ": "1",
    "AFL_NO_AFFINITY": "1",
    "AFL_I_DONT_CARE_ABOUT_MISSING_CRASHES": "1",
    "AFL_FRAMESHIFT_DISABLE": "1",
}
AFL_MUTATOR_ENV = {"AFL_CUSTOM_MUTATOR_ONLY": "1"}


class Afl(Engine):
    name = "afl"

    def available(self):
        return None if shutil.which("cargo-afl") else "cargo-afl not installed (scripts/install-engines.sh afl)"

    def target_dir(self) -> Path:
        return self.cfg.work / "build" / "afl"

    def build(self):
        run_build(["cargo", "afl", "build", "--release", "--no-default-features", "--features", "afl"],
                  self.cfg, "afl", env=env_with(CARGO_TARGET_DIR=self.target_dir()))
        if self.cfg.mutator:
            run_build(["cargo", "build", "--release", "-p", "splitfuzz-afl-mutator"], self.cfg, "afl-mutator",
                      env=env_with(CARGO_TARGET_DIR=self.target_dir() / "mutator"))

    def launch(self, a):
        binp = self.target_dir() / "release" / a.target
        argv = ["cargo", "afl", "fuzz", "-s", str(a.seed + 1), "-V", str(a.secs), "-i", str(a.inputs),
                "-o", str(a.dir / "out")]
        if self.cfg.dicts:
            argv += ["-x", str(self.cfg.dict_path)]
        argv.append(str(binp))
        env = env_with(**AFL_ENV)
        if self.cfg.afl_fast:
            # Trimming cuts programs at byte positions that break their structure;
            # most queue entries are new model coverage, so calibration dominates.
            env.update(AFL_DISABLE_TRIM="1", AFL_FAST_CAL="1")
        lib = self.target_dir() / "mutator" / "release" / "libsplitfuzz_afl_mutator.so"
        if self.cfg.mutator and lib.exists():
            env["AFL_CUSTOM_MUTATOR_LIBRARY"] = str(lib)
            if not self.cfg.afl_havoc:
                env.update(AFL_MUTATOR_ENV)
        env.update(self.cfg.afl_env)
        return argv, a.dir, env

    def crash_dir(self, a):
        return a.dir / "out" / "default" / "crashes"

    def is_crash(self, name):
        return name.startswith("id:")

    def kept_dir(self, a):
        return a.dir / "out" / "default" / "queue"

    def execs_per_sec(self, a, logtext):
        try:
            st = dict(
                (k.strip(), v.strip())
                for k, v in (l.split(":", 1) for l in (a.dir / "out/default/fuzzer_stats").read_text().splitlines())
            )
            return float(st["execs_done"]) / max(1.0, float(st["run_time"]))
        except (OSError, KeyError, ValueError):
            return None


class Honggfuzz(Engine):
    name = "honggfuzz"

    def available(self):
        return None if shutil.which("cargo-hfuzz") else "cargo-hfuzz not installed (scripts/install-engines.sh honggfuzz)"

    def target_dir(self) -> Path:
        return self.cfg.work / "build" / "hfuzz"

    def build(self):
        run_build(["cargo", "hfuzz", "build"], self.cfg, "honggfuzz",
                  env=env_with(HFUZZ_BUILD_ARGS="--no-default-features --features honggfuzz",
                               CARGO_TARGET_DIR=self.target_dir()))

    def launch(self, a):
        d = self.target_dir()
        argv = [str(d / "honggfuzz"), "-W", str(a.dir / "crashes"), "-f", str(a.inputs), "-P", "-n", "1",
                "--save_all", "-F", HFUZZ_MAX_INPUT, "--run_time", str(a.secs)]
        if self.cfg.dicts:
            argv += ["-w", str(self.cfg.dict_path)]
        argv += getattr(self.cfg, "hfuzz_args", [])
        argv += ["--", str(d / host_triple() / "release" / a.target)]
        return argv, a.dir, None

    def is_crash(self, name):
        return name.endswith(".fuzz")

    def execs_per_sec(self, a, logtext):
        m = re.findall(r"Summary iterations:(\d+) time:(\d+)", logtext)
        if m and int(m[-1][1]) > 0:
            return int(m[-1][0]) / int(m[-1][1])
        return None


class Fake(Engine):
    """A stand-in engine for the benchmark's own tests: `CMD DIR SECS SEED`,
    finding files in DIR/crashes (the file's first line is its signature), or,
    with lines=True, "new finding" lines like the built-in engine's."""

    def __init__(self, cfg, cmd: list[str], lines: bool = False):
        super().__init__(cfg)
        self.name = "fake"
        self.cmd = cmd
        self.lines = lines

    def launch(self, a):
        return self.cmd + [str(a.dir), str(a.secs), str(a.seed)], a.dir, None


ENGINES = {"builtin": Builtin, "libfuzzer": LibFuzzer, "afl": Afl, "honggfuzz": Honggfuzz}


def host_triple() -> str:
    out = subprocess.run(["rustc", "-vV"], capture_output=True, text=True).stdout
    return re.search(r"^host: (\S+)", out, re.M).group(1)


def run_build(argv, cfg, label, env=None):
    logf = cfg.work / "log" / f"build-{label}.log"
    logf.parent.mkdir(parents=True, exist_ok=True)
    log(f"build {label}: {' '.join(argv)}")
    with open(logf, "w") as f:
        r = subprocess.run(argv, cwd=ROOT / "fuzz", env=env, stdout=f, stderr=subprocess.STDOUT)
    if r.returncode != 0:
        sys.exit(f"bench: build of {label} failed, see {logf}")


# ------------------------------------------------------------------ one attempt


@dataclasses.dataclass
class Result:
    found: dict  # signature -> seconds after launch (first crash file / line)
    crash_files: int
    secs: float  # how long the attempt ran
    stopped_group: bool  # no process of the group was left after the stop
    log: str
    t0: float  # launch time (epoch seconds)
    # The engine ended by itself this many seconds before its budget with
    # this exit status (None: it ran to its budget or was stopped): an engine
    # that dies early must not read as "found nothing in N s".
    early: tuple | None = None


def limit_memory():
    """preexec_fn: at most 2 GiB of address space (a model run that grows
    without bound must not take the shared machine's memory)."""
    resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))


class Triage:
    """Signatures of crash files: `splitfuzz run --format bytes` in batches
    (the file copied under a plain name first: AFL++ names contain ':')."""

    def __init__(self, splitfuzz: Path | None, policy: str | None, scratch: Path):
        self.splitfuzz = splitfuzz
        self.policy = policy
        self.scratch = scratch
        self.cache: dict = {}

    @staticmethod
    def run(argv, timeout):
        """`splitfuzz run` under a 2 GiB address-space limit and a timeout:
        ({scratch file: signature}, whether it ended normally). The
        VIOLATION line of a file is printed before `run` tries overrides on
        it, so a run that dies in an override still gives the signature."""
        try:
            r = subprocess.run(argv, capture_output=True, text=True, errors="replace", timeout=timeout,
                               preexec_fn=limit_memory)
            out, ok = r.stdout, r.returncode in (0, 1)
        except subprocess.TimeoutExpired as e:
            out, ok = (e.stdout or b"").decode(errors="replace") if isinstance(e.stdout, bytes) else (e.stdout or ""), False
        by_path = {}
        for line in out.splitlines():
            head, _, rest = line.partition(": ")
            m = VIOLATION_RE.search(rest)
            if m and head:
                by_path[head] = f"{m.group(1)} {m.group(2)}"
        return by_path, ok

    def signatures(self, files: list[Path]) -> dict:
        new = [f for f in files if f not in self.cache]
        if new and self.splitfuzz is None:  # the fake engines: first line of the file
            for f in new:
                try:
                    self.cache[f] = f.read_text(errors="replace").splitlines()[0].strip() or None
                except (OSError, IndexError):
                    self.cache[f] = None
        elif new:
            self.scratch.mkdir(parents=True, exist_ok=True)
            names = []
            for i, f in enumerate(new):
                dst = self.scratch / f"c{len(self.cache) + i:06}.bin"
                try:
                    shutil.copyfile(f, dst)
                except OSError:
                    continue
                names.append((f, dst))
            argv = [str(self.splitfuzz), "run", "--format", "bytes"]
            if self.policy:
                argv += ["--policy", self.policy]
            by_path, ok = self.run(argv + [str(d) for _, d in names], timeout=120)
            if not ok:
                # The batch died (memory limit, timeout): each file alone.
                for _, d in names:
                    if str(d) not in by_path:
                        by_path.update(self.run(argv + [str(d)], timeout=30)[0])
            for f, d in names:
                self.cache[f] = by_path.get(str(d))
        return {f: self.cache.get(f) for f in files}


def attempt(engine: Engine, a: Attempt, triage: Triage, want: list[str], poll: float = 0.25,
            extra_secs: float = 15.0, ignore_found: bool = True) -> Result:
    """Run one attempt; stop when every signature of WANT is found or after
    a.secs (+ EXTRA_SECS for an engine that overruns its own budget)."""
    a.dir.mkdir(parents=True, exist_ok=True)
    (a.dir / "crashes").mkdir(exist_ok=True)
    argv, cwd, env = engine.launch(a)
    # The fuzz targets stop crashing on the signatures found so far (fuzz/src/lib.rs
    # `ignored`): a crash per execution of the first finding would keep the
    # engine restarting (libFuzzer -fork=1 starts a new job per crash).
    ignore = a.dir / "ignore"
    ignore.write_text("")
    env = dict(env or os.environ)
    token = f"{os.getpid()}-{time.time_ns()}"
    env["SPLITFUZZ_BENCH_TOKEN"] = token
    if ignore_found:
        env["SPLITFUZZ_IGNORE_FILE"] = str(ignore)
    logf = open(a.dir / "log", "w+b")
    found: dict = {}
    lock = threading.Lock()
    t0 = time.time()
    p = start_group(argv, cwd=cwd, env=env, stdout=subprocess.PIPE if engine.lines else logf,
                    stderr=subprocess.STDOUT)
    reader = None
    if engine.lines:
        # The built-in engine: "new finding: LABEL INV FUNC at Ns" (N since its
        # campaign started), plus its start-up (launch to its first line).
        first_line_at = [None]

        def read():
            for raw in p.stdout:
                now = time.time() - t0
                logf.write(raw)
                logf.flush()
                if first_line_at[0] is None:
                    first_line_at[0] = now
                m = FINDING_RE.search(raw.decode(errors="replace"))
                if m:
                    t = first_line_at[0] + float(m.group(3))
                    with lock:
                        found.setdefault(m.group(2), min(t, now))

        reader = threading.Thread(target=read, daemon=True)
        reader.start()

    def scan():
        d = engine.crash_dir(a)
        if engine.lines or not d.is_dir():
            return 0
        files = sorted(f for f in d.iterdir() if f.is_file() and engine.is_crash(f.name))
        for f, sig in triage.signatures(files).items():
            if sig is None:
                continue
            try:
                t = f.stat().st_mtime - t0
            except OSError:
                continue
            with lock:
                if sig not in found or t < found[sig]:
                    found[sig] = max(0.0, t)
        with lock:
            sigs = "".join(f"{k}\n" for k in sorted(found))
        if ignore_found and sigs != ignore.read_text():
            (a.dir / "ignore.tmp").write_text(sigs)
            os.replace(a.dir / "ignore.tmp", ignore)
        return len(files)

    deadline = t0 + a.secs + extra_secs
    while p.poll() is None and time.time() < deadline:
        scan()
        with lock:
            if want and all(s in found for s in want):
                break
        try:
            p.wait(timeout=poll)
        except subprocess.TimeoutExpired:
            pass
    ran = time.time() - t0
    rc = p.poll()
    early = (round(ran, 1), rc) if rc is not None and ran < a.secs - 1 and not (
        want and all(s in found for s in want)) else None
    stop_group(p)
    escaped = stop_tagged(token)  # descendants in other sessions (AFL++'s target)
    time.sleep(0.1 if escaped else 0)
    stopped = not group_alive(p.pid) and not tagged(token)
    if reader:
        reader.join(timeout=5)
    n = scan()  # after exit: a file written just before the end counts too
    logf.seek(0)
    text = logf.read().decode(errors="replace")
    logf.close()
    return Result(found=dict(found), crash_files=n, secs=ran, stopped_group=stopped, log=text, t0=t0, early=early)


# ------------------------------------------------------------------ branches over time


def branches_of(splitfuzz: Path, policy: str, files: list[Path], scratch: Path) -> int | None:
    """Model branches reached by FILES under POLICY (a 1-run campaign seeded with them)."""
    if scratch.exists():
        shutil.rmtree(scratch)
    (scratch / "in").mkdir(parents=True)
    for i, f in enumerate(files):
        shutil.copyfile(f, scratch / "in" / f"i{i:06}")
    r = subprocess.run([str(splitfuzz), "fuzz", "--policy", policy, "--runs", "1", "--quiet", "--corpus",
                        str(scratch / "in"), "--out", str(scratch / "run"), "--crashes", str(scratch / "c"),
                        "--known", str(scratch / "none")], capture_output=True, text=True,
                       preexec_fn=limit_memory)
    try:
        rows = (scratch / "run" / "stats.csv").read_text().splitlines()
        hdr = rows[0].split(",")
        return int(rows[-1].split(",")[hdr.index("branches")])
    except (OSError, ValueError, IndexError):
        return None if r.returncode not in (0, 1) else None


def branches_over_time(engine: Engine, a: Attempt, r: Result, cfg, points: list[int]) -> dict:
    if engine.name == "builtin":
        try:
            rows = (a.dir / "run" / "stats.csv").read_text().splitlines()
            hdr = rows[0].split(",")
            ti, bi = hdr.index("time_s"), hdr.index("branches")
            vals = [(float(r.split(",")[ti]), int(r.split(",")[bi])) for r in rows[1:]]
            # A point after the attempt ended (every signature found) has no value.
            return {pt: max([b for t, b in vals if t <= pt] or [0]) for pt in points if pt <= r.secs + 1}
        except (OSError, ValueError, IndexError):
            return {}
    kept = engine.kept_dir(a)
    if not kept or not kept.is_dir() or not a.policy:
        return {}
    files = [f for f in kept.iterdir() if f.is_file()]
    t0 = r.t0
    out = {}
    for pt in (p for p in points if p <= r.secs + 1):
        sub = [f for f in files if f.stat().st_mtime - t0 <= pt]
        out[pt] = branches_of(cfg.splitfuzz, a.policy, sub, a.dir / "branches")
    return out


# ------------------------------------------------------------------ report


def fmt(v):
    return "-" if v is None else f"{v:.2f}"


def seed_inputs(target: str, mode: str, dst: Path) -> None:
    if dst.exists():
        shutil.rmtree(dst)
    dst.mkdir(parents=True)
    src = ROOT / "corpus" / target
    if mode == "corpus" and src.is_dir():
        for f in src.iterdir():
            if f.is_file():
                shutil.copyfile(f, dst / f.name)
    else:
        (dst / "seed").write_bytes(MINIMAL_SEED)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--engines", default=os.environ.get("ENGINES", ""),
                    help="space/comma separated (default: the installed ones)")
    ap.add_argument("--targets", default=os.environ.get("TARGETS", "lazy_v1 lazy_v3"),
                    help="targets of the time-to-signature part")
    ap.add_argument("--exec-targets", default=os.environ.get("EXEC_TARGETS", "lazy_v3 deposit"))
    ap.add_argument("--seeds", default=os.environ.get("SEEDS", "0-5"), help="e.g. 0-5 or 0,2,4")
    ap.add_argument("--max", type=int, default=int(os.environ.get("TTFF_MAX", "60")))
    ap.add_argument("--exec-secs", type=int, default=int(os.environ.get("EXEC_SECS", "10")))
    ap.add_argument("--seed-mode", default=os.environ.get("SEED_MODE", "minimal"),
                    help="minimal, corpus or both")
    ap.add_argument("--branch-points", default="5,15,30,60")
    ap.add_argument("--skip-execs", action="store_true", default=bool(os.environ.get("SKIP_EXECS")))
    ap.add_argument("--skip-signatures", action="store_true", default=bool(os.environ.get("SKIP_TTFF")))
    ap.add_argument("--no-mutator", action="store_true", help="AFL++ without the custom mutator")
    ap.add_argument("--afl-fast", action="store_true", help="AFL++ with AFL_DISABLE_TRIM=1 AFL_FAST_CAL=1")
    ap.add_argument("--afl-havoc", action="store_true",
                    help="AFL++ runs its own havoc stages beside the custom mutator (no AFL_CUSTOM_MUTATOR_ONLY)")
    ap.add_argument("--afl-env", action="append", default=[], metavar="NAME=VALUE",
                    help="one more environment variable for afl-fuzz, e.g. AFL_CUSTOM_MUTATOR_ONLY=1 (repeatable)")
    ap.add_argument("--hfuzz-arg", action="append", default=[], metavar="ARG",
                    help="one more honggfuzz argument, e.g. --hfuzz-arg=--mutations_per_run=2 (repeatable)")
    ap.add_argument("--no-ignore", action="store_true",
                    help="the targets keep crashing on signatures already found (SPLITFUZZ_IGNORE_FILE unset)")
    ap.add_argument("--no-dict", action="store_true", help="no dictionary for libFuzzer/AFL++/honggfuzz")
    ap.add_argument("--splitfuzz", type=Path,
                    help="the splitfuzz binary (default: target/release/splitfuzz, built first), e.g. an older build to compare")
    ap.add_argument("--no-build", action="store_true", help="use the engines' builds already in --work")
    ap.add_argument("--work", type=Path, help="scratch folder (default: a new temporary folder)")
    ap.add_argument("-o", "--out", type=Path, help="the report (default: WORK/engines.md)")
    ap.add_argument("--json", type=Path, help="also the raw results as JSON")
    args = ap.parse_args(argv)

    work = args.work or Path(tempfile.mkdtemp(prefix="splitfuzz-bench-"))
    work = work.resolve()
    if work == ROOT or ROOT in work.parents and not str(work).startswith(str(ROOT / "target")):
        sys.exit("bench: --work must be outside the repository (or under target/)")
    work.mkdir(parents=True, exist_ok=True)
    cfg = argparse.Namespace(work=work, splitfuzz=(args.splitfuzz or ROOT / "target/release/splitfuzz").resolve(), mutator=not args.no_mutator, afl_fast=args.afl_fast, afl_havoc=args.afl_havoc,
                             afl_env=dict(kv.split("=", 1) for kv in args.afl_env),
                             hfuzz_args=list(args.hfuzz_arg),
                             dicts=not args.no_dict, dict_path=ROOT / "fuzz/dict/bytes.dict")
    seeds = []
    for part in args.seeds.replace(" ", ",").split(","):
        if "-" in part:
            lo, hi = part.split("-")
            seeds += list(range(int(lo), int(hi) + 1))
        elif part:
            seeds.append(int(part))
    modes = ["minimal", "corpus"] if args.seed_mode == "both" else [args.seed_mode]
    points = [int(x) for x in args.branch_points.split(",") if x]

    log(f"work dir {work}")
    if not args.splitfuzz and subprocess.run(["cargo", "build", "-q", "--release"], cwd=ROOT).returncode != 0:
        return 2
    names = [e for e in re.split(r"[ ,]+", args.engines) if e] or list(ENGINES)
    engines = []
    for n in names:
        if n not in ENGINES:
            sys.exit(f"bench: unknown engine '{n}' ({', '.join(ENGINES)})")
        e = ENGINES[n](cfg)
        why = e.available()
        if why:
            log(f"{n}: skipped: {why}")
            continue
        if not args.no_build:
            e.build()
        engines.append(e)

    report = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "load_start": load(),
              "cores": os.cpu_count(), "execs": [], "signatures": []}
    md = [f"# splitfuzz engine measurements\n",
          f"Run {report['date']} by scripts/bench-engines.sh on {os.cpu_count()} cores, load average at start "
          f"{report['load_start']}; one engine process at a time; max {args.max}s per attempt; "
          f"AFL++ custom mutator {'off' if not cfg.mutator else 'beside its havoc' if cfg.afl_havoc else 'only'}"
          f"{' (AFL_DISABLE_TRIM, AFL_FAST_CAL)' if cfg.afl_fast else ''}"
          f"{''.join(f', {k}={v}' for k, v in cfg.afl_env.items())}, "
          f"dictionaries {'on' if cfg.dicts else 'off'}, targets told the signatures found so far "
          f"{'no' if args.no_ignore else 'yes'}.\n"]

    if not args.skip_execs:
        md += ["## exec/s (ratio = target / the same engine's empty target)\n",
               "| engine | empty | " + " | ".join(f"{t} | ratio" for t in args.exec_targets.split()) + " | load |",
               "|---|---:|" + "---:|---:|" * len(args.exec_targets.split()) + "---|"]
        for e in engines:
            row = {}
            for t in (["empty"] if e.name != "builtin" else []) + args.exec_targets.split():
                a = Attempt(e.name, t, 0, args.exec_secs, work / "x" / f"{e.name}-{t}", work / "x" / f"{e.name}-{t}" / "in")
                seed_inputs(t, "corpus", a.inputs)
                r = attempt(e, a, Triage(None, None, a.dir / "t"), [], extra_secs=10)
                row[t] = e.execs_per_sec(a, r.log)
                log(f"exec/s {e.name} {t}: {row[t]}")
            base = row.get("empty")
            cells = [fmt(base) if base else "n/a"]
            for t in args.exec_targets.split():
                v = row.get(t)
                cells += [f"{v:.0f}" if v else "?", f"{v / base:.3f}" if v and base else "n/a"]
            report["execs"].append({"engine": e.name, **row, "load": load()})
            md.append(f"| {e.name} | " + " | ".join(cells) + f" | {load()} |")
        md.append("")

    if not args.skip_signatures:
        md += [f"## time to each known signature (s after launch; - = not within {args.max}s)\n",
               "An attempt stops when every known signature is found; `other`: signatures found that "
               "crashes/<policy>/ does not hold, and an engine that exited before its time; `branches@T`: model branches reached by T s (the "
               "built-in engine's stats.csv; for the others their kept inputs replayed), · = the "
               "attempt had ended.\n"]
        for mode in modes:
            for t in args.targets.split():
                pol = POLICY[t]
                want = known_signatures(pol, ROOT / "crashes")
                md += [f"### {t}, {mode} seed ({len(want)} known signatures)\n",
                       "| engine | seed | " + " | ".join(want) + " | all | other | branches@" + "/".join(map(str, points)) + " | load |",
                       "|---|---:|" + "---:|" * (len(want) + 2) + "---|---|"]
                for e in engines:
                    alls = []
                    for s in seeds:
                        a = Attempt(e.name, t, s, args.max, work / "t" / f"{mode}-{e.name}-{t}-{s}",
                                    work / "t" / f"{mode}-{e.name}-{t}-{s}" / "in")
                        if a.dir.exists():
                            shutil.rmtree(a.dir)
                        seed_inputs(t, mode, a.inputs)
                        ld = load()
                        r = attempt(e, a, Triage(cfg.splitfuzz, pol, a.dir / "triage"), want,
                                    ignore_found=not args.no_ignore)
                        br = branches_over_time(e, a, r, cfg, points)
                        times = [r.found.get(w) for w in want]
                        allt = max(times) if all(x is not None for x in times) else None
                        alls.append(allt)
                        other = sorted(set(r.found) - set(want))
                        if r.early:
                            other.append(f"**engine exited at {r.early[0]} s, status {r.early[1]}**")
                        report["signatures"].append({"engine": e.name, "target": t, "mode": mode, "seed": s,
                                                     "found": r.found, "all": allt, "crash_files": r.crash_files,
                                                     "branches": br, "load": ld, "stopped": r.stopped_group,
                                                     "early_exit": r.early})
                        md.append(f"| {e.name} | {s} | " + " | ".join(fmt(x) for x in times)
                                  + f" | **{fmt(allt)}** | {', '.join(other) or '-'} | "
                                  + "/".join("·" if br.get(p) is None else str(br[p]) for p in points)
                                  + f" | {ld} |")
                        log(f"{mode} {e.name} {t} seed {s}: all {fmt(allt)}; {r.found}")
                    done = [x for x in alls if x is not None]
                    md.append(f"| {e.name} | median | " + " | ".join("" for _ in want)
                              + f" | {fmt(statistics.median(done)) if len(done) == len(alls) else f'{len(done)}/{len(alls)} seeds'} | | | |")
                md.append("")
    md.append(f"Load average at end {load()}.")
    out = args.out or work / "engines.md"
    out.write_text("\n".join(md) + "\n")
    if args.json:
        args.json.write_text(json.dumps(report, indent=1, default=str))
    print("\n".join(md))
    log(f"report: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
