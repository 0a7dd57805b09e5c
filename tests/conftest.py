import json
import multiprocessing
import os
import subprocess
import sys
import threading
import time

import psutil
import pytest

from lpw_mp.harness.config import Config


#: What a test configuration has unless the test says otherwise, and why. A test that relies
#: on one of these (no walks, a table with PTE pages, the ipi strategy) should still say so.
TEST_DEFAULTS = dict(
    cpus=4,                # few processes: the suite runs on 2 cores
    memory=32 << 20,       # 16 THPs of 2M
    strategies=["ipi"],    # Emulator takes its strategy by name; only the runner reads this
    walk_rate=0.0,         # no walks unless asked: nothing races the test's own steps
    pte_fraction=0.25,     # a quarter of the slots mapped through a PTE page
    ipi_timeout=5.0,       # a broken protocol fails the test in seconds, not minutes
    walker_time=0.2,       # a short walker phase where the runner runs one
)


def small_config(tmp_path=None, **overrides) -> Config:
    """``Config(**TEST_DEFAULTS, **overrides)``, validated, writing under ``tmp_path``."""
    values = dict(TEST_DEFAULTS, runs_dir=str(tmp_path / "runs") if tmp_path else "runs")
    values.update(overrides)
    return Config(**values).validate()


@pytest.fixture
def cfg(tmp_path):
    """A factory of test configurations: ``cfg(cpus=8, walk_rate=1000.0)`` is TEST_DEFAULTS
    with those two changed (see TEST_DEFAULTS for what every other value is, and why)."""
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


#: The helper: a LocalCluster as asked on argv, its scheduler's address on stdout, closed
#: when stdin closes.
HELPER = """
import json, sys
import dask
from distributed import LocalCluster
spec = json.loads(sys.argv[1])
with dask.config.set({"distributed.scheduler.allowed-failures": 0}):
    cluster = LocalCluster(n_workers=spec["workers"], threads_per_worker=spec["threads"],
                           processes=True, resources=spec["resources"], host="127.0.0.1",
                           dashboard_address=None)
    print(cluster.scheduler_address, flush=True)
    sys.stdin.read()
    cluster.close()
"""


@pytest.fixture
def no_thread_left():
    """A Dask client runs an IO loop in a thread; a test of ``--cluster`` must leave none
    running, failed connections included: the emulator refuses to fork CPUs from a threaded
    process, and the tests after these fork."""
    yield
    deadline = time.monotonic() + 5
    while threading.active_count() > 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert [t.name for t in threading.enumerate() if t is not threading.main_thread()] == []


@pytest.fixture
def local_cluster():
    """A factory: ``local_cluster(threads=1, resources={"host": 1})`` starts a LocalCluster
    of 2 workers on 127.0.0.1 and returns its scheduler's address; every one started is
    closed at teardown, its processes gone."""
    helpers = []
    before = set(os.listdir("/dev/shm"))

    def start(threads=1, resources=None):
        spec = {"workers": 2, "threads": threads,
                "resources": {"host": 1} if resources is None else resources}
        proc = subprocess.Popen([sys.executable, "-c", HELPER, json.dumps(spec)],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        helpers.append(proc)
        address = proc.stdout.readline().strip()
        assert address.startswith("tcp://127.0.0.1:"), address
        return address

    yield start
    for proc in helpers:
        proc.stdin.close()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        proc.stdout.close()
    forget_semaphores(before)


def forget_semaphores(before: set) -> None:
    """Take away the named semaphores a dask cluster left in /dev/shm since ``before``.

    Dask's workers are spawned: their semaphores have names, which their resource tracker
    unlinks once they are gone, not always before a killed worker's cluster has closed, and
    never when the tracker is killed with them. They are the engine's, not lpw_mp's (whose
    tests check /dev/shm): give the tracker a moment, then unlink what is left."""
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        left = {n for n in set(os.listdir("/dev/shm")) - before if n.startswith("sem.mp-")}
        if not left:
            break
        time.sleep(0.1)
    for name in left:
        try:
            os.unlink(os.path.join("/dev/shm", name))
        except FileNotFoundError:
            pass
