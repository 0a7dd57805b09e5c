"""The plot command: a real sweep's figure drawn again from its sweep.json, and every bad input
refused on one line with nothing written."""

import json
import shutil

import pytest

from lpw_mp.commands.cli import main
from helpers import without_matplotlib
from test_cli import assert_refused, no_fork, snapshot  # noqa: F401 (a fixture)
from test_sweep import PNG_SIGNATURE, png_size

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(scope="module")
def real_sweep(tmp_path_factory):
    """One real two-point sweep, made once for the module; tests work on copies."""
    runs = tmp_path_factory.mktemp("real") / "runs"
    assert main(["sweep", "--vary", "cpus=1,2", "--cpus", "2", "--memory", "8M",
                 "--walker-time", "0", "--strategy", "ipi", "-q", "--runs-dir", str(runs)]) == 0
    (folder,) = list(runs.iterdir())
    return folder


@pytest.fixture
def sweep(tmp_path, real_sweep):
    """A copy of the real sweep folder under ``tmp_path/runs``."""
    folder = tmp_path / "runs" / real_sweep.name
    shutil.copytree(real_sweep, folder)
    return folder


def test_plot_draws_the_figure_of_a_real_sweep_again(sweep, capsys):
    """With sweep.png deleted, plot SWEEP draws it again into the sweep's folder from
    sweep.json alone, a PNG of the size the sweep drew, and prints its path."""
    drawn_by_sweep = png_size(sweep / "sweep.png")
    (sweep / "sweep.png").unlink()
    assert main(["plot", str(sweep)]) == 0
    out, err = capsys.readouterr()
    png = sweep / "sweep.png"
    assert out == f"{png}\n" and err == ""
    assert png.read_bytes()[:8] == PNG_SIGNATURE and png.stat().st_size > 0
    assert png_size(png) == drawn_by_sweep
    assert sorted(p.name for p in sweep.iterdir()) == ["sweep.json", "sweep.md", "sweep.png"]


def test_plot_takes_a_sweep_id_or_its_json_and_writes_where_o_says(sweep, tmp_path, capsys):
    """A sweep id is looked up under --runs-dir; -o sends the figure to another file and
    leaves the sweep's folder as it was."""
    (sweep / "sweep.png").unlink()
    assert main(["plot", sweep.name, "--runs-dir", str(sweep.parent)]) == 0
    assert capsys.readouterr().out == f"{sweep / 'sweep.png'}\n"
    before = snapshot(sweep)
    other = tmp_path / "figure.png"
    assert main(["plot", str(sweep / "sweep.json"), "-o", str(other)]) == 0
    assert capsys.readouterr().out == f"{other}\n"
    assert other.read_bytes()[:8] == PNG_SIGNATURE
    assert snapshot(sweep) == before


def _edit(folder, change):
    """Rewrite the folder's sweep.json with ``change`` applied to the document."""
    path = folder / "sweep.json"
    document = json.loads(path.read_text())
    change(document)
    path.write_text(json.dumps(document))


def _spoil(sweep, case):
    """Make the bad input ``case`` out of a copy of the sweep; the arguments naming it."""
    if case == "missing":
        return ["nope"]
    if case == "run folder":  # a result.json and no sweep.json
        run = sweep.parent / "20261125-221441-4995cb"
        run.mkdir()
        (run / "result.json").write_text(json.dumps({"format": "lpw_mp-result",
                                                     "format_version": 1}))
        return [str(run)]
    if case == "folder without sweep.json":
        (sweep / "sweep.json").unlink()
    elif case == "not JSON":
        (sweep / "sweep.json").write_text("# a sweep\n")
    elif case == "a result, not a sweep":
        _edit(sweep, lambda d: d.update(format="lpw_mp-result"))
    elif case == "format version 3":
        _edit(sweep, lambda d: d.update(format_version=3))
    elif case == "invalid against the schema":
        _edit(sweep, lambda d: d.pop("points"))
        return [str(sweep / "sweep.json")]
    elif case == "valid but not drawable":
        _edit(sweep, lambda d: d["vary"][0].update(name="colour"))
    elif case == "unwritable output":
        return [str(sweep), "-o", str(sweep / "no" / "such.png")]
    return [str(sweep)]


BAD = {
    "missing": "no sweep 'nope' (not a folder, nor a sweep id under",
    "run folder": "is a run folder, not a sweep",
    "folder without sweep.json": "is not an lpw_mp sweep folder (it has no sweep.json)",
    "not JSON": "sweep.json is not an lpw_mp sweep (not JSON",
    "a result, not a sweep": "is not an lpw_mp sweep (format 'lpw_mp-result', expected "
                             "'lpw_mp-sweep')",
    "format version 3": "has sweep format version 3; this lpw_mp reads versions 1, 2",
    "invalid against the schema": "sweep.json is not a valid lpw_mp sweep: 'points' is a "
                                  "required property (at top level)",
    "valid but not drawable": "cannot be drawn: it varies 'colour', which is not a sweep "
                              "parameter",
    "unwritable output": "cannot write ",
}


@pytest.mark.parametrize("case", BAD)
def test_bad_input_is_one_line_exit_2_and_writes_nothing(sweep, tmp_path, capsys, no_fork,
                                                         case):
    """A missing sweep, a run folder, a file that is not JSON, another format or version, a
    document the schema refuses or that names no sweep parameter, an output that cannot be
    written: exit 2, one line naming the problem, and no file written or replaced."""
    (sweep / "sweep.png").unlink()
    args = _spoil(sweep, case)
    before = snapshot(tmp_path)
    code = main(["plot", *args, "--runs-dir", str(sweep.parent)])
    assert_refused(code, capsys.readouterr().err, BAD[case])
    assert snapshot(tmp_path) == before
    assert not (sweep / "sweep.png").exists()


def test_without_matplotlib_plot_names_the_extra(sweep, capsys, monkeypatch):
    """Without matplotlib, plot says on one line how to install it, exits 2 and writes
    nothing (it does not even read the sweep)."""
    without_matplotlib(monkeypatch)
    (sweep / "sweep.png").unlink()
    code = main(["plot", str(sweep)])
    assert_refused(code, capsys.readouterr().err, "pip install 'lpw_mp[plot]'")
    assert not (sweep / "sweep.png").exists()
