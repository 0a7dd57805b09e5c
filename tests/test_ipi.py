"""Process-level tests of the IPI protocol and the seed's two strategies, on real processes."""

import os
import signal
import threading
import time

import psutil
import pytest

from helpers import acquire, wait_for_phase, wait_until
from lpw_mp.kernel import pagetable as ptm
from lpw_mp.kernel.coordinator import PHASE_SERIALIZING
from lpw_mp.kernel.hooks import FREEZE_WALK_DUE, FreezeHook, WalkHook
from lpw_mp.kernel.machine import ST_WALKS
from lpw_mp.harness.emulator import Emulator, EmulatorError

pytestmark = pytest.mark.timeout(60)


def run_op(cfg, strategy, hooks=(), slots=None):
    with Emulator(cfg, strategy, hooks) as emu:
        emu.start_coordinator(slots=slots)
        return emu, emu.wait_coordinator()


def test_ipi_serialises_once_per_thp_and_targets_every_cpu(cfg):
    """Under ipi with a sticky cpumask, munmap broadcasts once per huge leaf to every CPU.
    (Only leaves: a PTE table goes to tlb_remove_table's RCU batch under every profile.)"""
    c = cfg(cpus=6, memory=32 << 20, pte_fraction=0.0)
    emu, out = run_op(c, "ipi")
    st = out["stats"]
    assert st["serialisations"] == c.npmds == 16
    assert st["ipis_sent"] == c.npmds * c.cpus
    assert st["skipped"] == 0
    assert len(st["rounds"]) == c.npmds
    assert out["stats"]["walkers"]["ipis_handled"] == c.npmds * c.cpus
    assert emu.table.kind_counts()["none"] == c.npmds


def test_count_with_idle_walkers_skips_every_serialisation(cfg):
    """Under count, when no CPU is walking, running_lockless_pgtbl_walk() reads 0 every time
    and munmap sends no IPI at all."""
    c = cfg(cpus=6, memory=32 << 20)
    emu, out = run_op(c, "count")
    st = out["stats"]
    assert st["serialisations"] == 0
    assert st["skipped"] == c.npmds
    assert st["ipis_sent"] == 0
    assert out["stats"]["walkers"]["ipis_handled"] == 0


def test_munmap_frees_every_pte_page(cfg):
    """After munmap every PTE page is back on the free list with a bumped generation."""
    c = cfg(cpus=2, memory=32 << 20, pte_fraction=0.5)
    with Emulator(c, "ipi") as emu:
        tables = [ptm.pmd_index(p) for p in emu.table.pmds if ptm.pmd_kind(p) == ptm.TABLE]
        assert tables
        emu.start_coordinator()
        emu.wait_coordinator()
        assert emu.table.free_pages() == emu.table.npages
        assert all(emu.table.page_gen[p] == 1 for p in tables)
        assert emu.table.check_consistency() == []


def test_cpu_with_irqs_off_cannot_acknowledge_until_it_enables_them(cfg, ctx):
    """A walker paused inside its IRQ-off window holds the IPI round open: the coordinator
    stays in serialize_against_pte_lookup, the CPU owes its ack, and the page is not freed,
    until the walker ends its window; then the round completes. (A huge leaf: zap_huge_pmd
    serialises under ipi, a PTE table's free never did.)"""
    c = cfg(cpus=3, memory=16 << 20, pte_fraction=0.0)
    hook = WalkHook(ctx, cpu=1, slot=2)
    with Emulator(c, "ipi", hooks=[hook], ctx=ctx) as emu:
        m = emu.machine
        page = ptm.pmd_index(emu.table.pmds[2])
        assert ptm.pmd_kind(emu.table.pmds[2]) == ptm.LEAF
        acquire(hook.paused, what="walker to pause")
        assert m.irq_off[1] == 1
        emu.start_coordinator(slots=[2])
        wait_for_phase(emu, 2, PHASE_SERIALIZING)
        time.sleep(0.3)  # ample time for a broken protocol to ack or free
        assert m.ipi_gen[1] == m.ack_gen[1] + 1, "CPU 1 acknowledged with IRQs off"
        assert m.ipi_gen[0] == m.ack_gen[0] and m.ipi_gen[2] == m.ack_gen[2]
        assert emu.table.slot_gen[page] == 0, "THP freed while the walker held it"
        assert emu.progress[1] == PHASE_SERIALIZING
        hook.resume.release()
        out = emu.wait_coordinator()
        assert out["stats"]["serialisations"] == 1
        assert m.ipi_gen[1] == m.ack_gen[1]
        assert emu.table.slot_gen[page] == 1
        assert emu.checker.total() == 0


def test_an_idle_cpu_blocks_instead_of_spinning(cfg):
    """Idle simulated CPUs sleep in the kernel: 32 of them use almost no CPU time."""
    import psutil
    c = cfg(cpus=32, memory=16 << 20)
    with Emulator(c, "ipi") as emu:
        procs = [psutil.Process(p.pid) for p in emu.cpus]
        before = sum(sum(p.cpu_times()[:2]) for p in procs)
        time.sleep(1.0)
        used = sum(sum(p.cpu_times()[:2]) for p in procs) - before
        assert used < 0.2, f"idle CPUs used {used:.2f} CPU-seconds in one second"
        assert all(p.status() == psutil.STATUS_SLEEPING for p in procs)


def test_a_dead_cpu_ends_the_run_with_an_error_naming_it(cfg):
    """A CPU killed before the broadcast cannot acknowledge: the run ends with an error that
    names the CPU and the strategy, instead of hanging."""
    c = cfg(cpus=4, memory=16 << 20, ipi_timeout=30.0)
    with Emulator(c, "ipi") as emu:
        os.kill(emu.cpus[2].pid, signal.SIGKILL)
        emu.cpus[2].join(5)
        emu.start_coordinator()
        start = time.monotonic()
        with pytest.raises(EmulatorError, match=r"CPU 2 .*killed by SIGKILL.*strategy ipi"):
            emu.wait_coordinator()
        assert time.monotonic() - start < 5.0


def test_an_unresponsive_cpu_times_out_with_its_number(cfg, ctx):
    """A live CPU that never enables IRQs (paused for good) fails the IPI round after
    --ipi-timeout, naming that CPU, its state and what it is doing."""
    c = cfg(cpus=3, memory=16 << 20, ipi_timeout=0.5)
    hook = WalkHook(ctx, cpu=0, slot=1)
    with Emulator(c, "ipi", hooks=[hook], ctx=ctx) as emu:
        acquire(hook.paused, what="walker to pause")
        emu.start_coordinator(slots=[1])
        with pytest.raises(EmulatorError,
                           match=r"CPU 0 did not acknowledge IPI round 1 within 0.5 s under "
                                 r"strategy ipi: CPU 0 \(pid \d+\) is sleeping \(state S\) "
                                 r"inside an IRQ-off window \(walking slot 1\)$"):
            emu.wait_coordinator()


def test_cpus_are_never_forked_from_a_multi_threaded_process(cfg):
    """While another thread runs in the parent, the emulator refuses to fork its CPUs (a
    child forked while that thread holds a lock could hang on it) and says which thread."""
    release = threading.Event()
    thread = threading.Thread(target=release.wait, name="bystander")
    thread.start()
    try:
        with pytest.raises(EmulatorError, match=r"^refusing to fork simulated CPUs from a "
                                                r"multi-threaded process \(other threads: "
                                                r"bystander\)$"):
            with Emulator(cfg(cpus=2), "ipi"):
                pass
    finally:
        release.set()
        thread.join()


def test_process_arguments_cross_the_fork_by_name_only():
    """A CPU's and the coordinator's arguments are frozen records taken by keyword: figures of
    one type cannot trade places by position, and a record cannot be changed after it is
    made."""
    import dataclasses
    from lpw_mp.harness.child import CoordinatorArgs, CPUArgs
    with pytest.raises(TypeError):
        CPUArgs(0, None, None, None, None, 20.0, 20e-6, 1)  # positional: refused
    args = CPUArgs(cpu=0, machine=None, table=None, strategy=None, checker=None,
                   walk_rate=20.0, walk_window=20e-6, seed=1)
    with pytest.raises(dataclasses.FrozenInstanceError):
        args.walk_rate = 5.0
    with pytest.raises(TypeError):
        CoordinatorArgs(None, None, None, None, None, 1.0, None, "munmap", None, 0, 1)


def test_a_cpu_takes_an_ipi_sent_while_it_was_about_to_walk_before_walking(cfg):
    """IRQs are enabled until a walk disables them, so an IPI sent while a CPU was between its
    look for IPIs and its walk (here: stopped there, as the host deschedules a process) is
    taken before the walk, not after it: the round does not wait for a window that began
    after the IPI. (A trace of a 16-CPU run showed a CPU descheduled there walking first.)"""
    c = cfg(cpus=2, memory=16 << 20, pte_fraction=0.0, walk_rate=1000.0, active_fraction=0.5)
    with Emulator(c, "ipi", hooks=[FreezeHook(0, FREEZE_WALK_DUE)]) as emu:
        m, pid = emu.machine, emu.cpus[0].pid
        wait_until(lambda: psutil.Process(pid).status() == psutil.STATUS_STOPPED,
                   what="CPU 0 to stop with a walk due")
        emu.start_coordinator(slots=[2])
        wait_until(lambda: m.ipi_gen[0] == 1 and m.ack_gen[1] == 1, what="CPU 1 to answer")
        os.kill(pid, signal.SIGCONT)
        wait_until(lambda: m.ack_gen[0] == 1, what="CPU 0 to answer")
        assert m.stats[ST_WALKS] == 0, "CPU 0 walked with the IPI pending"
        out = emu.wait_coordinator()
        assert out["stats"]["serialisations"] == 1
