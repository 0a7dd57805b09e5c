"""The safety checker: a shared log of use-after-free violations seen by walkers.

A walker records the generation of the object its pointer refers to when it takes the pointer
(it is carried in the PMD entry) and compares it with the object's current generation at the
end of its IRQ-off window. A difference means the updater ran a destructive step while the
pointer was in use: one violation.
"""

from multiprocessing.sharedctypes import RawArray, RawValue

from lpw_mp.kernel.machine import acquire_or_exit

PTE_PAGE_REUSED = 1   # the PTE page was freed (and may be reused by another mapping)
PMD_SLOT_REPURPOSED = 2  # the huge leaf the walker treats as a PTE was freed or turned into a table
#: A walker of a profile that relies on GUP-fast's re-check (70cbc3cc78a9) used a value that had
#: changed under it without re-checking it.
STALE_VALUE_USED = 3
VIOLATION_KINDS = {PTE_PAGE_REUSED: "PTE page reused", PMD_SLOT_REPURPOSED: "PMD slot repurposed",
                   STALE_VALUE_USED: "stale value used without its re-check"}

#: Violations kept in detail; further ones are only counted.
CAPACITY = 256
_FIELDS = 5  # kind, cpu, slot, generation taken, generation seen


class SafetyChecker:
    """Violation counts and the first ``CAPACITY`` records, in shared memory."""

    def __init__(self, ctx, stop=None):
        self.lock = ctx.Lock()
        #: The machine's stop flag: a walker waiting for a frozen reporter gives up on it.
        self.stop = stop if stop is not None else RawValue("b", 0)
        self.count = RawValue("q", 0)
        self.records = RawArray("q", CAPACITY * _FIELDS)

    def report(self, kind: int, cpu: int, slot: int, taken: int, seen: int) -> None:
        acquire_or_exit(self.lock, self.stop)
        n = self.count.value
        if n < CAPACITY:
            base = n * _FIELDS
            self.records[base:base + _FIELDS] = [kind, cpu, slot, taken, seen]
        self.count.value = n + 1
        self.lock.release()

    def violations(self) -> list:
        n = min(self.count.value, CAPACITY)
        out = []
        for i in range(n):
            kind, cpu, slot, taken, seen = self.records[i * _FIELDS:(i + 1) * _FIELDS]
            out.append({"kind": VIOLATION_KINDS[kind], "cpu": cpu, "slot": slot,
                        "generation_taken": taken, "generation_seen": seen})
        return out

    def total(self) -> int:
        return self.count.value

    def by_kind(self) -> dict:
        counts = {name: 0 for name in VIOLATION_KINDS.values()}
        for v in self.violations():
            counts[v["kind"]] += 1
        return counts
