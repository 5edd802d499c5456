"""Tests of scripts/bench_engines.py with fake engines (tiny shell scripts):
each of the former script's three defects has a test that would fail with it.

    python3 -m unittest discover -s scripts/tests -v
"""

import argparse
import os
import sys
import tempfile
import time
import unittest
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import bench_engines as b  # noqa: E402


def running(pid: int) -> bool:
    """The process exists and is not a zombie (an orphan's zombie waits for init)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def script(dir: Path, name: str, body: str) -> Path:
    p = dir / name
    p.write_text("#!/bin/sh\n" + body)
    p.chmod(0o755)
    return p


class FakeEngines(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.d = Path(self.tmp.name)
        self.cfg = argparse.Namespace(work=self.d, splitfuzz=None, mutator=False, afl_fast=False, afl_havoc=False,
                                      afl_env={}, dicts=False, dict_path=None)

    def tearDown(self):
        self.tmp.cleanup()

    def attempt(self, engine, secs, want, poll=0.1, extra_secs=3):
        a = b.Attempt(engine.name, "lazy_v3", 0, secs, self.d / "a", self.d / "a" / "in")
        return b.attempt(engine, a, b.Triage(None, None, self.d / "t"), want, poll=poll, extra_secs=extra_secs)

    def test_finding_at_a_known_time_is_measured_at_that_time(self):
        # Two signatures, at 1.0 s and 2.0 s; the fake then runs on until its budget.
        fake = script(self.d, "fake", 'sleep 1; echo "sig A" > "$1/crashes/c1"\n'
                                      'sleep 1; echo "sig B" > "$1/crashes/c2"\nsleep "$2"\n')
        r = self.attempt(b.Fake(self.cfg, [str(fake)]), 10, ["sig A", "sig B"])
        self.assertAlmostEqual(r.found["sig A"], 1.0, delta=0.4)
        self.assertAlmostEqual(r.found["sig B"], 2.0, delta=0.4)
        # It stops when every wanted signature is found, not at the budget.
        self.assertLess(r.secs, 4.0)

    def test_finding_lines_of_the_builtin_engine_are_read(self):
        # A fake `splitfuzz` that prints its finding lines only without --quiet,
        # as the real one does; the Builtin engine's own command line is used.
        fake = script(self.d, "splitfuzz",
                      'for a in "$@"; do [ "$a" = --quiet ] && { sleep 3; exit 1; }; done\n'
                      'echo "splitfuzz fuzz: 1 policy in turn"\nsleep 1\n'
                      'echo "new finding: lazy-v3 no-livelock change_pmd_range at 1.00s (exec 5): x (new); y"\n'
                      'sleep 1\n'
                      'echo "new finding: lazy-v3 no-silent-skip zap_pmd_range at 2.00s (exec 9): x (new); y"\n'
                      'sleep 5\n')
        cfg = argparse.Namespace(**{**vars(self.cfg), "splitfuzz": fake})
        e = b.Builtin(cfg)
        a = b.Attempt("builtin", "lazy_v3", 0, 10, self.d / "a", self.d / "a" / "in")
        self.assertNotIn("--quiet", e.launch(a)[0])
        r = b.attempt(e, a, b.Triage(None, None, self.d / "t"),
                      ["no-livelock change_pmd_range", "no-silent-skip zap_pmd_range"], poll=0.1)
        self.assertAlmostEqual(r.found["no-livelock change_pmd_range"], 1.0, delta=0.4)
        self.assertAlmostEqual(r.found["no-silent-skip zap_pmd_range"], 2.0, delta=0.4)

    def test_a_child_of_the_engine_is_stopped_too(self):
        # Like `cargo afl fuzz` starting afl-fuzz: the wrapper forks a child that
        # would run on (and write a late finding) after the wrapper is gone.
        fake = script(self.d, "fake",
                      '( trap "" TERM; sleep 9; echo "sig late" > "$1/crashes/late" ) &\n'
                      'echo $! > "$1/child.pid"\nwait\n')
        t0 = time.time()
        # Stopped at 1 + 1 s (TERM, which the child ignores), killed 3 s later.
        r = self.attempt(b.Fake(self.cfg, [str(fake)]), 1, ["sig never"], extra_secs=1)
        self.assertLess(time.time() - t0, 7.0)
        pid = int((self.d / "a" / "child.pid").read_text())
        self.assertTrue(r.stopped_group)
        with self.assertRaises(ProcessLookupError):
            os.kill(pid, 0)
        time.sleep(max(0.0, 10.0 - (time.time() - t0)))
        self.assertFalse((self.d / "a" / "crashes" / "late").exists())

    def test_a_descendant_in_another_session_is_stopped_too(self):
        # AFL++ starts its target with setsid(): outside the engine's process group.
        fake = script(self.d, "fake",
                      'setsid sh -c \'echo $$ > "$0/escaped.pid"; trap "" TERM; sleep 30\' "$1" &\n'
                      'sleep 30\n')
        r = self.attempt(b.Fake(self.cfg, [str(fake)]), 1, ["sig never"], extra_secs=0.5)
        pid = int((self.d / "a" / "escaped.pid").read_text())
        self.assertTrue(r.stopped_group)
        time.sleep(0.2)
        self.assertFalse(running(pid))

    def test_a_finding_written_just_before_exit_is_seen(self):
        # The poll interval (30 s) is far longer than the run: only the look
        # after exit can see the file, and its time is when it was written.
        fake = script(self.d, "fake", 'sleep 0.5; echo "sig A" > "$1/crashes/c1"; exit 0\n')
        r = self.attempt(b.Fake(self.cfg, [str(fake)]), 10, ["sig A", "sig B"], poll=30)
        self.assertIn("sig A", r.found)
        self.assertAlmostEqual(r.found["sig A"], 0.5, delta=0.4)
        self.assertEqual(r.crash_files, 1)

    def test_the_engine_is_told_the_signatures_found_so_far(self):
        # Like a target that finds B only once it stops crashing on A: the
        # fake writes B after SPLITFUZZ_IGNORE_FILE lists A.
        fake = script(self.d, "fake",
                      'echo "sig A" > "$1/crashes/c1"\n'
                      'for i in $(seq 100); do grep -qx "sig A" "$SPLITFUZZ_IGNORE_FILE" && '
                      '{ echo "sig B" > "$1/crashes/c2"; break; }; sleep 0.1; done\nsleep "$2"\n')
        r = self.attempt(b.Fake(self.cfg, [str(fake)]), 8, ["sig A", "sig B"])
        self.assertIn("sig B", r.found)
        self.assertLess(r.secs, 5.0)

    def test_an_engine_that_dies_early_is_reported(self):
        # afl-fuzz aborted 10-45 s into its minute (a heap corruption) and the
        # attempt read as "not found in 60 s"; now the exit is in the result.
        fake = script(self.d, "fake", 'sleep 0.5; echo "sig A" > "$1/crashes/c1"; sleep 0.5; kill -ABRT $$\n')
        r = self.attempt(b.Fake(self.cfg, [str(fake)]), 10, ["sig A", "sig B"])
        self.assertIsNotNone(r.early)
        self.assertAlmostEqual(r.early[0], 1.0, delta=0.5)
        self.assertEqual(r.early[1], -6)
        # One that runs to its budget, or is stopped when all is found, did not.
        fake = script(self.d, "fake2", 'echo "sig A" > "$1/crashes/c1"; sleep "$2"\n')
        self.assertIsNone(self.attempt(b.Fake(self.cfg, [str(fake)]), 10, ["sig A"]).early)
        fake = script(self.d, "fake3", 'sleep "$2"; exit 0\n')
        self.assertIsNone(self.attempt(b.Fake(self.cfg, [str(fake)]), 1, ["sig A"]).early)

    def test_afl_environment_is_the_engines(self):
        # scripts/bench_engines.py and src/engines/afl.rs give afl-fuzz the
        # same environment: every ("AFL_...", "...") pair of afl.rs's ENV and
        # MUTATOR_ENV, and no variable AFL++ does not know (it sleeps 2 s per
        # check after warning about one).
        import re
        rs = (b.ROOT / "src/engines/afl.rs").read_text()
        def pairs(const):
            body = re.search(rf"pub const {const}: \[\(&str, &str\); \d+\] = \[(.*?)\];", rs, re.S).group(1)
            return dict(re.findall(r'\("(AFL_[A-Z_]+)", "([^"]*)"\)', body))
        self.assertEqual(pairs("ENV"), b.AFL_ENV)
        self.assertEqual(pairs("MUTATOR_ENV"), b.AFL_MUTATOR_ENV)
        self.assertIn("AFL_FRAMESHIFT_DISABLE", b.AFL_ENV)
        self.assertNotIn("AFL_SUPPRESS_ERROR", b.AFL_ENV)
        (self.d / "build/afl/mutator/release").mkdir(parents=True)
        (self.d / "build/afl/mutator/release/libsplitfuzz_afl_mutator.so").write_text("")
        a = b.Attempt("afl", "lazy_v3", 0, 5, self.d / "a", self.d / "a" / "in")
        for havoc, only in ((False, True), (True, False)):
            cfg = argparse.Namespace(**{**vars(self.cfg), "mutator": True, "afl_havoc": havoc, "afl_env": {}})
            env = b.Afl(cfg).launch(a)[2]
            for k, v in b.AFL_ENV.items():
                self.assertEqual(env.get(k), v)
            self.assertTrue(env["AFL_CUSTOM_MUTATOR_LIBRARY"].endswith("libsplitfuzz_afl_mutator.so"))
            self.assertEqual("AFL_CUSTOM_MUTATOR_ONLY" in env, only)

    def test_honggfuzz_input_limit_is_the_engines(self):
        # scripts/bench_engines.py and src/engines/honggfuzz.rs give honggfuzz
        # the same -F, and the bench passes it.
        import re
        rs = (b.ROOT / "src/engines/honggfuzz.rs").read_text()
        self.assertEqual(re.search(r'pub const MAX_INPUT: &str = "(\d+)";', rs).group(1), b.HFUZZ_MAX_INPUT)
        a = b.Attempt("honggfuzz", "lazy_v3", 0, 5, self.d / "a", self.d / "a" / "in")
        cfg = argparse.Namespace(**{**vars(self.cfg), "dicts": False, "hfuzz_args": []})
        argv = b.Honggfuzz(cfg).launch(a)[0]
        self.assertEqual(argv[argv.index("-F") + 1], b.HFUZZ_MAX_INPUT)

    def test_nothing_found_is_nothing(self):
        fake = script(self.d, "fake", 'echo "not a crash" > "$1/log2"; sleep 1\n')
        r = self.attempt(b.Fake(self.cfg, [str(fake)]), 1, ["sig A"])
        self.assertEqual(r.found, {})

    def test_known_signatures_come_from_the_expect_lines(self):
        c = self.d / "crashes" / "lazy-v3"
        c.mkdir(parents=True)
        (c / "a.txt").write_text("mmap 0 2M\nexpect violation no-livelock wp_huge_pmd # x\n")
        (c / "b.txt").write_text("mmap 0 2M\n")
        self.assertEqual(b.known_signatures("lazy-v3", self.d / "crashes"), ["no-livelock wp_huge_pmd"])


if __name__ == "__main__":
    unittest.main()
