"""``v5.8``: what upstream powerpc did from v5.8 to v6.0 (formerly ``rcu``, still an alias)."""

from lpw_mp.kernel.strategies.base import Strategy, does_nothing


class V58Strategy(Strategy):
    """Aneesh Kumar's rework merged for v5.8, "powerpc/mm/book3s64: Avoid sending IPI on
    clearing PMD" (v3 20/22 ``20200420124434.47330-21-aneesh.kumar@linux.ibm.com``; merged
    probably as v4, ``20200505071729.54912-1-aneesh.kumar@linux.ibm.com``; the upstream commit
    id is UNCONFIRMED; docs/kernel-sources.md, claim 2).

    It removes ``serialize_against_pte_lookup()`` from ``{hash,radix}__pmdp_huge_get_and_clear``
    (ZAP_LEAF) and from ``pmdp_invalidate`` (SPLIT), and keeps it in
    ``{hash,radix}__pmdp_collapse_flush`` (COLLAPSE: IPI ``mm_cpumask``, wait; radix dropped
    it in v6.0, bedf03416913). Page tables are freed through the mmu_gather's RCU batch, as
    under every profile. Walkers read the PMD once and work with a stale value (the cover
    letter's rules): ``read-once``."""

    name = "v5.8"
    kernel = "v5.8: no IPI on zap or split, IPI mm_cpumask on collapse; RCU table free"
    walker = "read-once"

    def serialize_against_pte_lookup(self, up) -> None:
        up.broadcast(self.m.mm_cpumask())

    @does_nothing
    def zap_huge_pmd(self, up) -> None:
        pass

    @does_nothing
    def pmdp_invalidate(self, up) -> None:
        pass
