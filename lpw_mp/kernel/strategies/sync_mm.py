"""``sync-mm``: Lance Yang's targeted sync IPIs (2026 v4, proposed, not merged)."""

from lpw_mp.kernel.machine import DEFINE_PER_CPU, for_each_cpu_READ_ONCE, per_cpu
from lpw_mp.kernel.memory_model import WRITE_ONCE, smp_mb, smp_store_release
from lpw_mp.kernel.strategies.base import Strategy, does_nothing

#: The value a slot holds while its CPU walks this mm (the kernel stores the mm pointer).
THIS_MM = 1


class SyncMMStrategy(Strategy):
    """Lance Yang, "[PATCH v4 0/3] targeted TLB sync IPIs for lockless page table walkers"
    (``20260202074557.16544-1-lance.yang@linux.dev``; 1/3 ``-2-``, 2/3 ``-3-``;
    docs/kernel-sources.md, claim 9). Proposed; v5 dropped the tracking.

    As ``sync-one``, but the collapse sync (``tlb_remove_table_sync_mm(mm)``) IPIs only the
    CPUs whose per-CPU ``active_lockless_pt_walk_mm`` is this mm, scanning every online CPU
    (``for_each_online_cpu``), not ``mm_cpumask``. The walker sets its slot with
    ``this_cpu_write`` + ``smp_mb()`` (``pt_walk_lockless_start``) and clears it with
    ``smp_store_release`` (``pt_walk_lockless_end``). The patch's updater has ``smp_rmb()``
    before the scan, which Peter Zijlstra rejected (``20260202125146.GC1395266@noisy.
    programming.kicks-ass.net``): this profile uses the full ``smp_mb()`` it needs."""

    name = "sync-mm"
    kernel = "2026 v4 (proposed): collapse IPIs only CPUs walking this mm (per-CPU slot)"
    walker = "recheck"

    def __init__(self, ctx, machine):
        super().__init__(ctx, machine)
        self.active_lockless_pt_walk_mm = DEFINE_PER_CPU(machine, "active_lockless_pt_walk_mm")

    def begin_lockless_pgtbl_walk(self, cpu: int) -> None:
        WRITE_ONCE(self.active_lockless_pt_walk_mm, per_cpu(cpu), THIS_MM)  # this_cpu_write
        smp_mb()

    def end_lockless_pgtbl_walk(self, cpu: int) -> None:
        smp_store_release(self.active_lockless_pt_walk_mm, per_cpu(cpu), 0)

    @does_nothing
    def zap_huge_pmd(self, up) -> None:
        pass

    @does_nothing
    def pmdp_invalidate(self, up) -> None:
        pass

    def pmdp_collapse_flush(self, up) -> None:
        """``tlb_remove_table_sync_mm(mm)``: a full barrier between the unlink and the scan,
        then an IPI to every online CPU walking this mm, and wait."""
        smp_mb()
        online = self.m.online_cpus()
        values = for_each_cpu_READ_ONCE(self.active_lockless_pt_walk_mm, online)
        cpus = [cpu for cpu, mm in zip(online, values) if mm == THIS_MM]
        up.broadcast(cpus)
        up.stats.sync_ipis += len(cpus)
