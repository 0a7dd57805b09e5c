"""Test hooks that stop a process at an exact point of the product path.

They exist so that a test can force a race or a fault deterministically; the product path pays
one test of a local flag at each point, and nothing else, when no hook is installed.
"""

import os
import signal
from multiprocessing.sharedctypes import RawArray, RawValue

from lpw_mp.kernel.memory_model import note

#: Points at which a ``FreezeHook`` stops its CPU: before it reports itself started; after it
#: took its part of the IPI acknowledgements owed, before it woke the sender if it was the
#: last; after that, before it wrote ``ack_gen``; holding rcu's quiescent-state lock; after it
#: reported a quiescent state but before it marked the report posted; idle, having read its
#: doorbell, about to sleep on it; a walk due, IRQs still enabled, before it looks for an IPI
#: one last time.
(FREEZE_START, FREEZE_ACK_TAKEN, FREEZE_ACK_COUNTED, FREEZE_QS_LOCKED,
 FREEZE_QS_REPORTED, FREEZE_IDLE, FREEZE_WALK_DUE) = range(1, 8)


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


#: Points of the IRQ-off window at which a walker can be paused: after the strategy's
#: ``begin_lockless_pgtbl_walk``, just before the PMD is read; after the PMD is read, before
#: the PTE page it names is; while the result is used (both read, the pointer held); and
#: after ``end_lockless_pgtbl_walk``, IRQs still off (what the end published is visible,
#: and under weak the use may not be satisfied yet).
BEFORE_PMD_READ, AFTER_PMD_READ, HOLDING, AFTER_END = 1, 2, 3, 4
WALK_POINTS = {BEFORE_PMD_READ: "before reading the PMD", AFTER_PMD_READ:
               "after reading the PMD, before reading the PTE", HOLDING: "holding the pointer",
               AFTER_END: "after end_lockless_pgtbl_walk, IRQs still off"}


class WalkHook:
    """Test hook: CPU ``cpu`` walks ``slot`` once as soon as it starts, and pauses inside its
    IRQ-off window at ``point`` (default: holding the pointer) until the test releases it.

    ``paused`` is posted when the walker is inside the window; post ``resume`` to let it go on."""

    def __init__(self, ctx, cpu: int, slot: int, sub: int = 0, point: int = HOLDING):
        self.cpu = cpu
        self.slot = slot
        self.sub = sub
        self.point = point
        self.paused = ctx.Semaphore(0)
        self.resume = ctx.Semaphore(0)

    def pause(self) -> None:
        note(f"paused {WALK_POINTS.get(self.point, '')}")
        self.paused.release()
        self.resume.acquire()
        note("resumed")


class ScriptedWalker(WalkHook):
    """``check``'s hook: CPU ``cpu`` walks only when told, on the slot and to the point the
    parent writes in ``order`` (slot, sub, point), then pauses there as a ``WalkHook`` does;
    ``walked`` is posted once the walk has ended."""

    def __init__(self, ctx, cpu: int):
        super().__init__(ctx, cpu, slot=0)
        self.order = RawArray("q", 4)  # pending, slot, sub, point
        self.walked = ctx.Semaphore(0)

    @property
    def point(self) -> int:
        return self.order[3]

    @point.setter
    def point(self, value) -> None:
        pass  # set per walk through ``order``

    def command(self, slot: int, sub: int, point: int) -> None:
        self.order[1:4] = [slot, sub, point]
        self.order[0] = 1


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
