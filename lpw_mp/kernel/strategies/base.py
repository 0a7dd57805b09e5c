"""What every serialisation strategy provides, on the walker side and on the updater side."""

from lpw_mp.kernel.hooks import FreezeHook


class Strategy:
    """One way to keep lockless walkers from using a freed page-table page.

    Walker-side methods run in a CPU process with its IRQ flag already set; updater-side methods
    run in the coordinator, between the unlink of an entry and the destructive step that follows.
    Shared state a strategy needs is allocated in ``__init__``, before the processes fork.
    """

    name = ""
    #: The kernel code or patch series this strategy stands for (shown in reports and --help).
    kernel = ""
    #: False only for the control that is meant to be caught by the safety checker.
    safe = True
    #: The walker discipline of the era (``lpw_mp.kernel.cpu.WALKERS``); ``--walker`` overrides.
    walker = "hold"
    #: What ``doing == DOING_LOCK`` means for this strategy, in error messages.
    lock_name = "a lock"
    #: A test's ``FreezeHook`` for the CPU process this copy of the strategy runs in, if any.
    freeze = None

    def __init__(self, ctx, machine):
        self.m = machine

    def install_hooks(self, hooks) -> None:
        """Tests only: this CPU process's hooks (``lpw_mp.kernel.hooks``), installed in its
        own copy of the strategy. A strategy with points of its own picks its hooks here."""
        self.freeze = next((h for h in hooks if isinstance(h, FreezeHook)), None)

    # -- walker side --------------------------------------------------------------------------

    def begin_lockless_pgtbl_walk(self, cpu: int) -> None:
        """Called after ``local_irq_disable()``, before the PMD is read."""

    def end_lockless_pgtbl_walk(self, cpu: int) -> None:
        """Called after the last use of the pointer, before ``local_irq_enable()``."""

    def cpu_idle_enter(self, cpu: int) -> None:
        """The CPU is about to block (idle) with IRQs enabled."""

    def cpu_idle_exit(self, cpu: int) -> None:
        """The CPU woke from idle."""

    # -- updater side -------------------------------------------------------------------------

    def serialize_against_pte_lookup(self, up) -> None:
        """Return only when no walker can still hold a pointer read before the last unlink.

        ``up`` is the coordinator's ``Updater``: it sends broadcasts and keeps the counts."""
        raise NotImplementedError

    def tlb_remove_table(self, up, destroy, page=None) -> None:
        """munmap: the entry is cleared; run ``destroy`` (the free) when it is safe.

        The default serialises at once, then frees: the seed's per-THP behaviour."""
        self.serialize_against_pte_lookup(up)
        destroy()

    def tlb_finish_mmu(self, up) -> None:
        """munmap is done: free whatever is still deferred."""

    def pending_pages(self) -> list:
        """PTE pages unlinked but not yet freed (for consistency checks)."""
        return []
