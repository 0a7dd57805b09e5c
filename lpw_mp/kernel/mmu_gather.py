"""The mmu_gather's page-table batching (mm/mmu_gather.c, ``CONFIG_MMU_GATHER_RCU_TABLE_FREE``):
``tlb_remove_table`` queues a page-table page in a batch page; a full batch, and the partial one
at every flush and at ``tlb_finish_mmu``, go to ``call_rcu``; when no batch page can be
allocated, ``tlb_remove_table_one`` syncs with an IPI and frees at once.
docs/kernel-sources.md, claim 3 (stored mm/mmu_gather.c 06d07429…, include/asm-generic/tlb.h
0758cd83…); powerpc frees through it since 267239116987 (v3.0)."""

import random

from lpw_mp.kernel import pagetable as ptm

#: sizeof(struct mmu_table_batch) on 64-bit: struct rcu_head (16 bytes) and ``unsigned int nr``
#: padded to 8 for ``void *tables[]``.
MMU_TABLE_BATCH_SIZE = 24
POINTER_SIZE = 8


def max_table_batch(page_size: int) -> int:
    """``MAX_TABLE_BATCH = (PAGE_SIZE - sizeof(struct mmu_table_batch)) / sizeof(void *)``."""
    return (page_size - MMU_TABLE_BATCH_SIZE) // POINTER_SIZE


#: 509 with 4K base pages (8189 with 64K, book3s64's usual configuration).
MAX_TABLE_BATCH = max_table_batch(ptm.BASE_PAGE)


class MMUGather:
    """The coordinator's ``struct mmu_gather`` table batch. ``batch`` is None while no batch
    page is allocated (``*batch == NULL``)."""

    def __init__(self, up, rcu, batch_fail_rate: float = 0.0, seed: int = 0,
                 batch_size: int = MAX_TABLE_BATCH):
        self.up = up
        self.rcu = rcu
        self.batch_size = batch_size
        self.fail_rate = batch_fail_rate
        self.rng = random.Random(f"{seed}/batch")
        self.batch = None

    def tlb_remove_table(self, page: int) -> None:
        """Queue PTE page ``page`` to be freed after a grace period, or, when no batch page can
        be allocated (``__get_free_page(GFP_NOWAIT)`` failed: ``--batch-fail-rate``), free it
        now after a sync IPI (``tlb_remove_table_one``)."""
        if self.batch is None:
            if self.fail_rate and self.rng.random() < self.fail_rate:
                self.tlb_remove_table_one(page)
                return
            self.batch = []
        self.batch.append(page)
        self.up.stats.frees_deferred += 1
        if len(self.batch) == self.batch_size:
            self.tlb_table_flush()

    def tlb_table_flush(self) -> None:
        """Hand the batch to ``call_rcu(&batch->rcu, tlb_remove_table_rcu)``; the updater goes
        on at once. Runs when the batch is full and at every flush (``tlb_finish_mmu``)."""
        batch, self.batch = self.batch, None
        if batch:
            self.up.stats.call_rcu_batches += 1
            self.rcu.call_rcu(self.up, self.tlb_remove_table_rcu, batch)

    def tlb_remove_table_rcu(self, batch) -> None:
        """The RCU callback: free every page of the batch."""
        for page in batch:
            self.up.free_table(page, deferred=True)

    def tlb_remove_table_one(self, page: int) -> None:
        self.up.stats.batch_failures += 1
        self.tlb_remove_table_sync_one()
        self.up.free_table(page)

    def tlb_remove_table_sync_one(self) -> None:
        """``smp_call_function(tlb_remove_table_smp_sync, NULL, 1)``: an IPI to every online
        CPU but the sender, and wait. The coordinator is not one of the simulated CPUs, so
        that is all of them. Not an RCU grace period, but enough for IRQ-off walkers."""
        cpus = self.up.m.online_cpus()
        self.up.broadcast(cpus)
        self.up.stats.sync_ipis += len(cpus)

    def pending_pages(self) -> list:
        """PTE pages unlinked but not freed yet: in the open batch or awaiting a grace period."""
        return list(self.batch or ()) + [p for batch in self.rcu.pending() for p in batch]
