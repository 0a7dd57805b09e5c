"""Host metadata as pyperf records it: the CPU model, frequency governor and frequency,
isolated CPUs, boot time, kernel and the lpw_mp commit, each None where the host does not say,
and never an exception; the report's setup shows the CPU, governor, kernel and commit."""

import collections
import datetime
import pathlib
import shutil
import subprocess

import psutil
import pytest

from lpw_mp.harness import hostinfo
from lpw_mp.harness.hostinfo import host_metadata, lpw_mp_commit
from lpw_mp.results.tables import describe_setup

REPO = pathlib.Path(__file__).resolve().parents[1]
needs_git = pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")


def _git(*args, cwd):
    return subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=cwd,
                          check=True, capture_output=True, text=True).stdout.strip()


def _maybe(value, kind):
    return value is None or isinstance(value, kind)


def test_new_keys_are_present_with_their_types():
    """On this machine every new key is there, each of its type or None: a string for the
    CPU model, governor, boot time and kernel, a list of CPU numbers for the isolated CPUs,
    the frequencies in MHz, and the commit as 40 hex digits with a dirty flag. The old keys
    stay."""
    h = host_metadata(4, "fork")
    for key in ("cpu_model", "cpu_freq_governor", "boot_time", "kernel"):
        assert _maybe(h[key], str), key
    assert _maybe(h["isolated_cpus"], list)
    assert all(isinstance(cpu, int) for cpu in h["isolated_cpus"] or [])
    freq = h["cpu_freq_mhz"]
    assert freq is None or (set(freq) == {"current", "min", "max"}
                            and all(_maybe(v, float) for v in freq.values()))
    commit = h["lpw_mp_commit"]
    assert commit is None or (set(commit) == {"commit", "dirty"} and len(commit["commit"]) == 40
                              and _maybe(commit["dirty"], bool))
    assert h["kernel"] and h["cpu_model"]  # every host this suite runs on names both
    when = datetime.datetime.fromisoformat(h["boot_time"])
    assert when.utcoffset() == datetime.timedelta(0)
    assert when.timestamp() == pytest.approx(psutil.boot_time(), abs=1)
    assert h["load_average"] is None or len(h["load_average"]) == 3


@needs_git
def test_commit_is_head_of_this_checkout(monkeypatch):
    """The package directory of this checkout records the commit git names as HEAD here, and
    calls the tree dirty exactly when git status lists anything, whether the lpw_mp under
    test is this directory (an editable install) or an installed copy (CI's); the host's
    metadata records it when lpw_mp is imported from here. Outside a checkout (an unpacked
    sdist) there is no commit to record."""
    package = REPO / "lpw_mp"
    commit = lpw_mp_commit(package)
    if not (REPO / ".git").exists():
        assert commit is None
        return
    assert commit["commit"] == _git("rev-parse", "HEAD", cwd=REPO)
    assert commit["dirty"] is bool(_git("status", "--porcelain", cwd=REPO))
    monkeypatch.setattr(hostinfo, "PACKAGE_DIR", package)
    assert host_metadata(1, "fork")["lpw_mp_commit"]["commit"] == commit["commit"]


def test_no_commit_outside_a_checkout(tmp_path, monkeypatch):
    """A package directory that is not in a git checkout (an installed copy) records no
    commit: lpw_mp_commit is None, and so is the host's."""
    package = tmp_path / "lpw_mp"
    package.mkdir()
    (package / "__init__.py").write_text("")
    assert lpw_mp_commit(package) is None
    monkeypatch.setattr(hostinfo, "PACKAGE_DIR", package)
    assert host_metadata(1, "fork")["lpw_mp_commit"] is None


@needs_git
def test_no_commit_for_a_copy_inside_another_repository(tmp_path):
    """A copy of lpw_mp that some other repository does not track (a venv's site-packages
    inside a project) is not a checkout of lpw_mp: that repository's HEAD is not recorded."""
    _git("init", "-q", cwd=tmp_path)
    (tmp_path / "other.txt").write_text("x")
    _git("add", "other.txt", cwd=tmp_path)
    _git("commit", "-qm", "other", cwd=tmp_path)
    package = tmp_path / "lpw_mp"
    package.mkdir()
    (package / "__init__.py").write_text("")
    assert lpw_mp_commit(package) is None


@needs_git
def test_dirty_follows_git_status(tmp_path):
    """In a checkout whose tree matches HEAD, dirty is False; a modified file makes it True;
    the commit is HEAD's either way."""
    package = tmp_path / "lpw_mp"
    package.mkdir()
    (package / "__init__.py").write_text("")
    _git("init", "-q", cwd=tmp_path)
    _git("add", ".", cwd=tmp_path)
    _git("commit", "-qm", "lpw_mp", cwd=tmp_path)
    head = _git("rev-parse", "HEAD", cwd=tmp_path)
    assert lpw_mp_commit(package) == {"commit": head, "dirty": False}
    (package / "__init__.py").write_text("changed = True\n")
    assert lpw_mp_commit(package) == {"commit": head, "dirty": True}


def test_git_missing_or_hung_gives_none(monkeypatch):
    """With no git on the PATH, or a git command that times out, there is no commit, and no
    exception."""
    monkeypatch.setenv("PATH", "")
    assert hostinfo.run_git(["rev-parse", "HEAD"], REPO) is None
    assert lpw_mp_commit() is None
    monkeypatch.undo()

    def hung(*args, **kwargs):
        raise subprocess.TimeoutExpired(args[0], hostinfo.GIT_TIMEOUT)
    monkeypatch.setattr(hostinfo.subprocess, "run", hung)
    assert lpw_mp_commit() is None


def test_missing_sys_files_give_none(monkeypatch):
    """Without /sys/devices/system/cpu (not Linux, or no cpufreq driver as in most VMs) the
    governor and the isolated CPUs are None, not an error."""
    monkeypatch.setattr(hostinfo, "read_first_line", lambda path: None)
    h = host_metadata(2, "fork")
    assert h["cpu_freq_governor"] is None and h["isolated_cpus"] is None


def test_governors_and_isolated_cpus_are_read_per_core(monkeypatch):
    """One governor on every usable core is that value; several are their distinct values,
    sorted and joined; a core without one is left out. The isolated list is parsed from the
    kernel's cpulist format, empty when none is isolated."""
    files = {f"{hostinfo.SYS_CPU}/cpu0/cpufreq/scaling_governor": "powersave",
             f"{hostinfo.SYS_CPU}/cpu1/cpufreq/scaling_governor": "performance",
             f"{hostinfo.SYS_CPU}/cpu2/cpufreq/scaling_governor": "performance",
             f"{hostinfo.SYS_CPU}/isolated": "2-4,7"}
    monkeypatch.setattr(hostinfo, "read_first_line", files.get)
    assert hostinfo.cpu_freq_governor([1, 2]) == "performance"
    assert hostinfo.cpu_freq_governor([0, 1, 2, 3]) == "performance, powersave"
    assert hostinfo.cpu_freq_governor([3]) is None
    assert hostinfo.isolated_cpus() == [2, 3, 4, 7]
    files[f"{hostinfo.SYS_CPU}/isolated"] = ""
    assert hostinfo.isolated_cpus() == []


def test_a_failing_collector_gives_none(monkeypatch):
    """A psutil or platform call that raises leaves its key None; host_metadata itself does
    not raise, and psutil's 0 (a frequency it cannot tell) becomes None."""
    def broken():
        raise RuntimeError("no")
    monkeypatch.setattr(psutil, "cpu_freq", broken)
    monkeypatch.setattr(psutil, "boot_time", broken)
    monkeypatch.setattr(hostinfo.platform, "release", broken)
    monkeypatch.setattr(hostinfo, "PROC_CPUINFO", "/nonexistent/cpuinfo")
    monkeypatch.setattr(hostinfo.platform, "processor", lambda: "")
    h = host_metadata(2, "fork")
    assert h["cpu_freq_mhz"] is None and h["boot_time"] is None and h["kernel"] is None
    assert h["cpu_model"] is None
    freq = collections.namedtuple("scpufreq", "current min max")  # psutil's own shape
    monkeypatch.setattr(psutil, "cpu_freq", lambda: freq(2100.0, 0.0, 0.0))
    assert hostinfo.cpu_freq_mhz() == {"current": 2100.0, "min": None, "max": None}


def test_cpu_model_from_cpuinfo(tmp_path, monkeypatch):
    """The model comes from /proc/cpuinfo's ``model name`` (x86) or ``cpu`` line (powerpc),
    of the first processor."""
    cpuinfo = tmp_path / "cpuinfo"
    monkeypatch.setattr(hostinfo, "PROC_CPUINFO", str(cpuinfo))
    cpuinfo.write_text("processor\t: 0\ncpu family\t: 6\nmodel name\t: Xeon X\n\n"
                       "processor\t: 1\nmodel name\t: other\n")
    assert hostinfo.cpu_model() == "Xeon X"
    cpuinfo.write_text("processor\t: 0\ncpu\t\t: POWER9 (architected), altivec supported\n"
                       "clock\t\t: 2750.000000MHz\n")
    assert hostinfo.cpu_model() == "POWER9 (architected), altivec supported"


def _document(**host):
    config = {"cpus": 2, "active_cpus": 2, "op": "munmap", "memory_h": "16M", "npmds": 8,
              "thp_size_h": "2M", "cpumask": "sticky", "walk_rate": 20.0, "walk_window": 2e-5,
              "seed": 1}
    base = {"usable_cores": 2, "host_cpus": 2, "affinity": [0, 1], "oversubscription": 1.5,
            "python": "3.11.7", "start_method": "fork", "memory_bytes": 2 ** 33,
            "platform": "Linux-6.1.0-x86_64-with-glibc2.36"}
    return {"config": config, "host": dict(base, **host), "lpw_mp_version": "0.9"}


def test_setup_line_names_cpu_governor_kernel_and_commit():
    """The report's setup gains a line with the CPU model, the governor, the kernel and the
    first 12 digits of the commit (+dirty when the tree was); without a commit it gives the
    version; a document written before these keys existed keeps its two lines."""
    doc = _document(cpu_model="Xeon X", cpu_freq_governor="performance", kernel="6.1.0",
                    lpw_mp_commit={"commit": "0123456789abcdef" * 2 + "01234567", "dirty": True})
    line = describe_setup(doc)[2]
    assert line == ("CPU: Xeon X, governor performance, Linux 6.1.0, "
                    "lpw_mp 0123456789ab+dirty")
    doc = _document(cpu_model=None, cpu_freq_governor=None, kernel="6.1.0", lpw_mp_commit=None)
    assert describe_setup(doc)[2] == ("CPU: model unknown, no frequency governor, "
                                      "Linux 6.1.0, lpw_mp 0.9 (not a checkout)")
    assert len(describe_setup(_document())) == 2
