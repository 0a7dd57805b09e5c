"""One signal policy for the whole program: SIGINT and SIGTERM either end the work under way
(``interruptible``: an ``Interrupted`` exception, raised once) or wait until a step that must
not be cut in half is done (``deferred_signals``: forking a process and recording it, tearing
a machine down, writing a result and printing where it is)."""

import contextlib
import signal
import threading

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Interrupted(BaseException):
    """SIGINT or SIGTERM arrived; ``signum`` says which."""

    def __init__(self, signum):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


@contextlib.contextmanager
def interruptible(signums=SIGNALS):
    """The first of ``signums`` raises ``Interrupted`` in the block; later ones are ignored,
    so that a second Ctrl-C cannot cut short the teardown the first one started."""
    caught = []

    def on_signal(signum, frame):
        caught.append(signum)
        if len(caught) == 1:
            raise Interrupted(signum)

    previous = {signum: signal.signal(signum, on_signal) for signum in signums}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


@contextlib.contextmanager
def deferred_signals(signums=SIGNALS):
    """Hold ``signums`` back for the length of the block, then deliver them to this process.
    The block is given the list of those held so far (a step may end the work it began).

    A handler that raises (the runner's, Python's KeyboardInterrupt) must not land between a
    fork and the line that records the child, or halfway through a teardown. A child forked
    inside the block inherits the recording handler until it installs its own."""
    if threading.current_thread() is not threading.main_thread():
        yield []  # only the main thread runs Python signal handlers
        return
    pending = []
    previous = {signum: signal.signal(signum, lambda signum, frame: pending.append(signum))
                for signum in signums}
    try:
        yield pending
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        for signum in dict.fromkeys(pending):
            signal.raise_signal(signum)
