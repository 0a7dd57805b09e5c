"""``rcu``: page tables freed after a grace period (mmu_gather with RCU table freeing), no IPI."""

import time
from multiprocessing.sharedctypes import RawArray, RawValue

from lpw_mp.machine import ABORT_POLL, Aborted, IPITimeout, smp_mb
from lpw_mp.strategies.base import Strategy

SLOT_STRIDE = 8
#: Pointers one mmu_gather batch page holds before it must be flushed (MAX_TABLE_BATCH on 4K).
MAX_TABLE_BATCH = 509


class GracePeriodTimeout(IPITimeout):
    """CPUs did not pass a quiescent state within the bound."""

    def __init__(self, cpus, seconds):
        super().__init__(cpus, seconds)
        self.args = (str(self).replace("acknowledge an IPI", "pass a quiescent state"),)

    def __str__(self):
        return self.args[0]


class RCUStrategy(Strategy):
    """Aneesh Kumar's rework merged for v5.8 (20200420124434.47330-1-aneesh.kumar@linux.ibm.com):
    ``MMU_GATHER_RCU_TABLE_FREE`` and walkers that tolerate a changing PMD.

    munmap clears PMDs without waiting; the pages to free go into a batch (``tlb_remove_table``)
    freed after one grace period: every CPU seen outside a walk since the batch closed. Quiescent
    states are reported by the CPUs themselves (at the end of a walk while a grace period is
    waiting, and on entering idle, like dynticks-idle), each report followed by a full barrier,
    so the updater never infers one from a flag a walker has not yet published. Walkers re-check
    the PMD after use and drop the result if it changed (``gup_fast``'s ``pmd_val`` re-check).

    Split and collapse repurpose a PMD slot in place rather than free a page; a batch cannot
    defer that, so they wait a synchronous grace period (``synchronize_rcu()``) where the other
    strategies serialise. (Upstream kept the IPI for those two paths.)"""

    name = "rcu"
    kernel = "v5.8 mmu_gather RCU table free (MMU_GATHER_RCU_TABLE_FREE), no IPI"
    rechecks_pmd = True

    def __init__(self, ctx, machine, batch: int = MAX_TABLE_BATCH):
        super().__init__(ctx, machine)
        n = machine.ncpus
        self.qs_seq = RawArray("q", n * SLOT_STRIDE)
        self.idle = RawArray("q", n * SLOT_STRIDE)
        self.gp_waiting = RawValue("b", 0)
        self.gp_wake = ctx.Semaphore(0)
        self.batch_size = batch
        self._batch = []
        self._batch_pages = []

    # -- walker side --------------------------------------------------------------------------

    def _report_qs(self, cpu: int) -> None:
        self.qs_seq[cpu * SLOT_STRIDE] += 1
        smp_mb()
        self.gp_wake.release()

    def end_lockless_pgtbl_walk(self, cpu: int) -> None:
        if self.gp_waiting.value:
            self._report_qs(cpu)

    def cpu_idle_enter(self, cpu: int) -> None:
        self.idle[cpu * SLOT_STRIDE] = 1
        smp_mb()
        if self.gp_waiting.value:
            self.gp_wake.release()

    def cpu_idle_exit(self, cpu: int) -> None:
        self.idle[cpu * SLOT_STRIDE] = 0
        smp_mb()

    # -- updater side -------------------------------------------------------------------------

    def synchronize_rcu(self, up) -> None:
        """Wait one grace period: every CPU idle or past a quiescent state since it began."""
        start = time.perf_counter()
        self.gp_waiting.value = 1
        smp_mb()
        qs, idle = self.qs_seq, self.idle
        snap = {cpu: qs[cpu * SLOT_STRIDE] for cpu in range(self.m.ncpus)}
        pending = [cpu for cpu in snap if not idle[cpu * SLOT_STRIDE]]
        deadline = time.monotonic() + up.timeout
        try:
            while pending:
                pending = [cpu for cpu in pending
                           if not idle[cpu * SLOT_STRIDE] and qs[cpu * SLOT_STRIDE] == snap[cpu]]
                if not pending:
                    break
                self.gp_wake.acquire(True, min(0.01, ABORT_POLL))
                if self.m.abort.value:
                    raise Aborted("run aborted while waiting for a grace period")
                if time.monotonic() >= deadline:
                    raise GracePeriodTimeout(pending, up.timeout)
        finally:
            self.gp_waiting.value = 0
            while self.gp_wake.acquire(False):
                pass
        up.stats.grace_periods += 1
        up.stats.gp_latencies.append(time.perf_counter() - start)

    def serialize_against_pte_lookup(self, up) -> None:
        self.synchronize_rcu(up)

    def tlb_remove_table(self, up, destroy, page=None) -> None:
        self._batch.append(destroy)
        if page is not None:
            self._batch_pages.append(page)
        up.stats.skipped += 1
        if len(self._batch) >= self.batch_size:
            self.tlb_finish_mmu(up)

    def tlb_finish_mmu(self, up) -> None:
        if not self._batch:
            return
        self.synchronize_rcu(up)
        batch, self._batch, self._batch_pages = self._batch, [], []
        for destroy in batch:
            destroy()

    def pending_pages(self) -> list:
        return list(self._batch_pages)
