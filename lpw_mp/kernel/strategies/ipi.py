"""``ipi``: the baseline, an IPI broadcast for every THP."""

from lpw_mp.kernel.strategies.base import Strategy


class IPIStrategy(Strategy):
    """powerpc <= v5.7: ``serialize_against_pte_lookup()`` in arch/powerpc/mm/book3s64/pgtable.c
    (``smp_mb(); smp_call_function_many(mm_cpumask(mm), do_nothing, NULL, 1)``), called from
    ``{hash,radix}__pmdp_huge_get_and_clear`` (zap), ``pmdp_invalidate`` (split) and
    ``{hash,radix}__pmdp_collapse_flush`` (collapse): docs/kernel-sources.md, claim 1 (13bd817bb884,
    fa4531f753f1; the body as context in ``20191003013325.2614-3-leonardo@linux.ibm.com``).
    PTE tables were freed through the RCU table batch (267239116987), never with this IPI.
    Walkers only disable IRQs and ``hold`` their pointer."""

    name = "ipi"
    kernel = "serialize_against_pte_lookup(): smp_call_function_many(mm_cpumask(mm), wait=1)"

    def serialize_against_pte_lookup(self, up) -> None:
        up.broadcast(self.m.mm_cpumask())
