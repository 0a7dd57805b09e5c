"""The scaling benchmarks (benchmarks/ipi_round.py, benchmarks/scaling.py) at tiny counts:
their tables, their JSON figures, the figure, and where they stop."""

import json
import os
import shutil
import sys

import pytest

from helpers import without_matplotlib
from lpw_mp.harness.config import ConfigError
from lpw_mp.harness.emulator import Emulator, EmulatorError

BENCHMARKS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                          "benchmarks")
sys.path.insert(0, BENCHMARKS)

import _measure  # noqa: E402
import ipi_round  # noqa: E402
import scaling  # noqa: E402

#: What the fake floor says every round costs, in microseconds.
FAKE_FLOOR_US = 10.0


def script(tmp_path, body: str) -> str:
    path = tmp_path / "ipi_floor.sh"
    path.write_text(body)
    return str(path)


@pytest.fixture
def fake_floor(tmp_path):
    """A floor script that prints what ipi_floor.sh prints, without forking anything."""
    return script(tmp_path, f'echo "cpus=$1 median_us_per_round={FAKE_FLOOR_US} min=9.0 '
                            f'max=11.0"\n')


def read(path) -> dict:
    with open(path) as f:
        return json.load(f)


# -- what a trial measures ---------------------------------------------------------------------

def test_the_leg_per_thp_leaves_the_warm_up_out():
    """The warm-up's rounds, however slow, do not count; the coordinator's own time between
    rounds is charged to every THP at its average: the leg is the mean measured round plus
    that."""
    warmup, measured = 3, [0.001, 0.002, 0.003]
    rounds = [1.0] * warmup + measured
    own = 0.0005
    stats = {"rounds": rounds, "wall_s": sum(rounds) + own * len(rounds)}
    out = _measure.leg_figures(stats, warmup=warmup)
    assert out["round_us"] == pytest.approx(2000.0)
    assert out["own_us_per_thp"] == pytest.approx(500.0)
    assert out["leg_us_per_thp"] == pytest.approx(2500.0)
    with pytest.raises(ValueError):
        _measure.leg_figures(stats, warmup=len(rounds))


def test_the_memory_the_free_lists_hide_is_the_sum_of_their_high_marks(tmp_path):
    """hidden_free_bytes adds every pageset's ``high`` (not ``high_min`` or ``high_max``),
    in pages; a missing file says nothing (None)."""
    zoneinfo = tmp_path / "zoneinfo"
    zoneinfo.write_text("  pagesets\n    cpu: 0\n      count: 5\n      high: 100\n"
                        "      high_min: 7\n      high_max: 900\n    cpu: 1\n      high: 28\n")
    assert _measure.hidden_free_bytes(str(zoneinfo)) == 128 * os.sysconf("SC_PAGE_SIZE")
    assert _measure.hidden_free_bytes(str(tmp_path / "absent")) is None


def test_a_ratio_that_varies_across_trials_is_marked_not_to_be_trusted():
    """A ratio whose range exceeds a fifth of its median gets lpw_mp's ``?``; a steady one,
    or a single trial (no range to judge), does not."""
    assert _measure.ratio_text(_measure.spread([1.0, 1.5, 1.1])) == "1.10x (1.00-1.50x)?"
    assert _measure.ratio_text(_measure.spread([1.0, 1.05, 1.1])) == "1.05x (1.00-1.10x)"
    assert _measure.ratio_text(_measure.spread([3.0])) == "3.00x"
    assert _measure.ratio_text(_measure.spread([None])) == "n/a"


def test_memory_per_cpu_is_rough_where_the_fall_is_within_the_free_lists_reach():
    """MiB/CPU is trusted only where the start-up's whole fall of MemAvailable is 10 times
    what the kernel's per-CPU free lists can hide; unknown free lists flag nothing."""
    points = [{"cpus": n, "mem_per_cpu_bytes": _measure.spread([4 << 20])} for n in (8, 1024)]
    assert scaling.rough_memory(points, 300 << 20) == [8]
    assert scaling.rough_memory(points, None) == []


# -- ipi_round.py ------------------------------------------------------------------------------

@pytest.mark.timeout(30)
def test_ipi_round_prints_and_writes_the_leg_against_the_floor(tmp_path, fake_floor,
                                                               monkeypatch, capsys):
    """Two counts, two alternating trials each: the table has every column, and the JSON
    every trial's floor, round and leg per THP, the paired ratio leg/floor, the load before
    and after, and the target judged (here a generous one at 2 CPUs: met)."""
    monkeypatch.setattr(ipi_round, "TARGETS", {2: 1000.0})
    out_json = tmp_path / "ipi.json"
    assert ipi_round.main(["--cpus", "2", "3", "--rounds", "20", "--trials", "2",
                           "--floor", fake_floor, "--json", str(out_json)]) == 0
    text = capsys.readouterr().out
    for column in ("idle CPUs", "C floor us/round", "round p50 us", "leg us/THP", "leg/floor",
                   "round/floor", "target", "load before", "load after"):
        assert column in text
    assert "<= 1000x: met" in text
    doc = read(out_json)
    assert doc["benchmark"] == "ipi_round" and doc["date"] and doc["limit"] is None
    assert doc["host"]["usable_cores"] >= 1 and doc["trials"] == 2
    assert [p["cpus"] for p in doc["points"]] == [2, 3]
    for p in doc["points"]:
        assert p["floor_us"] == [FAKE_FLOOR_US] * 2
        assert len(p["leg_us_per_thp"]) == 2 and min(p["leg_us_per_thp"]) > 0
        assert all(leg > rnd * 0.5 for leg, rnd in zip(p["leg_us_per_thp"], p["round_us"]))
        ratio = p["leg_floor_ratio"]
        assert ratio["n"] == 2 and ratio["low"] <= ratio["median"] <= ratio["high"]
        assert ratio["median"] == pytest.approx(p["leg_us_per_thp_median"] / FAKE_FLOOR_US)
        assert len(p["load_before"]) == 3 and len(p["load_after"]) == 3
    assert doc["points"][0]["target_met"] is True and doc["points"][1]["target"] is None


@pytest.mark.timeout(30)
@pytest.mark.skipif(shutil.which("cc") is None, reason="no C compiler for the floor")
def test_ipi_round_reads_the_real_c_floor(tmp_path, capsys):
    """The floor shipped in benchmarks/calibrate builds and runs at 2 CPUs, and its median
    is read back as a positive time per round."""
    out_json = tmp_path / "ipi.json"
    assert ipi_round.main(["--cpus", "2", "--rounds", "20", "--trials", "1",
                           "--json", str(out_json)]) == 0
    (p,) = read(out_json)["points"]
    assert p["floor_us"][0] > 0 and p["leg_floor_ratio"]["n"] == 1
    assert "no C floor" not in capsys.readouterr().out


@pytest.mark.timeout(30)
def test_a_floor_that_fails_stops_the_benchmark_with_its_reason(tmp_path, capsys):
    """A floor that cannot run at a count (here it fails at once) is a limit of the host:
    the benchmark stops there, prints its last line of stderr, and still exits 0."""
    broken = script(tmp_path, 'echo "fork: Resource temporarily unavailable" >&2; exit 1\n')
    out_json = tmp_path / "ipi.json"
    assert ipi_round.main(["--cpus", "2", "--trials", "1", "--rounds", "20", "--floor", broken,
                           "--json", str(out_json)]) == 0
    assert ("stopped at 2 CPUs (the largest count run: none): the C floor failed at 2 CPUs: "
            "fork: Resource temporarily unavailable") in capsys.readouterr().out
    assert read(out_json)["points"] == []


# -- scaling.py --------------------------------------------------------------------------------

@pytest.mark.timeout(40)
def test_scaling_prints_the_table_and_writes_the_figures_and_the_plot(tmp_path, fake_floor,
                                                                       capsys):
    """At 2 and 4 CPUs, one trial: the table has every column under the date, command and
    load average; the JSON has, per count, start-up idle and with walkers, the round and the
    floor, memory per CPU and a CPU process's USS and PSS; the PNG is written."""
    out_json, png = tmp_path / "scaling.json", tmp_path / "scaling.png"
    argv = ["--cpus", "2", "4", "--rounds", "20", "--trials", "1", "--floor", fake_floor,
            "--json", str(out_json), "--plot", str(png)]
    assert scaling.main(argv) == 0
    text = capsys.readouterr().out
    assert text.startswith(read(out_json)["date"]) and "scaling.py --cpus 2 4" in text
    assert "load average" in text
    for column in ("CPUs", "start idle", "start walkers", "round p50 us", "C floor us",
                   "round/floor", "MiB/CPU", "USS MiB", "PSS MiB", "load 1 min"):
        assert column in text
    assert "target: 1024 CPUs with walkers start in <= 20 s: not measured" in text
    doc = read(out_json)
    assert doc["benchmark"] == "scaling" and doc["limit"] is None and doc["walk_rate"] > 0
    assert [p["cpus"] for p in doc["points"]] == [2, 4]
    for p in doc["points"]:
        for name in ("start_idle_s", "start_walkers_s", "round_us", "leg_us_per_thp",
                     "uss_bytes", "pss_bytes"):
            assert p[name]["n"] == 1 and p[name]["median"] > 0, name
        assert p["floor_us"]["median"] == FAKE_FLOOR_US
        assert isinstance(p["mem_per_cpu_bytes"]["median"], float)  # may be <= 0: noise
        assert p["round_floor_ratio"]["median"] == pytest.approx(
            p["round_us"]["median"] / FAKE_FLOOR_US)
        assert len(p["trials"]) == 1
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.timeout(30)
def test_scaling_stops_at_the_count_the_preflight_refuses(tmp_path, fake_floor, monkeypatch,
                                                          capsys):
    """The library's preflight refusing a count ends the benchmark there, with its one line
    as the limit; no larger count is tried, and the counts before keep their figures."""
    tried = []

    def preflight(cfg):
        tried.append(cfg.cpus)
        if cfg.cpus >= 4:
            raise ConfigError(f"--cpus {cfg.cpus} needs about 9 GiB of memory")
    monkeypatch.setattr(scaling, "preflight", preflight)
    out_json = tmp_path / "scaling.json"
    assert scaling.main(["--cpus", "2", "4", "8", "--rounds", "20", "--trials", "1",
                         "--floor", fake_floor, "--json", str(out_json)]) == 0
    assert ("stopped at 4 CPUs (the largest count run: 2): --cpus 4 needs about 9 GiB "
            "of memory") in capsys.readouterr().out
    doc = read(out_json)
    assert tried == [2, 4] and [p["cpus"] for p in doc["points"]] == [2]
    assert doc["limit"] == {"cpus": 4, "reason": "--cpus 4 needs about 9 GiB of memory"}


@pytest.mark.timeout(30)
def test_scaling_stops_when_the_emulator_cannot_start_a_count(tmp_path, fake_floor,
                                                              monkeypatch, capsys):
    """An EmulatorError (a fork refused half-way) is a limit too: printed, not a
    traceback."""
    def emulator(cfg, strategy):
        if cfg.cpus >= 4:
            raise EmulatorError("could not start simulated CPU 3 of 4 under strategy ipi: "
                                "Resource temporarily unavailable (lower --cpus)")
        return Emulator(cfg, strategy)
    monkeypatch.setattr(scaling, "Emulator", emulator)
    assert scaling.main(["--cpus", "2", "4", "--rounds", "20", "--trials", "1",
                         "--floor", fake_floor]) == 0
    assert ("stopped at 4 CPUs (the largest count run: 2): could not start simulated CPU "
            "3 of 4") in capsys.readouterr().out


def test_scaling_without_matplotlib_says_so_and_draws_nothing(tmp_path, monkeypatch, capsys):
    """--plot on a host without the plot extra: one line on how to get it, no file."""
    without_matplotlib(monkeypatch)
    png = tmp_path / "scaling.png"
    assert scaling.plot({"points": []}, str(png)) is False
    assert "pip install 'lpw_mp[plot]'" in capsys.readouterr().err
    assert not png.exists()
