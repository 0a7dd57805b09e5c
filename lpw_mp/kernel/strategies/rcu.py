"""``rcu``: page tables freed after a grace period (mmu_gather with RCU table freeing), no IPI."""

from lpw_mp.kernel.rcu import RCU
from lpw_mp.kernel.strategies.base import Strategy

#: Pointers one mmu_gather batch page holds before it must be flushed (MAX_TABLE_BATCH on 4K).
MAX_TABLE_BATCH = 509


class RCUStrategy(Strategy):
    """Aneesh Kumar's rework merged for v5.8 (20200420124434.47330-1-aneesh.kumar@linux.ibm.com):
    ``MMU_GATHER_RCU_TABLE_FREE`` and walkers that tolerate a changing PMD.

    munmap clears PMDs without waiting; the pages to free go into a batch (``tlb_remove_table``)
    freed after one grace period: every CPU seen outside a walk since the batch closed. Quiescent
    states are reported by the CPUs themselves (at the end of a walk while a grace period is
    waiting, and on entering idle, like dynticks-idle), each report a full barrier; only the
    last CPU owed wakes the updater, as ``rcu_report_qs_rnp()`` does. Walkers re-check
    the PMD after use and drop the result if it changed (``gup_fast``'s ``pmd_val`` re-check).

    Split and collapse repurpose a PMD slot in place rather than free a page; a batch cannot
    defer that, so they wait a synchronous grace period (``synchronize_rcu()``) where the other
    strategies serialise. (Upstream kept the IPI for those two paths.)"""

    name = "rcu"
    kernel = "v5.8 mmu_gather RCU table free (MMU_GATHER_RCU_TABLE_FREE), no IPI"
    walker = "recheck"
    lock_name = "rcu's quiescent-state lock"

    def __init__(self, ctx, machine, batch: int = MAX_TABLE_BATCH):
        super().__init__(ctx, machine)
        self.rcu = RCU(ctx, machine)
        self.batch_size = batch
        self._batch = []
        self._batch_pages = []

    def install_hooks(self, hooks) -> None:
        super().install_hooks(hooks)
        self.rcu.install_hooks(hooks)

    # -- walker side --------------------------------------------------------------------------

    def end_lockless_pgtbl_walk(self, cpu: int) -> None:
        self.rcu.end_of_window(cpu)

    def cpu_idle_enter(self, cpu: int) -> None:
        self.rcu.cpu_idle_enter(cpu)

    def cpu_idle_exit(self, cpu: int) -> None:
        self.rcu.cpu_idle_exit(cpu)

    # -- updater side -------------------------------------------------------------------------

    def synchronize_rcu(self, up) -> None:
        self.rcu.synchronize_rcu(up)

    def serialize_against_pte_lookup(self, up) -> None:
        self.synchronize_rcu(up)

    def tlb_remove_table(self, up, destroy, page=None) -> None:
        self._batch.append(destroy)
        if page is not None:
            self._batch_pages.append(page)
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
