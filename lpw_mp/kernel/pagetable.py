"""The page table of the emulated process, kept in shared memory.

One PMD entry per THP-sized slot of the region, plus a pool of PTE pages (page-table pages) with a
free list, so that a freed PTE page really is handed to the next mapping that needs one.

A PMD entry is one 64-bit word, read and written whole (an aligned 8-byte access is atomic on the
hosts we run on), laid out as ``kind << 60 | generation << 32 | index``:

- ``NONE``: nothing mapped;
- ``LEAF``: a huge (THP) leaf; ``index`` is the slot itself, ``generation`` the slot's generation;
- ``TABLE``: a pointer to PTE page ``index``; ``generation`` is that page's generation;
- ``INVALID``: a leaf marked by ``pmdp_invalidate`` while it is being split (walkers skip it).

Carrying the generation inside the entry lets a walker that read the entry know exactly which
incarnation of the object it points to, so a free that lands between its read and its use is seen.

Only the coordinator writes the table; walkers only read it. The PMD words are read and written
through ``READ_ONCE``/``WRITE_ONCE`` (``memory_model``): under ``--memory-model tso`` or
``weak`` a cleared entry can still be in the coordinator's store buffer when a walker reads it.
The destructive steps (``pte_free``, ``free_huge_leaf`` and the slot repurposing in
``set_pmd_*``) bump a generation; the strategies decide when they may run.
"""

import ctypes
import random
from array import array
from multiprocessing.sharedctypes import RawArray, RawValue

from lpw_mp.kernel.memory_model import READ_ONCE, WRITE_ONCE, name_words

NONE, LEAF, TABLE, INVALID = 0, 1, 2, 3
KIND_NAMES = {NONE: "none", LEAF: "leaf", TABLE: "table", INVALID: "invalid"}

KIND_SHIFT = 60
GEN_SHIFT = 32
GEN_MASK = (1 << (KIND_SHIFT - GEN_SHIFT)) - 1
INDEX_MASK = (1 << GEN_SHIFT) - 1

BASE_PAGE = 4096
PTE_SIZE = 8
#: A PTE page pool larger than this is refused (it would be allocated up front).
MAX_POOL_BYTES = 4 << 30


def make_pmd(kind: int, gen: int, index: int) -> int:
    return (kind << KIND_SHIFT) | ((gen & GEN_MASK) << GEN_SHIFT) | index


def pmd_kind(pmd: int) -> int:
    return pmd >> KIND_SHIFT


def pmd_gen(pmd: int) -> int:
    return (pmd >> GEN_SHIFT) & GEN_MASK


def pmd_index(pmd: int) -> int:
    return pmd & INDEX_MASK


def describe_pmd(pmd: int) -> str:
    """A PMD entry in words, for step logs: what it points to and which incarnation."""
    kind, gen, index = pmd_kind(pmd), pmd_gen(pmd), pmd_index(pmd)
    if kind == NONE:
        return "none"
    what = {LEAF: f"THP of slot {index}", TABLE: f"PTE page {index}",
            INVALID: f"invalid THP of slot {index}"}.get(kind, f"kind {kind}")
    return f"{what} (generation {gen})"


def describe_pte(pte: int) -> str:
    return f"pfn {pte >> 1}{', present' if pte & 1 else ''}"


def pte_value(slot: int, sub: int, ptrs_per_pte: int) -> int:
    """The PTE that maps base page ``sub`` of THP slot ``slot``: a pfn with the present bit."""
    return ((slot * ptrs_per_pte + sub) << 1) | 1


class PoolExhausted(RuntimeError):
    """No free PTE page is left in the pool."""


class PageTable:
    """PMD entries, PTE pages and their generations, all in ``RawArray`` shared memory."""

    def __init__(self, npmds: int, thp_size: int, npages: int):
        if npmds < 1 or npages < 0:
            raise ValueError("a page table needs at least one PMD")
        self.npmds = npmds
        self.npages = npages
        self.ptrs_per_pte = max(1, thp_size // BASE_PAGE)
        self.pmds = name_words(RawArray("q", npmds), "pmd", describe_pmd)
        self.slot_gen = RawArray("q", npmds)
        self.page_gen = RawArray("q", max(1, npages))
        self.ptes = name_words(RawArray("q", max(1, npages) * self.ptrs_per_pte), "pte",
                               describe_pte)
        # Free list: a stack of page numbers; only the coordinator pushes and pops.
        self.free_stack = RawArray("i", max(1, npages))
        self.free_top = RawValue("q", 0)
        for page in range(npages - 1, -1, -1):
            self._push_free(page)

    @staticmethod
    def pool_bytes(thp_size: int, npages: int) -> int:
        return max(1, npages) * max(1, thp_size // BASE_PAGE) * PTE_SIZE

    # -- population ---------------------------------------------------------------------------

    def populate(self, pte_fraction: float, seed: int) -> None:
        """Map every slot: a PTE table with probability ``pte_fraction``, else a huge leaf."""
        rng = random.Random(seed)
        for slot in range(self.npmds):
            if pte_fraction > 0 and rng.random() < pte_fraction and self.free_top.value:
                self.set_pmd_table(slot, self.pte_alloc_one(slot))
            else:
                self.set_pmd_leaf(slot)

    # -- the free list ------------------------------------------------------------------------

    def _push_free(self, page: int) -> None:
        top = self.free_top.value
        self.free_stack[top] = page
        self.free_top.value = top + 1

    def free_pages(self) -> int:
        return self.free_top.value

    def pte_alloc_one(self, slot: int) -> int:
        """Take a PTE page off the free list and fill it with the PTEs of ``slot``.

        Stands for ``pte_alloc_one()``: the most recently freed page is handed out first, as a
        per-CPU page list would, so a page freed too early is reused at once."""
        top = self.free_top.value
        if top == 0:
            raise PoolExhausted("no free PTE page")
        top -= 1
        page = self.free_stack[top]
        self.free_top.value = top
        n = self.ptrs_per_pte
        first = pte_value(slot, 0, n)
        contents = array("q", range(first, first + 2 * n, 2))
        ctypes.memmove(ctypes.addressof(self.ptes) + page * n * PTE_SIZE,
                       contents.buffer_info()[0], n * PTE_SIZE)
        return page

    def pte_free(self, page: int) -> None:
        """Destructive step: the PTE page goes back to the allocator (``pte_free()``)."""
        self.page_gen[page] += 1
        self._push_free(page)

    # -- PMD updates (coordinator only) -------------------------------------------------------

    def pmd(self, slot: int) -> int:
        """The entry as the coordinator sees it (its own buffered stores included)."""
        return READ_ONCE(self.pmds, slot)

    def set_pmd_leaf(self, slot: int) -> None:
        """Install a huge leaf (``set_pmd_at`` of a THP)."""
        WRITE_ONCE(self.pmds, slot, make_pmd(LEAF, self.slot_gen[slot], slot))

    def set_pmd_table(self, slot: int, page: int) -> None:
        """Install a pointer to PTE page ``page`` (``pmd_populate``)."""
        WRITE_ONCE(self.pmds, slot, make_pmd(TABLE, self.page_gen[page], page))

    def pmdp_huge_get_and_clear(self, slot: int) -> int:
        """Clear the entry and return its old value (``pmdp_huge_get_and_clear()``: a
        ``pmd_hugepage_update``, atomic on the word but no barrier on powerpc)."""
        old = READ_ONCE(self.pmds, slot)
        WRITE_ONCE(self.pmds, slot, 0)
        return old

    def pmdp_invalidate(self, slot: int) -> int:
        """Mark a huge leaf invalid before a split (``pmdp_invalidate()``); returns the old value."""
        old = READ_ONCE(self.pmds, slot)
        WRITE_ONCE(self.pmds, slot, make_pmd(INVALID, pmd_gen(old), pmd_index(old)))
        return old

    def retire_slot(self, slot: int) -> None:
        """Destructive step for a leaf: a ``pte_t *`` into the slot no longer means this THP.

        Called when the huge page is freed (munmap) or the slot is repurposed (split installs a
        table pointer in it, collapse installs a new leaf)."""
        self.slot_gen[slot] += 1

    # -- inspection ---------------------------------------------------------------------------

    def kind_counts(self) -> dict:
        counts = {name: 0 for name in KIND_NAMES.values()}
        for pmd in self.pmds:
            counts[KIND_NAMES[pmd_kind(pmd)]] += 1
        return counts

    def check_consistency(self, pending=()) -> list:
        """Problems with the table: pages both free and mapped, pages mapped twice, pages lost.

        ``pending`` are pages unlinked but not yet freed (an RCU batch); they count as owned."""
        problems = []
        free = [self.free_stack[i] for i in range(self.free_top.value)]
        free_set = set(free)
        if len(free_set) != len(free):
            problems.append("a page is on the free list twice")
        mapped = {}
        for slot, pmd in enumerate(self.pmds):
            if pmd_kind(pmd) == TABLE:
                page = pmd_index(pmd)
                if page in mapped:
                    problems.append(f"page {page} is mapped by slots {mapped[page]} and {slot}")
                mapped[page] = slot
                if pmd_gen(pmd) != self.page_gen[page] & GEN_MASK:
                    problems.append(f"slot {slot} points to a freed incarnation of page {page}")
            elif pmd_kind(pmd) in (LEAF, INVALID):
                if pmd_index(pmd) != slot:
                    problems.append(f"leaf in slot {slot} names slot {pmd_index(pmd)}")
        for page in free_set & set(mapped):
            problems.append(f"page {page} is free and mapped by slot {mapped[page]}")
        pending = set(pending)
        for page in pending & (free_set | set(mapped)):
            problems.append(f"page {page} is pending free and also free or mapped")
        lost = set(range(self.npages)) - free_set - set(mapped) - pending
        if lost:
            problems.append(f"{len(lost)} PTE pages leaked (neither free nor mapped), e.g. {min(lost)}")
        return problems
