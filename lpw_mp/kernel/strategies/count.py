"""``count``: the seed (v5, Oct 2019), one atomic counter of running lockless walks per mm."""

from lpw_mp.kernel.hooks import LockHook
from lpw_mp.kernel.memory_model import atomic_dec, atomic_inc, atomic_read, atomic_t, smp_mb
from lpw_mp.kernel.strategies.base import Strategy


class CountStrategy(Strategy):
    """Leonardo Bras's v5 series (cover ``20191003013325.2614-1-leonardo@linux.ibm.com``,
    powerpc 2/11 ``-3-``, serialize 11/11 ``-12-``; never merged; docs/kernel-sources.md,
    claim 8), on the seed's paths: zap, split and collapse.

    ``begin_lockless_pgtbl_walk`` is ``atomic_inc(&mm->lockless_pgtbl_walkers); smp_mb()``,
    ``end_lockless_pgtbl_walk`` is ``smp_mb(); atomic_dec(...)`` (v5 1/11, include/asm-generic/
    pgtable.h: the barriers pair with the updater's, and ``atomic_inc`` alone orders nothing);
    the updater does ``smp_mb()`` and skips the broadcast to ``mm_cpumask`` when
    ``running_lockless_pgtbl_walk()`` (``atomic_read``) reads zero. v5 increments before
    ``local_irq_save`` and decrements after ``local_irq_restore``, outside the IRQ-off window;
    lpw_mp changes it inside the window (after ``local_irq_disable``), which only narrows the
    counted span. Walkers ``hold`` their pointer."""

    name = "count"
    kernel = "v5 series: atomic lockless_pgtbl_walk_count per mm, skip IPI when zero"
    lock_name = "count's counter lock"
    skips_when_idle = True

    def __init__(self, ctx, machine):
        super().__init__(ctx, machine)
        self.lockless_pgtbl_walkers = atomic_t(ctx, machine, "lockless_pgtbl_walkers")

    def install_hooks(self, hooks) -> None:
        super().install_hooks(hooks)
        hook = next((h for h in hooks if isinstance(h, LockHook)), None)
        self.lockless_pgtbl_walkers.pause = hook.pause if hook is not None else None

    def begin_lockless_pgtbl_walk(self, cpu: int) -> None:
        atomic_inc(self.lockless_pgtbl_walkers)
        smp_mb()

    def end_lockless_pgtbl_walk(self, cpu: int) -> None:
        smp_mb()
        atomic_dec(self.lockless_pgtbl_walkers)

    def running_lockless_pgtbl_walk(self) -> int:
        """How many walks are in progress (``atomic_read``: no lock)."""
        return atomic_read(self.lockless_pgtbl_walkers)

    def serialize_against_pte_lookup(self, up) -> None:
        smp_mb()
        if self.running_lockless_pgtbl_walk():
            up.broadcast(self.m.mm_cpumask())
