import multiprocessing
import os
import time

import psutil
import pytest

from lpw_mp.harness.config import Config


def small_config(tmp_path=None, **overrides) -> Config:
    """A configuration small enough for a test: few CPUs, a few MB, no walks unless asked."""
    values = dict(cpus=4, memory=32 << 20, strategies=["ipi"], walk_rate=0.0,
                  pte_fraction=0.25, ipi_timeout=5.0, walker_time=0.2,
                  runs_dir=str(tmp_path / "runs") if tmp_path else "runs")
    values.update(overrides)
    return Config(**values).validate()


@pytest.fixture
def cfg(tmp_path):
    return lambda **kw: small_config(tmp_path, **kw)


@pytest.fixture
def ctx():
    """The start method the product uses; test hooks share its semaphores."""
    return multiprocessing.get_context("fork")


@pytest.fixture(autouse=True)
def no_terminal_width_for_children():
    """pytest imports readline (through pdb), which exports COLUMNS=80 and LINES=24 to every
    child process: a CLI run by a test would lay its tables out for an 80-column terminal.
    Its output goes to a pipe, which has no width."""
    for name in ("COLUMNS", "LINES"):
        if name not in os.environ:
            os.unsetenv(name)


@pytest.fixture(autouse=True)
def no_leftover_children():
    """Every test must leave no child process behind (zombies included)."""
    yield
    me = psutil.Process(os.getpid())
    deadline = time.monotonic() + 3.0
    while True:
        left = [p for p in me.children(recursive=True) if _alive(p)]
        if not left or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    for p in left:  # do not let one failure cascade into every later test
        p.kill()
    assert not left, f"test left child processes behind: {[p.pid for p in left]}"


def _alive(proc) -> bool:
    try:
        return proc.status() != psutil.STATUS_ZOMBIE or _reap(proc)
    except psutil.NoSuchProcess:
        return False


def _reap(proc) -> bool:
    """A zombie child of ours is a leak too, unless reaping it now succeeds."""
    try:
        pid, _ = os.waitpid(proc.pid, os.WNOHANG)
        return pid == 0
    except ChildProcessError:
        return False
