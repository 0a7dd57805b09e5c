"""Fault injection on real processes: CPUs, the coordinator and the parent killed with real
signals at chosen moments, Ctrl-C and SIGTERM, a fork that fails halfway, and the run folder
under clashing ids. Each run must end promptly with its error named, keep what finished, leave
no process behind and add nothing to /dev/shm."""

import contextlib
import errno
import json
import os
import re
import resource
import signal
import subprocess
import sys
import time

import psutil
import pytest

from helpers import acquire, wait_for_phase, wait_until
from lpw_mp.results import folders
from lpw_mp.commands.cli import main
from lpw_mp.kernel.coordinator import PHASE_SERIALIZING
from lpw_mp.kernel.hooks import WalkHook
from lpw_mp.harness.emulator import Emulator, EmulatorError
from lpw_mp.harness.signals import deferred_signals
from lpw_mp.harness.runner import run
from lpw_mp.kernel.hooks import LockHook

pytestmark = pytest.mark.timeout(60)

#: Three legs: count finishes in well under a second, ipi then takes several (65,536 IPI
#: rounds), which leaves ample time to strike while it runs; percpu must never start.
THREE_LEGS = ["--cpus", "4", "--memory", "128G", "--pte-fraction", "0", "--walker-time", "0",
              "--walk-rate", "0", "--strategy", "count,ipi,percpu"]
#: From the fault to the end of the run: detection, teardown, report, interpreter exit.
PROMPT = 5.0


# -- helpers ---------------------------------------------------------------------------------

def shm_entries() -> set:
    return set(os.listdir("/dev/shm"))


def alive(proc: psutil.Process) -> bool:
    """Running code: a zombie (dead, not yet reaped by whoever inherited it) does not count."""
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def assert_nothing_left(procs, shm_before, timeout=3.0) -> None:
    """No process of the run is alive and /dev/shm gained no entry."""
    wait_until(lambda: not any(alive(p) for p in procs), timeout,
               f"every process of the run to exit (alive: {[p.pid for p in procs if alive(p)]})")
    wait_until(lambda: not shm_entries() - shm_before, timeout,
               f"/dev/shm to lose {shm_entries() - shm_before}")


@contextlib.contextmanager
def cli_run(tmp_path, *args):
    """``python -m lpw_mp`` as a real process in a session of its own, as a terminal starts it."""
    cmd = [sys.executable, "-m", "lpw_mp", *args, "--runs-dir", str(tmp_path / "runs")]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        yield proc
    finally:
        if proc.poll() is None:  # the test failed early: its children die with it
            proc.kill()
        proc.communicate()


def child_named(cli, name: str, timeout: float = 30.0) -> psutil.Process:
    """The child of ``cli`` whose comm is ``name`` (``<strategy>:cpu<N>``, ``<strategy>:coord``)."""
    parent, deadline = psutil.Process(cli.pid), time.monotonic() + timeout
    while True:
        for child in parent.children():
            with contextlib.suppress(psutil.NoSuchProcess):
                if child.name() == name:
                    return child
        assert cli.poll() is None, f"the run ended before {name} appeared"
        assert time.monotonic() < deadline, f"timed out waiting for {name}"
        time.sleep(0.005)


def family(cli) -> list:
    """The CLI process and every process it has started."""
    parent = psutil.Process(cli.pid)
    return [parent, *parent.children(recursive=True)]


def finish(cli, struck_at: float):
    out, err = cli.communicate(timeout=30)
    return out, err, time.monotonic() - struck_at


def only_run_folder(tmp_path):
    folders = [p for p in (tmp_path / "runs").iterdir() if not p.name.startswith(".")]
    assert len(folders) == 1, folders
    assert (folders[0] / "report.md").exists()
    return json.loads((folders[0] / "result.json").read_text())


# -- the command line, killed and interrupted ------------------------------------------------

@pytest.mark.parametrize("victim", ["ipi:cpu2", "ipi:coord"])
def test_a_killed_process_fails_the_run_and_keeps_the_legs_that_finished(tmp_path, victim):
    """SIGKILL to a CPU or to the coordinator while the second strategy runs: the run ends
    within seconds, exit status 1, the error names the process and the strategy, result.json
    says "failed" with the first leg's figures kept and the third not run, and no process of
    the run survives."""
    shm = shm_entries()
    with cli_run(tmp_path, *THREE_LEGS) as cli:
        child_named(cli, "ipi:coord")  # count has finished: ipi's operation is under way
        procs, target = family(cli), child_named(cli, victim)
        target.send_signal(signal.SIGKILL)
        out, err, took = finish(cli, time.monotonic())
    assert cli.returncode == 1, err
    assert took < PROMPT
    expected = (f"simulated CPU 2 (pid {target.pid}) killed by SIGKILL during the run under "
                f"strategy ipi" if victim == "ipi:cpu2"
                else "the coordinator killed by SIGKILL under strategy ipi")
    assert f"error: {expected}" in out
    assert "Traceback" not in err
    result = only_run_folder(tmp_path)
    assert result["status"] == "failed" and result["errors"] == [expected]
    count, ipi, percpu = result["legs"]
    assert count["status"] == "ok" and count["skipped"] == 65536
    partial = ipi.pop("partial")  # what was known of the failed leg
    assert ipi == {"strategy": "ipi", "safe": True, "kernel": ipi["kernel"],
                   "status": "failed", "error": expected}
    assert partial["phase"] == "operation" and partial["operations_total"] == 65536
    assert percpu["status"] == "not run"
    assert_nothing_left(procs, shm)


def test_a_killed_parent_takes_every_cpu_with_it(tmp_path):
    """SIGKILL to the CLI process itself: every simulated CPU and the coordinator exit by
    themselves (PR_SET_PDEATHSIG) within seconds, /dev/shm gains nothing, and no run folder
    appears (a folder is complete or absent)."""
    shm = shm_entries()
    with cli_run(tmp_path, *THREE_LEGS) as cli:
        child_named(cli, "ipi:coord")
        procs = family(cli)
        assert len(procs) == 1 + 4 + 1
        cli.kill()
        cli.wait(10)
    assert_nothing_left(procs, shm)
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("signum,to_group,status", [
    (signal.SIGINT, True, 130),    # Ctrl-C: the terminal signals the whole foreground group
    (signal.SIGTERM, False, 143),  # kill(1), a service manager: the main process only
], ids=["ctrl-c", "sigterm"])
def test_an_interrupted_run_stops_and_reports_what_finished(tmp_path, signum, to_group, status):
    """Ctrl-C or SIGTERM while the second strategy runs: the run stops within seconds with
    the conventional status, writes report.md and result.json marked "interrupted" with the
    first leg's figures and the second leg marked interrupted, and leaves no process."""
    shm = shm_entries()
    with cli_run(tmp_path, *THREE_LEGS) as cli:
        child_named(cli, "ipi:coord")
        procs = family(cli)
        if to_group:
            os.killpg(cli.pid, signum)
        else:
            cli.send_signal(signum)
        out, err, took = finish(cli, time.monotonic())
    assert cli.returncode == status, err
    assert took < PROMPT
    assert "Traceback" not in err
    result = only_run_folder(tmp_path)
    assert result["status"] == "interrupted"
    assert result["signal"] == signal.Signals(signum).name
    assert [leg["status"] for leg in result["legs"]] == ["ok", "interrupted", "not run"]
    assert result["legs"][0]["skipped"] == 65536
    assert "this run was interrupted" in out
    assert_nothing_left(procs, shm)


# -- the machine, killed at chosen points ----------------------------------------------------

def test_a_cpu_killed_holding_the_count_lock_deadlocks_nobody(cfg, ctx):
    """CPU 1 is SIGKILLed while it holds count's lock, with CPUs 0 and 2 blocked on that lock
    inside their own walks (IRQs off): the coordinator, which must broadcast since the counter
    is not zero, is not stuck; the run fails within seconds naming CPU 1 and count; every process
    is gone."""
    c = cfg(cpus=3, memory=16 << 20, strategies=["count"], walk_rate=1000.0, ipi_timeout=30.0)
    hook = LockHook(ctx, cpu=1)
    with Emulator(c, "count", hooks=[hook], ctx=ctx) as emu:
        m = emu.machine
        hook.armed.value = 1
        acquire(hook.held, what="CPU 1 to hold the counter's lock")
        # CPU 1's walk is counted (with any walk of 0 or 2 that was under way): the
        # coordinator has to broadcast, and the broadcast cannot complete.
        assert emu.strategy.running_lockless_pgtbl_walk() >= 1
        wait_until(lambda: m.irq_off[0] and m.irq_off[2], what="CPUs 0 and 2 to wait for the lock")
        procs = [psutil.Process(p.pid) for p in emu.cpus]
        victim = emu.cpus[1].pid
        os.kill(victim, signal.SIGKILL)
        struck = time.monotonic()
        emu.start_coordinator()
        procs.append(psutil.Process(emu.coord.pid))
        with pytest.raises(EmulatorError, match=rf"simulated CPU 1 \(pid {victim}\) killed by "
                                                rf"SIGKILL during the run under strategy count"):
            emu.wait_coordinator()
    assert time.monotonic() - struck < PROMPT
    assert_nothing_left(procs, set())


def test_a_cpu_killed_with_irqs_off_mid_broadcast_fails_the_run_naming_it(cfg, ctx):
    """CPU 1 is SIGKILLed inside its IRQ-off window while the coordinator waits for its IPI
    acknowledgement: the run fails within seconds (not after --ipi-timeout) naming CPU 1 and
    ipi, and every process is gone. (A huge leaf: its zap is what ipi serialises.)"""
    c = cfg(cpus=3, memory=16 << 20, pte_fraction=0.0, ipi_timeout=30.0)
    hook = WalkHook(ctx, cpu=1, slot=2)
    with Emulator(c, "ipi", hooks=[hook], ctx=ctx) as emu:
        m = emu.machine
        acquire(hook.paused, what="walker to pause")
        emu.start_coordinator(slots=[2])
        wait_for_phase(emu, 2, PHASE_SERIALIZING)
        wait_until(lambda: m.ipi_gen[1] == m.ack_gen[1] + 1, what="the IPI to CPU 1")
        assert m.irq_off[1] == 1
        procs = [psutil.Process(p.pid) for p in (*emu.cpus, emu.coord)]
        victim = emu.cpus[1].pid
        os.kill(victim, signal.SIGKILL)
        struck = time.monotonic()
        with pytest.raises(EmulatorError, match=rf"simulated CPU 1 \(pid {victim}\) killed by "
                                                rf"SIGKILL during the run under strategy ipi"):
            emu.wait_coordinator()
    assert time.monotonic() - struck < PROMPT
    assert_nothing_left(procs, set())


def test_a_fork_that_fails_halfway_stops_the_cpus_already_started(cfg):
    """With too few file descriptors left for 40 CPUs (a real RLIMIT_NOFILE), a fork fails
    partway: the leg fails with an error naming the CPU, the cause and the strategy, and the
    CPUs already started are stopped, none left behind."""
    c = cfg(cpus=40)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (len(os.listdir("/proc/self/fd")) + 40, hard))
    try:
        result = run(c, argv=["test"])
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    assert result["status"] == "failed"
    error = result["legs"][0]["error"]
    found = re.fullmatch(r"could not start simulated CPU (\d+) of 40 under strategy ipi: "
                         r"Too many open files \(lower --cpus\)", error)
    assert found, error
    assert 0 < int(found.group(1)) < 40
    assert psutil.Process().children() == []


def test_signals_wait_until_a_protected_step_is_done():
    """Inside deferred_signals a signal does not interrupt the step (as it would between a
    fork and recording the child); its handler runs as soon as the step is done."""
    class Delivered(Exception):
        pass

    def handler(signum, frame):
        raise Delivered()

    previous = signal.signal(signal.SIGUSR1, handler)
    steps = []
    try:
        with pytest.raises(Delivered):
            with deferred_signals((signal.SIGUSR1,)):
                os.kill(os.getpid(), signal.SIGUSR1)
                steps.append("after the signal")
                steps.append("step done")
        assert steps == ["after the signal", "step done"]
        assert signal.getsignal(signal.SIGUSR1) is handler
    finally:
        signal.signal(signal.SIGUSR1, previous)


# -- results are never lost ------------------------------------------------------------------

def result_of(n):
    return {"status": "complete", "legs": [], "n": n, "started": "s", "finished": "f",
            "command": ["x"], "config": {}, "host": {}}


@pytest.fixture(params=["renameat2", "mkdir"])
def rename_path(request, monkeypatch):
    """Both ways of refusing to replace a folder: renameat2(RENAME_NOREPLACE), and the
    exclusive mkdir used where the file system or libc has no renameat2."""
    if request.param == "mkdir":
        monkeypatch.setattr(folders, "_renameat2", None)
    return request.param


@pytest.fixture
def formats(monkeypatch):
    """Reports of these minimal results: only the writing is under test."""
    monkeypatch.setattr(folders, "format_markdown", lambda result: f"run {result['run_id']}\n")


def test_two_runs_in_the_same_second_get_different_folders(tmp_path, monkeypatch, rename_path,
                                                           formats):
    """Two runs that draw the same run id (same second, same random suffix) get different
    folders: the second draws again, and the first folder is left as it was."""
    ids = iter(["20260101-000000-aaaaaa", "20260101-000000-aaaaaa", "20260101-000000-bbbbbb"])
    monkeypatch.setattr(folders, "new_run_id", lambda: next(ids))
    first = folders.write_run(result_of(1), str(tmp_path))
    before = (tmp_path / "20260101-000000-aaaaaa" / "result.json").read_text()
    second = folders.write_run(result_of(2), str(tmp_path))
    assert os.path.basename(first) == "20260101-000000-aaaaaa"
    assert os.path.basename(second) == "20260101-000000-bbbbbb"
    assert (tmp_path / "20260101-000000-aaaaaa" / "result.json").read_text() == before
    assert json.loads((tmp_path / "20260101-000000-bbbbbb" / "result.json").read_text())["n"] == 2
    assert sorted(os.listdir(tmp_path)) == ["20260101-000000-aaaaaa", "20260101-000000-bbbbbb"]


def test_two_runs_started_together_get_different_ids(tmp_path, monkeypatch, formats):
    """Two runs written in the same second get different run ids (the random suffix)."""
    monkeypatch.setattr(folders.time, "strftime", lambda fmt: "20260101-000000")
    a = folders.write_run(result_of(1), str(tmp_path))
    b = folders.write_run(result_of(2), str(tmp_path))
    assert a != b
    assert all(re.fullmatch(r"20260101-000000-[0-9a-f]{6}", os.path.basename(f)) for f in (a, b))


@pytest.mark.parametrize("existing", ["empty", "full"])
def test_an_existing_folder_is_never_touched(tmp_path, rename_path, formats, existing):
    """A run whose id is already a folder, even an empty one (which a plain rename would
    silently replace), writes elsewhere and leaves that folder exactly as it was."""
    taken = tmp_path / "20260101-000000-cccccc"
    taken.mkdir()
    if existing == "full":
        (taken / "result.json").write_text("theirs")
    inode = taken.stat().st_ino
    result = result_of(1)
    result["run_id"] = taken.name
    folder = folders.write_run(result, str(tmp_path))
    assert os.path.basename(folder) == result["run_id"] != taken.name
    assert taken.stat().st_ino == inode
    assert sorted(os.listdir(taken)) == ([] if existing == "empty" else ["result.json"])
    if existing == "full":
        assert (taken / "result.json").read_text() == "theirs"
    assert json.loads((tmp_path / result["run_id"] / "result.json").read_text())["n"] == 1


def test_a_report_that_fails_to_write_leaves_nothing_half_written(tmp_path, formats):
    """A failure while the files are written (here a result JSON cannot encode) leaves
    neither a run folder nor the staging folder."""
    result = result_of(1)
    result["bad"] = object()
    with pytest.raises(TypeError):
        folders.write_run(result, str(tmp_path))
    assert os.listdir(tmp_path) == []


def test_a_run_folder_that_cannot_be_written_prints_the_result(tmp_path, monkeypatch, capsys):
    """If the run folder cannot be written (disk full), the result is printed as JSON on
    stdout rather than lost, with the error on stderr and exit status 1."""
    def full(result, runs_dir, **files):
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr("lpw_mp.commands.run.write_run", full)
    code = main(["--cpus", "2", "--memory", "8M", "--walker-time", "0", "--runs-dir",
                 str(tmp_path), "--quiet"])
    captured = capsys.readouterr()
    assert code == 1
    assert "could not write a run folder" in captured.err and "No space left" in captured.err
    assert json.loads(captured.out)["status"] == "complete"
