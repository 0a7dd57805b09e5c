"""The wake path: futex doorbells in one shared array (O(N) memory), lock-free acknowledgement
counting, and the start barrier that keeps CPUs from walking until all are up."""

import multiprocessing
import os
import time

import psutil
import pytest

from helpers import wait_until
from lpw_mp.harness.emulator import Emulator
from lpw_mp.kernel.futex import CPUS_PER_WORD, Doorbells
from lpw_mp.kernel.machine import Machine

pytestmark = pytest.mark.timeout(60)


def sleeper(bells, cpu, woke):
    """A child that sleeps on CPU ``cpu``'s doorbell (bounded) and says whether it was rung."""
    read, wait = bells.waiter(cpu)
    seq = read()
    deadline = time.monotonic() + 20
    while read() == seq and time.monotonic() < deadline:
        wait(seq, deadline)
    woke[cpu] = read() != seq
    os._exit(0)


def test_a_doorbell_wakes_exactly_the_cpus_rung_and_none_of_their_neighbours():
    """CPUs 3 and 40 (two different words) are rung out of four sleepers: those two wake at
    once; 4, which shares 3's word, and 41, which shares 40's, sleep on until rung in turn
    (the bitset keeps a word's 32 CPUs apart)."""
    ctx = multiprocessing.get_context("fork")
    bells = Doorbells(64)
    woke = multiprocessing.sharedctypes.RawArray("b", 64)
    cpus = (3, 4, 40, 41)
    procs = {cpu: ctx.Process(target=sleeper, args=(bells, cpu, woke)) for cpu in cpus}
    for proc in procs.values():
        proc.start()
    try:
        # All four asleep in the kernel (futex_wait) before the ring.
        wait_until(lambda: all(psutil.Process(p.pid).status() == psutil.STATUS_SLEEPING
                               for p in procs.values()), what="four sleepers")
        time.sleep(0.2)
        bells.ring([3, 40])
        for cpu in (3, 40):
            procs[cpu].join(5)
            assert procs[cpu].exitcode == 0
        time.sleep(0.3)
        assert procs[4].is_alive() and procs[41].is_alive()
        bells.ring([4, 41])
        for cpu in (4, 41):
            procs[cpu].join(5)
            assert procs[cpu].exitcode == 0
    finally:
        for proc in procs.values():
            if proc.is_alive():
                proc.kill()
            proc.join()
    assert [woke[cpu] for cpu in cpus] == [1, 1, 1, 1]


def test_a_ring_between_the_look_and_the_sleep_is_not_lost():
    """The futex protocol: a waiter that read its word, then was rung before it slept, does not
    sleep (the word moved on), so a wake-up in that gap costs nothing and hangs nothing."""
    bells = Doorbells(CPUS_PER_WORD + 1)
    read, wait = bells.waiter(CPUS_PER_WORD)
    seq = read()
    bells.ring([CPUS_PER_WORD])
    start = time.monotonic()
    wait(seq, time.monotonic() + 5)
    assert time.monotonic() - start < 1
    assert read() != seq


def test_the_wake_path_maps_no_more_in_a_cpu_at_64_cpus_than_at_8(cfg):
    """Memory per CPU is flat in N: a CPU process of a 64-CPU machine has no more mappings
    than one of an 8-CPU machine (with a semaphore per CPU it had 56 more: one per CPU)."""
    def mappings(cpus):
        with Emulator(cfg(cpus=cpus, memory=16 << 20), "ipi") as emu:
            return len(psutil.Process(emu.cpus[0].pid).memory_maps(grouped=False))
    assert mappings(64) <= mappings(8)


def test_no_cpu_walks_before_every_cpu_is_up(cfg, monkeypatch):
    """The start barrier: CPUs with walks due keep still until the parent has them all up
    (walkers forked first would otherwise compete with the parent's later forks), then walk.
    Here the parent waits half a second before it lifts the barrier, at 2,000 walks per second
    per CPU: no walk is counted until it does."""
    seen = []
    lift = Machine.start

    def late_start(machine):
        time.sleep(0.5)
        seen.append(machine.walker_counters()["walks"])
        lift(machine)
    monkeypatch.setattr(Machine, "start", late_start)
    with Emulator(cfg(cpus=4, walk_rate=2000.0), "ipi") as emu:
        assert seen == [0]
        wait_until(lambda: emu.machine.walker_counters()["walks"] > 0, what="a walk")


def test_cpus_waiting_at_the_start_barrier_exit_when_the_run_is_stopped(cfg, monkeypatch):
    """A run stopped before the barrier is lifted (a later fork failed, say) ends every CPU
    already started: they see the stop flag, so nothing is left waiting for the barrier."""
    monkeypatch.setattr(Machine, "start", lambda machine: None)
    emu = Emulator(cfg(cpus=3), "ipi")
    emu.start_cpus()
    procs = [psutil.Process(p.pid) for p in emu.cpus]
    start = time.monotonic()
    emu.shutdown()
    # Asked, not killed: SIGTERM would come only after STOP_GRACE (2 s).
    assert time.monotonic() - start < 1.5
    assert not any(p.is_running() for p in procs)
