"""The coordinator: the CPU that unmaps, splits and collapses THPs (``zap_huge_pmd``,
``__split_huge_pmd``, khugepaged's ``collapse_huge_page``) and frees PTE tables
(``free_pgtables``). Each path asks the profile under test how to serialise against lockless
walkers: ZAP_LEAF (``zap_huge_pmd``), FREE_TABLE (``tlb_remove_table``), SPLIT
(``pmdp_invalidate``) and COLLAPSE (``pmdp_collapse_flush``)."""

import heapq
import random
import time
from dataclasses import dataclass, field
from multiprocessing.sharedctypes import RawArray

from lpw_mp.kernel import pagetable as ptm
from lpw_mp.kernel import trace as tr
from lpw_mp.kernel.machine import NSTATS, SLOT_STRIDE, ST_WALKS, Aborted, WaitTimeout
from lpw_mp.kernel.memory_model import current, fence, quiet, step
from lpw_mp.kernel.mmu_gather import MMUGather
from lpw_mp.kernel.strategies.base import updater_hook

OPS = ("munmap", "split", "collapse", "mixed")

# Progress array: slot being worked on, its phase, operations done, operations planned.
P_SLOT, P_PHASE, P_DONE, P_TOTAL = range(4)
PHASE_IDLE, PHASE_UNLINKED, PHASE_SERIALIZING, PHASE_DESTROYED = range(4)

#: IPI rounds each run keeps in detail (``UpdaterStats.slowest_rounds``), the slowest.
SLOWEST_ROUNDS = 5

#: munmap with no memory model looks at the abort flag, polls RCU and stores its progress once
#: per this many THPs that call no hook (and at every one that does): some tens of
#: microseconds of work, far inside any bound of the parent's watchdog.
ZAP_BATCH = 64


def _cpu_list(cpus) -> str:
    return ", ".join(map(str, cpus[:8])) + (" ..." if len(cpus) > 8 else "")


class EventTimeout(WaitTimeout):
    """A strategy's own wait (``Updater.wait_event``) did not end within the bound."""

    def __init__(self, seconds, what):
        RuntimeError.__init__(self, f"the strategy's wait for {what} did not end within "
                                    f"{seconds:g} s")
        self.cpus, self.seconds = [], seconds


def words(array) -> memoryview:
    """The 64-bit words of shared ``RawArray("q")`` ``array`` as a memoryview: the same memory,
    a load or store of one aligned word as through the array, with less on the way."""
    return memoryview(array).cast("B").cast("q")


def new_progress():
    return RawArray("q", 4)


@dataclass
class UpdaterStats:
    ops: dict = field(default_factory=lambda: {op: 0 for op in ("munmap", "split", "collapse",
                                                                "fault")})
    serialisations: int = 0
    skipped: int = 0
    ipis_sent: int = 0
    rounds: list = field(default_factory=list)
    grace_periods: int = 0
    gp_latencies: list = field(default_factory=list)
    destroyed: int = 0
    pool_exhausted: int = 0
    #: PTE pages queued by tlb_remove_table for an RCU free; batches handed to call_rcu.
    frees_deferred: int = 0
    call_rcu_batches: int = 0
    #: tlb_remove_table_one fallbacks (no batch page), and the IPIs every sync_one sent.
    batch_failures: int = 0
    sync_ipis: int = 0
    #: The operation's time: until munmap (or the mixed run) returned.
    wall_s: float = 0.0
    #: From the start until the last deferred free ran (None: nothing was deferred).
    deferred_free_s: float = None
    #: What the walkers did while the operation ran (start to end, nothing else).
    walkers: dict = field(default_factory=dict)
    #: Walks that started during an IPI round (None: not counted, the strategy does not skip
    #: the IPI when idle). A CPU woken by an IPI starts a walk that was due at once, and a
    #: round keeps the updater from seeing walks: the rate the updater meets is the one
    #: outside its rounds.
    walks_in_rounds: int = None
    #: The updater's own time between one check for walkers and the next (from the start of a
    #: check to the start of the next, less the IPI rounds between), in seconds; None when not
    #: kept (as walks_in_rounds). The overlap model needs their spread, not only their mean:
    #: a check after the host descheduled the updater for milliseconds meets at most one
    #: window's worth of walks, not milliseconds' worth.
    check_gaps: list = None
    #: The ``SLOWEST_ROUNDS`` slowest IPI rounds, slowest first: their number, time, start
    #: (seconds into the operation), targets, the CPU whose acknowledgement ended each, and
    #: why it came last (``trace.WHY_NAMES``; None when not traced).
    slowest_rounds: list = field(default_factory=list)


class Updater:
    """The updater side of one run: performs operations on the page table and keeps counts."""

    def __init__(self, machine, table, strategy, timeout: float, progress=None,
                 batch_fail_rate: float = 0.0, seed: int = 0):
        self.m = machine
        self.pt = table
        self.strategy = strategy
        self.timeout = timeout
        self.progress = progress if progress is not None else new_progress()
        self.stats = UpdaterStats()
        self.rcu = strategy.rcu
        self.tlb = MMUGather(self, strategy.rcu, batch_fail_rate, seed)
        self._start = time.perf_counter()
        if strategy.skips_when_idle:
            self.stats.walks_in_rounds = 0
            self.stats.check_gaps = []
        self._check_start, self._rounds_then, self._in_rounds = None, 0.0, 0.0
        self._slowest = []  # a min-heap of the slowest rounds' records
        traced = machine.trace
        #: The coordinator's trace writer (``--trace``), else None.
        self.trace = traced.writer(traced.coordinator_track) if traced is not None else None
        if traced is not None:
            self.rcu.trace, self.rcu.gp_trace = self.trace, traced.writer(traced.rcu_track)

    def broadcast(self, cpus) -> None:
        """One ``smp_call_function_many(cpus, do_nothing, NULL, 1)`` round, timed; nothing for
        an empty mask (the kernel's returns at once too)."""
        if not cpus:
            return
        step("smp_call_function_many(CPUs %s, wait=1)", _cpu_list(cpus))
        counting = self.stats.walks_in_rounds is not None
        if counting:
            before = self.walks_started()
        m = self.m
        start = time.perf_counter_ns()
        m.smp_call_function_many(cpus, self.timeout)
        end = time.perf_counter_ns()
        took = (end - start) / 1e9
        self.stats.rounds.append(took)
        self._in_rounds += took
        if counting:
            self.stats.walks_in_rounds += self.walks_started() - before
        self.stats.serialisations += 1
        self.stats.ipis_sent += len(cpus)
        last, number, why = m.last_acker.value, m.round_no.value, tr.WHY_UNKNOWN
        if self.trace is not None:
            why = self._round_why(cpus, last)
            self.trace.emit(tr.ROUND, start, end - start, number, len(cpus),
                            (last + 1) << 8 | why)
        record = (took, number, start, len(cpus), last, why)
        if len(self._slowest) < SLOWEST_ROUNDS:
            heapq.heappush(self._slowest, record)
        elif took > self._slowest[0][0]:
            heapq.heapreplace(self._slowest, record)

    def walks_started(self) -> int:
        """Walks every CPU has started: those ended (the walker counters) and those in
        progress (IRQs off). Outside the timed round: a read costs about 2 us at 8 CPUs and
        25 us at 128."""
        m = self.m
        return sum(m.stats[ST_WALKS::NSTATS]) + sum(m.irq_off)

    def _round_why(self, cpus, last: int) -> int:
        """Why CPU ``last`` answered the round to ``cpus`` just ended last (traced runs):
        ``trace.round_why`` of its window and of the answer before its."""
        m = self.m
        if last < 0:
            return tr.WHY_UNKNOWN
        acks = m.ack_ns
        before = max((acks[c * SLOT_STRIDE] for c in cpus if c != last),
                     default=m.round_sent.value)
        return tr.round_why(bool(m.last_in_window.value), acks[last * SLOT_STRIDE], before)

    def serialise(self, step, *args, checks_walkers: bool = True) -> None:
        """Run one serialising step of the strategy, ``step(self, *args)``, and count it as
        skipped when it neither broadcast nor waited for a grace period. The updater keeps this
        count, not the strategies, so that "skipped" means the same under every strategy.
        ``checks_walkers``: False for ``tlb_remove_table``, which looks for no walker (its gap
        is not one between checks)."""
        stats = self.stats
        before = stats.serialisations + stats.grace_periods
        gaps = stats.check_gaps
        trace = self.trace
        if trace is not None:
            began = time.perf_counter_ns()
        if gaps is None or not checks_walkers:
            step(self, *args)
        else:
            # From the start of one check to the start of the next, less IPI rounds: the
            # check's own time counts (percpu reads every CPU's slot one by one, and a walk
            # that starts before its slot is read is seen).
            now = time.perf_counter()
            if self._check_start is not None:
                gaps.append(now - self._check_start - (self._in_rounds - self._rounds_then))
            self._check_start, self._rounds_then = now, self._in_rounds
            step(self, *args)
        if trace is not None:
            name = getattr(step, "__name__", "")
            self._step(tr.STEP_SERIALISE, began, self.progress[P_SLOT],
                       tr.HOOKS.index(name) if name in tr.HOOKS else 0)
        if stats.serialisations + stats.grace_periods == before:
            stats.skipped += 1

    def _step(self, code: int, began: int, slot: int, c: int = 0) -> None:
        """Trace step ``code`` of the operation on ``slot`` (-1: none, a deferred free), from
        ``began`` (host ns) to now; ``c``: the serialising hook (``trace.HOOKS``), or one more
        than the PTE page a destroy step frees."""
        self.trace.emit(tr.STEP, began, time.perf_counter_ns() - began, slot, code, c)

    def _phase(self, slot: int, phase: int) -> None:
        self.progress[P_SLOT] = slot
        self.progress[P_PHASE] = phase

    def _destroyed(self, slot: int, began: int) -> None:
        """Count the destructive step just done on ``slot`` (its ``step`` came before it, so
        that ``check`` can stop the coordinator there), begun at ``began`` (host ns; traced
        runs), and say so in the progress array."""
        self.stats.destroyed += 1
        if self.trace is not None:
            self._step(tr.STEP_DESTROY, began, slot)
        self._phase(slot, PHASE_DESTROYED)

    # -- freeing ------------------------------------------------------------------------------

    def free_table(self, page: int, deferred: bool = False) -> None:
        """Destructive step: PTE page ``page`` goes back to the allocator (``__tlb_remove_table``
        -> ``pte_free``), now or, ``deferred``, from an RCU callback."""
        step("pte_free(PTE page %d) (destructive)", page)
        began = time.perf_counter_ns() if self.trace is not None else 0
        self.pt.pte_free(page)
        if self.trace is not None:
            self._step(tr.STEP_DESTROY, began, -1 if deferred else self.progress[P_SLOT],
                       page + 1)
        self.stats.destroyed += 1
        if deferred:
            self.stats.deferred_free_s = time.perf_counter() - self._start

    def tlb_finish_mmu(self) -> None:
        """The end of an unmap: the partial batch goes to call_rcu too."""
        self.tlb.tlb_table_flush()

    def pending_pages(self) -> list:
        return self.tlb.pending_pages()

    def rcu_barrier(self) -> None:
        """Wait (bounded) until every deferred free has run."""
        self.rcu.rcu_barrier(self)

    # -- operations ---------------------------------------------------------------------------

    def zap_pmd(self, slot: int) -> None:
        """munmap of one slot, ``pmdp_huge_get_and_clear`` then by kind of entry: a huge leaf
        is ZAP_LEAF (``zap_huge_pmd``; its data page goes by ``tlb_remove_page_size``, freed
        once serialised); a PTE table is FREE_TABLE (``free_pgtables`` -> ``pte_free_tlb`` ->
        ``tlb_remove_table``), which no era serialised with ``serialize_against_pte_lookup``."""
        began = time.perf_counter_ns() if self.trace is not None else 0
        old = self.pt.pmdp_huge_get_and_clear(slot)
        if self.trace is not None:
            self._step(tr.STEP_UNLINK, began, slot)
        self.stats.ops["munmap"] += 1
        self._zap_cleared(slot, old)

    def _zap_cleared(self, slot: int, old: int) -> None:
        """``zap_pmd`` after the clear: what the entry ``old`` of ``slot`` pointed to goes."""
        kind = ptm.pmd_kind(old)
        if kind == ptm.NONE:
            return
        if kind == ptm.TABLE:
            self._phase(slot, PHASE_UNLINKED)
            self.serialise(self.strategy.tlb_remove_table, ptm.pmd_index(old),
                           checks_walkers=False)
            return
        self._phase(slot, PHASE_SERIALIZING)
        self.serialise(self.strategy.zap_huge_pmd)
        step("free the THP of slot %d (destructive)", slot)
        began = time.perf_counter_ns() if self.trace is not None else 0
        self.pt.retire_slot(slot)
        self._destroyed(slot, began)

    def split(self, slot: int) -> bool:
        """SPLIT: ``pmdp_invalidate``, serialise as the profile does, install the table."""
        if ptm.pmd_kind(self.pt.pmd(slot)) != ptm.LEAF:
            return False
        if not self.pt.free_pages():
            self.stats.pool_exhausted += 1
            return False
        began = time.perf_counter_ns() if self.trace is not None else 0
        self.pt.pmdp_invalidate(slot)
        self._phase(slot, PHASE_SERIALIZING)
        if self.trace is not None:
            self._step(tr.STEP_UNLINK, began, slot)
        self.serialise(self.strategy.pmdp_invalidate)
        page = self.pt.pte_alloc_one(slot)
        step("install PTE page %d in slot %d (destructive)", page, slot)
        began = time.perf_counter_ns() if self.trace is not None else 0
        self.pt.retire_slot(slot)
        self.pt.set_pmd_table(slot, page)
        self._destroyed(slot, began)
        self.stats.ops["split"] += 1
        return True

    def collapse(self, slot: int) -> bool:
        """COLLAPSE (khugepaged's ``collapse_huge_page``): ``pmdp_collapse_flush``, serialise
        as the profile does, then the PTE page leaves the walkers' reach (its generation
        bumped) and a huge leaf is installed. The anon path re-deposits the page
        (``pgtable_trans_huge_deposit``) rather than freeing it; here it goes back to the pool,
        which a walker cannot tell apart: either way it is no longer the table it read."""
        old = self.pt.pmd(slot)
        if ptm.pmd_kind(old) != ptm.TABLE:
            return False
        began = time.perf_counter_ns() if self.trace is not None else 0
        self.pt.pmdp_huge_get_and_clear(slot)
        self._phase(slot, PHASE_SERIALIZING)
        if self.trace is not None:
            self._step(tr.STEP_UNLINK, began, slot)
        self.serialise(self.strategy.pmdp_collapse_flush)
        page = ptm.pmd_index(old)
        step("pte_free(PTE page %d), install a THP in slot %d (destructive)", page, slot)
        began = time.perf_counter_ns() if self.trace is not None else 0
        self.pt.pte_free(page)
        self.pt.retire_slot(slot)
        self.pt.set_pmd_leaf(slot)
        self._destroyed(slot, began)
        self.stats.ops["collapse"] += 1
        return True

    def fault(self, slot: int, table: bool) -> bool:
        """A page fault maps an empty slot again (no serialisation: nothing could be held)."""
        if self.pt.pmd(slot) != 0:
            return False
        if table and self.pt.free_pages():
            self.pt.set_pmd_table(slot, self.pt.pte_alloc_one(slot))
        else:
            self.pt.set_pmd_leaf(slot)
        self.stats.ops["fault"] += 1
        return True

    # -- whole runs ---------------------------------------------------------------------------

    def run(self, op: str, slots=None, mixed_ops: int = 0, seed: int = 0) -> UpdaterStats:
        """Perform ``op`` over ``slots`` (default: the whole region), timing it end to end."""
        if op not in OPS:
            raise ValueError(f"unknown operation {op!r}")
        slots = range(self.pt.npmds) if slots is None else list(slots)
        progress = self.progress
        walkers_before = self.m.walker_counters()
        start = self._start = time.perf_counter()
        if op == "mixed":
            self._mixed(slots, mixed_ops or len(slots), seed)
        else:
            progress[P_TOTAL] = len(slots)
            if op == "munmap" and current() is None and self.trace is None:
                self._zap_range(slots)
            else:
                self._each(op, slots)
            if op == "munmap":
                self.tlb_finish_mmu()
        self.stats.wall_s = time.perf_counter() - start
        # munmap has returned; the deferred frees run once their grace periods end. Wait for
        # them, so that the run ends with every page freed (and says how long that took).
        progress[P_PHASE] = PHASE_SERIALIZING
        self.rcu_barrier()
        self.stats.walkers = self.m.walker_counters(since=walkers_before)
        self.stats.slowest_rounds = self.slowest_rounds(start)
        fence()  # every store still buffered (--memory-model) is visible to the parent
        self._phase(-1, PHASE_IDLE)
        return self.stats

    def slowest_rounds(self, start: float) -> list:
        """The slowest IPI rounds kept so far, slowest first, as ``UpdaterStats`` keeps them
        (``start``: the operation's, ``perf_counter`` seconds)."""
        return [{"round": number, "took_s": took, "at_s": began / 1e9 - start,
                 "targets": targets, "cpu": cpu if cpu >= 0 else None,
                 "why": tr.WHY_NAMES.get(why)}
                for took, number, began, targets, cpu, why in sorted(self._slowest,
                                                                      reverse=True)]

    def _op(self, op: str, action, slot: int, *args):
        """``action(slot, *args)``, operation ``op``, traced when the run is (unless it did
        nothing: a split of a slot that holds no THP)."""
        if self.trace is None:
            return action(slot, *args)
        began = time.perf_counter_ns()
        done = action(slot, *args)
        if done is not False:
            self.trace.emit(tr.OP, began, time.perf_counter_ns() - began, slot,
                            tr.OP_CODES[op])
        return done

    def _each(self, op: str, slots) -> None:
        """``op`` on each of ``slots`` in turn, through the path's own method."""
        progress = self.progress
        action = {"munmap": self.zap_pmd, "split": self.split, "collapse": self.collapse}[op]
        abort, rcu = self.m.abort, self.rcu
        for slot in slots:
            if abort.value:  # a strategy that never waits would not notice otherwise
                raise Aborted("run aborted")
            self._op(op, action, slot)
            rcu.rcu_process_callbacks(self)
            progress[P_DONE] += 1

    def _zap_range(self, slots) -> None:
        """munmap of ``slots`` (a range or a list) with no memory model installed (``sc``;
        not ``check``, not ``--memory-model``), as ``zap_pmd_range()`` walks a PMD table:
        per slot what ``zap_pmd`` does, with the huge leaf (ZAP_LEAF) inlined. On that path
        ``READ_ONCE``/``WRITE_ONCE`` are one plain load or store and ``step`` does nothing,
        so the loads and stores are made here directly, in the same order; the strategy's
        ``zap_huge_pmd`` is called per THP unless it does nothing (``updater_hook``). Any
        other entry (a PTE table, an empty slot) goes through ``_zap_cleared``.

        What ``_each`` does between two slots is done once per ``ZAP_BATCH`` THPs that call
        no hook: look at the abort flag, poll RCU, store ``P_SLOT`` (the batch's last slot)
        and ``P_DONE`` (a count kept here, stored, not read back and incremented). Around a
        THP that calls a hook, and any other entry, the progress array names the slot and
        its phase (serialising, then destroyed), ``P_DONE`` counts the slots before it, and
        RCU is polled after it, as under ``_each``. Counts are worked out from the slots
        done when the loop ends, however it ends: each slot cleared is an unmap, each huge
        leaf freed a destroyed object (and a skip when no hook was called)."""
        pmds, slot_gen, progress = map(words, (self.pt.pmds, self.pt.slot_gen, self.progress))
        abort, rcu = self.m.abort, self.rcu
        hook = updater_hook(self.strategy, "zap_huge_pmd")
        shift, leaf = ptm.KIND_SHIFT, ptm.LEAF
        start = done = progress[P_DONE]
        others = freed = 0  # slots that held no huge leaf; THPs freed after their hook
        progress[P_PHASE] = PHASE_DESTROYED
        try:
            for first in range(0, len(slots), ZAP_BATCH):
                if abort.value:  # a strategy that never waits would not notice otherwise
                    raise Aborted("run aborted")
                for slot in slots[first:first + ZAP_BATCH]:
                    old = pmds[slot]  # pmdp_huge_get_and_clear
                    pmds[slot] = 0
                    done += 1
                    if old >> shift == leaf and hook is None:
                        slot_gen[slot] += 1  # retire_slot: the THP is freed
                        continue
                    progress[P_SLOT] = slot
                    progress[P_DONE] = done - 1
                    if old >> shift == leaf:
                        progress[P_PHASE] = PHASE_SERIALIZING
                        self.serialise(hook)
                        slot_gen[slot] += 1
                        freed += 1
                    else:
                        others += 1
                        self._zap_cleared(slot, old)
                    progress[P_PHASE] = PHASE_DESTROYED
                    # rcu_process_callbacks's own first test, made here to save a call
                    if rcu.gp_active:
                        rcu.rcu_process_callbacks(self)
                progress[P_SLOT] = slot
                progress[P_DONE] = done
                if rcu.gp_active:
                    rcu.rcu_process_callbacks(self)
        finally:
            stats, zapped = self.stats, done - start
            stats.ops["munmap"] += zapped
            if hook is None:  # nothing can fail between a leaf's clear and its free
                stats.destroyed += zapped - others
                stats.skipped += zapped - others
            else:
                stats.destroyed += freed

    def _zap_and_finish(self, slot: int) -> None:
        """munmap of one slot: ``zap_pmd`` and ``tlb_finish_mmu``."""
        self.zap_pmd(slot)
        self.tlb_finish_mmu()

    def wait_event(self, condition, what: str, timeout: float = None) -> None:
        """For strategies that wait on something of their own (a flag, a sequence count):
        block until ``condition()`` is true, polling, bounded by the run's ``--ipi-timeout``
        (``EventTimeout`` naming ``what`` when it expires), beating the watchdog and seeing an
        abort. The first evaluation's accesses are steps (``check`` may stop the coordinator
        between them); later polls are one wait, and ``check`` sees the coordinator waiting
        (``coord_waiting`` 2) and how often a poll found the condition false."""
        if condition():
            return
        m = self.m
        polls = m.coord_polls

        def poll(block, seconds):
            with quiet():
                if condition():
                    return True
            polls.value += 1
            time.sleep(min(seconds, 0.0005))
            return False
        bound = self.timeout if timeout is None else timeout
        m.coord_waiting.value = 2
        began = time.perf_counter_ns()
        try:
            m.wait_bounded(poll, bound, what, lambda: EventTimeout(bound, what))
        finally:
            m.coord_waiting.value = 0
        if self.trace is not None:
            self.trace.emit(tr.WAIT_EVENT, began, time.perf_counter_ns() - began)

    def _mixed(self, slots, nops: int, seed: int) -> None:
        """A long-running guest with khugepaged: split leaves, collapse tables, unmap and fault
        slots back in, on random slots, ``nops`` times."""
        rng = random.Random(f"{seed}/mixed")
        self.progress[P_TOTAL] = nops
        slots = list(slots)
        for _ in range(nops):
            slot = rng.choice(slots)
            kind = ptm.pmd_kind(self.pt.pmd(slot))
            roll = rng.random()
            if kind == ptm.NONE:
                self._op("fault", self.fault, slot, roll < 0.5)
            elif roll < 0.15:
                self._op("munmap", self._zap_and_finish, slot)
            elif kind == ptm.LEAF:
                self._op("split", self.split, slot)
            else:
                self._op("collapse", self.collapse, slot)
            self.rcu.rcu_process_callbacks(self)
            self.progress[P_DONE] += 1


