"""A scheme of our own, written as a plugin: no IPI at all, the updater waits for walkers by
reading per-CPU walk epochs (the shape of userspace RCU's quiescent-state tracking, applied to
lockless page-table walkers).

Each walker publishes the global epoch it started under in its own per-CPU word, with a full
barrier before it reads the PMD, and clears the word when its window ends (a release store:
every use of the pointer is done before). After unlinking an entry the updater advances the
epoch (after a full barrier, so the unlink is visible first) and waits until no CPU is inside
a walk that began under an older epoch. A walker that began later read the PMD after the
unlink was visible: it cannot hold what the updater frees. Walkers hold their pointer, as in
the seed's era; page tables are still freed through the mmu_gather's RCU batch.

    python -m lpw_mp check examples/walk_epochs.py:WalkEpochs
    python -m lpw_mp --cpus 16 --memory 1G --strategy ipi,percpu,examples/walk_epochs.py:WalkEpochs

What it costs: no IPI, but the updater reads every CPU's word on every THP (as percpu does)
and spins while a walker is inside; the walker pays a shared-cache-line read of the epoch and
a full barrier, as percpu's walker does.

``WalkEpochsNoBarrier`` is the same scheme with the walker's barrier left out: ``check`` finds
the store-buffering counterexample under ``tso``.
"""

from multiprocessing.sharedctypes import RawArray

from lpw_mp.kernel.api import (DEFINE_PER_CPU, HOLD, READ_ONCE, WRITE_ONCE, Strategy,
                               for_each_cpu_READ_ONCE, name_words, per_cpu, smp_mb,
                               smp_store_release)


class WalkEpochs(Strategy):
    name = "walk-epochs"
    kernel = "(example plugin) per-CPU walk epochs, the updater polls instead of an IPI"
    walker = HOLD

    def __init__(self, ctx, machine):
        super().__init__(ctx, machine)
        #: The global epoch (one word; only the updater advances it). Starts at 1: 0 in a
        #: CPU's word means "not walking".
        self.epoch = name_words(RawArray("q", 1), "epoch")
        self.epoch[0] = 1
        self.walk_epoch = DEFINE_PER_CPU(machine, "walk_epoch")

    # -- walker side ----------------------------------------------------------------------

    def begin_lockless_pgtbl_walk(self, cpu: int) -> None:
        WRITE_ONCE(self.walk_epoch, per_cpu(cpu), READ_ONCE(self.epoch, 0))
        smp_mb()  # the epoch is published before the PMD is read

    def end_lockless_pgtbl_walk(self, cpu: int) -> None:
        smp_store_release(self.walk_epoch, per_cpu(cpu), 0)

    # -- updater side: the seed's paths (zap, split, collapse) ----------------------------

    def serialize_against_pte_lookup(self, up) -> None:
        smp_mb()  # the unlink is visible before the new epoch
        new = READ_ONCE(self.epoch, 0) + 1
        WRITE_ONCE(self.epoch, 0, new)
        smp_mb()  # and the new epoch before the per-CPU words are read
        cpus = self.m.online_cpus()

        def older_walkers_gone() -> bool:
            return not any(0 < e < new for e in for_each_cpu_READ_ONCE(self.walk_epoch, cpus))
        up.wait_event(older_walkers_gone, "walkers of an older epoch to leave")


class WalkEpochsNoBarrier(WalkEpochs):
    """The same with the walker's smp_mb() left out: unsafe under tso and weak."""
    name = "walk-epochs-no-mb"

    def begin_lockless_pgtbl_walk(self, cpu: int) -> None:
        WRITE_ONCE(self.walk_epoch, per_cpu(cpu), READ_ONCE(self.epoch, 0))
