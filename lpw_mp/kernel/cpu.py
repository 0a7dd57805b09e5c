"""A simulated CPU: one OS process that walks the page table locklessly and takes IPIs.

Its loop: with IRQs enabled, run any pending IPI handler; block (idle) until the next walk is
due or an IPI arrives; then walk with IRQs disabled. It never acknowledges an IPI while its IRQ
flag is set, because the only place it runs handlers is the IRQs-enabled part of the loop.
"""

import math
import random
import time

from lpw_mp.kernel import checker as chk
from lpw_mp.kernel import pagetable as ptm
from lpw_mp.kernel import trace as tr
from lpw_mp.kernel.hooks import (AFTER_END, AFTER_PMD_READ, BEFORE_PMD_READ, FREEZE_ACK_COUNTED,
                                 FREEZE_ACK_TAKEN, FREEZE_IDLE, FREEZE_START, FREEZE_WALK_DUE, HOLDING,
                                 FreezeHook, ScriptedWalker, WalkHook, freeze_point)
from lpw_mp.kernel.machine import (ABORT_POLL, DOING_ACK, DOING_IDLE, DOING_RUN, HIST_BUCKETS,
                                   HIST_STEPS, NSTATS, SLOT_STRIDE, ST_BEGIN_END_NS, ST_HELD,
                                   ST_IPIS, ST_LATE_NS, ST_RETRIES, ST_WALK_NS, ST_WALKS)
from lpw_mp.kernel.memory_model import READ_ONCE, current, full_barrier, note, smp_mb
from lpw_mp.kernel.strategies.base import Strategy

#: Walker disciplines (``--walker``): what a walker does with the PMD it read.
#: ``hold``: keep the pointer for the whole window (the checker flags a generation change of
#: the object at the end); ``read-once``: copy the PMD once (``READ_ONCE``), read the PTE from
#: the page it names at once, use the copies (a stale value is fine, a read of a freed
#: page-table page is not); ``recheck``: read-once, then re-read the PMD (and the PTE) at the
#: end and drop the result if either changed (gup_fast since 70cbc3cc78a9, v6.0).
HOLD, READ_ONCE_WALKER, RECHECK = "hold", "read-once", "recheck"
WALKERS = (HOLD, READ_ONCE_WALKER, RECHECK)


def hist_bucket(ns: int) -> int:
    return min(HIST_BUCKETS - 1, int(math.log2(ns) * HIST_STEPS)) if ns > 0 else 0


class SimulatedCPU:
    """One CPU of the guest: its walks, its IRQ flag and its IPI handler, in its own process."""

    def __init__(self, *, cpu: int, machine, table, strategy, checker, walk_rate: float,
                 walk_window: float, seed: int, hooks=(), walker=None):
        self.cpu = cpu
        self.m = machine
        self.pt = table
        self.strategy = strategy
        self.checker = checker
        self.walk_rate = walk_rate if machine.active[cpu] else 0.0
        self.walk_window = walk_window
        self.walker = walker or strategy.walker
        if self.walker not in WALKERS:
            raise ValueError(f"unknown walker {self.walker!r}")
        self._hold = self.walker == HOLD
        self._recheck = self.walker == RECHECK
        # The oracle follows what the profile relies on: its safety argument for a value that
        # changed under a walker is the re-check, so a walker that skips it has used a stale
        # value (a read-once walker under sync-one, say). Under v5.8 a stale value is fine.
        self._must_recheck = strategy.walker == RECHECK and not self._recheck
        self.rng = random.Random(f"{seed}/cpu{cpu}")
        self._custom = type(strategy).lockless_walk is not Strategy.lockless_walk
        #: ``check`` logs every step of the walk; the measured path only tests this.
        model = current()
        self._log = note if model is not None else None
        #: weak: the use of what the walk read may be satisfied late (memory_model.defer).
        self._defer = model.defer if model is not None and model.weak else None
        self.hook = next((h for h in hooks if isinstance(h, WalkHook)), None)
        self.script = self.hook if isinstance(self.hook, ScriptedWalker) else None
        self.freeze = next((h for h in hooks if isinstance(h, FreezeHook)), None)
        # The strategy is this process's own copy: its walker side may stop at a point too.
        strategy.install_hooks(hooks)
        self.rcu = strategy.rcu
        self.qs_taken, self.qs_owed = self.rcu.qs_taken, self.rcu.qs_owed
        self.qs = cpu * SLOT_STRIDE
        self.stat_base = cpu * NSTATS
        self.cost_hist, self.window_hist = machine.cost_hist, machine.window_hist
        self.hist_base = cpu * HIST_BUCKETS
        #: This CPU's trace writer (``--trace``), else None: the traced paths test only this.
        self.trace = machine.trace.writer(cpu) if machine.trace is not None else None
        self._walker_code = tr.WALKER_CODES.index(self.walker)
        # Traced: the last IRQ-off window (host ns), which an IPI sent during it waited for.
        self._window = (0, 0)

    # -- the walk -----------------------------------------------------------------------------

    def walk(self, slot: int, sub: int, hook=None) -> None:
        """One lockless walk (``__find_linux_pte()`` under ``begin/end_lockless_pgtbl_walk``),
        by the CPU's walker discipline (``WALKERS``). A strategy that orders the steps its own
        way (``Strategy.lockless_walk``) is given the lookup and the use as two callables."""
        m, cpu, strategy, stats, base = self.m, self.cpu, self.strategy, self.m.stats, \
            self.stat_base
        qs_taken, qs_owed, qs = self.qs_taken, self.qs_owed, self.qs
        clock = time.perf_counter_ns
        log = self._log
        trace = self.trace
        if log is not None:  # outside the timed part: the measured path pays the test only
            log(f"local_irq_disable(); walk slot {slot} ({self.walker})")
        m.walk_slot[cpu] = slot                 # named if the walk never ends
        t0 = clock()
        m.irq_off[cpu] = 1                      # local_irq_disable()
        if self._custom:
            inside = [0, 0]  # time inside the lookup and the use; what the use returned

            def find_linux_pte():
                t = clock()
                found = self._find(slot, sub, hook)
                inside[0] += clock() - t
                return found

            def use(found):
                t = clock()
                inside[1] = self._use(slot, sub, found, hook)
                inside[0] += clock() - t

            strategy.lockless_walk(cpu, find_linux_pte, use)
            t1, t2, flags = t0, t0 + inside[0], inside[1]
        else:
            strategy.begin_lockless_pgtbl_walk(cpu)
            t1 = clock()
            flags = self._use(slot, sub, self._find(slot, sub, hook), hook)
            t2 = clock()
            strategy.end_lockless_pgtbl_walk(cpu)
        if hook is not None and hook.point == AFTER_END:
            hook.pause()
        if qs_taken[qs] != qs_owed[qs]:         # the end of the window is a quiescent state
            self.rcu.rcu_report_qs(cpu)
        m.irq_off[cpu] = 0                      # local_irq_enable()
        t3 = clock()
        if log is not None:
            log("local_irq_enable()")
        stats[base + ST_WALKS] += 1
        cost = (t1 - t0) + (t3 - t2)
        stats[base + ST_BEGIN_END_NS] += cost
        stats[base + ST_WALK_NS] += t3 - t0
        hist_base = self.hist_base
        self.cost_hist[hist_base + hist_bucket(cost)] += 1
        self.window_hist[hist_base + hist_bucket(t3 - t0)] += 1
        if trace is not None:  # after the window: what it costs is not the walk's
            self._window = (t0, t3)
            trace.emit(tr.WALK, t0, t3 - t0, slot, flags, self._walker_code)

    def _find(self, slot: int, sub: int, hook):
        """The lookup: ``READ_ONCE(*pmdp)`` and, for a table, the PTE it points to. Returns
        ``(pmd, pte)`` or None when nothing is mapped (or the leaf is being split)."""
        pt = self.pt
        if hook is not None and hook.point == BEFORE_PMD_READ:
            hook.pause()
        pmd = READ_ONCE(pt.pmds, slot)
        if hook is not None and hook.point == AFTER_PMD_READ:
            hook.pause()
        kind = pmd >> ptm.KIND_SHIFT
        if kind == ptm.TABLE:
            page = pmd & ptm.INDEX_MASK
            pte = READ_ONCE(pt.ptes, page * pt.ptrs_per_pte + sub)  # the pte_t * handed back
            if not self._hold:
                # The PTE is read now and used from the copy: the one hazard left is that
                # the page was already freed when it was read.
                self._use_object(slot, pmd, "the PTE read")
            return pmd, pte
        if kind == ptm.LEAF:
            # powerpc casts the pmd_t * to a pte_t * for a THP: the slot itself is the pointer.
            return pmd, None
        return None

    def _use(self, slot: int, sub: int, found, hook) -> int:
        """The use of the result for the rest of the window, and the checks at its end: a
        ``hold`` walker's object must be the one it read; a ``recheck`` walker re-reads the
        PMD and PTE and drops a changed result. Returns what a trace says of the walk
        (``trace.F_HELD``, ``trace.F_RETRIED``)."""
        if hook is not None:
            if hook.point == HOLDING:
                hook.pause()
        elif self.walk_window:
            deadline = time.perf_counter() + self.walk_window
            while time.perf_counter() < deadline:
                pass
        if found is None:
            return 0
        pmd, pte = found
        flags = tr.F_HELD
        if self._hold:
            if self._defer is None:  # the measured path: one call fewer
                self._check_object(slot, pmd)
            else:
                self._use_object(slot, pmd, "the use of the pointer")
        elif self._recheck or self._must_recheck:
            if self._recheck:
                # gup_fast takes its folio reference first (try_grab_folio_fast: a
                # value-returning atomic, fully ordered), then re-reads PMD and PTE.
                smp_mb()
            pt = self.pt
            table = pmd >> ptm.KIND_SHIFT == ptm.TABLE
            index = pmd & ptm.INDEX_MASK
            now = READ_ONCE(pt.pmds, slot)
            if self._recheck and now == pmd and table:
                # gup_fast's re-read of the PTE is a read of the PTE page: still live.
                self._use_object(slot, pmd, "the PTE re-read")
            if now != pmd or (table and READ_ONCE(pt.ptes, index * pt.ptrs_per_pte + sub)
                              != pte):
                if self._recheck:  # gup_fast's re-check: changed under us, drop the result
                    self.m.stats[self.stat_base + ST_RETRIES] += 1
                    flags |= tr.F_RETRIED
                else:
                    self._violation(chk.STALE_VALUE_USED, slot,
                                    (pmd >> ptm.GEN_SHIFT) & ptm.GEN_MASK,
                                    (now >> ptm.GEN_SHIFT) & ptm.GEN_MASK)
        self.m.stats[self.stat_base + ST_HELD] += 1
        return flags

    def _use_object(self, slot: int, pmd: int, what: str) -> None:
        """A read of (or through) the object ``pmd`` points to: checked now, or under weak
        when the read is satisfied, at the walker's next barrier that orders it."""
        if self._defer is None:
            self._check_object(slot, pmd)
        else:
            self._defer(lambda: self._check_object(slot, pmd), what)

    def _check_object(self, slot: int, pmd: int) -> None:
        """The object ``pmd`` pointed to is still the incarnation the walker took: the
        checker's oracle (the generations are never reordered)."""
        pt = self.pt
        table = pmd >> ptm.KIND_SHIFT == ptm.TABLE
        gens = pt.page_gen if table else pt.slot_gen
        taken = (pmd >> ptm.GEN_SHIFT) & ptm.GEN_MASK
        seen = gens[pmd & ptm.INDEX_MASK] & ptm.GEN_MASK
        if seen != taken:
            self._violation(chk.PTE_PAGE_REUSED if table else chk.PMD_SLOT_REPURPOSED,
                            slot, taken, seen)

    def _violation(self, kind: int, slot: int, taken: int, seen: int) -> None:
        note(f"uses freed memory: {chk.VIOLATION_KINDS[kind]} (slot {slot}, generation "
             f"{taken} taken, {seen} now)")
        if self.trace is not None:
            self.trace.emit(tr.VIOLATION, time.perf_counter_ns(), 0, slot, kind,
                            taken << 32 | seen)
        self.checker.report(kind, self.cpu, slot, taken, seen)

    def warm_up(self) -> None:
        """One walk before the CPU counts as started, its figures discarded: the first pass
        takes the copy-on-write faults of a freshly forked process, which would otherwise be
        charged to the strategy under test. No updater runs yet, so it cannot race."""
        trace, self.trace = self.trace, None  # before the run: not part of its trace
        self.walk(0, 0)
        self.trace = trace
        row = self.stat_base
        self.m.stats[row:row + NSTATS] = [0] * NSTATS
        for hist in (self.cost_hist, self.window_hist):
            hist[self.hist_base:self.hist_base + HIST_BUCKETS] = [0] * HIST_BUCKETS

    # -- the loop -----------------------------------------------------------------------------

    def run(self) -> None:
        # The IPI path is hot: with 128 CPUs on 2 cores a round is one pass of this loop per
        # CPU, and after 127 other processes have run, every distinct object it touches is a
        # cache miss. So the handler is inlined and everything it needs is a local.
        m, cpu = self.m, self.cpu
        doorbell, sleep = m.doorbells.waiter(cpu)
        ipi_gen, ack_gen, cpumask, doing = m.ipi_gen, m.ack_gen, m.cpumask, m.doing
        freeze = self.freeze
        take_ack, acks_done_release = m.acks_left.acquire, m.acks_done.release
        trims, active = m.trims_lazy_cpus, bool(m.active[cpu])
        lazy = True  # not running the mm: idle since its last walk
        idle_enter, idle_exit = self.rcu.cpu_idle_enter, self.rcu.cpu_idle_exit
        stop, saturate, settled = m.stop, m.saturate, m.settled
        rng = self.rng
        npmds, nsub = self.pt.npmds, self.pt.ptrs_per_pte
        stats = m.stats
        late_index, ipis_index = self.stat_base + ST_LATE_NS, self.stat_base + ST_IPIS
        rate = self.walk_rate
        monotonic = time.monotonic
        last_acker = m.last_acker
        trace = self.trace
        if trace is not None:
            clock, last_in_window, ack_ns = time.perf_counter_ns, m.last_in_window, m.ack_ns
            round_no_now, round_sent, ack_index = m.round_no, m.round_sent, self.qs
            idle_since = 0
        self.warm_up()
        if freeze:
            freeze_point(freeze, FREEZE_START)
        doing[cpu] = DOING_RUN
        m.ready.release()
        if not self._wait_started(doorbell, sleep):
            return
        script = self.script
        if self.hook is not None and script is None:
            lazy = False  # the test's walk runs the mm
            self.walk(self.hook.slot, self.hook.sub, self.hook)
        next_walk = monotonic() + rng.expovariate(rate) if rate > 0 else None
        # An idle CPU that takes an IPI runs the handler in IRQ context and goes back to sleep
        # without leaving idle (nor RCU's extended quiescent state): only something for the
        # task (a walk due, a test's order, the walker phase, the stop) ends idle.
        idle = False
        while True:
            seq = doorbell()  # before looking: a ring after this makes the sleep return
            gen = ipi_gen[cpu]
            if gen != ack_gen[cpu]:
                # IRQs are enabled here and only here: run do_nothing() and acknowledge.
                if trace is not None:
                    # Read before the acknowledgement, after which the next round may begin.
                    handled, round_no, sent = clock(), round_no_now.value, round_sent.value
                    began, ended = self._window
                    in_window = int(began <= sent <= ended)
                    ack_ns[ack_index] = handled  # before the count: the sender reads it after
                full_barrier()  # flush_smp_call_function_queue: the csd list is fully ordered
                if trims and lazy:
                    cpumask[cpu] = 0
                stats[ipis_index] += 1
                doing[cpu] = DOING_ACK
                last = not take_ack(False)
                if freeze:
                    freeze_point(freeze, FREEZE_ACK_TAKEN)
                if last:
                    last_acker.value = cpu  # the sender reads it once woken
                    if trace is not None:
                        last_in_window.value = in_window
                    acks_done_release()
                if freeze:
                    freeze_point(freeze, FREEZE_ACK_COUNTED)
                # Last: until this store the sender can name this CPU as late.
                ack_gen[cpu] = gen
                doing[cpu] = DOING_IDLE if idle else DOING_RUN
                if trace is not None:
                    trace.emit(tr.IPI, handled, clock() - handled, round_no, in_window,
                               handled - sent)
            if stop.value:
                if trace is not None and idle:  # the idle period ends with the run
                    trace.emit(tr.IDLE, idle_since, clock() - idle_since)
                return
            if idle:
                if ((script is None or not script.order[0]) and not saturate.value
                        and (next_walk is None or next_walk > monotonic())):
                    sleep(seq, next_walk)
                    continue
                idle_exit(cpu)
                idle = False
                doing[cpu] = DOING_RUN
                if trace is not None:
                    trace.emit(tr.IDLE, idle_since, clock() - idle_since)
            if script is not None and script.order[0]:
                # Told to walk: as if woken and switched to this mm, a full barrier, whether
                # or not the CPU went idle since its last walk (so the schedule is the same).
                full_barrier()
                script.order[0] = 0
                lazy = False
                self.walk(script.order[1], script.order[2], script)
                # The walk is over once what it read late is satisfied too (weak): its check
                # is this schedule's, not the next one's.
                full_barrier()
                script.walked.release()
                continue
            if saturate.value:
                if ipi_gen[cpu] != ack_gen[cpu]:
                    continue  # as below
                if trims and active:
                    cpumask[cpu], lazy = 1, False
                self.walk(rng.randrange(npmds), rng.randrange(nsub))
                # Once the phase ends, resume the configured rate from now, not in a burst.
                next_walk = monotonic() + rng.expovariate(rate) if rate > 0 else None
                continue
            if not settled[cpu]:
                settled[cpu] = 1
            if next_walk is None or next_walk > monotonic():
                doing[cpu] = DOING_IDLE
                lazy = idle = True
                if trace is not None:
                    idle_since = clock()
                idle_enter(cpu)  # an extended quiescent state (dynticks-idle)
                if freeze:
                    freeze_point(freeze, FREEZE_IDLE)
                sleep(seq, next_walk)
                continue
            if freeze:
                freeze_point(freeze, FREEZE_WALK_DUE)
            if ipi_gen[cpu] != ack_gen[cpu]:
                # IRQs are on until the walk disables them: an IPI sent since the loop looked
                # (the host may have descheduled this CPU meanwhile) is taken first.
                continue
            stats[late_index] += int((monotonic() - next_walk) * 1e9)
            if trims and active:  # switch_mm back to this mm: in the mask again
                cpumask[cpu], lazy = 1, False
            self.walk(rng.randrange(npmds), rng.randrange(nsub))
            # Poisson arrivals from the later of the planned time and now: a CPU the host ran
            # late skips what it missed rather than catching up. With more CPUs than the host
            # can run at the rate asked, catching up kept every CPU runnable, and each IPI
            # round then waited for a pass of the host's scheduler over all of them.
            next_walk = max(next_walk, monotonic()) + rng.expovariate(rate)

    def _wait_started(self, doorbell, sleep) -> bool:
        """The start barrier: block until the parent has every CPU up (``Machine.start``);
        False if the run is stopped first. Polls the stop flag, since a parent that died or
        gave up may never ring."""
        started, stop = self.m.started, self.m.stop
        while True:
            seq = doorbell()
            if started.value:
                return True
            if stop.value:
                return False
            sleep(seq, time.monotonic() + ABORT_POLL)
