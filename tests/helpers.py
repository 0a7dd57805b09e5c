"""Shared helpers for process-level tests."""

import importlib.util
import time

from lpw_mp.kernel.coordinator import P_PHASE, P_SLOT


def wait_until(predicate, timeout=10.0, what="condition"):
    """Poll ``predicate`` until true; fail the test (not hang) after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.005)


def wait_for_phase(emu, slot, phase, timeout=10.0):
    wait_until(lambda: emu.progress[P_SLOT] == slot and emu.progress[P_PHASE] == phase,
               timeout, f"coordinator phase {phase} on slot {slot}")


def acquire(sem, timeout=10.0, what="semaphore"):
    assert sem.acquire(True, timeout), f"timed out waiting for {what}"


def without_matplotlib(monkeypatch):
    """Make lpw_mp find no matplotlib, as on a host without the plot extra."""
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name.split(".")[0] == "matplotlib"
                        else real(name, *a))
