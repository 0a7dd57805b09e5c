"""``sweep --cluster``: a sweep whose points run on the workers of a dask.distributed scheduler
(a local cluster of two worker processes on the loopback address, each declaring the resource
``host``) gives the document a local sweep gives, and a sweep cut short there is completed
by ``--resume``."""

import json
import os
import signal
import subprocess
import sys
import threading
import time

import psutil
import pytest

from conftest import HELPER, forget_semaphores
from lpw_mp.commands.cli import main

pytestmark = [pytest.mark.timeout(180), pytest.mark.usefixtures("no_thread_left")]

TINY = ["--vary", "cpus=2,4", "--memory", "16M", "--walker-time", "0.1", "--strategy",
        "ipi,count"]


@pytest.fixture
def scheduler(local_cluster):
    """A local dask cluster's address: two worker processes on 127.0.0.1, host=1 each."""
    return local_cluster()


def sweep_doc(runs):
    (folder,) = runs.iterdir()
    return folder, json.loads((folder / "sweep.json").read_text())


def shape(document):
    """What two sweeps of one plan share: the plan, each point's values, status and legs
    (strategy, status, safety verdict, violations), the fits' strategies and parameters."""
    return {"vary": document["vary"], "metric": document["metric"],
            "status": document["status"],
            "points": [(p["values"], p["status"],
                        [(leg["strategy"], leg["status"], leg.get("safety"),
                          leg["violations"]["total"]) for leg in p["legs"]])
                       for p in document["points"]],
            "fits": [(f["strategy"], f["parameter"]) for f in document["fits"]]}


def test_a_sweep_on_a_cluster_gives_the_document_a_local_sweep_gives(tmp_path, scheduler,
                                                                      capsys):
    """The same tiny sweep run here and through --cluster: the same plan, points, statuses,
    legs and safety verdicts, and the same keys; each point says the host it ran on. Two
    workers on one host are warned about: both declare host=1."""
    here, there = tmp_path / "here", tmp_path / "there"
    assert main(["sweep", *TINY, "--runs-dir", str(here), "-q"]) == 0
    assert main(["sweep", *TINY, "--runs-dir", str(there), "-q", "--cluster", scheduler]) == 0
    # Both workers of the local cluster are on this host: the sweep warns, even with -q.
    assert "warning: 2 workers on host" in capsys.readouterr().err
    (_, local), (folder, remote) = sweep_doc(here), sweep_doc(there)
    assert shape(remote) == shape(local)
    assert set(remote) == set(local)
    assert all(p["host"]["hostname"] and p["host"]["usable_cores"] for p in remote["points"])
    manifest = json.loads((folder / "manifest.json").read_text())
    assert [p["state"] for p in manifest["points"]] == ["done", "done"]


def test_a_cluster_whose_workers_do_not_declare_a_host_is_refused(tmp_path, capsys,
                                                                  local_cluster):
    """Workers without the resource host=1 could run two points on one host at once: the
    sweep refuses the cluster in one line, status 2, before anything runs or is written."""
    code = main(["sweep", *TINY, "--runs-dir", str(tmp_path / "runs"), "--cluster",
                 local_cluster(resources={})])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1
    assert "does not declare the resource 'host'" in err
    assert not (tmp_path / "runs").exists()


def test_an_unreachable_scheduler_is_one_line_and_nothing_runs(tmp_path, capsys):
    """A scheduler that cannot be reached: one line, status 2, no folder."""
    code = main(["sweep", *TINY, "--runs-dir", str(tmp_path / "runs"), "--cluster",
                 "tcp://127.0.0.1:1"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "cannot reach the dask scheduler" in err
    assert not (tmp_path / "runs").exists()


def test_a_sweep_begun_here_is_resumed_on_a_cluster(tmp_path, scheduler, capsys):
    """A sweep whose second point is marked not done (as a sweep cut short leaves it) is
    completed by --resume --cluster: only that point runs, on a worker, and the document is
    complete."""
    runs = tmp_path / "runs"
    assert main(["sweep", *TINY, "--runs-dir", str(runs), "-q"]) == 0
    folder, _ = sweep_doc(runs)
    path = folder / "manifest.json"
    manifest = json.loads(path.read_text())
    first = manifest["points"][0]["record"]
    manifest["points"][1].update(state="interrupted")
    path.write_text(json.dumps(manifest))
    assert main(["sweep", "--resume", str(folder), "-q", "--cluster", scheduler]) == 0
    manifest = json.loads(path.read_text())
    assert [p["state"] for p in manifest["points"]] == ["done", "done"]
    assert manifest["points"][0]["record"] == first
    assert manifest["points"][1]["attempts"] == 2  # once here, once on the cluster
    _, document = sweep_doc(runs)
    assert document["status"] == "complete" and len(document["points"]) == 2


def test_without_dask_a_sweep_runs_here_and_cluster_says_how_to_get_it(tmp_path, capsys,
                                                                        monkeypatch):
    """The local default needs no cluster package: with dask.distributed unimportable, a
    sweep runs here as before, and --cluster is one line naming the extra, status 2."""
    monkeypatch.setitem(sys.modules, "distributed", None)
    assert main(["sweep", *TINY, "--runs-dir", str(tmp_path / "here"), "-q"]) == 0
    capsys.readouterr()
    code = main(["sweep", *TINY, "--runs-dir", str(tmp_path / "there"), "--cluster",
                 "tcp://127.0.0.1:1"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "pip install 'lpw_mp[cluster]'" in err
    assert not (tmp_path / "there").exists()


def test_a_sweep_whose_scheduler_goes_away_is_completed_by_resume(tmp_path, capsys):
    """The whole cluster (scheduler, workers, the point running) is killed while a point
    runs: the sweep ends failed, saying it lost the scheduler, keeps its folder with the
    points not done, and `sweep --resume DIR`, here, completes it."""
    before = set(os.listdir("/dev/shm"))
    proc = subprocess.Popen([sys.executable, "-c", HELPER, json.dumps(
        {"workers": 1, "threads": 1, "resources": {"host": 1}})], stdin=subprocess.PIPE,
        stdout=subprocess.PIPE, text=True, start_new_session=True)
    try:
        address = proc.stdout.readline().strip()
        cluster = psutil.Process(proc.pid)

        def kill_when_a_point_runs():
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                try:
                    if any("lpw_mp.harness.point" in " ".join(p.cmdline())
                           for p in cluster.children(recursive=True)):
                        os.killpg(proc.pid, signal.SIGKILL)
                        return
                except psutil.Error:
                    pass
                time.sleep(0.02)
        killer = threading.Thread(target=kill_when_a_point_runs)
        killer.start()
        runs = tmp_path / "runs"
        code = main(["sweep", *TINY, "--walker-time", "2", "--runs-dir", str(runs), "-q",
                     "--cluster", address])
        killer.join()
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        proc.stdout.close()
        proc.stdin.close()
        forget_semaphores(before)  # the cluster's, killed with their tracker
    assert code == 1
    (folder,) = runs.iterdir()
    document = json.loads((folder / "sweep.json").read_text())
    assert document["status"] == "failed"
    assert any("lost the dask scheduler" in e for e in document["errors"])
    manifest = json.loads((folder / "manifest.json").read_text())
    assert "pending" in [p["state"] for p in manifest["points"]]
    capsys.readouterr()
    assert main(["sweep", "--resume", str(folder), "-q"]) == 0
    manifest = json.loads((folder / "manifest.json").read_text())
    assert [p["state"] for p in manifest["points"]] == ["done", "done"]
    assert json.loads((folder / "sweep.json").read_text())["status"] == "complete"
