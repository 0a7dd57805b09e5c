import pytest

from lpw_mp.kernel import pagetable as ptm
from lpw_mp.harness.config import Config
from lpw_mp.kernel.pagetable import PageTable


def test_pmd_encoding_round_trips():
    """A PMD entry packs kind, generation and index into one word and unpacks them exactly."""
    for kind in (ptm.NONE, ptm.LEAF, ptm.TABLE, ptm.INVALID):
        pmd = ptm.make_pmd(kind, 12345, 253_951)
        assert (ptm.pmd_kind(pmd), ptm.pmd_gen(pmd), ptm.pmd_index(pmd)) == (kind, 12345, 253_951)
        assert 0 <= pmd < 2 ** 63  # fits a signed 64-bit shared word


def test_populate_maps_every_slot_with_the_requested_mix():
    """Every slot is mapped; about pte_fraction of them through a PTE page, the rest huge."""
    pt = PageTable(npmds=1024, thp_size=2 << 20, npages=1024)
    pt.populate(pte_fraction=0.25, seed=7)
    counts = pt.kind_counts()
    assert counts["none"] == 0 and counts["invalid"] == 0
    assert counts["leaf"] + counts["table"] == 1024
    assert 180 < counts["table"] < 330
    assert pt.free_pages() == 1024 - counts["table"]
    assert pt.check_consistency() == []


def test_population_is_deterministic_per_seed():
    """The same seed gives the same layout; another seed gives another one."""
    def layout(seed):
        pt = PageTable(npmds=256, thp_size=2 << 20, npages=256)
        pt.populate(0.5, seed)
        return list(pt.pmds)
    assert layout(3) == layout(3)
    assert layout(3) != layout(4)


def test_a_pte_page_holds_the_ptes_of_its_slot():
    """A PTE table of a 2M THP has 512 entries, each the pfn of its base page, present."""
    pt = PageTable(npmds=8, thp_size=2 << 20, npages=4)
    page = pt.pte_alloc_one(slot=5)
    assert pt.ptrs_per_pte == 512
    base = page * 512
    assert pt.ptes[base] == ptm.pte_value(5, 0, 512)
    assert pt.ptes[base + 511] == ptm.pte_value(5, 511, 512)
    assert pt.ptes[base + 511] & 1


def test_a_freed_page_is_reused_at_once_with_a_new_generation():
    """pte_free bumps the page's generation and the next allocation gets that same page."""
    pt = PageTable(npmds=8, thp_size=2 << 20, npages=4)
    page = pt.pte_alloc_one(slot=1)
    pt.set_pmd_table(1, page)
    old_entry = pt.pmdp_huge_get_and_clear(1)
    pt.pte_free(page)
    again = pt.pte_alloc_one(slot=2)
    assert again == page
    pt.set_pmd_table(2, again)
    assert ptm.pmd_gen(pt.pmds[2]) == ptm.pmd_gen(old_entry) + 1
    assert pt.ptes[again * 512] == ptm.pte_value(2, 0, 512)


def test_pool_exhaustion_is_an_error():
    """Allocating from an empty pool raises PoolExhausted instead of handing out a used page."""
    pt = PageTable(npmds=2, thp_size=2 << 20, npages=1)
    pt.pte_alloc_one(0)
    with pytest.raises(ptm.PoolExhausted):
        pt.pte_alloc_one(1)


def test_consistency_check_finds_a_page_both_free_and_mapped():
    """check_consistency reports a page that is mapped while on the free list."""
    pt = PageTable(npmds=4, thp_size=2 << 20, npages=2)
    page = pt.pte_alloc_one(0)
    pt.set_pmd_table(0, page)
    pt._push_free(page)
    assert any("free and mapped" in p for p in pt.check_consistency())


def test_the_seed_region_fits():
    """--memory 496G builds a real table of 253,952 PMDs with its PTE page pool."""
    cfg = Config(memory=496 << 30, runs_dir="/tmp").validate()
    pt = PageTable(cfg.npmds, cfg.thp_size, cfg.pool_pages())
    pt.populate(cfg.pte_fraction, seed=1)
    assert len(pt.pmds) == 253_952
    counts = pt.kind_counts()
    assert counts["leaf"] + counts["table"] == 253_952
    assert counts["table"] > 10_000
