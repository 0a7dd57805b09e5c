"""Doorbells: futex words in one shared array, through which idle simulated CPUs are woken.

The wake path is O(N) in memory: CPU c sleeps on word ``c // 32`` of one ``RawArray`` with the
futex bitset ``1 << c % 32`` (``FUTEX_WAIT_BITSET``), and a sender wakes exactly the CPUs it
targets, a word at a time (``FUTEX_WAKE_BITSET`` with the union of their bits): a broadcast to
128 CPUs is 4 system calls, to 4096 CPUs 128. A semaphore per CPU, which this replaces, is a
mapping of its own, mapped by every process: N squared mappings in all.

The protocol is the futex(2) one. A waiter reads its word (``seq``), then looks at what it may
be woken for, then sleeps only if the word still holds ``seq``; a waker changes what it wakes
for first, then bumps the word, then wakes. A wake-up that comes between the look and the sleep
changes the word, and the sleep returns at once (EAGAIN). Any change will do, so wakers that race
need no atomic increment: both may store ``seq + 1``, which still differs from ``seq``.

That ordering needs the waiter's two loads kept in order and the waker's two stores too, which
x86-64 (TSO) gives for plain loads and stores. Elsewhere a waiter does not sleep longer than
``UNORDERED_NAP`` at a time, so a wake-up lost to reordering costs that long, not a hang.
"""

import ctypes
import math
import os
import platform
import time
from multiprocessing.sharedctypes import RawArray

#: CPUs per futex word: the futex bitset is 32 bits wide.
CPUS_PER_WORD = 32

_SYS_futex = {"x86_64": 202, "aarch64": 98, "ppc64le": 221, "ppc64": 221, "s390x": 238,
              "riscv64": 98}.get(platform.machine())
_FUTEX_WAIT_BITSET, _FUTEX_WAKE_BITSET = 9, 10
_INT_MAX = 0x7FFFFFFF
_ALL_BITS = 0xFFFFFFFF
#: Loads and stores are kept in order by the host (the module docstring says why it matters).
ORDERED = platform.machine() in ("x86_64", "AMD64")
UNORDERED_NAP = 0.01


class timespec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]


# PyDLL: the call keeps the GIL, which a single-threaded CPU process does not need to give up,
# and saves releasing and taking it again on every sleep and every ring.
_libc = ctypes.PyDLL(None, use_errno=True)
_syscall = _libc.syscall
_syscall.restype = ctypes.c_long


class FutexUnavailable(OSError):
    """This host has no futex(2) the emulator knows how to call."""


def check_available() -> None:
    """Raise ``FutexUnavailable`` unless futex(2) works here (Linux on a known architecture)."""
    if _SYS_futex is None:
        raise FutexUnavailable(f"no futex(2) system call number known for "
                               f"{platform.machine() or 'this architecture'}")
    word = (ctypes.c_uint32 * 1)()
    # Wakes nobody: 0 on a working futex, -1 (ENOSYS) on a kernel without one.
    if _syscall(_SYS_futex, ctypes.c_void_p(ctypes.addressof(word)), _FUTEX_WAKE_BITSET,
                1, None, None, ctypes.c_uint32(_ALL_BITS)) < 0:
        raise FutexUnavailable(f"futex(2) failed: {os.strerror(ctypes.get_errno())}")


class Doorbells:
    """The doorbell words of ``ncpus`` CPUs, allocated before the processes fork."""

    def __init__(self, ncpus: int):
        self.ncpus = ncpus
        self.words = RawArray(ctypes.c_uint32, max(1, math.ceil(ncpus / CPUS_PER_WORD)))
        self._base = ctypes.addressof(self.words)
        self._addrs = None  # per process: ctypes pointers are not inherited through pickling
        self._all = None

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_addrs"] = state["_all"] = None
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._base = ctypes.addressof(self.words)

    def _word_addrs(self) -> list:
        if self._addrs is None:
            size = ctypes.sizeof(ctypes.c_uint32)
            self._addrs = [ctypes.c_void_p(self._base + w * size)
                           for w in range(len(self.words))]
        return self._addrs

    # -- the sleeping side --------------------------------------------------------------------

    def waiter(self, cpu: int):
        """``(read, wait)`` for CPU ``cpu``: ``seq = read()`` before looking at what it may be
        woken for; ``wait(seq, deadline)`` sleeps until woken, or until ``deadline`` (a
        ``time.monotonic()`` value; None: no bound) passes, unless the word moved on from
        ``seq``. Either may return early (a signal, a wake-up meant for a neighbour's earlier
        round): the caller looks again."""
        words, word = self.words, cpu // CPUS_PER_WORD
        addr = self._word_addrs()[word]
        bit = ctypes.c_uint32(1 << cpu % CPUS_PER_WORD)
        ts = timespec()
        ts_ref = ctypes.byref(ts)
        syscall, nr, op = _syscall, _SYS_futex, _FUTEX_WAIT_BITSET
        nap = None if ORDERED else UNORDERED_NAP
        monotonic = time.monotonic

        def read() -> int:
            return words[word]

        def wait(seq: int, deadline=None) -> None:
            if nap is not None:
                soon = monotonic() + nap
                deadline = soon if deadline is None else min(deadline, soon)
            if deadline is None:
                syscall(nr, addr, op, seq, None, None, bit)
                return
            # FUTEX_WAIT_BITSET takes an absolute CLOCK_MONOTONIC time: time.monotonic()'s.
            if deadline <= 0:
                return
            sec = int(deadline)
            ts.tv_sec, ts.tv_nsec = sec, int((deadline - sec) * 1e9)
            syscall(nr, addr, op, seq, ts_ref, None, bit)
        return read, wait

    # -- the waking side ----------------------------------------------------------------------

    def ring(self, cpus) -> None:
        """Wake those of ``cpus`` that sleep on their doorbell (one system call per word).
        Whatever they are woken for must be stored before this call."""
        if cpus is None or len(cpus) == self.ncpus:
            groups = self._all_groups()
        else:
            bits = {}
            for cpu in cpus:
                word = cpu // CPUS_PER_WORD
                bits[word] = bits.get(word, 0) | 1 << cpu % CPUS_PER_WORD
            addrs = self._word_addrs()
            groups = [(word, addrs[word], ctypes.c_uint32(b)) for word, b in bits.items()]
        words, syscall, nr, op = self.words, _syscall, _SYS_futex, _FUTEX_WAKE_BITSET
        for word, addr, bits in groups:
            words[word] = (words[word] + 1) & _ALL_BITS
            syscall(nr, addr, op, _INT_MAX, None, None, bits)

    def ring_all(self) -> None:
        self.ring(None)

    def _all_groups(self) -> list:
        if self._all is None:
            addrs, out = self._word_addrs(), []
            for word in range(len(self.words)):
                first = word * CPUS_PER_WORD
                n = min(CPUS_PER_WORD, self.ncpus - first)
                out.append((word, addrs[word], ctypes.c_uint32((1 << n) - 1)))
            self._all = out
        return self._all
