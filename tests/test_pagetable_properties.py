"""Property-based tests of the page-table operations in one process: whatever the sequence of
munmap, split, collapse and faults, under any strategy, the table stays consistent."""

import multiprocessing

from hypothesis import given, settings, strategies as st

from lpw_mp.kernel.coordinator import Updater
from lpw_mp.kernel.machine import Machine
from lpw_mp.kernel.pagetable import PageTable
from lpw_mp.kernel.strategies import STRATEGIES
from lpw_mp.kernel.machine import SLOT_STRIDE

NSLOTS = 12
CTX = multiprocessing.get_context("fork")

operations = st.lists(st.tuples(
    st.sampled_from(["munmap", "split", "collapse", "fault-leaf", "fault-table", "flush"]),
    st.integers(0, NSLOTS - 1)), max_size=50)


def in_process_updater(strategy_name, pte_fraction, seed, pool):
    """An updater whose strategies need no CPU process: there are none to wait for (count and
    percpu see no walker, RCU sees every CPU idle, ipi's accurate mask is empty, and no CPU
    process is there for sync-one's IPI to every online CPU)."""
    table = PageTable(NSLOTS, 2 << 20, pool)
    table.populate(pte_fraction, seed)
    machine = Machine(CTX, 2, "accurate", active=[False, False])
    strategy = STRATEGIES[strategy_name](CTX, machine)
    machine.online_cpus = list
    for cpu in range(machine.ncpus):  # every profile frees page tables through RCU
        strategy.rcu.idle[cpu * SLOT_STRIDE] = 1
    return table, strategy, Updater(machine, table, strategy, timeout=1.0)


def generations(table):
    return list(table.page_gen) + list(table.slot_gen)


@settings(max_examples=150, deadline=None)
@given(ops=operations, strategy=st.sampled_from(sorted(STRATEGIES)),
       pte_fraction=st.sampled_from([0.0, 0.3, 1.0]), seed=st.integers(0, 1000),
       pool=st.integers(4, NSLOTS))
def test_any_sequence_keeps_the_table_consistent(ops, strategy, pte_fraction, seed, pool):
    """No PTE page is both free and mapped, none is mapped twice or leaked (pages in an RCU
    batch count as owned), every entry names the live incarnation of its page, and
    generations only grow."""
    table, strat, up = in_process_updater(strategy, pte_fraction, seed, pool)
    before = generations(table)
    for op, slot in ops:
        if op == "munmap":
            up.zap_pmd(slot)
        elif op == "split":
            up.split(slot)
        elif op == "collapse":
            up.collapse(slot)
        elif op == "flush":
            up.tlb_finish_mmu()
        else:
            up.fault(slot, table=op == "fault-table")
        after = generations(table)
        assert all(a >= b for a, b in zip(after, before)), "a generation went backwards"
        before = after
        up.rcu.rcu_process_callbacks(up)
        assert table.check_consistency(pending=up.pending_pages()) == []
    up.tlb_finish_mmu()
    up.rcu_barrier()
    assert up.pending_pages() == []
    assert table.check_consistency() == []


@settings(max_examples=50, deadline=None)
@given(strategy=st.sampled_from(sorted(STRATEGIES)), seed=st.integers(0, 1000))
def test_munmap_of_everything_frees_every_page(strategy, seed):
    """After munmap of the whole region every slot is empty and every PTE page is free."""
    table, strat, up = in_process_updater(strategy, 0.5, seed, NSLOTS)
    up.run("munmap")
    assert table.kind_counts()["none"] == NSLOTS
    assert table.free_pages() == table.npages
    assert table.check_consistency() == []
