"""``ipi``: the baseline, an IPI broadcast for every THP."""

from lpw_mp.kernel.strategies.base import Strategy


class IPIStrategy(Strategy):
    """``serialize_against_pte_lookup()`` as in arch/powerpc/mm/book3s64/pgtable.c before 2019.

    Walkers only disable IRQs; the updater broadcasts ``do_nothing`` to ``mm_cpumask(mm)`` and
    waits for every CPU, once per THP."""

    name = "ipi"
    kernel = "serialize_against_pte_lookup(): smp_call_function_many(mm_cpumask(mm), wait=1)"

    def serialize_against_pte_lookup(self, up) -> None:
        up.broadcast(self.m.mm_cpumask())
