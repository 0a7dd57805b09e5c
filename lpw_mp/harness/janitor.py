"""Under the ``spawn`` start method, nothing is left in /dev/shm, whatever is killed.

A spawned child is a fresh interpreter: it opens the run's semaphores by name, so under spawn
they keep their ``/dev/shm/sem.mp-*`` names for as long as the machine lives (under ``fork``
they are unlinked at creation). multiprocessing's resource tracker unlinks them if the parent
dies, but it shares the parent's process group, so a SIGKILL to the group (a terminal's
``kill -9 -PGID``, a test harness, a service manager) kills it too and the names leak.

The janitor is a small process in a session of its own, told every name as the machine creates
it: when its pipe from the parent closes (the parent ended, however) it unlinks whichever of
them still exist, then exits. When the machine is shut down normally, the parent runs
multiprocessing's own clean-up of those semaphores first (unlink, and unregister from the
resource tracker), so the janitor finds nothing left.
"""

import multiprocessing.synchronize
import multiprocessing.util
import os
import select
import subprocess
import sys
import time

from lpw_mp.kernel.strategies.base import Strategy

#: What the janitor runs: read names until the parent's end of the pipe closes, then unlink.
_JANITOR = """
import sys
from _multiprocessing import sem_unlink
for name in [line.strip() for line in sys.stdin]:
    try:
        sem_unlink(name)
    except OSError:
        pass
"""
#: How long a janitor may take to finish once told to.
JANITOR_TIMEOUT = 5.0


def semaphore_names(obj, seen=None) -> set:
    """The names of every named semaphore reachable from ``obj`` through lpw_mp's and
    multiprocessing's objects, lists, tuples and dicts (under fork there are none). A
    strategy from outside the package is walked too: its RCU and its own locks are in it."""
    seen = set() if seen is None else seen
    if id(obj) in seen:
        return set()
    seen.add(id(obj))
    if isinstance(obj, multiprocessing.synchronize.SemLock):
        name = obj._semlock.name
        return {name} if name else set()
    if isinstance(obj, (list, tuple)):
        items = obj
    elif isinstance(obj, dict):
        items = obj.values()
    elif (isinstance(obj, Strategy) or type(obj).__module__.startswith(
            ("lpw_mp", "multiprocessing"))) and hasattr(obj, "__dict__"):
        items = vars(obj).values()
    else:
        return set()
    names = set()
    for item in items:
        names |= semaphore_names(item, seen)
    return names


class Janitor:
    """Unlinks the named semaphores it is shown once the parent is gone, or when closed."""

    def __init__(self):
        self.proc = subprocess.Popen([sys.executable, "-c", _JANITOR], stdin=subprocess.PIPE,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                     start_new_session=True)
        os.set_blocking(self.proc.stdin.fileno(), False)
        self.names = set()

    def watch(self, *objs) -> None:
        """Tell the janitor the names of every semaphore reachable from ``objs``. A janitor
        that does not read them within ``JANITOR_TIMEOUT`` (stopped, say) is killed: the
        names are then left to multiprocessing's resource tracker, and the run goes on."""
        new = set().union(*(semaphore_names(obj) for obj in objs)) - self.names
        if not new:
            return
        self.names |= new
        self._send("".join(f"{name}\n" for name in sorted(new)))

    def _send(self, text: str) -> None:
        data = memoryview(text.encode())
        fd, deadline = self.proc.stdin.fileno(), time.monotonic() + JANITOR_TIMEOUT
        while data and self.proc.poll() is None:
            left = deadline - time.monotonic()
            if left <= 0:
                self.proc.kill()
                break
            if select.select([], [fd], [], left)[1]:
                try:
                    data = data[os.write(fd, data):]
                except BlockingIOError:
                    pass

    def close(self) -> None:
        """Unlink the semaphores now, as multiprocessing would at exit, then let the janitor
        find nothing and exit; wait for it. The parent's handles stay usable."""
        cleanup = multiprocessing.synchronize.SemLock._cleanup
        for finalizer in list(getattr(multiprocessing.util, "_finalizer_registry", {}).values()):
            args = getattr(finalizer, "_args", None)
            if getattr(finalizer, "_callback", None) is cleanup and args and \
                    args[0] in self.names:
                finalizer()  # runs once: it removes itself from the registry
        try:
            self.proc.stdin.close()
        except OSError:  # a janitor killed above: a broken pipe
            pass
        try:
            self.proc.wait(JANITOR_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
