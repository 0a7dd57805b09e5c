"""``sync-one``: khugepaged's ``tlb_remove_table_sync_one()`` on collapse, 2022 on (v6.1)."""

from lpw_mp.kernel.strategies.base import Strategy, does_nothing


class SyncOneStrategy(Strategy):
    """Jann Horn, "mm/khugepaged: fix GUP-fast interaction by sending IPI", 2ba99c5e0881
    (``20221129154730.2274278-2-jannh@google.com``, v6.1; docs/kernel-sources.md, claim 5),
    on top of v5.8's arch changes and bedf03416913 (v6.0: no arch IPI on radix collapse).

    No IPI on zap or split. ``collapse_huge_page()`` calls ``tlb_remove_table_sync_one()``
    after ``pmdp_collapse_flush``: ``smp_call_function(tlb_remove_table_smp_sync, NULL, 1)``,
    an IPI to every online CPU but the caller, not ``mm_cpumask``. The anon path then
    re-deposits the PTE page (``pgtable_trans_huge_deposit``) instead of freeing it; lpw_mp
    models that as the page leaving the walkers' reach with its generation bumped. Walkers
    re-check PMD and PTE and drop a changed result (gup_fast, 70cbc3cc78a9, v6.0): ``recheck``."""

    name = "sync-one"
    kernel = "v6.1 (2ba99c5e0881): collapse IPIs all online CPUs (tlb_remove_table_sync_one)"
    walker = "recheck"

    @does_nothing
    def zap_huge_pmd(self, up) -> None:
        pass

    @does_nothing
    def pmdp_invalidate(self, up) -> None:
        pass

    def pmdp_collapse_flush(self, up) -> None:
        up.tlb.tlb_remove_table_sync_one()
