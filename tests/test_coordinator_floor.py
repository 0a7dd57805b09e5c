"""The coordinator's munmap loop with no memory model installed (``Updater._zap_range``, the
product path under ``sc``) against the per-slot path that ``check`` and ``--memory-model``
take: the same table, the same counts, every hook that does something called once per THP,
progress stored per batch of THPs (and around every hook), an abort seen between batches. In
one process, with no CPU process: every CPU idle, so no strategy has a walker to wait for."""

import json
import multiprocessing
import os
import sys

import pytest

from lpw_mp.harness.emulator import Emulator
from lpw_mp.kernel import memory_model
from lpw_mp.kernel import coordinator
from lpw_mp.kernel import pagetable as ptm
from lpw_mp.kernel.coordinator import (P_DONE, P_PHASE, P_SLOT, PHASE_DESTROYED,
                                       PHASE_SERIALIZING, Updater)
from lpw_mp.kernel.machine import SLOT_STRIDE, Aborted, Machine
from lpw_mp.kernel.pagetable import PageTable
from lpw_mp.kernel.strategies import STRATEGIES
from lpw_mp.kernel.strategies.base import updater_hook
from lpw_mp.kernel.strategies.none import NoneStrategy

BENCHMARKS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                          "benchmarks")
sys.path.insert(0, BENCHMARKS)

import coordinator_floor  # noqa: E402

CTX = multiprocessing.get_context("fork")
NSLOTS = 64

#: The counts a run keeps; its timings (wall_s, rounds, gp_latencies, check_gaps' values)
#: are the host's.
COUNTS = ("ops", "serialisations", "skipped", "ipis_sent", "grace_periods", "destroyed",
          "pool_exhausted", "frees_deferred", "call_rcu_batches", "batch_failures",
          "sync_ipis", "walks_in_rounds")


@pytest.fixture(autouse=True)
def plain_afterwards():
    yield
    memory_model.install("sc")


def idle_updater(strategy_cls, pte_fraction=0.0, seed=1):
    """An updater over NSLOTS slots whose two CPUs are idle and out of the cpumask (RCU
    reports for them; count and percpu see no walker; nothing is IPI'd)."""
    table = PageTable(NSLOTS, 2 << 20, NSLOTS)
    table.populate(pte_fraction, seed)
    machine = Machine(CTX, 2, "accurate", active=[False, False])
    machine.online_cpus = list  # no CPU process to answer sync-one's IPI to every CPU
    strategy = strategy_cls(CTX, machine)
    for cpu in range(machine.ncpus):
        strategy.rcu.idle[cpu * SLOT_STRIDE] = 1
    return Updater(machine, table, strategy, timeout=1.0)


def outcome(up):
    """What a run leaves: the table, its generations, the free list, and the counts."""
    pt, stats = up.pt, up.stats
    counts = {name: getattr(stats, name) for name in COUNTS}
    counts["checks"] = None if stats.check_gaps is None else len(stats.check_gaps)
    return (list(pt.pmds), list(pt.slot_gen), list(pt.page_gen),
            list(pt.free_stack[:pt.free_top.value]), counts, list(up.progress))


def run_traced(up, op="munmap"):
    """``up.run(op)`` with a model installed (sc, every step recorded, as ``check`` has it):
    the per-slot path. Returns the steps."""
    steps = []
    memory_model.install("sc", on_step=steps.append)
    try:
        up.run(op)
    finally:
        memory_model.install("sc")
    return steps


def test_munmap_under_none_clears_every_slot_and_frees_each_thp_once():
    """Under none, munmap of a region of huge leaves leaves every PMD empty, bumps every
    slot's generation exactly once, and counts each THP as unmapped, destroyed and skipped
    (nothing serialised); the progress array ends with every operation done."""
    up = idle_updater(NoneStrategy)
    assert memory_model.current() is None
    st = up.run("munmap")
    assert list(up.pt.pmds) == [0] * NSLOTS
    assert list(up.pt.slot_gen) == [1] * NSLOTS
    assert st.ops["munmap"] == st.destroyed == st.skipped == NSLOTS
    assert st.serialisations == st.grace_periods == 0
    assert up.progress[P_DONE] == NSLOTS


@pytest.mark.parametrize("pte_fraction", [0.0, 0.5])
@pytest.mark.parametrize("name", sorted(STRATEGIES))
def test_munmap_without_a_model_leaves_what_the_traced_path_leaves(name, pte_fraction,
                                                                   monkeypatch):
    """For every profile, over leaves alone and over leaves mixed with PTE tables, munmap
    with no model installed, in batches of 8 THPs, leaves the same PMDs, generations, free
    list, progress and counts (serialisations, skips, checks for walkers, deferred frees,
    grace periods...) as the per-slot path that check takes, where every PMD access is a
    READ_ONCE or WRITE_ONCE step and every free a destructive step, in the order load,
    clear, free."""
    monkeypatch.setattr(coordinator, "ZAP_BATCH", 8)
    plain = idle_updater(STRATEGIES[name], pte_fraction)
    plain.run("munmap")
    traced = idle_updater(STRATEGIES[name], pte_fraction)
    steps = run_traced(traced)
    assert outcome(plain) == outcome(traced)
    for slot in range(NSLOTS):
        mine = [s for s in steps if s.endswith(f"pmd[{slot}])") or f" slot {slot} " in s]
        assert mine[:2] == [f"READ_ONCE(pmd[{slot}])", f"WRITE_ONCE(pmd[{slot}])"]
    leaves = [s for s in steps if s.startswith("free the THP of slot ")]
    assert len(leaves) == NSLOTS - sum(map(bool, traced.pt.page_gen))


class CountingZap(NoneStrategy):
    """A plugin's own ZAP_LEAF: records what the coordinator shows at each call."""
    name = "counting-zap"

    def __init__(self, ctx, machine):
        super().__init__(ctx, machine)
        self.seen = []

    def zap_huge_pmd(self, up):
        slot = up.progress[P_SLOT]
        self.seen.append((slot, up.pt.pmds[slot], up.pt.slot_gen[slot], up.progress[P_PHASE],
                          up.progress[P_DONE]))


class CountingSerialise(NoneStrategy):
    """A plugin that leaves zap_huge_pmd to the base class and serialises on its own."""
    name = "counting-serialise"
    calls = 0

    def serialize_against_pte_lookup(self, up):
        self.calls += 1


def test_a_plugins_zap_huge_pmd_runs_once_per_thp_between_the_clear_and_the_free():
    """A plugin overriding zap_huge_pmd of none (whose own does nothing) is called for every
    THP, in order, with the PMD already clear, the THP not yet freed (its generation
    unchanged), the coordinator shown serialising that slot, and the slots before it done."""
    up = idle_updater(CountingZap)
    up.run("munmap")
    assert up.strategy.seen == [(slot, 0, 0, PHASE_SERIALIZING, slot)
                                for slot in range(NSLOTS)]
    assert list(up.pt.slot_gen) == [1] * NSLOTS
    assert up.stats.skipped == up.stats.destroyed == NSLOTS


def test_a_plugins_serialize_against_pte_lookup_runs_once_per_thp():
    """A plugin overriding none's serialize_against_pte_lookup (which the base class's
    zap_huge_pmd calls) is called once per THP."""
    up = idle_updater(CountingSerialise)
    up.run("munmap")
    assert up.strategy.calls == NSLOTS


def test_only_a_hook_that_does_nothing_is_left_out():
    """updater_hook leaves out exactly the paths whose profile makes no call there (none
    everywhere; v5.8, sync-one and sync-mm on zap and split); count's and percpu's checks,
    ipi's broadcast, every collapse but none's, and any override are called."""
    machine = Machine(CTX, 2)
    skipped = {name: [path for path in ("zap_huge_pmd", "pmdp_invalidate",
                                        "pmdp_collapse_flush")
                      if updater_hook(cls(CTX, machine), path) is None]
               for name, cls in STRATEGIES.items()}
    assert skipped == {"none": ["zap_huge_pmd", "pmdp_invalidate", "pmdp_collapse_flush"],
                       "v5.8": ["zap_huge_pmd", "pmdp_invalidate"],
                       "sync-one": ["zap_huge_pmd", "pmdp_invalidate"],
                       "sync-mm": ["zap_huge_pmd", "pmdp_invalidate"],
                       "ipi": [], "count": [], "percpu": []}
    plugin = CountingSerialise(CTX, machine)
    assert updater_hook(plugin, "zap_huge_pmd") == plugin.zap_huge_pmd
    assert updater_hook(CountingZap(CTX, machine), "zap_huge_pmd") is not None


class Watched(list):
    """Slots that call ``at_batch(first)`` whenever the loop takes the batch at ``first``."""

    def __init__(self, slots, at_batch):
        super().__init__(slots)
        self.at_batch = at_batch

    def __getitem__(self, index):
        if isinstance(index, slice):
            self.at_batch(index.start)
        return super().__getitem__(index)


def test_progress_moves_with_every_batch_of_thps(monkeypatch):
    """Between two batches of THPs that call no hook, the progress array names the last slot
    freed and counts every slot before it done, so the parent's watchdog, which restarts
    its bound whenever that count moves, sees the coordinator advance every ZAP_BATCH THPs
    (some tens of microseconds); at the end every slot is counted."""
    monkeypatch.setattr(coordinator, "ZAP_BATCH", 8)
    up = idle_updater(NoneStrategy)
    seen = []
    up._zap_range(Watched(range(NSLOTS), lambda first: seen.append(
        (first, [up.progress[i] for i in (P_SLOT, P_PHASE, P_DONE)]))))
    assert seen[1:] == [(first, [first - 1, PHASE_DESTROYED, first])
                        for first in range(8, NSLOTS, 8)]
    assert [up.progress[i] for i in (P_SLOT, P_DONE)] == [NSLOTS - 1, NSLOTS]


def test_an_abort_is_seen_before_the_next_batch_with_the_counts_so_far(monkeypatch):
    """The abort flag raised while a batch of THPs runs stops the loop before the next
    batch (at most ZAP_BATCH THPs later): the THPs before it are cleared, freed and counted,
    the rest untouched."""
    monkeypatch.setattr(coordinator, "ZAP_BATCH", 8)
    up = idle_updater(NoneStrategy)

    def at_batch(first):
        if first == 16:
            up.m.abort.value = 1
    with pytest.raises(Aborted):
        up._zap_range(Watched(range(NSLOTS), at_batch))
    st, stop = up.stats, 24
    assert st.ops["munmap"] == st.destroyed == st.skipped == up.progress[P_DONE] == stop
    assert list(up.pt.slot_gen) == [1] * stop + [0] * (NSLOTS - stop)
    assert all(ptm.pmd_kind(pmd) == ptm.LEAF for pmd in up.pt.pmds[stop:])


class FailsOnThird(NoneStrategy):
    """A plugin whose zap_huge_pmd raises on the third THP."""
    name = "fails-on-third"
    calls = 0

    def zap_huge_pmd(self, up):
        self.calls += 1
        if self.calls == 3:
            raise RuntimeError("plugin bug")


def test_a_hook_that_raises_leaves_the_counts_the_traced_path_leaves():
    """A hook raising on the third THP stops munmap there, with that THP cleared but not
    freed, and the same table and counts as on the per-slot path."""
    plain, traced = idle_updater(FailsOnThird), idle_updater(FailsOnThird)
    with pytest.raises(RuntimeError):
        plain.run("munmap")
    with pytest.raises(RuntimeError):
        run_traced(traced)
    assert outcome(plain) == outcome(traced)
    assert plain.stats.ops["munmap"] == 3 and plain.stats.destroyed == 2
    assert plain.pt.pmds[2] == 0 and plain.pt.slot_gen[2] == 0


def test_munmap_under_none_on_real_processes_frees_every_object(cfg):
    """On the product path (CPU processes, the coordinator with no model installed), munmap
    of leaves and tables under none frees every THP and every PTE page once, and the parent
    sees every operation done."""
    c = cfg(cpus=2, memory=64 << 20, pte_fraction=0.25)
    with Emulator(c, "none") as emu:
        tables = [ptm.pmd_index(pmd) for pmd in emu.table.pmds
                  if ptm.pmd_kind(pmd) == ptm.TABLE]
        emu.start_coordinator()
        st = emu.wait_coordinator()["stats"]
        assert emu.progress[P_DONE] == c.npmds
        assert list(emu.table.pmds) == [0] * c.npmds
        leaves = c.npmds - len(tables)
        assert sum(emu.table.slot_gen) == leaves
        assert [emu.table.page_gen[page] for page in tables] == [1] * len(tables)
    assert st["ops"]["munmap"] == st["destroyed"] == st["skipped"] == c.npmds
    assert st["serialisations"] == 0


@pytest.mark.timeout(60)
def test_the_benchmark_prints_and_writes_this_tree_beside_a_base(tmp_path, capsys):
    """benchmarks/coordinator_floor.py, two rounds of munmap under none with this tree as
    its own base: the table has this tree's ns per THP, the base's and their ratio under the
    date, command and load average, with the target judged; the JSON has every round's
    figure of both trees and the ratio paired by round."""
    out_json = tmp_path / "floor.json"
    tree = coordinator_floor.TREE
    assert coordinator_floor.main(["--thps", "64", "--repeats", "2", "--ops", "munmap",
                                   "--strategies", "none", "--base", tree,
                                   "--json", str(out_json)]) == 0
    text = capsys.readouterr().out
    for column in ("ns/THP", "base ns/THP", "base/this", "load average",
                   "target: munmap under none <= 500 ns/THP"):
        assert column in text
    with open(out_json) as f:
        doc = json.load(f)
    assert doc["benchmark"] == "coordinator_floor" and doc["trees"] == {"this": tree,
                                                                          "base": tree}
    (row,) = doc["rows"]
    assert (row["op"], row["strategy"]) == ("munmap", "none")
    assert [len(row["ns_per_thp"][label]) for label in ("this", "base")] == [2, 2]
    assert min(row["ns_per_thp"]["this"] + row["ns_per_thp"]["base"]) > 0
    assert row["ratio"]["n"] == 2 and row["ratio"]["low"] <= row["ratio"]["high"]
    assert len(doc["load_average_end"]) == 3
