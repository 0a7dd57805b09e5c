"""``percpu``: each CPU marks its own slot; the updater IPIs only the CPUs inside a walk."""

from multiprocessing.sharedctypes import RawArray

from lpw_mp.kernel.machine import smp_mb
from lpw_mp.kernel.strategies.base import Strategy

#: One 64-byte cache line per CPU, so that no two CPUs write the same line.
SLOT_STRIDE = 8


class PerCPUStrategy(Strategy):
    """v6 of the series (20200206030900.147032-1-leonardo@linux.ibm.com) and the 2026 per-CPU
    "active lockless walk mm" (20260202074557.16544-1-lance.yang@linux.dev).

    The walker writes its own slot then a barrier; the updater scans the slots and sends the IPI
    only to CPUs of ``mm_cpumask`` that are inside a walk, waiting for those alone."""

    name = "percpu"
    kernel = "v6 / 2026: per-CPU active-walk slot, IPI only CPUs inside a walk"

    def __init__(self, ctx, machine):
        super().__init__(ctx, machine)
        self.slots = RawArray("q", machine.ncpus * SLOT_STRIDE)

    def begin_lockless_pgtbl_walk(self, cpu: int) -> None:
        self.slots[cpu * SLOT_STRIDE] = 1
        smp_mb()

    def end_lockless_pgtbl_walk(self, cpu: int) -> None:
        smp_mb()
        self.slots[cpu * SLOT_STRIDE] = 0

    def walking_cpus(self, cpus) -> list:
        slots = self.slots
        return [cpu for cpu in cpus if slots[cpu * SLOT_STRIDE]]

    def serialize_against_pte_lookup(self, up) -> None:
        smp_mb()
        up.broadcast(self.walking_cpus(self.m.mm_cpumask()))
