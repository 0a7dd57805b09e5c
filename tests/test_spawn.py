"""The spawn start method leaks nothing either: a spawned child opens the run's semaphores by
name, so they have names in /dev/shm while the machine lives; whatever is killed (the parent
alone, or the whole process group with multiprocessing's resource tracker in it), the janitor
unlinks them, and a run that ends normally leaves nothing and warns of nothing."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from lpw_mp.harness import janitor as janitor_mod

from test_faults import THREE_LEGS, assert_nothing_left, child_named, cli_run, family, shm_entries

pytestmark = pytest.mark.timeout(90)

SPAWN = [*THREE_LEGS, "--start-method", "spawn"]


#: In a process of its own: pytest's must not start a resource tracker, which outlives tests.
NAMES_DURING_AND_AFTER = """
import json, os, sys
sys.path.insert(0, "tests")
from conftest import small_config
from lpw_mp.harness.emulator import Emulator
from lpw_mp.harness.janitor import semaphore_names

def present(names):
    return sorted(n for n in names if os.path.exists("/dev/shm/sem." + n.lstrip("/")))

with Emulator(small_config(cpus=3, start_method="spawn"), "count") as emu:
    names = semaphore_names([emu.machine, emu.strategy, emu.checker])
    during = present(names)
print(json.dumps({"names": sorted(names), "during": during, "after": present(names)}))
"""


def test_spawned_machines_name_their_semaphores_and_unlink_them_at_shutdown():
    """Under spawn the machine's semaphores have names in /dev/shm while it runs (a spawned
    CPU opens them by name); its shutdown unlinks every one, and warns of nothing."""
    proc = subprocess.run([sys.executable, "-c", NAMES_DURING_AND_AFTER], capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    seen = json.loads(proc.stdout)
    assert len(seen["names"]) >= 3 + 4  # a wake-up per CPU, the ack lock, count's lock, ...
    assert seen["during"] == seen["names"]
    assert seen["after"] == []


def test_a_normal_spawn_run_leaves_nothing_and_warns_of_nothing(tmp_path):
    """A complete run under spawn exits 0, prints no resource-tracker warning about leaked
    semaphores, and /dev/shm gains nothing."""
    shm = shm_entries()
    proc = subprocess.run([sys.executable, "-m", "lpw_mp", "--cpus", "3", "--memory", "16M",
                           "--walker-time", "0.1", "--strategy", "ipi,count,rcu",
                           "--start-method", "spawn", "--runs-dir", str(tmp_path), "-q"],
                          capture_output=True, text=True, timeout=80)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    assert shm_entries() - shm == set()


@pytest.mark.parametrize("to_group", [True, False], ids=["whole-group", "parent-only"])
def test_a_killed_spawn_run_leaves_nothing_in_dev_shm(tmp_path, to_group):
    """SIGKILL to the whole process group (the resource tracker dies with it) or to the
    parent alone, while a spawn run's second strategy runs: every process is gone and the
    semaphores' names are unlinked, within seconds."""
    shm = shm_entries()
    with cli_run(tmp_path, *SPAWN) as cli:
        child_named(cli, "ipi:coord", timeout=60)
        procs = family(cli)
        assert any(name.startswith("sem.") for name in shm_entries() - shm)
        if to_group:
            os.killpg(cli.pid, signal.SIGKILL)
        else:
            cli.kill()
        cli.wait(10)
    assert_nothing_left(procs, shm)


def test_a_stopped_janitor_never_blocks_the_parent(monkeypatch):
    """A janitor that stops reading (SIGSTOP) while the parent has more names for it than a
    pipe holds: the parent gives up on it after its bound and kills it, instead of blocking."""
    monkeypatch.setattr(janitor_mod, "JANITOR_TIMEOUT", 0.5)
    janitor = janitor_mod.Janitor()
    try:
        os.kill(janitor.proc.pid, signal.SIGSTOP)
        start = time.monotonic()
        janitor._send("/mp-xxxxxxxx\n" * 100_000)  # 1.3 MB: far more than a pipe buffer
        assert 0.5 <= time.monotonic() - start < 0.5 + 2.0
        assert janitor.proc.wait(5) == -signal.SIGKILL
    finally:
        janitor.close()
