"""``check``: every hazard of every path forced on real processes, schedule by schedule, under
each memory model; then a stress run under each. Used by ``lpw_mp check`` and the tests.

A schedule is one operation on one slot (a path: zap of a huge leaf, free of a PTE table, split,
collapse) with the coordinator stopped before its k-th step (every memory-model primitive, IPI
round, grace period and destructive step is one) while a CPU walks that slot and stops at one
point of its IRQ-off window (before its PMD read, after it, holding the pointer, or after its
end hook with IRQs still off). The coordinator then goes on; the walker is let go once the
coordinator waits for it (an IPI it owes, a grace period it holds up) or has finished, so a
strategy that does not wait reaches its destructive step while the walker is still inside: the
checker sees it. k runs from 0 until the operation has fewer steps, every walker point, each
schedule three times with the walk on CPU 1, 2 and 0 and on slots 1, 2 and 5 in turn (a strategy
that leaves out a CPU or a slot, or serialises every other operation, is caught too). Under
``tso`` and ``weak`` the schedule is the worst legal one: stores stay buffered until something
forces them out, weak loads return an earlier value whenever they may, and a weak walker's use
of what it read is satisfied as late as its barriers allow (``memory_model``).

Every process logs its steps with the host's monotonic clock; a schedule that let a walker use
freed memory becomes a counterexample: the two logs merged in time order, each step with its
time and the two processes with their pids, so that it can be written as a trace.
"""

import multiprocessing
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from multiprocessing.sharedctypes import RawArray

from lpw_mp.harness.emulator import Emulator, EmulatorError
from lpw_mp.kernel import pagetable as ptm
from lpw_mp.kernel.hooks import WALK_POINTS, ScriptedWalker
from lpw_mp.kernel.machine import SLOT_STRIDE, Aborted
from lpw_mp.kernel.memory_model import MODELS, WRITE_ONCE, Setting, fence, note

#: Paths, in the order reports list them: what the slot holds before, and the operation.
PATHS = {"zap-leaf": (ptm.LEAF, "zap_pmd"), "free-table": (ptm.TABLE, "zap_pmd"),
         "split": (ptm.LEAF, "split"), "collapse": (ptm.TABLE, "collapse")}
PATH_TEXT = {"zap-leaf": "munmap of a THP (ZAP_LEAF)",
             "free-table": "munmap of a PTE table (FREE_TABLE)",
             "split": "split (pmdp_invalidate)", "collapse": "collapse (pmdp_collapse_flush)"}
#: The CPU that walks in each repeat of a schedule, and the slot it walks (the PTE it reads
#: there is SUB): each CPU in turn, on slots of both parities, so that a strategy that leaves
#: a CPU or a slot out, or acts on every other operation, meets a walker it fails.
WALKERS = (1, 2, 0)
SLOTS = (1, 2, 5)
SUB = 3
#: How long the walker may take to reach its point while the coordinator is stopped; a
#: walker that waits for the updater (a lock it holds) is let on once the updater goes on.
WALKER_BOUND = 1.0
#: A coordinator in a strategy's own wait (``Updater.wait_event``) whose condition was found
#: false this many times with the walker stopped (nothing else moves: the other CPUs are
#: idle) waits for the walker.
OWN_WAIT_POLLS = 3
#: A coordinator that waits on anything else this long is taken to wait for the walker.
OTHER_WAIT_BOUND = 0.3
#: Steps per operation beyond which check stops (a strategy that loops without end).
MAX_STEPS = 400

# The coordinator's side of the handshake, in ``Script.state``.
S_EVENT, S_PATH, S_POINT, S_REP, S_STEP, S_REACHED, S_NO, S_FINISHED, S_CPU, S_SLOT = range(10)
PAUSED, DONE = 1, 2


class Script:
    """The schedules, run in the coordinator (``Updater``); shared objects are made here,
    before the fork."""

    def __init__(self, ctx, paths, points, walkers=WALKERS):
        self.paths = list(paths)
        self.points = list(points)
        self.walkers = list(walkers)
        self.event = ctx.Semaphore(0)
        self.resume = ctx.Semaphore(0)
        self.state = RawArray("q", 10)
        self.label = RawArray("c", 240)
        self._target = -1
        self._count = 0
        self._up = None

    # -- in the coordinator --------------------------------------------------------------------

    def on_step(self, label: str) -> None:
        """Before every step of the coordinator: stop before the target one."""
        if self._target < 0:
            return
        self._count += 1
        if self._count - 1 == self._target:
            text = label.encode()[:len(self.label) - 1]
            self.label.value = text
            self._post(PAUSED)

    def _post(self, event: int) -> None:
        self.state[S_EVENT] = event
        self.event.release()
        up = self._up
        # A backstop only: the parent bounds every wait of its own (the walker's, this
        # coordinator's) and names the culprit first; a dead parent kills this process.
        bound = 3 * up.timeout + WALKER_BOUND + 5
        up.m.wait_bounded(self.resume.acquire, bound, "check's parent",
                          lambda: Aborted(f"check's parent did not answer within {bound:g} s"))

    def run(self, up) -> dict:
        self._up = up
        state, number = self.state, 0
        for p, path in enumerate(self.paths):
            kind, op = PATHS[path]
            for point in self.points:
                for rep, cpu in enumerate(self.walkers):
                    slot = SLOTS[rep % len(SLOTS)]
                    for k in range(MAX_STEPS):
                        prepare(up, slot, kind)
                        number += 1
                        state[S_PATH], state[S_POINT], state[S_REP] = p, point, rep
                        state[S_CPU], state[S_SLOT] = cpu, slot
                        state[S_STEP], state[S_NO] = k, number
                        note(f"--- schedule {number}")
                        self._count, self._target = 0, k
                        getattr(up, op)(slot)
                        up.tlb_finish_mmu()
                        up.rcu_barrier()
                        self._target = -1
                        fence()
                        note(f"--- schedule {number} ends")
                        reached = self._count > k
                        state[S_REACHED] = int(reached)
                        self._post(DONE)
                        if not reached:
                            break
        state[S_FINISHED] = 1
        state[S_EVENT] = DONE
        self.event.release()
        return {"schedules": number}


def prepare(up, slot: int, kind: int) -> None:
    """Map ``slot`` as ``kind`` again, with nobody walking it: free what it held at once."""
    pt = up.pt
    old = pt.pmd(slot)
    WRITE_ONCE(pt.pmds, slot, 0)
    if ptm.pmd_kind(old) == ptm.TABLE:
        pt.pte_free(ptm.pmd_index(old))
    elif ptm.pmd_kind(old) != ptm.NONE:
        pt.retire_slot(slot)
    if kind == ptm.LEAF:
        pt.set_pmd_leaf(slot)
    else:
        pt.set_pmd_table(slot, pt.pte_alloc_one(slot))
    fence()


# -- the parent's side --------------------------------------------------------------------------

@dataclass
class Schedule:
    """One schedule that let a walker use freed memory, as a counterexample."""
    path: str
    model: str
    cpu: int
    slot: int
    point: int
    step: int
    rep: int
    number: int
    label: str
    violations: list
    #: ``[(who, text)]``: who is ``coordinator`` or ``CPU <n>`` (the walker).
    steps: list = field(default_factory=list)
    #: When each of ``steps`` happened, host monotonic nanoseconds, in the same order.
    stamps: list = field(default_factory=list)
    #: When the coordinator began and ended the schedule (its ``--- schedule`` lines).
    began_ns: int = 0
    ended_ns: int = 0
    #: The strategy's name, and the process of each ``who``: ``(pid, name as ps shows it)``,
    #: read while the machine ran.
    strategy: str = ""
    processes: dict = field(default_factory=dict)

    def describe(self) -> str:
        head = (f"{PATH_TEXT[self.path]} of slot {self.slot} under {self.model}: CPU "
                f"{self.cpu} began a walk of slot {self.slot} when the coordinator was about "
                f"to run step "
                f"{self.step + 1} ({self.label}), and stopped {WALK_POINTS[self.point]}; "
                f"the coordinator went on")
        kinds = ", ".join(sorted({v["kind"] for v in self.violations})) or "a violation"
        return f"{head}. CPU {self.cpu} then used freed memory: {kinds}."


@dataclass
class PathVerdict:
    path: str
    model: str
    schedules: int = 0
    violations: int = 0
    first: Schedule = None


def check_schedules(cfg, strategy, model: str, points=None, paths=None, ctx=None) -> dict:
    """Run every schedule of ``paths`` under ``model``; ``{path: PathVerdict}``."""
    paths = list(paths or PATHS)
    points = list(points or WALK_POINTS)
    log_dir = tempfile.mkdtemp(prefix="lpw_mp-check-")
    try:
        ctx = ctx or multiprocessing.get_context(cfg.start_method)
        hooks = [ScriptedWalker(ctx, cpu=cpu) for cpu in range(cfg.cpus)]
        emu = Emulator(cfg, strategy, hooks=hooks, ctx=ctx,
                       memory=Setting(model, adversarial=True, log_dir=log_dir))
        script = Script(emu.ctx, paths, points, [c for c in WALKERS if c < cfg.cpus])
        verdicts = {path: PathVerdict(path, model) for path in paths}
        failing = []
        with emu:
            emu.start_coordinator(script=script)
            _drive(emu, script, hooks, model, verdicts, failing)
            emu.wait_coordinator()
        for schedule in failing:
            timed = read_timeline(log_dir, schedule.number, schedule.cpu)
            schedule.began_ns, schedule.ended_ns, rows = timed
            schedule.steps = [(who, text) for _, who, text in rows]
            schedule.stamps = [t for t, _, _ in rows]
        return verdicts
    finally:
        shutil.rmtree(log_dir, ignore_errors=True)


def _drive(emu, script, hooks, model, verdicts, failing) -> None:
    """The parent's half of every schedule."""
    m, state, checker = emu.machine, script.state, emu.checker
    bound = emu.cfg.ipi_timeout
    while True:
        _wait(emu, script.event.acquire, bound, "the coordinator to reach its next step")
        if state[S_FINISHED]:
            return
        path = script.paths[state[S_PATH]]
        verdict = verdicts[path]
        if state[S_EVENT] == DONE:  # k beyond this operation's steps: nothing to do
            script.resume.release()
            continue
        verdict.schedules += 1
        before = checker.total()
        point, cpu, slot = state[S_POINT], state[S_CPU], state[S_SLOT]
        hook = hooks[cpu]
        hook.command(slot, SUB, point)
        m.kick(cpu)
        paused = hook.paused.acquire(True, WALKER_BOUND)
        script.resume.release()
        if not paused:
            _wait(emu, hook.paused.acquire, bound, f"CPU {cpu} to reach its point", cpu)
        done = _until_waiting_or_done(emu, script, cpu)
        hook.resume.release()
        _wait(emu, hook.walked.acquire, bound, f"CPU {cpu} to end its walk", cpu)
        if not done:
            _wait(emu, script.event.acquire, bound, "the coordinator to end the schedule", cpu)
        new = checker.total() - before
        if new:
            verdict.violations += new
            if verdict.first is None:
                verdict.first = Schedule(path, model, cpu, slot, point, state[S_STEP],
                                         state[S_REP], state[S_NO],
                                         script.label.value.decode(),
                                         checker.violations()[before:before + new],
                                         strategy=emu.strategy_name,
                                         processes=_processes(emu, cpu))
                failing.append(verdict.first)
        script.resume.release()


def _processes(emu, cpu: int) -> dict:
    """The coordinator's and walker ``cpu``'s ``(pid, name)``, by the ``who`` of a step; read
    now, while they run (a process is closed once the machine stops)."""
    return {"coordinator": emu.comms["coord"], f"CPU {cpu}": emu.comms[f"cpu{cpu}"]}


def _until_waiting_or_done(emu, script, w: int) -> bool:
    """Wait until the coordinator has ended the schedule (True) or waits for the walker
    (False): an IPI the walker owes, a grace period it holds up, a ``wait_event`` whose
    condition was found false ``OWN_WAIT_POLLS`` times, or any other wait that lasts
    ``OTHER_WAIT_BOUND``."""
    m, rcu = emu.machine, emu.strategy.rcu
    qs = w * SLOT_STRIDE
    waited_since, polls = None, m.coord_polls.value
    deadline = time.monotonic() + emu.cfg.ipi_timeout
    while True:
        if script.event.acquire(True, 0.002):
            return True
        waiting = m.coord_waiting.value
        if waiting == 2 and m.coord_polls.value - polls >= OWN_WAIT_POLLS:
            return False
        if waiting == 1:
            if m.ipi_gen[w] != m.ack_gen[w] or rcu.qs_owed[qs] != rcu.qs_taken[qs]:
                return False
            waited_since = waited_since or time.monotonic()
            if time.monotonic() - waited_since > OTHER_WAIT_BOUND:
                return False
        else:
            waited_since = None
        emu.raise_if_cpu_died("during check")
        if time.monotonic() > deadline:
            raise EmulatorError(f"check: the coordinator neither finished nor waited for CPU "
                                f"{w} within {emu.cfg.ipi_timeout:g} s: "
                                f"{emu.describe_coordinator()}")


def _wait(emu, acquire, bound: float, what: str, cpu: int = 1) -> None:
    deadline = time.monotonic() + bound
    while not acquire(True, 0.05):
        emu.raise_if_cpu_died("during check")
        if emu.coord is not None and emu.coord.exitcode is not None:
            emu.wait_coordinator()  # raises with the coordinator's own error
            raise EmulatorError("check: the coordinator ended before the schedules did")
        if time.monotonic() > deadline:
            raise EmulatorError(f"check: timed out after {bound:g} s waiting for {what}: "
                                f"{emu.describe_cpus([cpu])}; {emu.describe_coordinator()}")


def read_steps(log_dir: str, number: int, cpu: int) -> list:
    """``[(who, text)]``: schedule ``number``'s steps, the coordinator's and the walking CPU's
    merged in the order the host's monotonic clock saw them."""
    return [(who, text) for _, who, text in read_timeline(log_dir, number, cpu)[2]]


def read_timeline(log_dir: str, number: int, cpu: int) -> tuple:
    """``(began_ns, ended_ns, [(t_ns, who, text)])``: when the coordinator began and ended
    schedule ``number``, and its steps and the walking CPU's with their host monotonic clock
    readings, merged in time order (``(0, 0, [])`` if the log has no such schedule)."""
    def lines(name):
        try:
            with open(os.path.join(log_dir, name)) as f:
                for line in f:
                    stamp, _, text = line.rstrip("\n").partition(" ")
                    yield int(stamp), text
        except FileNotFoundError:
            return
    coord = list(lines("coord.log"))
    where = {text: i for i, (_, text) in enumerate(coord) if text.startswith("--- schedule ")}
    start = where.get(f"--- schedule {number}")
    if start is None:
        return 0, 0, []
    end = where.get(f"--- schedule {number} ends")
    # The walker may go on after the coordinator's end (it was let go then): its lines run
    # until the next schedule begins.
    following = where.get(f"--- schedule {number + 1}")
    t0 = coord[start][0]
    t1 = coord[following][0] if following is not None else float("inf")
    steps = coord[start + 1:end if end is not None else len(coord)]
    # A log cut short (the coordinator failed mid-schedule) ends at its last step.
    t_end = coord[end][0] if end is not None else (steps[-1][0] if steps else t0)
    merged = [(t, "coordinator", text) for t, text in steps]
    merged += [(t, f"CPU {cpu}", text) for t, text in lines(f"cpu{cpu}.log")
               if t0 <= t < t1]
    merged.sort(key=lambda row: row[0])
    return t0, t_end, merged


# -- stress ------------------------------------------------------------------------------------

#: The stress run under each model: the documented demonstration's workload (README,
#: "Catching the race"), shorter.
STRESS = dict(cpus=6, memory=8 << 20, op="mixed", walk_rate=3000.0, walk_window=100e-6,
              pte_fraction=0.5)


@dataclass
class StressVerdict:
    model: str
    ops: int
    violations: int
    by_kind: dict
    walks_held: int


def stress(cfg, strategy, model: str, ops: int, ctx=None) -> StressVerdict:
    """A mixed run of ``ops`` operations on CPUs walking back to back at random, under
    ``model`` with random drains and stale loads."""
    with Emulator(cfg, strategy, ctx=ctx, memory=Setting(model)) as emu:
        emu.start_coordinator(op="mixed")
        out = emu.wait_coordinator()
        held = out["stats"]["walkers"].get("held", 0)
        time.sleep(0.05)  # a walker's report of its last window lands
        return StressVerdict(model, ops, emu.checker.total(), emu.checker.by_kind(), held)


__all__ = ["MODELS", "PATHS", "check_schedules", "stress"]
