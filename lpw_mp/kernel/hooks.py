"""Test hooks that stop a process at an exact point of the product path.

They exist so that a test can force a race or a fault deterministically; the product path pays
one test of a local flag at each point, and nothing else, when no hook is installed.
"""

import os
import signal
from multiprocessing.sharedctypes import RawValue

#: Points at which a ``FreezeHook`` stops its CPU: before it reports itself started; holding
#: the IPI acknowledgement lock; after it took its part of the count owed (and woke the sender
#: if it was last) but before it wrote ``ack_gen``; holding rcu's quiescent-state lock; after
#: it reported a quiescent state but before it marked the report posted.
(FREEZE_START, FREEZE_ACK_LOCKED, FREEZE_ACK_COUNTED, FREEZE_QS_LOCKED,
 FREEZE_QS_REPORTED) = range(1, 6)


class FreezeHook:
    """Test hook: CPU ``cpu`` stops itself with SIGSTOP, as a debugger or an unscheduled vCPU
    would stop it, the ``after + 1``-th time it reaches ``point`` (a ``FREEZE_*`` constant).
    The product path pays one test of a local flag at each point."""

    def __init__(self, cpu: int, point: int, after: int = 0):
        self.cpu = cpu
        self.point = point
        self.after = after


def freeze_point(hook: FreezeHook, point: int) -> None:
    """Stop this process here if ``hook`` asks for ``point`` (and it is its turn)."""
    if hook is None or hook.point != point:
        return
    if hook.after:
        hook.after -= 1
        return
    os.kill(os.getpid(), signal.SIGSTOP)


class WalkHook:
    """Test hook: CPU ``cpu`` walks ``slot`` once as soon as it starts, and pauses inside its
    IRQ-off window, after taking the pointer, until the test releases it.

    ``paused`` is posted when the walker is inside the window; post ``resume`` to let it go on."""

    def __init__(self, ctx, cpu: int, slot: int, sub: int = 0):
        self.cpu = cpu
        self.slot = slot
        self.sub = sub
        self.paused = ctx.Semaphore(0)
        self.resume = ctx.Semaphore(0)


class LockHook:
    """Test hook: once ``armed`` is set, CPU ``cpu`` stops inside its next
    ``begin_lockless_pgtbl_walk`` while it holds the counter's lock, posts ``held`` and waits
    for ``resume``. Pass it to the ``Emulator`` with the other hooks."""

    def __init__(self, ctx, cpu: int):
        self.cpu = cpu
        self.armed = RawValue("b", 0)
        self.held = ctx.Semaphore(0)
        self.resume = ctx.Semaphore(0)

    def pause(self) -> None:
        if self.armed.value:
            self.armed.value = 0
            self.held.release()
            self.resume.acquire()
