"""One emulated machine for one strategy: its shared memory, its CPU processes and its
coordinator, started and stopped as a unit.

Processes are stopped with escalation: ask (the stop flag and a wake-up), wait, then SIGTERM,
then SIGKILL. Every child also dies with this process (``PR_SET_PDEATHSIG``), so nothing is left
behind even when the parent is killed. All shared memory is ``RawArray`` / unlinked semaphores,
which the kernel frees with the last process that maps them: nothing can leak in /dev/shm.
Forking a process and stopping the machine are never cut in half by SIGINT or SIGTERM: those
are held back until the step is done (``deferred_signals``).

Every child is named after its role in ``/proc/PID/comm``, which ps and top show and psutil
reads: ``<strategy>:cpu<N>`` for a simulated CPU, ``<strategy>:coord`` for the coordinator.
"""

import multiprocessing
import os
import pickle
import signal
import threading
import time
from multiprocessing.connection import wait

import psutil

from lpw_mp.harness.child import CoordinatorArgs, CPUArgs, coordinator_main, cpu_main, run_named
from lpw_mp.harness.janitor import Janitor
from lpw_mp.harness.plugins import strategy_class
from lpw_mp.harness.signals import deferred_signals
from lpw_mp.kernel.checker import SafetyChecker
from lpw_mp.kernel.coordinator import (P_DONE, P_PHASE, P_SLOT, P_TOTAL, PHASE_SERIALIZING,
                                       PHASE_UNLINKED, new_progress)
from lpw_mp.kernel.hooks import LockHook, WalkHook
from lpw_mp.kernel.machine import (DOING_ACK, DOING_IDLE, DOING_LOCK, DOING_RCU, DOING_RUN,
                                   DOING_START, HIST_BUCKETS, Deadline, Machine, count_resumes)
from lpw_mp.kernel.memory_model import Setting
from lpw_mp.kernel.pagetable import PageTable
from lpw_mp.kernel.rcu import RCU
from lpw_mp.kernel.trace import TraceBuffers

#: How long stopping processes may take at each step of the escalation.
STOP_GRACE = 2.0
#: Once a process of the machine has died, how long the others get for each step: the dead one
#: may have held a lock they wait for, so asking politely for long is pointless.
DEATH_GRACE = 0.5
#: How long the coordinator gets to report after it is told that a CPU died.
ABORT_GRACE = 1.0
#: A sentinel fires when the process closes its files, a moment before it can be reaped.
REAP_TIMEOUT = 2.0
#: Upper bound on CPU start-up: the base plus a per-CPU allowance (fork is slow when loaded).
READY_BASE, READY_PER_CPU = 30.0, 0.05



def comm_of(strategy: str, role: str) -> str:
    """The ``comm`` of a child (``ipi:cpu3``): what ps, top and a trace call it. The kernel
    keeps 15 bytes; a long strategy name is cut, not the role, so that no two CPUs share one."""
    suffix = f":{role}".encode()
    return (strategy.encode()[:15 - len(suffix)] + suffix).decode(errors="ignore")


class EmulatorError(RuntimeError):
    """The emulated machine failed: a process died, could not start, or did not answer."""


#: psutil's names for process states, with the letter ps shows.
_STATES = {psutil.STATUS_STOPPED: "stopped (state T)",
           psutil.STATUS_TRACING_STOP: "stopped by a debugger (state t)",
           psutil.STATUS_RUNNING: "running (state R)",
           psutil.STATUS_SLEEPING: "sleeping (state S)",
           psutil.STATUS_DISK_SLEEP: "in uninterruptible sleep (state D)",
           psutil.STATUS_ZOMBIE: "dead (state Z)"}
_FROZEN = {psutil.STATUS_STOPPED, psutil.STATUS_TRACING_STOP}


def process_state(pid) -> tuple:
    """``(psutil status, words)`` for ``pid``: whether it is stopped, dead or only slow."""
    try:
        status = psutil.Process(pid).status()
    except (psutil.NoSuchProcess, psutil.ZombieProcess):
        return psutil.STATUS_DEAD, "gone"
    except (psutil.Error, ValueError):
        return None, "in an unknown state"
    return status, _STATES.get(status, f"{status}")


def describe_exit(code) -> str:
    if code is None:
        return "still running"
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exited with status {code}"


class Emulator:
    """Shared state and processes of one run of one strategy. Use as a context manager."""

    def __init__(self, cfg, strategy, hooks=(), ctx=None, on_cpu_started=None, memory=None):
        self.cfg = cfg
        #: How every process runs memory accesses: ``--memory-model``, or ``check``'s setting.
        self.memory = memory or Setting(cfg.memory_model)
        # A class (check, tests), or a spec, a built-in's name or a plugin's.
        cls = strategy if isinstance(strategy, type) else strategy_class(strategy)
        self.strategy_name = cls.name
        self.ctx = ctx or multiprocessing.get_context(cfg.start_method)
        count_resumes()  # the parent's watchdogs, too, do not count a stop of the whole job
        # Started before the first semaphore, so that none is ever left unwatched.
        self.janitor = Janitor() if self.ctx.get_start_method() == "spawn" else None
        self.table = PageTable(cfg.npmds, cfg.thp_size, cfg.pool_pages())
        self.table.populate(cfg.effective_pte_fraction(), cfg.seed)
        active = [cpu < cfg.active_cpus for cpu in range(cfg.cpus)]
        self.machine = Machine(self.ctx, cfg.cpus, cfg.cpumask, active)
        if getattr(cfg, "trace", False):
            self.machine.trace = TraceBuffers(cfg.cpus, cfg.trace_records,
                                              overwrite=cfg.trace_window_parts()[0] != "first")
        #: Every child's pid and name as ``ps`` shows it (its ``comm``), by role: ``cpu<N>``,
        #: ``coord``. Kept past the processes' end, for the trace.
        self.comms = {}
        #: When the CPUs were let go (``perf_counter_ns``): a trace's origin.
        self.started_ns = None
        self.strategy = cls(self.ctx, self.machine)
        self.checker = SafetyChecker(self.ctx, self.machine.stop)
        self.hooks = {}
        for hook in hooks:
            self.hooks.setdefault(hook.cpu, []).append(hook)
        self._watch(self.machine, self.strategy, self.checker, self.hooks)
        self.progress = new_progress()
        self.cpus = []
        #: Called with the number of CPUs forked so far, after each fork (a progress display).
        self.on_cpu_started = on_cpu_started
        self.coord = None
        self._conn = None
        self._go = None
        self._dead = {}
        self._frozen = False  # a process was found stopped: do not wait long for it at the end
        self._stopped = False

    def __enter__(self):
        try:
            self.start_cpus()
        except BaseException:
            self.shutdown()
            raise
        return self

    def __exit__(self, *exc):
        self.shutdown()
        return False

    # -- start --------------------------------------------------------------------------------

    def _fork(self, role: str, target, *args):
        comm = comm_of(self.strategy_name, role)
        proc = self.ctx.Process(target=run_named, name=f"lpw_mp-{role}", daemon=True,
                                args=(comm, target, *args))
        proc.start()
        self.comms[role] = (proc.pid, comm)
        return proc

    def start_cpus(self) -> None:
        cfg, parent = self.cfg, os.getpid()
        threads = [t.name for t in threading.enumerate() if t is not threading.current_thread()]
        if threads and self.ctx.get_start_method() == "fork":
            # A child forked while another thread holds a lock (stdio, logging) hangs on it.
            raise EmulatorError(f"refusing to fork simulated CPUs from a multi-threaded "
                                f"process (other threads: {', '.join(threads)})")
        for cpu in range(cfg.cpus):
            with deferred_signals():
                try:
                    proc = self._fork(f"cpu{cpu}", cpu_main, parent, CPUArgs(
                        cpu=cpu, machine=self.machine, table=self.table,
                        strategy=self.strategy, checker=self.checker,
                        walk_rate=cfg.walk_rate, walk_window=cfg.walk_window, seed=cfg.seed,
                        hooks=tuple(self.hooks.get(cpu, ())), walker=cfg.walker,
                        memory=self.memory))
                except OSError as exc:  # EAGAIN (process limit), ENOMEM, EMFILE
                    raise EmulatorError(
                        f"could not start simulated CPU {cpu} of {cfg.cpus} under strategy "
                        f"{self.strategy_name}: {exc.strerror or exc} (lower --cpus)") from None
                self.cpus.append(proc)
                if self.on_cpu_started is not None:
                    self.on_cpu_started(len(self.cpus))
        self._wait_ready()
        self.started_ns = time.perf_counter_ns()
        trace = self.machine.trace
        if trace is not None and self.cfg.trace_window_parts()[0] == "first":
            trace.until.value = self.started_ns + int(self.cfg.trace_window_parts()[1] * 1e9)
        self.machine.start()

    def _wait_ready(self) -> None:
        deadline = Deadline(READY_BASE + READY_PER_CPU * self.cfg.cpus)
        for _ in range(self.cfg.cpus):
            while not self.machine.ready.acquire(True, 0.5):
                self.raise_if_cpu_died("while starting")
                if deadline.expired():
                    late = [cpu for cpu in range(self.cfg.cpus)
                            if self.machine.doing[cpu] == DOING_START]
                    raise EmulatorError(
                        f"simulated CPUs did not start within "
                        f"{READY_BASE + READY_PER_CPU * self.cfg.cpus:g} s under strategy "
                        f"{self.strategy_name}: {self.describe_cpus(late)}")

    def start_coordinator(self, op=None, slots=None, script=None) -> None:
        """Fork the coordinator and let it start ``op`` (default: the configured one), or
        ``check``'s ``script``."""
        cfg = self.cfg
        reader, writer = self.ctx.Pipe(duplex=False)
        self._go = self.ctx.Semaphore(0)
        self._watch(self._go)
        with deferred_signals():
            try:
                self.coord = self._fork("coord", coordinator_main, os.getpid(), CoordinatorArgs(
                    conn=writer, go=self._go, machine=self.machine, table=self.table,
                    strategy=self.strategy, timeout=cfg.ipi_timeout, progress=self.progress,
                    op=op or cfg.op, slots=slots, mixed_ops=cfg.mixed_ops, seed=cfg.seed,
                    batch_fail_rate=cfg.batch_fail_rate, memory=self.memory, script=script))
            except OSError as exc:
                reader.close()
                raise EmulatorError(f"could not start the coordinator under strategy "
                                    f"{self.strategy_name}: {exc.strerror or exc}") from None
            finally:
                writer.close()
            self._conn = reader
        self._go.release()

    def _watch(self, *objs) -> None:
        if self.janitor is not None:
            self.janitor.watch(*objs)

    # -- watch --------------------------------------------------------------------------------

    def raise_if_cpu_died(self, when: str) -> None:
        """Raise EmulatorError naming the first CPU process found dead."""
        for cpu, proc in enumerate(self.cpus):
            if proc.exitcode is not None and cpu not in self._dead:
                self._dead[cpu] = proc.exitcode
        if self._dead:
            raise EmulatorError(self._death_message(when))

    def _death_message(self, when: str) -> str:
        cpu, code = next(iter(self._dead.items()))
        more = f" (and {len(self._dead) - 1} more)" if len(self._dead) > 1 else ""
        return (f"simulated CPU {cpu} (pid {self.cpus[cpu].pid}) {describe_exit(code)}{more} "
                f"{when} under strategy {self.strategy_name}")

    # -- naming culprits -----------------------------------------------------------------------

    def describe_cpu(self, cpu: int) -> str:
        """``CPU 3 (pid 4242) is stopped (state T) while acknowledging IPI round 1,412``."""
        m = self.machine
        status, state = process_state(self.cpus[cpu].pid)
        self._frozen |= status in _FROZEN
        doing = m.doing[cpu]
        if m.irq_off[cpu]:
            what = f"inside an IRQ-off window (walking slot {m.walk_slot[cpu]:,})"
        elif doing == DOING_ACK:
            what = (f"acknowledging an IPI (sent it: {m.ipi_gen[cpu]:,}, acknowledged: "
                    f"{m.ack_gen[cpu]:,})")
        else:
            what = {DOING_START: "starting", DOING_RUN: "with IRQs enabled",
                    DOING_IDLE: "idle", DOING_LOCK: f"in {self.strategy.lock_name}",
                    DOING_RCU: f"in {RCU.lock_name}"}.get(doing, f"in state {doing}")
        if doing == DOING_LOCK and m.irq_off[cpu]:
            what += f", in {self.strategy.lock_name}"
        elif doing == DOING_RCU and m.irq_off[cpu]:
            what += f", in {RCU.lock_name}"
        return f"CPU {cpu} (pid {self.cpus[cpu].pid}) is {state} {what}"

    def describe_cpus(self, cpus, most: int = 4) -> str:
        """The CPUs ``cpus`` described, stopped ones first (they are the likely culprits)."""
        if not cpus:
            return "no CPU owes it any more (it arrived at the deadline)"
        cpus = sorted(cpus, key=lambda c: process_state(self.cpus[c].pid)[0] not in _FROZEN)
        text = "; ".join(self.describe_cpu(cpu) for cpu in cpus[:most])
        return text + (f"; and {len(cpus) - most} more" if len(cpus) > most else "")

    def describe_coordinator(self) -> str:
        _, state = process_state(self.coord.pid)
        progress = self.progress
        phase = {PHASE_UNLINKED: "after unlinking", PHASE_SERIALIZING: "serialising"}.get(
            progress[P_PHASE], "at")
        return (f"the coordinator (pid {self.coord.pid}) is {state}, {phase} slot "
                f"{progress[P_SLOT]:,} (operation {progress[P_DONE] + 1:,} of "
                f"{progress[P_TOTAL]:,})")

    def wait_coordinator(self, on_progress=None, poll: float = 0.25) -> dict:
        """Wait for the coordinator's result, watching every process of the machine.

        A CPU that dies aborts the run (the coordinator is told through the abort flag) and
        raises ``EmulatorError`` naming the CPU; so does a coordinator that dies, or one that
        makes no progress for ``--ipi-timeout`` (stopped, or starved of the host's CPU): it
        beats for every operation and every poll of its own bounded waits. Its result is read
        without blocking, so a coordinator stopped in the middle of sending it is caught too."""
        by_sentinel = {proc.sentinel: cpu for cpu, proc in enumerate(self.cpus)}
        fd = self._conn.fileno()
        os.set_blocking(fd, False)
        watched = [self._conn, self.coord.sentinel, *by_sentinel]
        received, outcome = bytearray(), None
        abort_deadline = None
        bound = self.cfg.ipi_timeout
        beat, still = None, Deadline(bound)
        while True:
            ready = wait(watched, timeout=poll)
            if self._conn in ready:
                chunk = self._read(fd)
                if chunk:
                    received += chunk
                elif chunk is not None:  # end of file: the whole result, or nothing
                    watched.remove(self._conn)
                    if received:
                        outcome = self._unpickle(received)
                        break
            for obj in ready:
                if obj in by_sentinel:
                    cpu = by_sentinel[obj]
                    self.cpus[cpu].join(REAP_TIMEOUT)
                    self._dead.setdefault(cpu, self.cpus[cpu].exitcode)
                    watched.remove(obj)
            if self._dead and abort_deadline is None:
                self.machine.abort.value = 1
                abort_deadline = time.monotonic() + ABORT_GRACE
            if self.coord.sentinel in ready and self._conn not in watched:
                self.coord.join(REAP_TIMEOUT)
                raise EmulatorError(f"the coordinator {describe_exit(self.coord.exitcode)} "
                                    f"under strategy {self.strategy_name}")
            if abort_deadline is not None and time.monotonic() > abort_deadline:
                break
            now_beat = (self.progress[P_DONE], self.machine.coord_beat.value, len(received))
            if now_beat != beat:
                beat = now_beat
                still.restart()
            elif still.expired() and not self._dead:
                self._frozen = True
                raise EmulatorError(f"the coordinator made no progress for {bound:g} s under "
                                    f"strategy {self.strategy_name}: "
                                    f"{self.describe_coordinator()}")
            if on_progress is not None:
                on_progress(self.progress[P_DONE], self.progress[P_TOTAL])
        if self._dead:
            raise EmulatorError(self._death_message("during the run"))
        if on_progress is not None:
            on_progress(self.progress[P_DONE], self.progress[P_TOTAL])
        if outcome["status"] != "ok":
            culprits = outcome.get("cpus")
            detail = f": {self.describe_cpus(culprits)}" if culprits is not None else ""
            raise EmulatorError(f"{outcome['error']} under strategy {self.strategy_name}"
                                f"{detail}")
        return outcome

    def _unpickle(self, data: bytes) -> dict:
        try:
            return pickle.loads(data)
        except Exception:  # cut short: it died while writing
            self.coord.join(REAP_TIMEOUT)
            raise EmulatorError(f"the coordinator {describe_exit(self.coord.exitcode)} while "
                                f"sending its result under strategy {self.strategy_name}") \
                from None

    @staticmethod
    def _read(fd: int):
        """What the pipe holds now: bytes, ``b""`` at end of file, None if nothing yet."""
        try:
            return os.read(fd, 1 << 20)
        except BlockingIOError:
            return None

    def walker_stats(self, since=None) -> dict:
        out = self.machine.walker_counters(since)
        n = HIST_BUCKETS
        for name in ("cost_hist", "window_hist"):
            hist = getattr(self.machine, name)
            merged = [sum(hist[cpu * n + b] for cpu in range(self.cfg.cpus)) for b in range(n)]
            out[name] = [a - b for a, b in zip(merged, since[name])] if since else merged
        return out

    # -- stop ---------------------------------------------------------------------------------

    def shutdown(self) -> None:
        """Stop every process: ask, wait, SIGTERM, wait, SIGKILL. Idempotent; SIGINT and
        SIGTERM wait until it is done."""
        with deferred_signals():
            self._shutdown()

    def _shutdown(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        m = self.machine
        m.stop.value = 1
        m.abort.value = 1
        procs = list(self.cpus)
        if self.coord is not None:
            self._go.release()  # a coordinator still waiting to start must see the abort
            procs.append(self.coord)
        m.wake_all()
        for hook in (h for hooks in self.hooks.values() for h in hooks):
            if isinstance(hook, (WalkHook, LockHook)):  # a CPU paused by the test lets go
                hook.resume.release()
        coord_died = self.coord is not None and self.coord.exitcode not in (None, 0)
        short = self._dead or coord_died or self._frozen
        _stop_processes(procs, DEATH_GRACE if short else STOP_GRACE)
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        if self.janitor is not None:
            self.janitor.close()


def _stop_processes(procs, grace: float = STOP_GRACE) -> None:
    def join_all(until):
        for proc in procs:
            if proc.pid is not None:
                proc.join(max(0.0, until - time.monotonic()))

    join_all(time.monotonic() + grace)
    for sig in (signal.SIGTERM, signal.SIGKILL):
        alive = [p for p in procs if p.pid is not None and p.exitcode is None]
        if not alive:
            break
        for proc in alive:
            try:
                os.kill(proc.pid, sig)
                if sig == signal.SIGTERM:  # a stopped process acts on it only once resumed
                    os.kill(proc.pid, signal.SIGCONT)
            except ProcessLookupError:
                pass
        join_all(time.monotonic() + grace)
    for proc in procs:
        if proc.pid is not None and proc.exitcode is not None:
            proc.close()
