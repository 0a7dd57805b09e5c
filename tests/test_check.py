"""``lpw_mp check``: it accepts every built-in safe profile and the example plugin, rejects
the unsafe control and every mutant of tests/mutants.py with a counterexample, and refuses bad
input. The schedules are forced with hooks (a walker stopped at a point of its window, the
coordinator stopped before a step), so every verdict here is deterministic; the stress runs
are skipped (``--stress-ops 0``) except where a test says otherwise."""

import json
import pathlib
import time

import pytest

from lpw_mp.commands.cli import main
from mutants import MUTANTS

pytestmark = pytest.mark.timeout(120)

HERE = pathlib.Path(__file__).resolve().parent
MUTANTS_FILE = HERE / "mutants.py"
EXAMPLE = HERE.parent / "examples" / "walk_epochs.py"
SAFE = ["ipi", "count", "percpu", "v5.8", "sync-one", "sync-mm"]


def check(capsys, *argv) -> tuple:
    """``(exit status, report)`` of ``check ... --json``."""
    status = main(["check", *argv, "--json"])
    out = capsys.readouterr().out
    return status, json.loads(out)


@pytest.mark.parametrize("name", SAFE)
def test_check_accepts_every_builtin_safe_profile(capsys, name):
    """Every schedule of every path, under sc, tso and weak, and a short stress run under
    each: no walker uses freed memory under any built-in safe profile (exit status 0)."""
    status, report = check(capsys, name, "--stress-ops", "200")
    assert status == 0, report["counterexamples"][:1]
    assert report["safe"] and not report["counterexamples"]
    for path, by_model in report["paths"].items():
        for model in ("sc", "tso", "weak"):
            assert by_model[model]["schedules"] >= 18, (path, model)
            assert by_model[model]["violations"] == 0
    assert set(report["stress"]) == {"sc", "tso", "weak"}


def test_check_catches_the_unsafe_control_on_every_path(capsys):
    """none is caught on every path under every model, and is named the unsafe control."""
    status, report = check(capsys, "none", "--stress-ops", "0")
    assert status == 1 and not report["safe"]
    caught = {(c["path"], c["model"]) for c in report["counterexamples"]}
    assert caught == {(p, m) for p in ("zap-leaf", "free-table", "split", "collapse")
                      for m in ("sc", "tso", "weak")}


@pytest.mark.parametrize("cls", list(MUTANTS), ids=[c.name for c in MUTANTS])
def test_check_rejects_every_mutant_with_a_counterexample(capsys, cls):
    """Each mutant fails (exit 1) under the memory models whose reorderings expose its
    mistake, with a counterexample: the walker's and the coordinator's steps, the walker's use
    of freed memory among them, after the coordinator's destructive step."""
    models = MUTANTS[cls] or ("sc",)
    status, report = check(capsys, f"{MUTANTS_FILE}:{cls.__name__}", "--stress-ops", "0")
    assert status == 1 and not report["safe"]
    assert not report["builtin"]
    caught = {c["model"] for c in report["counterexamples"]}
    assert set(models) <= caught, caught
    ce = report["counterexamples"][0]
    steps = [s["step"] for s in ce["steps"]]
    used = next(i for i, s in enumerate(steps) if s.startswith("uses freed memory"))
    destroyed = next(i for i, s in enumerate(steps) if "(destructive)" in s)
    assert destroyed < used
    walker = ce["violations"][0]["cpu"]
    assert ce["steps"][used]["who"] == f"CPU {walker}"
    assert f"CPU {walker} began a walk" in ce["summary"]


@pytest.mark.parametrize("cls", [c for c, models in MUTANTS.items() if models],
                         ids=[c.name for c, models in MUTANTS.items() if models])
def test_ordering_mutants_pass_under_sc(capsys, cls):
    """A missing barrier is invisible when every access is in program order: the mutants
    that only reordering exposes pass under sc. (So it is the model, not luck, that fails
    them under tso or weak.)"""
    status, report = check(capsys, f"{MUTANTS_FILE}:{cls.__name__}", "--memory-model", "sc",
                           "--stress-ops", "0")
    assert status == 0 and report["safe"]


def test_a_counterexample_shows_the_store_buffering(capsys):
    """percpu without the walker's smp_mb() under tso: the walker's store to its per-CPU
    word is still buffered when it reads the PMD, the coordinator reads the word as 0, sends
    no IPI and frees the THP; only then does the walker's store become visible."""
    status, report = check(capsys, f"{MUTANTS_FILE}:PerCPUNoWalkerBarrier", "--memory-model",
                           "tso", "--path", "zap-leaf", "--stress-ops", "0")
    assert status == 1
    steps = [(s["who"], s["step"]) for s in report["counterexamples"][0]["steps"]]
    text = [f"{who}: {step}" for who, step in steps]

    def at(fragment):
        return next(i for i, line in enumerate(text) if fragment in line)
    buffered = at("CPU 1: WRITE_ONCE(per_cpu(lockless_pgtbl_walk_counter, 1), 1) (buffered)")
    scanned = at("coordinator: READ_ONCE(per_cpu(lockless_pgtbl_walk_counter, 1)) = 0")
    freed = at("coordinator: free the THP of slot 1 (destructive)")
    visible = at("CPU 1:   buffered store per_cpu(lockless_pgtbl_walk_counter, 1) = 1")
    assert buffered < scanned < freed < visible
    assert not any("smp_call_function_many" in line for line in text)


def test_check_is_deterministic(capsys):
    """The same check twice: the same schedules, the same violations, the same first
    counterexample."""
    spec = f"{MUTANTS_FILE}:IPIEveryOther"
    _, first = check(capsys, spec, "--stress-ops", "0")
    _, second = check(capsys, spec, "--stress-ops", "0")
    assert first["paths"] == second["paths"]
    key = [(c["path"], c["model"], c["schedule"], c["summary"])
           for c in first["counterexamples"]]
    assert key == [(c["path"], c["model"], c["schedule"], c["summary"])
                   for c in second["counterexamples"]]


def test_the_example_plugin_passes_and_its_broken_variant_fails(capsys):
    """examples/walk_epochs.py: WalkEpochs is safe everywhere; without the walker's barrier
    the store-buffering counterexample appears under tso (and not under sc)."""
    status, report = check(capsys, f"{EXAMPLE}:WalkEpochs", "--stress-ops", "300")
    assert status == 0 and report["safe"], report["counterexamples"][:1]
    status, report = check(capsys, f"{EXAMPLE}:WalkEpochsNoBarrier", "--stress-ops", "0")
    assert status == 1
    assert {c["model"] for c in report["counterexamples"]} == {"tso", "weak"}


def test_the_terminal_report_names_the_plugin_not_lpw_mp(capsys):
    """A plugin that fails is blamed on itself, with its spec; the table gives a verdict per
    path and model."""
    spec = f"{MUTANTS_FILE}:IPISkipsIRQsOff"
    assert main(["check", spec, "--memory-model", "sc", "--stress-ops", "0"]) == 1
    out = capsys.readouterr().out
    assert f"mutant-ipi-skips-irqs-off ({spec}) is unsafe as written; not a bug in lpw_mp" in out
    assert "This is a bug in lpw_mp" not in out
    assert "UNSAFE (" in out and "Counterexample (zap-leaf, sc, schedule" in out


@pytest.mark.parametrize("argv,message", [
    (["no-such-strategy"], "no-such-strategy"),
    (["ipi", "--memory-model", "arm"], "unknown memory model 'arm'"),
    (["ipi", "--path", "zap"], "unknown path 'zap'"),
    (["ipi", "--stress-ops", "-1"], "--stress-ops -1 is out of range"),
    (["ipi", "--ipi-timeout", "0"], "--ipi-timeout"),
])
def test_bad_input_is_one_line_and_exit_2(capsys, argv, message):
    """A bad strategy, model, path or bound: one line on stderr naming it, exit status 2,
    nothing run."""
    assert main(["check", *argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err


HANGS = '''
import time
from lpw_mp.kernel.api import Strategy


class Hangs(Strategy):
    name = "hangs"
    kernel = "a walker that never gets past its begin, once started"
    walks = 0  # this CPU's own count: each process has its copy of the strategy

    def begin_lockless_pgtbl_walk(self, cpu):
        self.walks += 1
        if self.walks > 1:  # the warm-up walk at start-up passes
            time.sleep(3600)

    def serialize_against_pte_lookup(self, up):
        up.broadcast(self.m.mm_cpumask())
'''


@pytest.mark.timeout(60)
def test_a_walker_that_never_reaches_its_point_ends_check_within_the_bound(tmp_path, capsys):
    """A strategy whose walker blocks inside its window: check does not hang; it gives up
    within its bound with one line naming the CPU and what it was doing, exits 1, and leaves
    no process behind (the autouse fixture checks)."""
    plugin = tmp_path / "hangs.py"
    plugin.write_text(HANGS)
    start = time.monotonic()
    status = main(["check", f"{plugin}:Hangs", "--memory-model", "sc", "--path", "zap-leaf",
                   "--stress-ops", "0", "--ipi-timeout", "1s"])
    assert status == 1 and time.monotonic() - start < 30
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("lpw_mp: error: "), err
    assert "CPU 1" in err[0]
