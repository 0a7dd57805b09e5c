"""``count``: the seed (v5, Oct 2019), one atomic counter of running lockless walks per mm."""

from lpw_mp.kernel.hooks import LockHook
from lpw_mp.kernel.machine import DOING_LOCK, DOING_RUN, acquire_or_exit, smp_mb
from lpw_mp.kernel.strategies.base import Strategy


class CountStrategy(Strategy):
    """Leonardo Bras's v5 series (cover ``20191003013325.2614-1-leonardo@linux.ibm.com``,
    powerpc 2/11 ``-3-``, serialize 11/11 ``-12-``; never merged; docs/kernel-sources.md,
    claim 8), on the seed's paths: zap, split and collapse.

    ``begin_lockless_pgtbl_walk`` / ``end_lockless_pgtbl_walk`` increment and decrement one
    counter shared by every CPU, ``atomic_t mm->lockless_pgtbl_walkers`` (here a
    ``multiprocessing.Value`` and its lock, the atomic); the updater does ``smp_mb()`` and
    skips the broadcast to ``mm_cpumask`` when ``running_lockless_pgtbl_walk()`` reads zero.
    v5 increments before ``local_irq_save`` and decrements after ``local_irq_restore``, outside
    the IRQ-off window; lpw_mp changes it inside the window (after ``local_irq_disable``), which
    only narrows the counted span. Walkers ``hold`` their pointer."""

    name = "count"
    kernel = "v5 series: atomic lockless_pgtbl_walk_count per mm, skip IPI when zero"
    lock_name = "count's counter lock"
    skips_when_idle = True

    def __init__(self, ctx, machine):
        super().__init__(ctx, machine)
        self.counter = ctx.Value("q", 0, lock=ctx.Lock())
        self._lock = self.counter.get_lock()
        self._obj = self.counter.get_obj()
        self._stop = machine.stop
        self._doing = machine.doing

    def _atomic_add(self, cpu: int, delta: int, pause=None) -> None:
        lock = self._lock
        if not lock.acquire(False):
            # Contended: block, but give up if the run is being torn down (the holder may be
            # dead or frozen); say so meanwhile, so that a stalled IPI round can name why.
            self._doing[cpu] = DOING_LOCK
            acquire_or_exit(lock, self._stop)
            self._doing[cpu] = DOING_RUN
        self._obj.value += delta
        if pause is not None:  # a LockHook, in tests only
            pause()
        lock.release()

    def install_hooks(self, hooks) -> None:
        super().install_hooks(hooks)
        hook = next((h for h in hooks if isinstance(h, LockHook)), None)
        self._pause = hook.pause if hook is not None else None

    _pause = None  # a LockHook's pause, in the CPU process it is installed in (tests only)

    def begin_lockless_pgtbl_walk(self, cpu: int) -> None:
        self._atomic_add(cpu, 1, self._pause)

    def end_lockless_pgtbl_walk(self, cpu: int) -> None:
        self._atomic_add(cpu, -1)

    def running_lockless_pgtbl_walk(self) -> int:
        """How many walks are in progress (an ``atomic_read``: no lock)."""
        return self._obj.value

    def serialize_against_pte_lookup(self, up) -> None:
        smp_mb()
        if self.running_lockless_pgtbl_walk():
            up.broadcast(self.m.mm_cpumask())
