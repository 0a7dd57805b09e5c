"""Strategies from outside the package (``harness/plugins.py``): a class in a file, in a module
or behind an entry point runs beside the built-ins under fork and spawn; an unusable one is
refused in one line before anything starts; one that raises during a run is reported in one
line; one marked safe that lets a walker use freed memory is blamed, not lpw_mp."""

import json
import multiprocessing
import multiprocessing.process
import os
import signal
import subprocess
import sys
import textwrap

import pytest

from lpw_mp.commands.cli import main
from lpw_mp.harness.child import plugin_failure
from lpw_mp.harness.plugins import strategy_class
from lpw_mp.kernel.machine import Aborted, Machine
from lpw_mp.kernel.strategies.ipi import IPIStrategy
from lpw_mp.results.formats import RESULT
from lpw_mp.results.verdicts import blame

from test_faults import assert_nothing_left, child_named, cli_run, family, shm_entries

pytestmark = pytest.mark.timeout(120)

#: Two CPUs, 8 huge leaves, no walks and no walker phase: ipi serialises each leaf (8 rounds
#: of 2 IPIs) and nothing else happens.
SMALL = ["--cpus", "2", "--memory", "16M", "--pte-fraction", "0", "--walk-rate", "0",
         "--walker-time", "0"]

#: ipi under another name, with an object of the file's own class in its state: under spawn
#: the child must load the file before it can read that state.
MINE = '''
from lpw_mp.kernel.strategies.ipi import IPIStrategy


class Tally:
    def __init__(self):
        self.made = 1


class Mine(IPIStrategy):
    name = "mine"

    def __init__(self, ctx, machine):
        super().__init__(ctx, machine)
        self.tally = Tally()
'''


def write(folder, name: str, source: str) -> str:
    path = folder / name
    path.write_text(textwrap.dedent(source))
    return str(path)


def run_cli(tmp_path, *args, path=(), cwd=None):
    """``python -m lpw_mp ... --json`` as a process of its own, with ``path`` on its
    PYTHONPATH: ``(process, result document or None)``."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([*map(str, path), *filter(None, [env.get("PYTHONPATH")])])
    proc = subprocess.run([sys.executable, "-m", "lpw_mp", *args, "--runs-dir",
                           str(tmp_path / "runs"), "--json"],
                          capture_output=True, text=True, timeout=100, env=env, cwd=cwd)
    return proc, json.loads(proc.stdout) if proc.stdout.strip() else None


def legs_by_name(result: dict) -> dict:
    return {leg["strategy"]: leg for leg in result["legs"]}


def assert_ran_as_ipi(leg: dict) -> None:
    """The leg of an ipi subclass ran every path through ipi's hooks, in real processes."""
    assert leg["status"] == "ok" and leg["safety"] == "ok"
    assert leg["serialisations"] == 8 and leg["ipis_sent"] == 16


# -- loading and running ---------------------------------------------------------------------

@pytest.mark.parametrize("start_method", ["fork", "spawn"])
def test_a_file_plugin_runs_beside_a_builtin_and_its_leg_records_its_spec(tmp_path,
                                                                           start_method):
    """``--strategy ipi,mine.py:Mine`` (a path relative to the current folder) runs the
    plugin's class under either start method: its leg shows the class's name, records the
    spec with the path made absolute, and did what ipi does; the configuration keeps the
    spec, and result.json is a valid result."""
    plugin = write(tmp_path, "mine.py", MINE)
    proc, result = run_cli(tmp_path, *SMALL, "--strategy", "ipi,mine.py:Mine",
                           "--start-method", start_method, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""  # no traceback, no resource tracker's warning of a leak
    spec = f"{plugin}:Mine"
    assert result["config"]["strategies"] == ["ipi", spec]
    legs = legs_by_name(result)
    assert list(legs) == ["ipi", "mine"]
    assert legs["mine"]["plugin"] == spec and "plugin" not in legs["ipi"]
    assert all("plugin" not in sample for sample in legs["mine"]["samples"])
    for leg in legs.values():
        assert_ran_as_ipi(leg)
    (folder,) = (tmp_path / "runs").iterdir()
    assert legs_by_name(RESULT.load(str(folder / "result.json")))["mine"]["plugin"] == spec
    assert "| mine " in (folder / "report.md").read_text()


def test_a_module_plugin_is_found_on_sys_path(tmp_path, monkeypatch, capsys):
    """``package.module:Class`` imports the module from sys.path (here a folder put there, as
    PYTHONPATH would): the leg shows the class's name and records the spec as given."""
    package = tmp_path / "lpw_mp_test_pkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    write(package, "mod.py", MINE)
    monkeypatch.syspath_prepend(str(tmp_path))
    for name in ("lpw_mp_test_pkg", "lpw_mp_test_pkg.mod"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    code = main([*SMALL, "--strategy", "lpw_mp_test_pkg.mod:Mine,ipi",
                 "--runs-dir", str(tmp_path / "runs"), "--json"])
    assert code == 0
    result = json.loads(capsys.readouterr().out)
    assert result["config"]["strategies"] == ["lpw_mp_test_pkg.mod:Mine", "ipi"]
    legs = legs_by_name(result)
    assert list(legs) == ["mine", "ipi"]
    assert legs["mine"]["plugin"] == "lpw_mp_test_pkg.mod:Mine"
    assert_ran_as_ipi(legs["mine"])


def fake_distribution(folder, entry_points: str, name="lpw-mp-fake-plugin") -> str:
    """An installed distribution as pip leaves one: a module beside its .dist-info folder,
    whose entry_points.txt declares ``entry_points`` in group lpw_mp.strategies."""
    site = folder / "site"
    site.mkdir()
    write(site, "lpw_mp_fake_plugin.py", MINE)
    info = site / f"{name.replace('-', '_')}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[lpw_mp.strategies]\n{entry_points}\n")
    return str(site)


def test_an_entry_point_runs_by_its_name_under_spawn(tmp_path):
    """A name declared in the entry-point group by an installed distribution runs by that
    name, under spawn too, where each child finds the class again through the entry point:
    the leg shows the class's name and records the entry point's."""
    site = fake_distribution(tmp_path, "theirs = lpw_mp_fake_plugin:Mine")
    proc, result = run_cli(tmp_path, *SMALL, "--strategy", "theirs,ipi",
                           "--start-method", "spawn", path=[site])
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    assert result["config"]["strategies"] == ["theirs", "ipi"]
    legs = legs_by_name(result)
    assert legs["mine"]["plugin"] == "theirs"
    assert_ran_as_ipi(legs["mine"])


#: A lock of its own beside its RCU's: under spawn, semaphores with names in /dev/shm.
LOCKED = MINE.replace('name = "mine"', 'name = "locked"').replace(
    "self.tally = Tally()", "self.tally, self.lock = Tally(), ctx.Lock()")


def test_a_killed_spawn_run_of_a_plugin_leaves_nothing_in_dev_shm(tmp_path):
    """SIGKILL to the whole process group (multiprocessing's resource tracker with it) while
    a plugin's leg runs under spawn: every process is gone and its semaphores' names, its
    RCU's and its own lock's, are unlinked: the janitor walks a strategy from outside the
    package as it walks the built-ins."""
    spec = f"{write(tmp_path, 'locked.py', LOCKED)}:Mine"
    shm = shm_entries()
    with cli_run(tmp_path, "--cpus", "4", "--memory", "128G", "--pte-fraction", "0",
                 "--walker-time", "0", "--walk-rate", "0", "--strategy", spec,
                 "--start-method", "spawn") as cli:
        child_named(cli, "locked:coord", timeout=60)
        procs = family(cli)
        assert any(name.startswith("sem.") for name in shm_entries() - shm)
        os.killpg(cli.pid, signal.SIGKILL)
        cli.wait(10)
    assert_nothing_left(procs, shm)


# -- refused before anything starts ---------------------------------------------------------

BAD = '''
from lpw_mp.kernel.strategies.base import Strategy
from lpw_mp.kernel.strategies.ipi import IPIStrategy

def function():
    pass

class NotAStrategy:
    pass

class Nameless(IPIStrategy):
    name = ""

class NumberName(IPIStrategy):
    name = 7

class Clash(IPIStrategy):
    pass

class AliasClash(IPIStrategy):
    name = "rcu"

class Twin1(IPIStrategy):
    name = "twin"

class Twin2(IPIStrategy):
    name = "twin"

class BadWalker(IPIStrategy):
    name = "badwalker"
    walker = "sometimes"

class HalfHooked(Strategy):
    name = "halfhooked"

    def zap_huge_pmd(self, up):
        pass

class InitRaises(IPIStrategy):
    name = "initraises"

    def __init__(self, ctx, machine):
        raise RuntimeError("needs a GPU")

class NoSuper(IPIStrategy):
    name = "nosuper"

    def __init__(self, ctx, machine):
        self.m = machine
'''

#: --strategy (``{d}``: the test's folder, holding bad.py, raises.py and notes.txt) and what
#: the one line must say.
REFUSED = {
    "missing file": ("{d}/gone.py:Mine", "no such file {d}/gone.py"),
    "not a .py file": ("{d}/notes.txt:Mine", "{d}/notes.txt is not a .py file"),
    "no class part": ("{d}/bad.py", "a file needs the class too: write {d}/bad.py:ClassName"),
    "module not importable": ("lpw_mp_no_such_module:Mine",
                              "no module named 'lpw_mp_no_such_module'"),
    "import raises": ("{d}/raises.py:Mine",
                      "strategy {d}/raises.py:Mine: importing it raised ValueError: no config"),
    "no such class": ("{d}/bad.py:Missing", "{d}/bad.py has no class Missing"),
    "not a class": ("{d}/bad.py:function", "function is not a class (it is of type function)"),
    "not a Strategy": ("{d}/bad.py:NotAStrategy", "NotAStrategy is not a subclass of "
                                                  "lpw_mp.kernel.strategies.base.Strategy"),
    "empty name": ("{d}/bad.py:Nameless", "Nameless has no name"),
    "name not a string": ("{d}/bad.py:NumberName", "NumberName.name 7 is not a string"),
    "a built-in's name": ("ipi,{d}/bad.py:Clash", "its name 'ipi' is the built-in strategy "
                                                  "ipi's: give Clash a name of its own"),
    "a built-in's alias": ("{d}/bad.py:AliasClash", "its name 'rcu' is an alias of the "
                                                    "built-in v5.8"),
    "two of one name": ("{d}/bad.py:Twin1,{d}/bad.py:Twin2",
                        "strategies {d}/bad.py:Twin1 and {d}/bad.py:Twin2 have the same name "
                        "'twin'"),
    "bad walker": ("{d}/bad.py:BadWalker",
                   "its walker 'sometimes' is not one of hold, read-once, recheck"),
    "missing hooks": ("{d}/bad.py:HalfHooked", "HalfHooked overrides neither "
                                               "serialize_against_pte_lookup (the base class's "
                                               "raises NotImplementedError) nor every path that "
                                               "calls it: it lacks pmdp_invalidate, "
                                               "pmdp_collapse_flush"),
    "__init__ raises": ("{d}/bad.py:InitRaises", "InitRaises(ctx, machine) raised "
                                                 "RuntimeError: needs a GPU"),
    "no Strategy.__init__": ("{d}/bad.py:NoSuper", "NoSuper.__init__ does not call "
                                                   "Strategy.__init__"),
    "unknown name": ("ipi,nosuch", "unknown strategy 'nosuch' (choose from ipi, count, "
                                   "percpu, v5.8, sync-one, sync-mm, none, all; rcu = v5.8; "
                                   "or a plugin: path/to/file.py:ClassName"),
}


@pytest.fixture
def no_process(monkeypatch):
    """Fail the test if a process is started: a refused strategy must start none."""
    def refuse(*args, **kwargs):
        raise AssertionError("a process was started for a refused strategy")
    monkeypatch.setattr(os, "fork", refuse)
    monkeypatch.setattr(multiprocessing.process.BaseProcess, "start", refuse)
    monkeypatch.setattr(subprocess, "Popen", refuse)


def assert_refused_in_one_line(code, err: str, message: str) -> None:
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2
    assert len(lines) == 1 and lines[0].startswith("lpw_mp: error: "), err
    assert message in lines[0], lines[0]


@pytest.mark.parametrize("command", [[], ["sweep", "--vary", "cpus=2,4"]], ids=["run", "sweep"])
@pytest.mark.parametrize("case", REFUSED)
def test_an_unusable_strategy_is_refused_in_one_line_before_anything_starts(
        tmp_path, capsys, no_process, case, command):
    """Each way a plugin can be unusable (its file, its module, its import, its class, its
    name, its walker, its hooks, its constructor) and an unknown name: exit status 2, one
    line on stderr naming the problem, no process started, nothing written."""
    write(tmp_path, "bad.py", BAD)
    write(tmp_path, "raises.py", "raise ValueError('no config')\n")
    (tmp_path / "notes.txt").write_text("not Python")
    spec, message = (text.format(d=tmp_path) for text in REFUSED[case])
    runs = tmp_path / "runs"
    code = main([*command, "--cpus", "2", "--memory", "16M", "--strategy", spec,
                 "--runs-dir", str(runs)])
    assert_refused_in_one_line(code, capsys.readouterr().err, message)
    assert not runs.exists()


@pytest.mark.parametrize("asked", ["count", "ipi,all"])
def test_an_entry_point_that_takes_a_builtins_name_is_refused(tmp_path, monkeypatch, capsys,
                                                               no_process, asked):
    """An installed entry point named like a built-in (``count``, or ``all``) would make the
    name ambiguous: asking for it is refused in one line naming the distribution."""
    name = asked.split(",")[-1]
    monkeypatch.syspath_prepend(fake_distribution(tmp_path, f"{name} = lpw_mp_fake_plugin:Mine"))
    runs = tmp_path / "runs"
    code = main(["--cpus", "2", "--strategy", asked, "--runs-dir", str(runs)])
    assert not runs.exists()
    assert_refused_in_one_line(
        code, capsys.readouterr().err,
        f"entry point {name} = lpw_mp_fake_plugin:Mine of lpw-mp-fake-plugin 0.1 in group "
        f"lpw_mp.strategies takes the name of a built-in strategy: refused")


# -- raising during a run --------------------------------------------------------------------

RAISES = '''
from lpw_mp.kernel.strategies.base import Strategy
from lpw_mp.kernel.strategies.ipi import IPIStrategy


class WalkRaises(IPIStrategy):
    """Raises in its first walk after the CPU's warm-up walk."""
    name = "walkraises"
    walks = 0

    def begin_lockless_pgtbl_walk(self, cpu):
        self.walks += 1
        if self.walks > 1:
            raise ZeroDivisionError("no walk for you")


class SerializeRaises(Strategy):
    name = "serializeraises"

    def serialize_against_pte_lookup(self, up):
        raise RuntimeError("lost the IPI")
'''


@pytest.mark.parametrize("cls,where,extra", [
    # Walks back to back in the walker phase: the CPUs reach their second walk for sure.
    ("WalkRaises", "in CPU ", ["--walk-rate", "2000", "--walker-time", "0.2"]),
    ("SerializeRaises", "in the coordinator", []),
], ids=["in a CPU", "in the coordinator"])
def test_a_plugin_that_raises_during_the_run_is_reported_in_one_line(tmp_path, cls, where,
                                                                     extra):
    """A plugin that raises in its walker hook (in a CPU process) or in its updater hook (in
    the coordinator): no traceback; each process it raised in prints one line naming the
    strategy, its spec, the exception and where; the run fails, with an error naming the
    strategy (and for the coordinator, the exception too), and leaves no process behind."""
    spec = f"{write(tmp_path, 'raises.py', RAISES)}:{cls}"
    name = cls.lower()
    proc, result = run_cli(tmp_path, *SMALL, *extra, "--strategy", spec)
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    raised = (f"lpw_mp: error: strategy {name} (plugin {spec}) raised "
              + ("ZeroDivisionError: no walk for you" if cls == "WalkRaises"
                 else "RuntimeError: lost the IPI"))
    assert lines and all(line.startswith(raised) and where in line for line in lines), lines
    assert result["status"] == "failed"
    (error,) = result["errors"]
    assert f"under strategy {name}" in error
    if cls == "WalkRaises":
        assert "exited with status 1" in error
    else:
        assert error.startswith(f"strategy {name} (plugin {spec}) raised RuntimeError: lost "
                                f"the IPI in the coordinator")
    assert legs_by_name(result)[name]["status"] == "failed"


def test_only_a_plugins_own_exceptions_are_reported_as_its_failure(tmp_path, capsys):
    """A built-in's exception, and lpw_mp's own (an abort) under a plugin, are not a plugin's
    failure: they keep their traceback or handling, and nothing is printed."""
    ctx = multiprocessing.get_context("fork")
    machine = Machine(ctx, 2)
    plugin = strategy_class(f"{write(tmp_path, 'mine.py', MINE)}:Mine")(ctx, machine)
    assert plugin_failure(IPIStrategy(ctx, machine), ValueError("x"), "CPU 0") is None
    assert plugin_failure(plugin, Aborted("run aborted"), "CPU 0") is None
    assert capsys.readouterr().err == ""
    assert plugin_failure(plugin, KeyError("k"), "CPU 1").endswith("raised KeyError: 'k' in CPU 1")


# -- blame -----------------------------------------------------------------------------------

LEAKY = '''
from lpw_mp.kernel.strategies.none import NoneStrategy


class Leaky(NoneStrategy):
    """The unsafe control, claiming to be safe."""
    name = "leaky"
    safe = True
'''

#: tests/test_safety.py's STRESS, the README's "Catching the race": none is caught every time.
STRESS = ["--cpus", "8", "--memory", "8M", "--op", "mixed", "--ops", "2000", "--walk-rate",
          "3000", "--walk-window", "100us", "--pte-fraction", "0.5", "--walker-time", "0"]


@pytest.mark.timeout(180)
@pytest.mark.parametrize("command", [[], ["sweep", "--vary", "cpus=8"]], ids=["run", "sweep"])
def test_a_safe_marked_plugin_that_lets_a_walker_use_freed_memory_is_blamed(tmp_path, capsys,
                                                                           command):
    """A plugin marked safe that frees tables at once (the unsafe control) on the workload
    that catches the race: its run exits 1 with SAFETY VIOLATION, and the terminal and the
    Markdown report blame the plugin, by name and spec, not lpw_mp."""
    spec = f"{write(tmp_path, 'leaky.py', LEAKY)}:Leaky"
    code = main([*command, *STRESS, "--strategy", spec, "--runs-dir", str(tmp_path / "runs")])
    out = capsys.readouterr().out
    assert code == 1
    blamed = (f"SAFETY VIOLATION: leaky let walkers use freed {'' if command else 'page-table '}"
              f"memory ")
    verdict = (f"times. The strategy leaky ({spec}) is marked safe but let a walker use freed "
               f"memory itself: it is unsafe as written, not a bug in lpw_mp.")
    (folder,) = (tmp_path / "runs").iterdir()
    report = (folder / ("sweep.md" if command else "report.md")).read_text()
    for text in (" ".join(out.split()), " ".join(report.split())):
        assert blamed in text and verdict in text
        assert "This is a bug in lpw_mp." not in text


def test_a_builtins_violation_is_still_lpw_mps_bug():
    """Without a plugin key, a violated leg is a bug in lpw_mp, as before."""
    assert blame({"strategy": "ipi", "safe": True}) == "This is a bug in lpw_mp."
    assert "not a bug in lpw_mp" in blame({"strategy": "leaky", "plugin": "/x.py:Leaky"})
