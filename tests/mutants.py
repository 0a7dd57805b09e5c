"""Mutants: built-in strategies with one mistake each, of the kinds kernel developers make
(an order swapped, a lifetime cut short, the wrong CPUs targeted, a serialisation skipped, a
barrier missing). ``lpw_mp check`` must reject every one, and accept every built-in safe
profile (tests/test_check.py; benchmarks/mutation_score.py prints the score).

Each is a plugin class, loaded by spec as a user's would be: ``tests/mutants.py:Name``.
Every mutant is marked safe, so that check blames it as it would blame a user's scheme.
"""

from lpw_mp.kernel.machine import for_each_cpu_READ_ONCE, per_cpu
from lpw_mp.kernel.memory_model import WRITE_ONCE, atomic_dec, atomic_inc, smp_mb, smp_rmb
from lpw_mp.kernel.rcu import RCU
from lpw_mp.kernel.strategies.count import CountStrategy
from lpw_mp.kernel.strategies.ipi import IPIStrategy
from lpw_mp.kernel.strategies.percpu import PerCPUStrategy
from lpw_mp.kernel.strategies.sync_mm import SyncMMStrategy
from lpw_mp.kernel.strategies.v5_8 import V58Strategy


class CountIncAfterPMDRead(CountStrategy):
    """Ordering: the counter is raised only once the PMD has been read, so an updater that
    checks in between sees no walker and frees what it is about to use."""
    name = "mutant-count-inc-late"

    def lockless_walk(self, cpu, find_linux_pte, use):
        found = find_linux_pte()
        self.begin_lockless_pgtbl_walk(cpu)
        use(found)
        self.end_lockless_pgtbl_walk(cpu)


class CountDecBeforeLastUse(CountStrategy):
    """Lifetime: the counter drops before the walker's last use of the pointer."""
    name = "mutant-count-dec-early"

    def lockless_walk(self, cpu, find_linux_pte, use):
        self.begin_lockless_pgtbl_walk(cpu)
        found = find_linux_pte()
        self.end_lockless_pgtbl_walk(cpu)
        use(found)


class CountNoWalkerBarrier(CountStrategy):
    """Ordering (weak only): ``atomic_inc`` implies no barrier; without v5's ``smp_mb()``
    after it, the increment can become visible after the PMD read."""
    name = "mutant-count-no-walker-mb"

    def begin_lockless_pgtbl_walk(self, cpu):
        atomic_inc(self.lockless_pgtbl_walkers)

    def end_lockless_pgtbl_walk(self, cpu):
        smp_mb()
        atomic_dec(self.lockless_pgtbl_walkers)


class PerCPUNoWalkerBarrier(PerCPUStrategy):
    """Ordering (tso and weak): without the walker's ``smp_mb()`` its slot store waits in the
    store buffer while it reads the PMD: the store-buffering pattern."""
    name = "mutant-percpu-no-walker-mb"

    def begin_lockless_pgtbl_walk(self, cpu):
        WRITE_ONCE(self.slots, per_cpu(cpu), 1)


class PerCPUNoEndBarrier(PerCPUStrategy):
    """Ordering (weak only): without the ``smp_mb()`` before the walker clears its slot, the
    clear can become visible before the walker's last use of the pointer is satisfied."""
    name = "mutant-percpu-no-end-mb"

    def end_lockless_pgtbl_walk(self, cpu):
        WRITE_ONCE(self.slots, per_cpu(cpu), 0)


class CountNoEndBarrier(CountStrategy):
    """Ordering (weak only): ``atomic_dec`` orders nothing; without v5's ``smp_mb()`` before
    it the decrement can be seen before the last use is done."""
    name = "mutant-count-no-end-mb"

    def end_lockless_pgtbl_walk(self, cpu):
        atomic_dec(self.lockless_pgtbl_walkers)


class SyncMMPlainEnd(SyncMMStrategy):
    """Ordering (weak only): the walker clears its per-CPU mm with ``WRITE_ONCE``, not
    ``smp_store_release``: the clear can pass the walker's reads of the PTE page."""
    name = "mutant-sync-mm-plain-end"

    def end_lockless_pgtbl_walk(self, cpu):
        WRITE_ONCE(self.active_lockless_pt_walk_mm, per_cpu(cpu), 0)


class PerCPUScanBeforeBarrier(PerCPUStrategy):
    """Ordering (tso and weak): the updater scans the slots before its ``smp_mb()``, while its
    PMD clear may still sit in its store buffer."""
    name = "mutant-percpu-scan-early"

    def serialize_against_pte_lookup(self, up):
        cpus = self.walking_cpus(self.m.mm_cpumask())
        smp_mb()
        up.broadcast(cpus)


class SyncMMv4Rmb(SyncMMStrategy):
    """Ordering (tso and weak): Lance Yang's v4 as posted, ``smp_rmb()`` before the scan, which
    does not order the PMD clear (a store) before the scan's loads."""
    name = "mutant-sync-mm-rmb"

    def pmdp_collapse_flush(self, up):
        smp_rmb()
        online = self.m.online_cpus()
        values = for_each_cpu_READ_ONCE(self.active_lockless_pt_walk_mm, online)
        cpus = [cpu for cpu, mm in zip(online, values) if mm]
        up.broadcast(cpus)


class V58HoldWalkers(V58Strategy):
    """Discipline: v5.8 removes the IPI from zap and split because its walkers read the PMD
    once and never dereference a stale pointer; a walker that holds the pointer is unsafe."""
    name = "mutant-v5.8-hold"
    walker = "hold"


class EarlyGracePeriodRCU(RCU):
    """RCU whose grace period ends as soon as it starts: callbacks run before every CPU has
    passed a quiescent state."""

    def _gp_over(self, up, wait):
        return True


class V58EarlyFree(V58Strategy):
    """Lifetime: page tables freed by an RCU whose grace periods end before the readers do."""
    name = "mutant-v5.8-early-free"

    def __init__(self, ctx, machine):
        super().__init__(ctx, machine)
        self.rcu = EarlyGracePeriodRCU(ctx, machine)


class IPISkipsIRQsOff(IPIStrategy):
    """Targeting: the broadcast leaves out CPUs with IRQs disabled, exactly the ones it must
    wait for."""
    name = "mutant-ipi-skips-irqs-off"

    def serialize_against_pte_lookup(self, up):
        up.broadcast([cpu for cpu in self.m.mm_cpumask() if not self.m.irq_off[cpu]])


class PerCPUSkipsLastCPU(PerCPUStrategy):
    """Targeting: the scan stops one CPU short (an off-by-one in the cpumask loop)."""
    name = "mutant-percpu-skips-last-cpu"

    def walking_cpus(self, cpus):
        return super().walking_cpus(cpus[:-1])


class IPIEveryOther(IPIStrategy):
    """Skipping: serialises every other THP only."""
    name = "mutant-ipi-every-other"

    def __init__(self, ctx, machine):
        super().__init__(ctx, machine)
        self.calls = 0

    def serialize_against_pte_lookup(self, up):
        self.calls += 1
        if self.calls % 2:
            up.broadcast(self.m.mm_cpumask())


#: Every mutant, and the memory models that must catch it (None: every model).
MUTANTS = {
    CountIncAfterPMDRead: None,
    CountDecBeforeLastUse: None,
    CountNoWalkerBarrier: ("weak",),
    PerCPUNoWalkerBarrier: ("tso", "weak"),
    PerCPUNoEndBarrier: ("weak",),
    CountNoEndBarrier: ("weak",),
    SyncMMPlainEnd: ("weak",),
    PerCPUScanBeforeBarrier: ("tso", "weak"),
    SyncMMv4Rmb: ("tso", "weak"),
    V58HoldWalkers: None,
    V58EarlyFree: None,
    IPISkipsIRQsOff: None,
    PerCPUSkipsLastCPU: None,
    IPIEveryOther: None,
}
