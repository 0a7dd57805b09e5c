"""``sweep --cluster``'s machinery: a point in a process of its own (``harness.point``), and
points run on a ``dask.distributed`` scheduler's workers (``harness.cluster``).

The cluster is a ``LocalCluster`` on loopback, started in a helper process of its own: its
worker processes are started by multiprocessing's spawn, which would leave a resource
tracker behind in pytest's process (the conftest fixture counts it). Its scheduler allows
no failure of its own (``allowed-failures`` 0), so that a worker lost mid-point surfaces at
once as ``KilledWorker`` and the retry under test is ours, not Dask's."""

import concurrent.futures
import os
import signal
import subprocess
import sys
import time

import psutil
import pytest

from lpw_mp.harness.cluster import ClusterError, connect, security_from
from lpw_mp.harness.config import Config
from lpw_mp.harness.point import PointError, run_point
from lpw_mp.harness.runner import run
from lpw_mp.results.formats import RESULT
from lpw_mp.results.verdicts import annotate

pytestmark = [pytest.mark.timeout(120), pytest.mark.usefixtures("no_thread_left")]

#: A worker stamps a task's start and stop with its own clock plus its latest estimate of its
#: offset from the scheduler's, which each heartbeat revises: two tasks' times on one worker
#: can be off by some milliseconds. Two points run at once would overlap by a whole point.
CLOCK_SLACK = 0.1


def tiny(tmp_path, **overrides) -> Config:
    values = dict(cpus=2, memory=16 << 20, walker_time=0.1, strategies=["ipi", "count"],
                  runs_dir=str(tmp_path / "runs"))
    values.update(overrides)
    return Config(**values).validate()


def safety(result: dict) -> dict:
    """Each leg's verdict and violation count."""
    return {leg["strategy"]: (leg["status"], leg["safety"], leg["violations"]["total"])
            for leg in result["legs"]}


def point_processes(root: psutil.Process) -> list:
    out = []
    for proc in root.children(recursive=True):
        try:
            if "lpw_mp.harness.point" in proc.cmdline():
                out.append(proc)
        except psutil.Error:
            pass
    return out


def gone(proc: psutil.Process) -> bool:
    try:
        return proc.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def test_run_point_returns_an_annotated_result_document(tmp_path):
    """A point run in a process of its own gives the document runner.run would: valid
    against the result schema once the caller gives it a run_id, complete, both legs ok and
    annotated with their safety verdicts."""
    cfg = tiny(tmp_path)
    doc = run_point(cfg.to_dict(), ["lpw_mp", "sweep", "--cluster", "x"])
    assert doc["status"] == "complete"
    assert doc["command"] == ["lpw_mp", "sweep", "--cluster", "x"]
    assert doc["config"] == cfg.to_dict()
    assert RESULT.problem({**doc, "run_id": "point"}) == ""
    assert safety(doc) == {"ipi": ("ok", "ok", 0), "count": ("ok", "ok", 0)}


def test_a_bad_point_is_a_point_error_of_one_line(tmp_path):
    """A configuration the point refuses (it validates it again, where it runs) is a
    PointError carrying the child's one line; so is one from another lpw_mp (an unknown
    key)."""
    with pytest.raises(PointError) as info:
        run_point({**tiny(tmp_path).to_dict(), "cpus": 0}, [])
    assert str(info.value) == ("the point failed (exit status 2): --cpus 0 is out of range: "
                               "1 to 8192")
    with pytest.raises(PointError, match="not a configuration of this lpw_mp") as info:
        run_point({**tiny(tmp_path).to_dict(), "bogus": 1}, [])
    assert "\n" not in str(info.value)


def test_the_point_module_refuses_bad_input_with_status_2():
    """``python -m lpw_mp.harness.point`` on input that is not a request: one line on
    stderr, exit status 2, nothing on stdout."""
    for text in ("not json", "[1]"):
        proc = subprocess.run([sys.executable, "-m", "lpw_mp.harness.point"], input=text,
                              capture_output=True, text=True, timeout=60)
        assert proc.returncode == 2 and proc.stdout == ""
        assert proc.stderr.startswith("lpw_mp: error: ") and proc.stderr.count("\n") == 1


def test_an_unreachable_scheduler_is_one_line():
    """Nothing listening at the address: ClusterError, one line naming it, within the
    timeout."""
    started = time.monotonic()
    with pytest.raises(ClusterError) as info:
        connect("tcp://127.0.0.1:1", timeout=2)
    message = str(info.value)
    assert message.startswith("cannot reach the dask scheduler at tcp://127.0.0.1:1: ")
    assert "\n" not in message
    assert time.monotonic() - started < 30


def test_workers_without_the_host_resource_are_refused(local_cluster):
    """Workers that do not declare ``host``: ClusterError naming one of them and the
    command that starts a worker right, before anything is submitted."""
    address = local_cluster(resources={})
    with pytest.raises(ClusterError) as info:
        connect(address)
    message = str(info.value)
    assert message.startswith("the dask worker tcp://127.0.0.1:")
    assert "does not declare the resource 'host'" in message
    assert f"`dask worker {address} --nworkers 1 --nthreads 1 --resources host=1`" in message
    assert "\n" not in message


def test_points_run_one_per_worker_at_a_time_with_the_local_verdicts(tmp_path, local_cluster):
    """Three points (2, 4 and 2 CPUs) on two workers of two threads each: every one ok on
    its first attempt, with the safety verdicts a local run of its configuration gives; and
    the ``host`` resource, not the thread count, kept each worker to one point at a time
    (Dask's task stream: no two compute intervals overlap on one worker, give or take the
    workers' clock correction, CLOCK_SLACK)."""
    import distributed

    configs = [tiny(tmp_path, cpus=n, walker_time=0.3) for n in (2, 4, 2)]
    local = [safety(annotate(run(cfg, argv=["local"]))) for cfg in configs]
    address = local_cluster(threads=2)
    outcomes = {}
    with connect(address) as cluster:
        assert cluster.describe() and len(cluster.hosts) == 2
        with distributed.get_task_stream(client=cluster.client) as stream:
            cluster.run_points([(i, cfg.to_dict(), ["sweep"]) for i, cfg in enumerate(configs)],
                               lambda index, outcome: outcomes.setdefault(index, outcome))
        tasks = stream.data
    assert sorted(outcomes) == [0, 1, 2]
    for index, outcome in outcomes.items():
        assert outcome["status"] == "ok" and outcome["attempts"] == 1, outcome
        assert outcome["worker"] in cluster.hosts
        assert outcome["result"]["config"]["cpus"] == configs[index].cpus
        assert safety(outcome["result"]) == local[index]
    spans = {}
    for task in tasks:
        for part in task["startstops"]:
            if part["action"] == "compute":
                spans.setdefault(task["worker"], []).append((part["start"], part["stop"]))
    assert sum(map(len, spans.values())) == 3   # so one worker ran two of them
    for worker, intervals in spans.items():
        intervals.sort()
        assert all(stop - start > 5 * CLOCK_SLACK for start, stop in intervals), intervals
        for (_, stop), (start, _) in zip(intervals, intervals[1:]):
            assert start > stop - CLOCK_SLACK, f"two points at once on {worker}: {intervals}"


def test_a_point_that_fails_is_not_retried(tmp_path, local_cluster):
    """A point that fails on its own (a configuration the worker refuses) is failed at once,
    with the point's one line, after one attempt; the others still run."""
    good = tiny(tmp_path).to_dict()
    outcomes = {}
    with connect(local_cluster()) as cluster:
        cluster.run_points([(0, {**good, "cpus": 0}, []), (1, good, [])],
                           lambda index, outcome: outcomes.setdefault(index, outcome))
    assert outcomes[0] == {"status": "failed", "attempts": 1,
                           "error": "the point failed (exit status 2): --cpus 0 is out of "
                                    "range: 1 to 8192"}
    assert outcomes[1]["status"] == "ok"


def test_a_worker_killed_mid_point_is_retried_once_and_takes_its_cpus(tmp_path,
                                                                      local_cluster):
    """SIGKILL to the worker process running a point, once the point's CPUs are up: the
    point's process and its CPUs die with it (PR_SET_PDEATHSIG, parent to child), the
    scheduler gives up on the task at once (allowed-failures 0), and run_points submits it
    again: ok on the second attempt."""
    cfg = tiny(tmp_path, walker_time=3.0, strategies=["ipi"])
    outcomes = {}
    with connect(local_cluster()) as cluster, \
            concurrent.futures.ThreadPoolExecutor(1) as pool:
        running = pool.submit(cluster.run_points, [(0, cfg.to_dict(), [])],
                              lambda index, outcome: outcomes.setdefault(index, outcome))
        me = psutil.Process()
        deadline = time.monotonic() + 60
        while True:
            found = point_processes(me)
            # The walker phase (3 s) starts once every CPU is up.
            if found and len(found[0].children()) >= cfg.cpus:
                break
            assert time.monotonic() < deadline and not running.done(), "no point started"
            time.sleep(0.05)
        point = found[0]
        family = [point, *point.children(recursive=True)]
        os.kill(point.ppid(), signal.SIGKILL)
        running.result(timeout=90)
    deadline = time.monotonic() + 10
    while not all(map(gone, family)) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert [p.pid for p in family if not gone(p)] == []
    outcome = outcomes[0]
    assert outcome["status"] == "ok" and outcome["attempts"] == 2, outcome
    assert outcome["result"]["status"] == "complete"
    assert safety(outcome["result"]) == {"ipi": ("ok", "ok", 0)}


def test_an_interrupt_cancels_the_points_not_yet_finished(tmp_path, local_cluster):
    """KeyboardInterrupt while points are outstanding (here from ``on_done`` of the first):
    it goes on to the caller, no further ``on_done`` is called, and the scheduler holds
    none of the sweep's tasks any more."""
    fast = tiny(tmp_path, strategies=["ipi"]).to_dict()
    slow = tiny(tmp_path, strategies=["ipi"], walker_time=2.0).to_dict()
    seen = []

    def on_done(index, outcome):
        seen.append(index)
        raise KeyboardInterrupt

    with connect(local_cluster()) as cluster:
        with pytest.raises(KeyboardInterrupt):
            cluster.run_points([(0, fast, []), (1, slow, []), (2, slow, []), (3, slow, [])],
                               on_done)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            left = cluster.client.run_on_scheduler(
                lambda dask_scheduler: [k for k in dask_scheduler.tasks
                                        if str(k).startswith("lpw_mp-point-")])
            if not left:
                break
            time.sleep(0.1)
        assert left == []
    assert len(seen) == 1


def test_security_from(tmp_path):
    """No TLS file given: None (plain TCP). A file that is not there: ClusterError, one
    line naming the option and the path."""
    assert security_from(None, None, None) is None
    missing = tmp_path / "ca.pem"
    with pytest.raises(ClusterError) as info:
        security_from(str(missing), None, None)
    assert str(info.value) == f"--tls-ca-file {missing}: no such file"
