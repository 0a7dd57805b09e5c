"""The kernel's memory-model primitives, for strategy code and for the walk itself.

Strategy code touches shared memory only through these (names and semantics as in the kernel:
``READ_ONCE``/``WRITE_ONCE`` in include/asm-generic/rwonce.h, the barriers of
Documentation/memory-barriers.txt, ``atomic_t`` of Documentation/atomic_t.txt), so that the
emulator can interpose on them. Each process runs one memory model (``--memory-model``):

- ``sc``: every access takes effect at once, in program order. This is the product path: a
  primitive is one call and a global test, and ``smp_mb()`` keeps a real fence (a locked
  read-modify-write on the host), because the host is x86-64 and TSO itself.
- ``tso``: x86's model. Stores issued through the primitives wait in a per-CPU FIFO store
  buffer and become visible later: at ``smp_mb()``, at an atomic read-modify-write (a LOCK
  prefix drains the buffer), at an IPI sent or handled, at idle, when the buffer is full, and
  at random points. A load reads its own CPU's newest buffered store to the same word first.
  So a store followed by a load of another word can be reordered, as on x86.
- ``weak``: as ``tso``, plus what POWER allows and ``tso`` does not. Buffered stores drain in
  any order (store->store; in ``check``'s worst schedule a store passes every earlier buffered
  one it may) unless ``smp_wmb()`` or a release store separates them; a load may
  return the value this CPU read before from the same word (load->load), unless ``smp_rmb()``,
  ``smp_mb()`` or an acquire load came between; a walker's use of what it read may be satisfied
only at its next barrier, so a later store (the end of its walk marked in a per-CPU word) can
become visible first (load->store) unless ``smp_mb()``, ``smp_rmb()`` or a release store
orders them; non-value-returning atomics (``atomic_inc``, ``atomic_dec``) are unordered and
buffered too, while value-returning ones are fully ordered.

What no mode models: load->store reordering of loads other than the walker's use of its result,
POWER's lack of multi-copy atomicity (IRIW), control and address dependencies (every dependent
access is ordered, as READ_ONCE guarantees on every architecture but Alpha), and the compiler.
It is a testing aid that makes missing barriers visible on the paths the emulator runs, not a
proof: for proofs, herd7 with the Linux-kernel memory model (tools/memory-model in the kernel
tree).

Accesses that are not the strategy's (the safety checker's generations, the emulator's
bookkeeping) stay plain: the generations are the oracle, the truth of which object is live.
"""

import os
import random
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass

MODELS = ("sc", "tso", "weak")

#: How many stores a buffer holds before the oldest is forced out (x86 cores have 50-100
#: entries; a few is enough to reorder and keeps a run's view close to real).
CAPACITY = 8
#: In random mode, the chance that a primitive drains one buffered store first.
DRAIN_P = 0.25
#: In random mode, the chance that a weak load returns the value this CPU read before.
STALE_P = 0.5
#: In random mode, the chance that a weak CPU's use of what it read is satisfied late.
LATE_P = 0.5

#: This process's model, or None: the plain ``sc`` path with nothing to record.
_mm = None
#: The simulated CPU this process is, or -1 for the coordinator (``raw_smp_processor_id()``).
_cpu = -1


def raw_smp_processor_id() -> int:
    """The simulated CPU running this code; -1 in the coordinator, which is not one of them."""
    return _cpu


def name_words(words, name: str, describe=None, per_cpu_stride: int = 0):
    """Give a shared array a name for step logs and counterexamples (``pmd``, ``slots``), and
    optionally a function that says what a value of it means; a per-CPU array (CPU c's word
    at ``c * per_cpu_stride``) is shown as ``per_cpu(name, c)``."""
    words._lpw_name = name
    words._lpw_describe = describe
    words._lpw_stride = per_cpu_stride
    return words


def _where(words, i) -> str:
    name = getattr(words, "_lpw_name", "word")
    stride = getattr(words, "_lpw_stride", 0)
    if stride and i % stride == 0:
        return f"per_cpu({name}, {i // stride})"
    return f"{name}[{i}]"


def _label(op: str, words, i=None) -> str:
    if i is None:
        return f"{op}({getattr(words, '_lpw_name', 'word')})"
    return f"{op}({_where(words, i)})"


def _value(words, value) -> str:
    describe = getattr(words, "_lpw_describe", None)
    return describe(value) if describe is not None else f"{value}"


@dataclass(frozen=True)
class Setting:
    """How every process of one machine runs: its memory model, whether the schedule is the
    worst legal one (``check``) or random, and where each process logs its steps (``check``:
    one file per process, merged by time into a counterexample; empty: no log)."""
    kind: str = "sc"
    adversarial: bool = False
    log_dir: str = ""

    def install(self, cpu: int = -1, seed=0, on_step=None):
        log = None
        if self.log_dir:
            name = f"cpu{cpu}.log" if cpu >= 0 else "coord.log"
            out = open(os.path.join(self.log_dir, name), "a", buffering=1)
            log = lambda text: out.write(f"{time.monotonic_ns()} {text}\n")  # noqa: E731
        return install(self.kind, cpu=cpu, adversarial=self.adversarial, seed=seed,
                       on_step=on_step, log=log)


class Model:
    """One process's memory model: its store buffer, its cached loads, its steps.

    ``adversarial``: stores stay buffered until something forces them out and weak loads
    return a cached value whenever they may (the worst legal schedule, for ``check``);
    otherwise drains and stale loads happen at random (``run --memory-model``, stress)."""

    def __init__(self, kind: str, adversarial: bool = False, seed=0, on_step=None, log=None):
        if kind not in MODELS:
            raise ValueError(f"unknown memory model {kind!r} (choose from {', '.join(MODELS)})")
        self.kind = kind
        self.buffered = kind != "sc"
        self.weak = kind == "weak"
        self.adversarial = adversarial
        self.rng = random.Random(f"{seed}/memory-model/{_cpu}")
        #: Oldest first: ``[epoch, words, index, value]``, or ``[epoch, atomic, None, delta]``.
        self.pending = []
        self.epoch = 0
        self.cache = {}
        #: weak: loads issued but satisfied only at the next barrier that orders them (the
        #: walker's use of what it read), as callables; a later store may pass them.
        self.late = []
        #: ``on_step(label)`` runs before every step (check pauses a process at one);
        #: ``log(label)`` records it.
        self.on_step = on_step
        self.log = log

    def step(self, label, logged: bool = True) -> None:
        """Before a step: ``check`` may stop this process here. ``logged``: False when the
        access logs itself once done, with its value."""
        if self.on_step is not None:
            self.on_step(label)
        if logged and self.log is not None:
            self.log(label)

    def note(self, text: str) -> None:
        if self.log is not None:
            self.log(text)

    @property
    def traced(self) -> bool:
        """True in ``check`` (a step hook or a log): only then are steps named, so that a
        run under ``--memory-model`` formats no text per access."""
        return self.on_step is not None or self.log is not None

    # -- the store buffer -----------------------------------------------------------------------

    def _random_drain(self) -> None:
        if self.pending and not self.adversarial and self.rng.random() < DRAIN_P:
            self._drain_one()

    def _drain_one(self) -> None:
        pending = self.pending
        if self.weak and not self.adversarial:
            # Any store of the oldest epoch (store->store reordering) that is the oldest to
            # its own word: stores to one word stay in order (coherence).
            first, seen, candidates = pending[0][0], set(), []
            for k, entry in enumerate(pending):
                if entry[0] != first:
                    break
                where = (id(entry[1]), entry[2])
                if where not in seen:
                    seen.add(where)
                    candidates.append(k)
            k = self.rng.choice(candidates)
        else:
            k = 0
        _, words, i, value = pending.pop(k)
        if i is None:
            words.apply(value)
        else:
            words[i] = value
        if self.log is None:
            return
        if i is None:
            self.log(f"  buffered {'+' if value > 0 else ''}{value} to "
                     f"{getattr(words.words, '_lpw_name', 'an atomic')} becomes visible")
        else:
            self.log(f"  buffered store {_where(words, i)} = {_value(words, value)} "
                     f"becomes visible")

    def drain(self) -> None:
        while self.pending:
            self._drain_one()

    def full_barrier(self) -> None:
        """What ``smp_mb()`` does to this CPU's view: every buffered store is visible, every
        earlier load satisfied, and no later load is satisfied from an earlier one."""
        self.drain()
        self.settle()
        self.cache.clear()

    def defer(self, load, what: str) -> None:
        """weak: satisfy ``load()`` (a use of what the CPU read: the checker looks at the
        object then) at the next barrier that orders it, not now, so that a later store can
        become visible first (load->store reordering); at random in a run, always in
        ``check``. Elsewhere, now."""
        if self.weak and (self.adversarial or self.rng.random() < LATE_P):
            if self.log is not None:
                self.log(f"{what}: satisfied late, at the next barrier that orders it")
            self.late.append(load)
        else:
            load()

    def settle(self) -> None:
        late, self.late = self.late, []
        for load in late:
            load()

    def _may_pass(self, words, i) -> bool:
        return all(e[0] == self.epoch and not (e[1] is words and e[2] == i)
                   for e in self.pending)

    def forwarded(self, words, i):
        for entry in reversed(self.pending):
            if entry[1] is words and entry[2] == i:
                return entry
        return None

    # -- accesses -------------------------------------------------------------------------------

    def load(self, words, i, op="READ_ONCE"):
        if not self.traced:
            return self._load(words, i)[0]
        label = _label(op, words, i)
        self.step(label, logged=False)
        value, how = self._load(words, i)
        if self.log is not None:
            self.log(f"{label} = {_value(words, value)}{how}")
        return value

    def _load(self, words, i):
        if not self.buffered:
            return words[i], ""
        self._random_drain()
        entry = self.forwarded(words, i)
        if entry is not None:
            return entry[3], " (its own buffered store)"
        value = words[i]
        if self.weak:
            key = (id(words), i)
            cached = self.cache.pop(key, None)  # stale at most once: the view catches up
            if cached is not None and (self.adversarial or self.rng.random() < STALE_P):
                return cached, f" (stale: memory holds {_value(words, value)})"
            self.cache[key] = value
        return value, ""

    def store(self, words, i, value, release=False, op="WRITE_ONCE") -> None:
        if self.traced:
            label = _label(op, words, i)
            self.step(label, logged=False)
            self.note(f"{label[:-1]}, {_value(words, value)})"
                      + (" (buffered)" if self.buffered else ""))
        if not self.buffered:
            words[i] = value
            return
        self.cache.pop((id(words), i), None)  # a CPU sees its own stores: coherence
        if release and self.weak:
            self.settle()    # every earlier load is satisfied first
            self.epoch += 1  # after every earlier store; later ones may still pass it
        if self.weak and self.adversarial and (self.pending or self.late) \
                and self._may_pass(words, i):
            # The worst legal order: this store is visible before the earlier stores still
            # buffered (none to its word, no barrier between) and the earlier loads not yet
            # satisfied (store->store, load->store).
            words[i] = value
            if self.log is not None:
                self.log(f"  visible at once, before {len(self.pending)} earlier store(s) "
                         f"and {len(self.late)} earlier load(s)")
            return
        self.pending.append([self.epoch, words, i, value])
        if len(self.pending) > CAPACITY:
            self._drain_one()
        self._random_drain()

    def add(self, atomic, delta: int, ordered: bool, op: str):
        label = _label(op, atomic.words, None) if self.traced else op
        self.step(label, logged=False)  # names nothing unless traced
        if self.weak and not ordered:
            if self.adversarial and self.late and not self.pending:
                # Unordered: visible before the earlier loads are satisfied (load->store).
                value = atomic.apply(delta)
                if self.log is not None:
                    self.log(f"{label} -> {value}, visible at once, before "
                             f"{len(self.late)} earlier load(s)")
                return None
            self.note(f"{label} (buffered: unordered)")
            self.pending.append([self.epoch, atomic, None, delta])
            self._random_drain()
            return None
        if self.buffered:  # tso: a LOCK prefix; weak: value-returning, fully ordered
            self.full_barrier()
        value = atomic.apply(delta)
        if self.log is not None:
            self.log(f"{label} -> {value}")
        return value


def install(kind: str = "sc", *, cpu: int = -1, adversarial: bool = False, seed=0,
            on_step=None, log=None):
    """Run this process under memory model ``kind`` (in each child, before it runs). ``sc``
    with no step hook and no log is the plain path: nothing is installed."""
    global _mm, _cpu
    _cpu = cpu
    if kind == "sc" and on_step is None and log is None:
        _mm = None
        return None
    _mm = Model(kind, adversarial, seed, on_step, log)
    return _mm


def current():
    """This process's ``Model``, or None on the plain path."""
    return _mm


def step(label: str, *args) -> None:
    """Count (and log) one step of this process that is not a memory access: an IPI round,
    a destructive step, a grace period waited for. ``label % args`` is formatted only when a
    model is installed: the measured path pays one test."""
    if _mm is not None:
        _mm.step(label % args if args else label)


def note(text: str) -> None:
    """Log what happened (a value used, a violation seen) without making it a step."""
    if _mm is not None:
        _mm.note(text)


@contextmanager
def quiet():
    """Accesses in the block are not steps (a wait's repeated polls): ``check`` stops no
    process inside, and logs nothing."""
    mm = _mm
    if mm is None:
        yield
        return
    hooks = mm.on_step, mm.log
    mm.on_step = mm.log = None
    try:
        yield
    finally:
        mm.on_step, mm.log = hooks


def full_barrier() -> None:
    """The ordering the kernel gets for free at an IPI sent or handled (the csd list's fully
    ordered atomics), at a context switch and at idle (RCU's dynticks counter): not a step."""
    if _mm is not None:
        _mm.full_barrier()


# -- the primitives ------------------------------------------------------------------------------

def READ_ONCE(words, i):
    """``READ_ONCE(x)``: one load of ``words[i]``, not torn, not cached by the compiler."""
    mm = _mm
    if mm is None:
        return words[i]
    return mm.load(words, i)


def per_cpu_READ_ONCE(words, cpus, stride: int) -> list:
    """``READ_ONCE(per_cpu(var, cpu))`` for each of ``cpus`` in turn (``for_each_cpu``), where
    CPU c's word is ``words[c * stride]``: one step per CPU, so a walker can start between
    two of the reads, as between two iterations of the kernel's loop."""
    mm = _mm
    if mm is None:
        return [words[cpu * stride] for cpu in cpus]
    return [mm.load(words, cpu * stride) for cpu in cpus]


def WRITE_ONCE(words, i, value) -> None:
    """``WRITE_ONCE(x, val)``: one store to ``words[i]``."""
    mm = _mm
    if mm is None:
        words[i] = value
    else:
        mm.store(words, i, value)


def smp_store_release(words, i, value) -> None:
    """``smp_store_release(p, v)``: every earlier load and store is visible before this one."""
    mm = _mm
    if mm is None:
        words[i] = value  # on x86-64 (TSO) a plain store already is a release
    else:
        mm.store(words, i, value, release=True, op="smp_store_release")


def smp_load_acquire(words, i):
    """``smp_load_acquire(p)``: no later load or store is satisfied before this one."""
    mm = _mm
    if mm is None:
        return words[i]
    value = mm.load(words, i, op="smp_load_acquire")
    mm.cache.clear()
    return value


_mb_lock = threading.Lock()


def smp_mb() -> None:
    """``smp_mb()``: a full barrier. On the host, an uncontended process-private lock is a
    locked read-modify-write, a full fence on x86-64, and costs no sharing."""
    mm = _mm
    if mm is not None:
        mm.step("smp_mb")
        mm.full_barrier()
    _mb_lock.acquire()
    _mb_lock.release()


def fence() -> None:
    """A full barrier of the emulator's own (RCU's idle entry and exit, say), not one of the
    strategy's: the same ordering as ``smp_mb()``, but not a step."""
    mm = _mm
    if mm is not None:
        mm.full_barrier()
    _mb_lock.acquire()
    _mb_lock.release()


def smp_rmb() -> None:
    """``smp_rmb()``: loads before it are satisfied before loads after it (no order for
    stores: a store before it may still be buffered)."""
    mm = _mm
    if mm is not None:
        mm.step("smp_rmb")
        mm.settle()
        mm.cache.clear()


def smp_wmb() -> None:
    """``smp_wmb()``: stores before it become visible before stores after it."""
    mm = _mm
    if mm is not None:
        mm.step("smp_wmb")
        if mm.weak:
            mm.epoch += 1


def smp_mb__before_atomic() -> None:
    """``smp_mb__before_atomic()``: a full barrier where atomics are unordered (POWER); on
    x86 the atomic's LOCK prefix already is one."""
    mm = _mm
    if mm is not None and mm.weak:
        smp_mb()


smp_mb__after_atomic = smp_mb__before_atomic


class atomic_t:
    """``atomic_t``: a counter in shared memory that read-modify-writes never lose.

    The read-modify-write is a lock shared by every process (a CPU blocked on it says so in
    ``doing`` and gives up when the run is torn down: its holder may be dead or frozen).
    ``atomic_read`` takes no lock, as in the kernel."""

    def __init__(self, ctx, machine, name: str):
        # machine.py imports this module (its IPIs are barriers): import it when used.
        from lpw_mp.kernel.machine import DOING_LOCK, DOING_RUN, acquire_or_exit
        self.value = ctx.Value("q", 0, lock=ctx.Lock())
        self.words = name_words(self.value.get_obj(), name)
        self._lock = self.value.get_lock()
        self._stop, self._doing = machine.stop, machine.doing
        self._states = DOING_LOCK, DOING_RUN
        self._acquire_or_exit = acquire_or_exit
        #: Tests only (a LockHook's pause): called while the lock is held.
        self.pause = None

    def apply(self, delta: int) -> int:
        lock = self._lock
        if not lock.acquire(False):
            self._contended(lock)
        obj = self.words
        value = obj.value + delta
        obj.value = value
        if self.pause is not None and _cpu >= 0:
            self.pause()
        lock.release()
        return value

    def _contended(self, lock) -> None:
        """Block for the lock; a CPU says meanwhile why it is not answering IPIs."""
        cpu = _cpu
        if cpu >= 0:
            self._doing[cpu] = self._states[0]
        self._acquire_or_exit(lock, self._stop)
        if cpu >= 0:
            self._doing[cpu] = self._states[1]


def atomic_read(v: atomic_t) -> int:
    """``atomic_read(v)``: a plain load (``READ_ONCE(v->counter)``), no lock."""
    mm = _mm
    if mm is None:
        return v.words.value
    traced = mm.traced
    if traced:
        label = _label("atomic_read", v.words)
        mm.step(label, logged=False)
    value = v.words.value
    if mm.buffered:  # this CPU's own buffered increments, forwarded
        value += sum(e[3] for e in mm.pending if e[1] is v)
    if traced:
        mm.note(f"{label} = {value}")
    return value


def atomic_inc(v: atomic_t) -> None:
    """``atomic_inc(v)``: no ordering implied (Documentation/atomic_t.txt)."""
    mm = _mm
    if mm is None:
        v.apply(1)
    else:
        mm.add(v, 1, ordered=False, op="atomic_inc")


def atomic_dec(v: atomic_t) -> None:
    """``atomic_dec(v)``: no ordering implied."""
    mm = _mm
    if mm is None:
        v.apply(-1)
    else:
        mm.add(v, -1, ordered=False, op="atomic_dec")


def atomic_inc_return(v: atomic_t) -> int:
    """``atomic_inc_return(v)``: fully ordered, as every value-returning atomic."""
    mm = _mm
    if mm is None:
        return v.apply(1)
    return mm.add(v, 1, ordered=True, op="atomic_inc_return")


def atomic_dec_return(v: atomic_t) -> int:
    """``atomic_dec_return(v)``: fully ordered."""
    mm = _mm
    if mm is None:
        return v.apply(-1)
    return mm.add(v, -1, ordered=True, op="atomic_dec_return")
