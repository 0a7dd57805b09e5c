"""Kernel profiles path by path: what each one does on ZAP_LEAF, FREE_TABLE, SPLIT and
COLLAPSE, counted exactly on a small machine with idle walkers; the tlb_remove_table_one
fallback; the walker disciplines against a paused walker; call_rcu's asynchronous frees."""

import pytest

from helpers import acquire, wait_until
from lpw_mp.kernel import pagetable as ptm
from lpw_mp.kernel.coordinator import P_DONE, P_PHASE, PHASE_SERIALIZING
from lpw_mp.kernel.hooks import WalkHook
from lpw_mp.harness.emulator import Emulator

pytestmark = pytest.mark.timeout(60)

CPUS, TABLES, THPS = 8, 4, 16
LEAVES = THPS - TABLES
ALL = [CPUS] * CPUS  # every CPU, once per round

#: profile -> path -> (IPI rounds, each to every CPU; grace periods; frees deferred).
#: Walkers are idle: count and percpu see no walker, sync-mm no CPU walking the mm.
#: FREE_TABLE is the same under every profile but none: one call_rcu batch for the 4 tables
#: at tlb_finish_mmu, one grace period, no IPI.
RCU_FREE = (0, 1, TABLES)
EXPECTED = {
    "ipi":      {"ZAP_LEAF": (LEAVES, 0, 0), "FREE_TABLE": RCU_FREE, "SPLIT": (LEAVES, 0, 0),
                 "COLLAPSE": (TABLES, 0, 0)},
    "count":    {"ZAP_LEAF": (0, 0, 0), "FREE_TABLE": RCU_FREE, "SPLIT": (0, 0, 0),
                 "COLLAPSE": (0, 0, 0)},
    "percpu":   {"ZAP_LEAF": (0, 0, 0), "FREE_TABLE": RCU_FREE, "SPLIT": (0, 0, 0),
                 "COLLAPSE": (0, 0, 0)},
    "v5.8":     {"ZAP_LEAF": (0, 0, 0), "FREE_TABLE": RCU_FREE, "SPLIT": (0, 0, 0),
                 "COLLAPSE": (TABLES, 0, 0)},
    "sync-one": {"ZAP_LEAF": (0, 0, 0), "FREE_TABLE": RCU_FREE, "SPLIT": (0, 0, 0),
                 "COLLAPSE": (TABLES, 0, 0)},
    "sync-mm":  {"ZAP_LEAF": (0, 0, 0), "FREE_TABLE": RCU_FREE, "SPLIT": (0, 0, 0),
                 "COLLAPSE": (0, 0, 0)},
    "none":     {"ZAP_LEAF": (0, 0, 0), "FREE_TABLE": (0, 0, 0), "SPLIT": (0, 0, 0),
                 "COLLAPSE": (0, 0, 0)},
}
#: The collapse IPIs that are tlb_remove_table_sync_one's (counted apart as sync IPIs).
SYNC_COLLAPSE = {"sync-one"}


def small_machine(cfg, profile, op, **kw):
    """8 CPUs, 16 THPs: slots 0-3 mapped by PTE tables, the rest huge leaves; walkers idle.
    (--op collapse maps every slot by a table; the test collapses slots 0-3 only.)"""
    c = cfg(cpus=CPUS, memory=THPS * (2 << 20), pte_fraction=0.0, op=op, **kw)
    emu = Emulator(c, profile)
    pt = emu.table
    if op != "collapse":
        for slot in range(TABLES):
            pt.set_pmd_table(slot, pt.pte_alloc_one(slot))
    return emu


def run_and_count(emu, slots=None):
    with emu:
        emu.start_coordinator(slots=slots)
        st = emu.wait_coordinator()["stats"]
        ipis = list(emu.machine.ipi_gen)
        assert emu.checker.total() == 0
    return st, ipis


@pytest.mark.parametrize("profile", list(EXPECTED))
@pytest.mark.parametrize("op", ["munmap", "split", "collapse"])
def test_each_profile_path_by_path(cfg, profile, op):
    """Exactly the IPIs (how many rounds, to which CPUs), grace periods and deferred frees of
    EXPECTED: munmap is ZAP_LEAF for the 12 leaves plus FREE_TABLE for the 4 tables, split
    is SPLIT of the 12 leaves, collapse is COLLAPSE of the 4 tables."""
    slots = range(TABLES) if op == "collapse" else None
    st, ipis = run_and_count(small_machine(cfg, profile, op), slots)
    paths = {"munmap": ("ZAP_LEAF", "FREE_TABLE"), "split": ("SPLIT",),
             "collapse": ("COLLAPSE",)}[op]
    rounds = sum(EXPECTED[profile][p][0] for p in paths)
    gps = sum(EXPECTED[profile][p][1] for p in paths)
    deferred = sum(EXPECTED[profile][p][2] for p in paths)
    assert st["serialisations"] == rounds
    assert st["ipis_sent"] == rounds * CPUS
    assert ipis == [rounds] * CPUS  # a round goes to every CPU of the 8
    assert st["grace_periods"] == gps
    assert st["frees_deferred"] == deferred
    assert st["call_rcu_batches"] == (1 if deferred else 0)
    assert st["sync_ipis"] == (rounds * CPUS if op == "collapse" and profile in SYNC_COLLAPSE
                               else 0)
    assert st["batch_failures"] == 0
    assert st["destroyed"] == {"munmap": THPS, "split": LEAVES, "collapse": TABLES}[op]
    assert (st["deferred_free_s"] is None) == (deferred == 0)


@pytest.mark.parametrize("profile", ["ipi", "v5.8", "sync-one"])
def test_no_batch_page_syncs_every_cpu_per_table(cfg, profile):
    """--batch-fail-rate 1: tlb_remove_table never gets a batch page, so each of the 4 tables
    goes through tlb_remove_table_one: tlb_remove_table_sync_one IPIs all 8 CPUs, waits, and
    frees the table at once; nothing is deferred, no grace period runs. (The leaves are
    ipi's zap_huge_pmd rounds, as without the option.)"""
    emu = small_machine(cfg, profile, "munmap", batch_fail_rate=1.0)
    st, ipis = run_and_count(emu)
    leaf_rounds = LEAVES if profile == "ipi" else 0
    assert st["batch_failures"] == TABLES
    assert st["sync_ipis"] == TABLES * CPUS
    assert ipis == [TABLES + leaf_rounds] * CPUS
    assert st["frees_deferred"] == st["call_rcu_batches"] == st["grace_periods"] == 0
    assert st["destroyed"] == THPS


def test_sync_mm_ipis_only_the_cpu_walking_the_mm(cfg, ctx):
    """sync-mm's collapse sync scans every CPU's active_lockless_pt_walk_mm: with a walker
    paused inside its window on CPU 2 it IPIs CPU 2 alone, and waits for it."""
    c = cfg(cpus=4, memory=16 << 20, pte_fraction=1.0, op="collapse")
    hook = WalkHook(ctx, cpu=2, slot=6)
    with Emulator(c, "sync-mm", hooks=[hook], ctx=ctx) as emu:
        acquire(hook.paused, what="walker to pause")
        emu.start_coordinator(slots=[1])
        m = emu.machine
        wait_until(lambda: m.ipi_gen[2] == 1, what="the sync IPI to CPU 2")
        assert [m.ipi_gen[cpu] for cpu in range(4)] == [0, 0, 1, 0]
        assert m.ack_gen[2] == 0 and emu.progress[P_PHASE] == PHASE_SERIALIZING
        hook.resume.release()
        st = emu.wait_coordinator()["stats"]
        assert st["sync_ipis"] == 1 and st["ipis_sent"] == 1
        assert emu.checker.total() == 0


# -- walker disciplines against a walker paused inside its window --------------------------

SLOT = 3


def paused_walk(cfg, ctx, profile, op, walker=""):
    """A walker paused on huge leaf SLOT while ``op`` runs on it; the operation completes
    (v5.8 and none wait for nothing on a leaf), then the walker ends its window. Returns the
    violations reported."""
    c = cfg(cpus=3, memory=16 << 20, pte_fraction=0.0, op=op, walker=walker)
    hook = WalkHook(ctx, cpu=1, slot=SLOT, sub=7)
    with Emulator(c, profile, hooks=[hook], ctx=ctx) as emu:
        acquire(hook.paused, what="walker to pause")
        emu.start_coordinator(slots=[SLOT])
        out = emu.wait_coordinator()  # returns while the walker is still inside its window
        assert emu.machine.irq_off[1] == 1
        assert out["stats"]["destroyed"] == 1 and out["stats"]["ipis_sent"] == 0
        held = emu.machine.walker_counters()["held"]
        hook.resume.release()
        wait_until(lambda: emu.machine.walker_counters()["held"] > held,
                   what="the walker to end its window")
        return emu.checker.total()


@pytest.mark.parametrize("op", ["munmap", "split"])
def test_v58_read_once_walker_tolerates_a_freed_leaf_and_a_split(cfg, ctx, op):
    """v5.8 sends no IPI on a leaf's zap or split: its read-once walker, paused with the
    values it copied, is not at fault when the leaf is freed or the slot becomes a table."""
    assert paused_walk(cfg, ctx, "v5.8", op) == 0


@pytest.mark.parametrize("op", ["munmap", "split"])
def test_v58_with_a_hold_walker_is_caught(cfg, ctx, op):
    """The same v5.8 run with --walker hold: the walker still uses its pointer into the leaf
    after it was freed or repurposed, and the checker reports it (one violation)."""
    assert paused_walk(cfg, ctx, "v5.8", op, walker="hold") == 1


@pytest.mark.parametrize("profile", ["sync-one", "sync-mm"])
@pytest.mark.parametrize("op", ["munmap", "split"])
def test_a_recheck_profile_without_its_recheck_uses_a_stale_value(cfg, ctx, profile, op):
    """sync-one and sync-mm send no IPI on a leaf's zap or split either: their safety for a
    value that changed under a walker is GUP-fast's re-check. Their own walker re-checks and
    drops the result (no violation, one retry); run with --walker read-once it uses the stale
    value without re-checking it, and the checker reports exactly that."""
    assert paused_walk(cfg, ctx, profile, op) == 0
    assert paused_walk(cfg, ctx, profile, op, walker="read-once") == 1


@pytest.mark.parametrize("op", ["munmap", "split"])
def test_none_is_still_caught(cfg, ctx, op):
    """none (hold walkers, no IPI) is caught on the same hazard."""
    assert paused_walk(cfg, ctx, "none", op) == 1


# -- call_rcu is asynchronous -------------------------------------------------------------

@pytest.mark.parametrize("profile", ["ipi", "v5.8", "sync-mm"])
def test_a_walker_inside_its_window_holds_a_deferred_free_after_munmap_returned(cfg, ctx,
                                                                                profile):
    """munmap of PTE tables returns without waiting (the tables went to call_rcu); the
    coordinator then waits for the deferred frees, and a walker paused inside its IRQ-off
    window (a sched-RCU reader) keeps the grace period, and so the free, from completing
    until it leaves. Then every page is freed, after munmap's own time."""
    c = cfg(cpus=3, memory=16 << 20, pte_fraction=1.0)
    hook = WalkHook(ctx, cpu=2, slot=4)
    with Emulator(c, profile, hooks=[hook], ctx=ctx) as emu:
        acquire(hook.paused, what="walker to pause")
        page = ptm.pmd_index(emu.table.pmds[4])
        emu.start_coordinator()
        wait_until(lambda: emu.progress[P_DONE] == c.npmds
                   and emu.progress[P_PHASE] == PHASE_SERIALIZING,
                   what="munmap to return and the wait for its deferred frees")
        assert emu.strategy.rcu.gp_seq.value == 1
        assert emu.table.page_gen[page] == 0 and emu.table.pmds[4] == 0
        assert emu.machine.ipi_gen[2] == 0
        hook.resume.release()
        st = emu.wait_coordinator()["stats"]
        assert emu.table.page_gen[page] == 1
        assert st["frees_deferred"] == c.npmds and st["call_rcu_batches"] == 1
        assert st["grace_periods"] == 1 and st["ipis_sent"] == 0
        assert st["deferred_free_s"] >= st["wall_s"]
        assert emu.table.free_pages() == emu.table.npages
        assert emu.checker.total() == 0


# -- names and constants -------------------------------------------------------------------

def test_rcu_is_an_alias_of_v58_and_all_lists_each_profile_once():
    """parse_strategies resolves the old name rcu to v5.8 (for one release); all is every
    profile, no alias; a configuration built in code resolves it too."""
    from conftest import small_config
    from lpw_mp.harness.plugins import parse_strategies
    from lpw_mp.kernel.strategies import STRATEGIES
    assert parse_strategies("rcu") == ["v5.8"]
    assert parse_strategies("rcu,v5.8,ipi") == ["v5.8", "ipi"]
    assert parse_strategies("all") == list(STRATEGIES) == [
        "ipi", "count", "percpu", "v5.8", "sync-one", "sync-mm", "none"]
    assert small_config(strategies=["rcu"]).strategies == ["v5.8"]


def test_max_table_batch_is_derived_from_the_page_size():
    """MAX_TABLE_BATCH = (PAGE_SIZE - sizeof(struct mmu_table_batch)) / sizeof(void *):
    509 on 4K pages, 8189 on 64K (include/asm-generic/tlb.h)."""
    from lpw_mp.kernel.mmu_gather import MAX_TABLE_BATCH, max_table_batch
    assert MAX_TABLE_BATCH == max_table_batch(4096) == 509
    assert max_table_batch(65536) == 8189


def test_each_profile_walks_as_its_era_did():
    """The walker discipline each profile brings (--walker overrides it)."""
    from lpw_mp.kernel.strategies import STRATEGIES
    assert {name: cls.walker for name, cls in STRATEGIES.items()} == {
        "ipi": "hold", "count": "hold", "percpu": "hold", "v5.8": "read-once",
        "sync-one": "recheck", "sync-mm": "recheck", "none": "hold"}
