"""What came after the seed: percpu's targeted IPIs, v5.8's grace periods, and the cpumask
modes, each shown on real CPU processes with walkers paused at known points."""

import time

import pytest

from helpers import acquire, wait_for_phase, wait_until
from lpw_mp.kernel import pagetable as ptm
from lpw_mp.kernel.coordinator import PHASE_SERIALIZING, P_DONE
from lpw_mp.kernel.hooks import WalkHook
from lpw_mp.harness.emulator import Emulator

pytestmark = pytest.mark.timeout(60)


def test_percpu_ipis_only_the_cpus_inside_a_walk(cfg, ctx):
    """With walkers paused inside their windows on CPUs 1 and 4 of 6, percpu sends the IPI to
    those two CPUs alone, waits for both, and leaves every other CPU undisturbed."""
    c = cfg(cpus=6, memory=16 << 20, pte_fraction=0.0)  # zap_huge_pmd of a leaf serialises
    hooks = [WalkHook(ctx, cpu=1, slot=0), WalkHook(ctx, cpu=4, slot=5)]
    with Emulator(c, "percpu", hooks=hooks, ctx=ctx) as emu:
        for hook in hooks:
            acquire(hook.paused, what=f"walker on CPU {hook.cpu}")
        m = emu.machine
        emu.start_coordinator(slots=[2])
        wait_for_phase(emu, 2, PHASE_SERIALIZING)
        # Blocked in its IPI round (not merely slow to reach it): then the targets are known.
        wait_until(lambda: m.coord_waiting.value == 1, what="the coordinator to wait")
        assert [m.ipi_gen[cpu] for cpu in range(6)] == [0, 1, 0, 0, 1, 0]
        assert emu.progress[1] == PHASE_SERIALIZING
        hooks[0].resume.release()
        wait_until(lambda: m.ack_gen[1] == 1, what="CPU 1's acknowledgement")
        assert m.coord_waiting.value == 1 and emu.progress[1] == PHASE_SERIALIZING, \
            "did not wait for CPU 4"
        hooks[1].resume.release()
        out = emu.wait_coordinator()
        assert out["stats"]["ipis_sent"] == 2 and out["stats"]["serialisations"] == 1
        assert [m.ack_gen[cpu] for cpu in range(6)] == [0, 1, 0, 0, 1, 0]


def test_percpu_skips_the_broadcast_when_nobody_walks(cfg):
    """With every CPU idle, percpu finds no slot set and sends no IPI for any THP."""
    c = cfg(cpus=4, memory=16 << 20)
    with Emulator(c, "percpu") as emu:
        emu.start_coordinator()
        st = emu.wait_coordinator()["stats"]
    assert st["ipis_sent"] == 0 and st["skipped"] == c.npmds


def test_v58_frees_a_held_page_only_after_the_walker_leaves(cfg, ctx):
    """v5.8 clears the PMD at once but keeps the PTE page until a grace period ends; a walker
    paused inside its window holds the grace period open, no IPI is sent, and the walker
    (read-once, as from v5.8) uses its copies without a retry."""
    c = cfg(cpus=3, memory=16 << 20, pte_fraction=1.0)
    hook = WalkHook(ctx, cpu=2, slot=4)
    with Emulator(c, "v5.8", hooks=[hook], ctx=ctx) as emu:
        acquire(hook.paused, what="walker to pause")
        page = ptm.pmd_index(emu.table.pmds[4])
        emu.start_coordinator()  # the whole region: one batch, one grace period at the end
        wait_until(lambda: emu.progress[P_DONE] == c.npmds, what="every PMD to be cleared")
        deadline = time.monotonic() + 0.3
        while time.monotonic() < deadline:  # the clears go on; the frees must not
            assert emu.table.page_gen[page] == 0
        assert emu.table.pmds[4] == 0
        hook.resume.release()
        out = emu.wait_coordinator()
        assert emu.table.page_gen[page] == 1
        assert out["stats"]["grace_periods"] == 1 and out["stats"]["ipis_sent"] == 0
        assert out["stats"]["walkers"]["retries"] == 0
        assert emu.checker.total() == 0
        assert emu.table.free_pages() == emu.table.npages


def test_v58_batches_frees_into_grace_periods(cfg):
    """munmap under v5.8 hands one call_rcu batch per full mmu_gather batch (509 tables) and
    the partial one at tlb_finish_mmu: one grace period each, not one per THP."""
    c = cfg(cpus=2, memory=2 << 30, pte_fraction=1.0)
    with Emulator(c, "v5.8") as emu:
        emu.start_coordinator()
        st = emu.wait_coordinator()["stats"]
    assert c.npmds == 1024
    assert st["grace_periods"] == 3  # 509 + 509 + the last 6 at tlb_finish_mmu
    assert st["destroyed"] == 1024


def test_trim_drops_every_cpu_not_running_the_mm_lazy_ones_included(cfg):
    """--cpumask trim as 032b7f08932c does it: every CPU that takes the IPI while it is not
    running the mm leaves mm_cpumask, the active-but-idle (lazy) ones too; so once all are
    idle, the first broadcast reaches all 8 and no later one reaches any."""
    c = cfg(cpus=8, memory=8 << 20, cpumask="trim", active_fraction=0.25, pte_fraction=0.0)
    with Emulator(c, "ipi") as emu:
        emu.start_coordinator()
        st = emu.wait_coordinator()["stats"]
        mask = list(emu.machine.cpumask)
    assert c.active_cpus == 2 and c.npmds == 4
    assert st["serialisations"] == 1 and st["skipped"] == 3
    assert st["ipis_sent"] == 8
    assert mask == [0] * 8


def test_trim_keeps_a_cpu_that_is_walking_the_mm(cfg, ctx):
    """Under trim, a CPU inside a walk of this mm when the IPI comes answers it after its
    window and keeps its bit; the idle CPUs leave the mask."""
    c = cfg(cpus=4, memory=8 << 20, cpumask="trim", pte_fraction=0.0)
    hook = WalkHook(ctx, cpu=1, slot=3)
    with Emulator(c, "ipi", hooks=[hook], ctx=ctx) as emu:
        m = emu.machine
        acquire(hook.paused, what="walker to pause")
        emu.start_coordinator(slots=[0])
        wait_until(lambda: m.ipi_gen[1] == m.ack_gen[1] + 1, what="the IPI to CPU 1")
        hook.resume.release()
        st = emu.wait_coordinator()["stats"]
        mask = list(m.cpumask)
    assert st["ipis_sent"] == 4
    assert mask == [0, 1, 0, 0]


def test_sticky_keeps_every_cpu_in_the_mask(cfg):
    """--cpumask sticky (powerpc before v5.12): idle CPUs are IPI'd on every broadcast."""
    c = cfg(cpus=8, memory=8 << 20, cpumask="sticky", active_fraction=0.25, pte_fraction=0.0)
    with Emulator(c, "ipi") as emu:
        emu.start_coordinator()
        st = emu.wait_coordinator()["stats"]
    assert st["ipis_sent"] == 4 * 8


def test_accurate_never_targets_an_inactive_cpu(cfg):
    """--cpumask accurate (x86): only CPUs running the process are ever IPI'd."""
    c = cfg(cpus=8, memory=8 << 20, cpumask="accurate", active_fraction=0.5, walk_rate=200.0, pte_fraction=0.0)
    with Emulator(c, "ipi") as emu:
        emu.start_coordinator()
        st = emu.wait_coordinator()["stats"]
        m = emu.machine
        assert [m.ipi_gen[cpu] for cpu in range(4, 8)] == [0, 0, 0, 0]
        assert [m.ipi_gen[cpu] for cpu in range(4)] == [4, 4, 4, 4]
    assert st["ipis_sent"] == 4 * 4


@pytest.mark.parametrize("strategy", ["ipi", "count", "percpu", "v5.8", "sync-one", "sync-mm", "none"])
def test_skipped_means_the_same_under_every_strategy(cfg, strategy):
    """The updater, not the strategy, counts an operation as skipped: exactly when its
    serialising step neither broadcast nor waited for a grace period. With every CPU idle,
    only ipi broadcasts, once per huge leaf; no profile serialises a PTE table's free
    (tlb_remove_table), and from v5.8 on none serialises a leaf's either. Every profile but none frees the
    tables through one call_rcu batch at the end of munmap, asynchronously: one grace
    period, waited for by no operation."""
    c = cfg(cpus=3, memory=16 << 20, pte_fraction=0.5)
    with Emulator(c, strategy) as emu:
        leaves = emu.table.kind_counts()["leaf"]
        emu.start_coordinator()
        st = emu.wait_coordinator()["stats"]
    assert c.npmds == 8 and 0 < leaves < 8
    assert st["skipped"] == (c.npmds - leaves if strategy == "ipi" else c.npmds)
    assert st["serialisations"] == (leaves if strategy == "ipi" else 0)
    assert st["grace_periods"] == (0 if strategy == "none" else 1)
    assert st["frees_deferred"] == (0 if strategy == "none" else c.npmds - leaves)
