"""``percpu``: each CPU marks its own slot; the updater IPIs only the CPUs inside a walk."""

from lpw_mp.kernel.machine import DEFINE_PER_CPU, for_each_cpu_READ_ONCE, per_cpu
from lpw_mp.kernel.memory_model import WRITE_ONCE, smp_mb
from lpw_mp.kernel.strategies.base import Strategy


class PerCPUStrategy(Strategy):
    """Leonardo Bras's v6 series (cover ``20200206030900.147032-1-leonardo@linux.ibm.com``,
    counting 10/11 ``-11-``, serialize 11/11; never merged; docs/kernel-sources.md, claim 8),
    on the seed's paths: ``serialize_against_pte_lookup()`` on zap, split and collapse.

    ``static DEFINE_PER_CPU(int, lockless_pgtbl_walk_counter)``, incremented inside the IRQ-off
    window, then ``smp_mb()``; the updater scans ``mm_cpumask`` for CPUs whose counter is > 0
    and IPIs those alone, waiting for them. Walkers ``hold`` their pointer."""

    name = "percpu"
    kernel = "v6 series (2020): per-CPU counter, IPI only CPUs of mm_cpumask inside a walk"
    skips_when_idle = True

    def __init__(self, ctx, machine):
        super().__init__(ctx, machine)
        self.slots = DEFINE_PER_CPU(machine, "lockless_pgtbl_walk_counter")

    def begin_lockless_pgtbl_walk(self, cpu: int) -> None:
        WRITE_ONCE(self.slots, per_cpu(cpu), 1)
        smp_mb()

    def end_lockless_pgtbl_walk(self, cpu: int) -> None:
        smp_mb()
        WRITE_ONCE(self.slots, per_cpu(cpu), 0)

    def walking_cpus(self, cpus) -> list:
        values = for_each_cpu_READ_ONCE(self.slots, cpus)
        return [cpu for cpu, walking in zip(cpus, values) if walking]

    def serialize_against_pte_lookup(self, up) -> None:
        smp_mb()
        up.broadcast(self.walking_cpus(self.m.mm_cpumask()))
