"""What every serialisation strategy provides, on the walker side and on the updater side."""

from lpw_mp.kernel.rcu import RCU


def does_nothing(method):
    """Mark an updater-side method whose body is empty: the profile's kernel makes no call
    on that path (v5.8 took ``serialize_against_pte_lookup()`` out of
    ``pmdp_huge_get_and_clear``), so the coordinator may leave the call out
    (``updater_hook``). The counts are the same either way: a path that serialises
    nothing counts as skipped."""
    method.does_nothing = True
    return method


def updater_hook(strategy, path: str):
    """``strategy``'s bound method for ``path`` (``zap_huge_pmd``, ``pmdp_invalidate``,
    ``pmdp_collapse_flush``), or None when the call would do nothing: the method is marked
    ``@does_nothing``, or it is the base class's and the ``serialize_against_pte_lookup`` it
    calls is. Any override of either, in a subclass or on the instance, is unmarked and so
    is called, once per THP."""
    hook = getattr(strategy, path)
    func = getattr(hook, "__func__", None)
    if func is getattr(Strategy, path):
        func = getattr(strategy.serialize_against_pte_lookup, "__func__", None)
    return None if getattr(func, "does_nothing", False) else hook


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
    #: True when the updater skips the IPI if it sees no walk in progress (``count``,
    #: ``percpu``): how often it finds one depends on when walks start, so the updater counts
    #: the walks that start during its IPI rounds (``UpdaterStats.walks_in_rounds``).
    skips_when_idle = False

    def __init__(self, ctx, machine):
        self.m = machine
        #: RCU, under every profile: every profile frees page tables through it, so every CPU
        #: reports quiescent states (end of an IRQ-off window when owed, entering idle).
        self.rcu = RCU(ctx, machine)

    def install_hooks(self, hooks) -> None:
        """Tests only: this CPU process's hooks (``lpw_mp.kernel.hooks``), installed in its
        own copy of the strategy. A strategy with points of its own picks its hooks here."""
        self.rcu.install_hooks(hooks)

    # -- walker side --------------------------------------------------------------------------

    def begin_lockless_pgtbl_walk(self, cpu: int) -> None:
        """Called after ``local_irq_disable()``, before the PMD is read."""

    def end_lockless_pgtbl_walk(self, cpu: int) -> None:
        """Called after the last use of the pointer, before ``local_irq_enable()``."""

    def lockless_walk(self, cpu: int, find_linux_pte, use) -> None:
        """The whole walk inside the IRQ-off window, for a strategy that must order its steps
        in another way: ``found = find_linux_pte()`` reads the PMD (and the PTE it names),
        ``use(found)`` uses the result until the window ends. The default is the kernel's
        order; built-in strategies keep it (the emulator then runs its inlined path)."""
        self.begin_lockless_pgtbl_walk(cpu)
        use(find_linux_pte())
        self.end_lockless_pgtbl_walk(cpu)

    # -- updater side, one method per path ----------------------------------------------------

    def serialize_against_pte_lookup(self, up) -> None:
        """Return only when no walker can still hold a pointer read before the last unlink.

        ``up`` is the coordinator's ``Updater``: it sends broadcasts and keeps the counts."""
        raise NotImplementedError

    def zap_huge_pmd(self, up) -> None:
        """ZAP_LEAF: after ``pmdp_huge_get_and_clear`` of a huge leaf, before its data page is
        freed (``tlb_remove_page_size``). powerpc <= v5.7 serialised in
        ``{hash,radix}__pmdp_huge_get_and_clear`` (docs/kernel-sources.md, claim 1)."""
        self.serialize_against_pte_lookup(up)

    def pmdp_invalidate(self, up) -> None:
        """SPLIT: after ``pmdp_invalidate`` marks the leaf invalid, before the slot becomes a
        table. powerpc <= v5.7 serialised in ``pmdp_invalidate`` (claim 1)."""
        self.serialize_against_pte_lookup(up)

    def pmdp_collapse_flush(self, up) -> None:
        """COLLAPSE: after ``pmdp_collapse_flush`` clears the table pointer, before the PTE page
        leaves. ``{hash,radix}__pmdp_collapse_flush`` serialised until v6.0 (claims 1, 4)."""
        self.serialize_against_pte_lookup(up)

    def tlb_remove_table(self, up, page: int) -> None:
        """FREE_TABLE (``free_pgtables`` -> ``pte_free_tlb`` -> ``tlb_remove_table``): no era
        called ``serialize_against_pte_lookup`` here; powerpc frees page tables through the
        mmu_gather's RCU batch since 267239116987 (v3.0; claim 3). Every profile but the
        unsafe control does the same."""
        up.tlb.tlb_remove_table(page)

    # -- pickling -----------------------------------------------------------------------------

    def __reduce_ex__(self, protocol):
        """Under spawn every child is sent the strategy pickled. A class from outside the
        package may live in a file that no child can import by module name, so the harness's
        loader (``harness/plugins.py``) marks such a class with its spec and a rebuild
        function, and its instance is pickled as that function called on the spec, then its
        state: the child loads the class from the spec before it reads the state. The kernel
        imports neither the harness nor user code: it calls what the loader left on the class
        (pickled by reference, as a module's function). Every other class, the built-ins and
        their unmarked subclasses, pickles as any object does."""
        spec = vars(type(self)).get("_lpw_mp_spec")
        if spec is None:
            return super().__reduce_ex__(protocol)
        return vars(type(self))["_lpw_mp_rebuild"], (spec,), self.__getstate__()
