"""The resource preflight: a run the host cannot start is refused before anything starts, with
one line naming the limit, and the estimates it rests on hold on real processes."""

import json
import resource
import subprocess
import sys

import pytest

from lpw_mp.harness import resources
from lpw_mp.harness.config import ConfigError
from lpw_mp.harness.resources import Host, preflight, problems

pytestmark = pytest.mark.timeout(60)

ROOMY = dict(nproc_limit=100_000, user_tasks=100, system_tasks_free=30_000,
             cgroup_tasks_free=None, memory_free=64 << 30, files_hard=1 << 20)


@pytest.mark.parametrize("tight,cpus,message", [
    (dict(nproc_limit=600, user_tasks=100), 512,
     "--cpus 512 needs 513 more processes, but this user already runs 100 of the 600 allowed "
     "(ulimit -u)"),
    (dict(system_tasks_free=400), 512,
     "--cpus 512 needs 513 more processes, but the system (pid_max, threads-max) allows only "
     "400 more"),
    (dict(cgroup_tasks_free=64), 64,
     "--cpus 64 needs 65 more processes, but the pids cgroup (pids.max) allows only 64 more"),
    (dict(memory_free=3 << 30), 1024,
     "--cpus 1024 needs about 3.9 GiB of memory (3.8 MiB per CPU at this count), but only "
     "3.0 GiB is available"),
    (dict(files_hard=1024), 1024,
     "--cpus 1024 needs about 2114 open files in this process, but the limit is 1024 "
     "(ulimit -Hn)"),
], ids=["nproc", "pid_max", "pids-cgroup", "memory", "open-files"])
def test_each_limit_refuses_a_run_that_does_not_fit(cfg, tight, cpus, message):
    """Each limit, set just too low for the run, gives one line naming the limit and the
    figures; the same host with room gives none."""
    c = cfg(cpus=cpus)
    assert problems(c, Host(**ROOMY)) == []
    found = problems(c, Host(**{**ROOMY, **tight}))
    assert len(found) == 1 and found[0].startswith(message), found
    assert "\n" not in found[0]
    with pytest.raises(ConfigError, match="^--cpus"):
        preflight(c, Host(**{**ROOMY, **tight}))


#: Measures real CPU processes forked, as in a run, from a fresh interpreter: forked from pytest
#: they would inherit its heap (hypothesis, matplotlib), and their private memory with it.
USS_PROBE = """
import json, psutil
from lpw_mp.harness.config import Config
from lpw_mp.harness.emulator import Emulator
from lpw_mp.harness.walkers import measure_walkers
cfg = Config(cpus=8, memory=32 << 20, strategies=["count"], walk_rate=200.0,
             runs_dir="/tmp").validate()
with Emulator(cfg, "count") as emu:
    measure_walkers(emu, 0.3)
    print(json.dumps([psutil.Process(p.pid).memory_full_info().uss for p in emu.cpus]))
"""


def test_the_memory_estimate_covers_what_real_cpu_processes_use():
    """The estimate per CPU is at least 1.25 times the mean private memory (USS) of real
    simulated CPUs after walking, forked from a process that imported what a run imports,
    before their kernel side is even counted: the preflight errs on the side of refusing."""
    out = subprocess.run([sys.executable, "-c", USS_PROBE], capture_output=True, text=True,
                         timeout=60, check=True).stdout
    uss = json.loads(out)
    assert len(uss) == 8
    assert sum(uss) / len(uss) * 1.25 <= resources.per_cpu_bytes(8), uss


def test_preflight_raises_the_soft_limit_of_open_files(cfg):
    """A soft RLIMIT_NOFILE too low for the CPUs' pipes is raised (up to the hard limit)
    instead of failing at the first fork past it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (128, hard))
    try:
        preflight(cfg(cpus=500), Host(**ROOMY))
        raised = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    assert raised >= resources.files_needed(500) > 1000


@pytest.mark.parametrize("layout", ["v1", "v2"])
def test_cgroup_limits_are_read_up_the_hierarchy(tmp_path, layout):
    """The tightest limit counts, even when it is set on a parent of this process's cgroup,
    in a cgroup v1 controller hierarchy and in the v2 unified one."""
    proc_cgroup = tmp_path / "cgroup"
    root = tmp_path / "fs"
    if layout == "v1":
        proc_cgroup.write_text("9:name=systemd:/\n8:pids:/a/b\n0::/\n")
        base = root / "pids"
    else:
        proc_cgroup.write_text("0::/a/b\n")
        base = root
    for folder, limit, used in ((base / "a", "100", "90"), (base / "a" / "b", "max", "3")):
        folder.mkdir(parents=True)
        (folder / "pids.max").write_text(limit + "\n")
        (folder / "pids.current").write_text(used + "\n")
    headroom = resources._cgroup_headroom("pids", ("pids.max", "pids.current"),
                                          proc_cgroup=str(proc_cgroup), root=str(root))
    assert headroom == 10


def test_a_run_too_big_for_the_host_fails_up_front(tmp_path):
    """Through the real entry point, with a hard limit of open files too low for 500 CPUs:
    exit status 2, one line naming the limit, no traceback, nothing run, no folder."""
    def low_files():
        resource.setrlimit(resource.RLIMIT_NOFILE, (256, 256))

    runs = tmp_path / "runs"
    proc = subprocess.run([sys.executable, "-m", "lpw_mp", "--cpus", "500", "--memory", "8M",
                           "--runs-dir", str(runs)], capture_output=True, text=True,
                          preexec_fn=low_files, timeout=60)
    assert proc.returncode == 2
    assert proc.stderr == ("lpw_mp: error: --cpus 500 needs about 1066 open files in this "
                           "process, but the limit is 256 (ulimit -Hn)\n")
    assert proc.stdout == "" and not runs.exists()


def test_spawn_counts_the_resource_tracker_and_the_janitor(cfg):
    """Under spawn a run starts two processes besides its CPUs and coordinator (the resource
    tracker and the janitor), and the process limit check counts them."""
    host = Host(**{**ROOMY, "nproc_limit": 100 + 66, "user_tasks": 100})
    assert problems(cfg(cpus=64, start_method="fork"), host) == []
    assert problems(cfg(cpus=64, start_method="spawn"), host) == [
        "--cpus 64 needs 67 more processes, but this user already runs 100 of the 166 allowed "
        "(ulimit -u)"]


@pytest.mark.parametrize("argv,rate,noted", [
    (["--cpus", "4096"], 2.0, True),
    (["--cpus", "1024", "--active-fraction", "0.5"], 16.0, True),
    (["--cpus", "128"], 20.0, False),
    (["--cpus", "4096", "--walk-rate", "20"], 20.0, False),
], ids=["4096", "half-active", "128-unchanged", "given"])
def test_the_default_walk_rate_is_lowered_to_what_the_host_sustains(monkeypatch, capsys, argv,
                                                                    rate, noted):
    """On 2 host cores, the default 20 walks/s per CPU is lowered for thousands of walking CPUs
    (only the active ones walk), to what half the host sustains at WALK_OVERHEAD_S a walk, and
    stderr says so in one line; a rate given on the command line, or one the host sustains, is
    kept and nothing is said."""
    from lpw_mp.commands import run, shell
    monkeypatch.setattr(shell, "usable_cores", lambda: [0, 1])
    monkeypatch.setattr(shell, "preflight", lambda cfg: None)  # no host needed for 4096 CPUs
    _, cfg = shell.parse_config(run.build_parser(), argv)
    assert cfg.walk_rate == rate
    err = capsys.readouterr().err
    if noted:
        assert err.startswith(f"note: --walk-rate {rate:g}, not the default 20: 2 host cores "
                              f"sustain no more for {cfg.active_cpus:,} walking CPUs")
        assert err.count("\n") == 1
    else:
        assert err == ""


def test_a_host_without_futex_doorbells_is_refused_before_anything_starts(monkeypatch, cfg):
    """Idle CPUs sleep on futex(2) doorbells: on a host where the system call is unknown (an
    architecture without a known number), the preflight refuses the run in one line naming
    why; on this host the probe finds the futex working."""
    from lpw_mp.kernel import futex
    assert resources.probe().no_futex is None
    monkeypatch.setattr(futex, "_SYS_futex", None)
    monkeypatch.setattr(futex.platform, "machine", lambda: "vax")
    with pytest.raises(ConfigError, match=r"^simulated CPUs cannot run here: no futex\(2\) "
                                          r"system call number known for vax$"):
        preflight(cfg(cpus=2))
