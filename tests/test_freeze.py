"""Frozen, not dead: processes stopped (SIGSTOP, as a debugger or an unscheduled vCPU stops
them) at exact points of the product path, or at whatever instant a test strikes. Every wait is
bounded: the run ends within its bound plus a few seconds, names the culprit, its state and
what it was doing, keeps what finished, and leaves nothing behind."""

import os
import re
import signal
import subprocess
import sys
import time

import psutil
import pytest

from helpers import acquire, wait_until
from lpw_mp.harness import emulator as emulator_mod
from lpw_mp.kernel.hooks import WalkHook
from lpw_mp.harness.emulator import Emulator, EmulatorError
from lpw_mp.kernel.hooks import (FREEZE_ACK_COUNTED, FREEZE_ACK_TAKEN, FREEZE_IDLE,
                                 FREEZE_QS_LOCKED, FREEZE_QS_REPORTED, FREEZE_START, FreezeHook)
from lpw_mp.kernel.machine import DOING_LOCK, LockTimeout, Machine
from lpw_mp.harness.walkers import measure_walkers
from test_faults import (THREE_LEGS, alive, assert_nothing_left, child_named, cli_run, family,
                         finish, only_run_folder, shm_entries)

pytestmark = pytest.mark.timeout(60)

BOUND = 1.0
#: From the bound's expiry to the end: the teardown of stopped processes, the report, exit.
PROMPT = 5.0
PID = r"\(pid \d+\)"


def stopped(pid) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_STOPPED
    except psutil.NoSuchProcess:
        return False


def wait_stopped(pid, what="the process to stop"):
    wait_until(lambda: stopped(pid), 10.0, what)


def fails_within(emu, pattern: str, bound: float = BOUND, start=None):
    """``emu.wait_coordinator()`` raises EmulatorError matching ``pattern`` within the bound
    plus PROMPT, counted from ``start``."""
    start = time.monotonic() if start is None else start
    with pytest.raises(EmulatorError) as info:
        emu.wait_coordinator()
    took = time.monotonic() - start
    assert re.search(pattern, str(info.value)), str(info.value)
    assert took < bound + PROMPT, took
    return str(info.value)


def machine_procs(emu) -> list:
    procs = [psutil.Process(p.pid) for p in emu.cpus]
    if emu.coord is not None:
        procs.append(psutil.Process(emu.coord.pid))
    return procs


# -- the IPI acknowledgement ---------------------------------------------------------------

@pytest.mark.parametrize("cpus", [1, 3])
def test_a_cpu_frozen_counting_its_ack_holds_up_only_itself(cfg, cpus):
    """CPU 0 stops right after it took its part of the acknowledgements owed, before it woke
    the sender if it was the last. The count takes no lock, so the other CPUs acknowledge
    regardless: the round (or, if CPU 0 was not the last, the next one) fails after
    --ipi-timeout naming CPU 0 alone, stopped while acknowledging."""
    c = cfg(cpus=cpus, memory=16 << 20, ipi_timeout=BOUND)
    with Emulator(c, "ipi", hooks=[FreezeHook(0, FREEZE_ACK_TAKEN)]) as emu:
        emu.start_coordinator()
        fails_within(emu, rf"^CPU 0 did not acknowledge IPI round [12] within 1 s under "
                          rf"strategy ipi: CPU 0 {PID} is stopped \(state T\) acknowledging an "
                          rf"IPI \(sent it: [12], acknowledged: [01]\)$")
        procs = machine_procs(emu)
    assert_nothing_left(procs, set())


def test_a_cpu_frozen_going_idle_is_named(cfg):
    """CPU 1 stops in the wake path itself: idle, its doorbell read, about to sleep on it. The
    doorbell rings for nobody, the first round fails after --ipi-timeout naming CPU 1 alone,
    stopped and idle, and nothing is left behind."""
    c = cfg(cpus=3, memory=16 << 20, walk_rate=0.0, ipi_timeout=BOUND)
    with Emulator(c, "ipi", hooks=[FreezeHook(1, FREEZE_IDLE)]) as emu:
        wait_stopped(emu.cpus[1].pid)
        emu.start_coordinator()
        fails_within(emu, rf"^CPU 1 did not acknowledge IPI round 1 within 1 s under strategy "
                          rf"ipi: CPU 1 {PID} is stopped \(state T\) idle$")
        procs = machine_procs(emu)
    assert_nothing_left(procs, set())


@pytest.mark.parametrize("point", [FREEZE_IDLE, FREEZE_ACK_TAKEN])
def test_a_cpu_killed_inside_the_wake_path_fails_the_run_naming_it(cfg, point):
    """CPU 0 is SIGKILLed while stopped inside the wake path (about to sleep on its doorbell,
    or having counted its acknowledgement as the last one, before it woke the sender): the run
    fails promptly naming the dead CPU, not after the IPI bound, and leaves nothing behind."""
    c = cfg(cpus=1, memory=16 << 20, walk_rate=0.0, ipi_timeout=30.0)
    with Emulator(c, "ipi", hooks=[FreezeHook(0, point)]) as emu:
        if point != FREEZE_IDLE:
            emu.start_coordinator()
        victim = emu.cpus[0].pid
        wait_stopped(victim)
        if point == FREEZE_IDLE:
            emu.start_coordinator()
        procs = machine_procs(emu)
        start = time.monotonic()
        os.kill(victim, signal.SIGKILL)
        fails_within(emu, rf"simulated CPU 0 \(pid {victim}\) killed by SIGKILL during the run "
                          rf"under strategy ipi", start=start)
    assert_nothing_left(procs, set())


@pytest.mark.parametrize("cpus", [1, 3])
def test_a_cpu_frozen_after_its_ack_but_before_recording_it_is_named(cfg, cpus):
    """CPU 0 stops after it took its part of the count owed (and woke the sender if it was
    the last) but before it wrote ack_gen. Whether or not it was the last target, the round
    or the next one cannot complete without it, and the run fails naming CPU 0, stopped while
    acknowledging: never a timeout that names nobody, never a hang."""
    c = cfg(cpus=cpus, memory=16 << 20, ipi_timeout=BOUND)
    with Emulator(c, "ipi", hooks=[FreezeHook(0, FREEZE_ACK_COUNTED)]) as emu:
        emu.start_coordinator()
        fails_within(emu, rf"did not acknowledge IPI round [12] within 1 s under strategy ipi: "
                          rf"CPU 0 {PID} is stopped \(state T\) acknowledging an IPI")
        procs = machine_procs(emu)
    assert_nothing_left(procs, set())


def test_a_cpu_frozen_inside_its_irq_off_window_is_named_with_its_slot(cfg, ctx):
    """CPU 1 is stopped by SIGSTOP inside its IRQ-off window: the IPI round fails after
    --ipi-timeout naming CPU 1 as stopped inside an IRQ-off window on the slot it walks."""
    c = cfg(cpus=3, memory=16 << 20, pte_fraction=0.0, ipi_timeout=BOUND)
    hook = WalkHook(ctx, cpu=1, slot=2)
    with Emulator(c, "ipi", hooks=[hook], ctx=ctx) as emu:
        acquire(hook.paused, what="walker to pause")
        os.kill(emu.cpus[1].pid, signal.SIGSTOP)
        wait_stopped(emu.cpus[1].pid)
        emu.start_coordinator(slots=[2])
        fails_within(emu, rf"^CPU 1 did not acknowledge IPI round 1 within 1 s under strategy "
                          rf"ipi: CPU 1 {PID} is stopped \(state T\) inside an IRQ-off window "
                          rf"\(walking slot 2\)$")
        procs = machine_procs(emu)
    assert_nothing_left(procs, set())


# -- rcu's quiescent states ----------------------------------------------------------------

def rcu_munmap_with_frozen_reporter(cfg, ctx, point, memory=16 << 20):
    """rcu, 2 CPUs, munmap of PTE tables: CPU 1 is paused in a walk when the first grace
    period (for the first call_rcu batch) starts, so it must report for itself; released, it
    stops at ``point``."""
    c = cfg(cpus=2, memory=memory, pte_fraction=1.0, op="munmap", strategies=["v5.8"],
            ipi_timeout=BOUND)
    walk = WalkHook(ctx, cpu=1, slot=5)
    emu = Emulator(c, "v5.8", hooks=[walk, FreezeHook(1, point)], ctx=ctx)
    return emu, walk


def test_a_cpu_frozen_holding_rcus_lock_is_named(cfg, ctx):
    """CPU 1 stops while it holds rcu's quiescent-state lock, in its own report: the grace
    period cannot end, and the wait for the deferred frees at the end of munmap fails after
    --ipi-timeout naming CPU 1 as stopped in rcu's quiescent-state lock, instead of blocking
    on the lock for ever."""
    emu, walk = rcu_munmap_with_frozen_reporter(cfg, ctx, FREEZE_QS_LOCKED)
    with emu:
        acquire(walk.paused, what="walker to pause")
        emu.start_coordinator(slots=[0, 1])
        rcu = emu.strategy.rcu
        wait_until(lambda: rcu.gp_seq.value == 1, what="grace period 1 to start")
        walk.resume.release()
        wait_stopped(emu.cpus[1].pid, "CPU 1 to stop in its report")
        fails_within(emu, rf"^CPU 1 did not pass a quiescent state for grace period 1 within "
                          rf"1 s under strategy v5.8: CPU 1 {PID} is stopped \(state T\) inside "
                          rf"an IRQ-off window \(walking slot 5\), in rcu's quiescent-state "
                          rf"lock$")
        procs = machine_procs(emu)
    assert_nothing_left(procs, set())


def test_a_grace_period_timeout_names_the_last_reporter(cfg, ctx):
    """CPU 1 reports the quiescent state that ends grace period 1 and stops before it marks
    the report posted. Grace period 1 ends; grace period 2 (for the next call_rcu batch of a
    munmap of 1024 tables, 509 a batch) cannot, and its timeout names CPU 1, not an empty
    list of CPUs."""
    emu, walk = rcu_munmap_with_frozen_reporter(cfg, ctx, FREEZE_QS_REPORTED, memory=2 << 30)
    with emu:
        acquire(walk.paused, what="walker to pause")
        emu.start_coordinator()
        rcu = emu.strategy.rcu
        wait_until(lambda: rcu.gp_seq.value == 1, what="grace period 1 to start")
        walk.resume.release()
        fails_within(emu, rf"^CPU 1 did not pass a quiescent state for grace period 2 within "
                          rf"1 s under strategy v5.8: CPU 1 {PID} is stopped \(state T\) inside "
                          rf"an IRQ-off window \(walking slot 5\)$")
        procs = machine_procs(emu)
    assert_nothing_left(procs, set())


def test_the_coordinator_never_blocks_on_a_lock_held_by_a_frozen_cpu(ctx):
    """A lock shared with the CPUs, held by a CPU process that then stops: the coordinator's
    bounded acquire gives up after its bound, within a poll, and names that CPU (the one
    marked as in the lock)."""
    m = Machine(ctx, 2)
    lock = ctx.Lock()

    def holder():
        m.doing[1] = DOING_LOCK
        lock.acquire()
        os.kill(os.getpid(), signal.SIGSTOP)

    proc = ctx.Process(target=holder)
    proc.start()
    try:
        wait_stopped(proc.pid, "the lock holder to stop")
        start = time.monotonic()
        with pytest.raises(LockTimeout, match=r"^CPU 1 did not release rcu's lock within 0.3 s$"):
            m.acquire_bounded(lock, 0.3, "rcu's lock")
        assert 0.3 <= time.monotonic() - start < 0.3 + 0.5
    finally:
        proc.kill()
        proc.join(5)


# -- the coordinator, CPU start and the walker phase ---------------------------------------

def test_a_frozen_coordinator_is_caught_by_the_parents_watchdog(cfg):
    """The coordinator is stopped mid-operation: nothing it runs can notice, so the parent's
    watchdog does. The run fails once the coordinator's heartbeat has been still for
    --ipi-timeout, naming it, its state and the slot it was serialising."""
    c = cfg(cpus=2, memory=64 << 30, pte_fraction=0.0, ipi_timeout=BOUND)
    with Emulator(c, "ipi") as emu:
        emu.start_coordinator()
        wait_until(lambda: emu.progress[2] > 10, what="the coordinator to get going")
        os.kill(emu.coord.pid, signal.SIGSTOP)
        start = time.monotonic()
        fails_within(emu, rf"^the coordinator made no progress for 1 s under strategy ipi: the "
                          rf"coordinator {PID} is stopped \(state T\), (serialising|at) slot "
                          rf"[\d,]+ \(operation [\d,]+ of 32,768\)$", start=start)
        procs = machine_procs(emu)
    assert_nothing_left(procs, set())


def test_a_cpu_frozen_while_starting_is_named(cfg, monkeypatch):
    """CPU 1 stops before it reports itself started: the start-up wait gives up after its
    bound and names CPU 1 as stopped while starting."""
    monkeypatch.setattr(emulator_mod, "READY_BASE", 1.0)
    monkeypatch.setattr(emulator_mod, "READY_PER_CPU", 0.0)
    c = cfg(cpus=3, memory=16 << 20)
    start = time.monotonic()
    with pytest.raises(EmulatorError, match=rf"^simulated CPUs did not start within 1 s under "
                                            rf"strategy ipi: CPU 1 {PID} is stopped \(state T\) "
                                            rf"starting$"):
        with Emulator(c, "ipi", hooks=[FreezeHook(1, FREEZE_START)]):
            pass
    assert time.monotonic() - start < 1.0 + PROMPT
    assert psutil.Process().children() == []


def test_a_cpu_frozen_during_the_walker_phase_is_named(cfg):
    """A CPU stopped before the walker phase never leaves it: the phase's end is bounded by
    --ipi-timeout plus a scheduler slice per CPU (1.03 s for 3) and names that CPU, stopped."""
    c = cfg(cpus=3, memory=16 << 20, ipi_timeout=BOUND)
    with Emulator(c, "ipi") as emu:
        os.kill(emu.cpus[2].pid, signal.SIGSTOP)
        wait_stopped(emu.cpus[2].pid)
        start = time.monotonic()
        with pytest.raises(EmulatorError, match=rf"did not leave the walker phase within 1.03 s "
                                                rf"under strategy ipi: CPU 2 {PID} is stopped "
                                                rf"\(state T\)"):
            measure_walkers(emu, 0.1)
        assert time.monotonic() - start < 0.1 + 1.03 + PROMPT
        procs = machine_procs(emu)
    assert_nothing_left(procs, set())


# -- the command line, a process stopped at whatever instant -------------------------------

@pytest.mark.parametrize("victim", ["ipi:cpu2", "ipi:coord"])
def test_a_stopped_process_fails_the_run_and_keeps_the_legs_that_finished(tmp_path, victim):
    """SIGSTOP to a CPU or to the coordinator at whatever instant the second strategy has
    reached: the run ends within --ipi-timeout plus seconds, exit status 1, the error names the
    stopped process, result.json keeps the first leg and marks the third not run, and no
    process of the run is left (stopped ones included)."""
    shm = shm_entries()
    with cli_run(tmp_path, *THREE_LEGS, "--ipi-timeout", "1s") as cli:
        child_named(cli, "ipi:coord")
        procs, target = family(cli), child_named(cli, victim)
        target.send_signal(signal.SIGSTOP)
        out, err, took = finish(cli, time.monotonic())
    assert cli.returncode == 1, err
    assert took < BOUND + PROMPT
    assert "Traceback" not in err
    who = "CPU 2" if victim == "ipi:cpu2" else "the coordinator"
    assert re.search(rf"error: .*under strategy ipi.*{who} \(pid {target.pid}\) is stopped "
                     rf"\(state T\)", out), out
    result = only_run_folder(tmp_path)
    assert result["status"] == "failed"
    assert [leg["status"] for leg in result["legs"]] == ["ok", "failed", "not run"]
    assert result["legs"][0]["skipped"] == 65536
    assert not alive(target)
    assert_nothing_left(procs, shm)



#: A machine whose coordinator waits in an IPI round that CPU 1, paused in its IRQ-off window,
#: holds open; the walker is let go when a line arrives on stdin.
ROUND_HELD_OPEN = """
import multiprocessing, sys, time
sys.path.insert(0, "tests")
from conftest import small_config
from helpers import acquire, wait_for_phase, wait_until
from lpw_mp.harness.emulator import Emulator, EmulatorError
from lpw_mp.kernel.coordinator import PHASE_SERIALIZING
from lpw_mp.kernel.hooks import WalkHook

ctx = multiprocessing.get_context("fork")
hook = WalkHook(ctx, cpu=1, slot=2)
c = small_config(cpus=3, memory=16 << 20, pte_fraction=0.0, ipi_timeout=2.0)
with Emulator(c, "ipi", hooks=[hook], ctx=ctx) as emu:
    acquire(hook.paused)
    emu.start_coordinator(slots=[2])
    wait_for_phase(emu, 2, PHASE_SERIALIZING)
    m = emu.machine
    wait_until(lambda: m.ipi_gen[1] == m.ack_gen[1] + 1, what="the IPI to CPU 1")
    time.sleep(0.5)  # the coordinator is past its first poll, inside its bounded wait
    print("waiting", flush=True)
    sys.stdin.readline()
    hook.resume.release()
    try:
        emu.wait_coordinator()
        print("ok", flush=True)
    except EmulatorError as exc:
        print(exc, flush=True)
"""


def test_a_whole_job_stopped_longer_than_the_bound_is_not_a_timeout():
    """The whole job is stopped (Ctrl-Z, SIGSTOP to its process group) for longer than
    --ipi-timeout while the coordinator waits in an IPI round, then continued: the stop does
    not count against the bound. The round's holder lets go soon after the job is continued,
    well within the bound, and the round completes."""
    proc = subprocess.Popen([sys.executable, "-c", ROUND_HELD_OPEN], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        assert proc.stdout.readline() == "waiting\n"
        os.killpg(proc.pid, signal.SIGSTOP)
        time.sleep(3.0)  # longer than the 2 s bound
        os.killpg(proc.pid, signal.SIGCONT)
        time.sleep(0.3)
        out, err = proc.communicate("release\n", timeout=30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
    assert out == "ok\n", out + err


def test_a_whole_job_stopped_and_continued_completes(tmp_path):
    """The whole job, the parent and every child, is stopped (as Ctrl-Z or a SIGSTOP to its
    process group stops it) for longer than --ipi-timeout while an IPI round may be under way,
    then continued: no deadline counts the time everybody was stopped, and the run completes
    with exit status 0."""
    with cli_run(tmp_path, *THREE_LEGS, "--ipi-timeout", "1s") as cli:
        child_named(cli, "ipi:coord")
        os.killpg(cli.pid, signal.SIGSTOP)
        time.sleep(2.5 * BOUND)
        os.killpg(cli.pid, signal.SIGCONT)
        out, err, _ = finish(cli, time.monotonic())
    assert cli.returncode == 0, out + err
    result = only_run_folder(tmp_path)
    assert result["status"] == "complete"
    assert [leg["status"] for leg in result["legs"]] == ["ok", "ok", "ok"]
