"""The report's tables fit the terminal: the full layout where it fits, a compact one below it,
numbers right-aligned with thousands separators, the ``?`` on the figure it qualifies with
its numbered note, a leg cut short shown with its partial figures; Markdown keeps the full
tables."""

import copy
import json
import re

import pytest

from lpw_mp.commands.cli import main
from lpw_mp.results import schemas
from lpw_mp.results.formats import RESULT
from lpw_mp.results.repeats import combine
from lpw_mp.results.stats import MIN_SAMPLES
from lpw_mp.results.tables import OVERLAP_TITLE, UPDATER, format_markdown, format_terminal
from lpw_mp.results.verdicts import FIGURES, annotate, flagged_warnings

pytestmark = pytest.mark.timeout(90)

WIDTHS = [60, 80, 100, 120, 160]
FULL_UPDATER = ["strategy", "munmap time", "per op", "vs ipi", "serialised", "skipped",
                "IPIs sent", "IPI round p50", "p99", "grace periods", "violations", "safety"]


@pytest.fixture(scope="module")
def real(tmp_path_factory):
    """result.json of a tiny real run of all five strategies, with a walker phase."""
    runs = tmp_path_factory.mktemp("tables") / "runs"
    assert main(["--cpus", "2", "--memory", "16M", "--walker-time", "0.1", "--strategy",
                 "all", "--runs-dir", str(runs), "--quiet"]) == 0
    (folder,) = list(runs.iterdir())
    return json.loads((folder / "result.json").read_text())


@pytest.fixture
def big(real):
    """The real result with the figures of the seed's scenario (128 CPUs, 253,952 THPs) over
    three repeats: the widest numbers and intervals a table meets, an unresolved walker
    median, and a leg cut short."""
    doc = copy.deepcopy(real)
    doc["config"].update(cpus=128, active_cpus=128, npmds=253952, memory_h="496G", repeat=3)
    for leg in doc["legs"]:
        samples = []
        for repeat, f in enumerate((0.91, 1.0, 1.13), 1):
            sample = copy.deepcopy(leg["samples"][0])
            sample.update(repeat=repeat, wall_s=1090.0 * f, per_op_s=4.29e-3 * f,
                          serialisations=253952, skipped=253952, ipis_sent=32505856,
                          grace_periods=12345, walks=1234567, retries=12345)
            sample["ipi_round_s"].update(n=253952, median=4.29e-3 * f, p99=0.0257 * f, cv=0.1)
            sample["walker_side"]["walks_per_s"] = 12345678.0 * f
            sample["walker_side"]["begin_end_p99_ns"] *= f
            sample["violations"]["total"] = 173
            samples.append(sample)
        leg.update(samples=samples, repeats=3, repeats_asked=3, **combine(samples))
        del leg["intervals"]
    annotate(doc)
    for leg in doc["legs"][1:]:
        leg["speedup_vs_ipi"] = 2534.18
    doc["legs"][3]["walker_vs_ipi"].update(resolved=False, added_ns=120.0)
    count = doc["legs"][1]
    doc["legs"][1] = {
        "strategy": "count", "safe": True, "kernel": count["kernel"], "status": "interrupted",
        "partial": {"phase": "operation", "cpus_started": 128, "operations_done": 76186,
                    "operations_total": 253952, "op_elapsed_s": 1234.5, "ipis_sent": 9751808,
                    "ipi_rounds_at_least": 76186, "walks": 4321, "retries": 0,
                    "walker_side": count["samples"][0]["walker_side"],
                    "violations": {"total": 0, "by_kind": {}, "examples": []}}}
    doc["status"], doc["signal"] = "interrupted", "SIGINT"
    assert schemas.first_error(doc, "lpw_mp-result", RESULT.version) is None
    return doc


def widest(text):
    return max(len(line) for line in text.splitlines())


def rows_of(text, strategy):
    """Every table row of ``strategy``, whatever the layout, joined."""
    return " ".join(line for line in text.splitlines() if line.startswith(f"{strategy} "))


@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize("doc", ["real", "big"])
def test_no_line_is_wider_than_the_terminal(request, doc, width):
    """A real five-strategy result, and one with the seed scenario's widest figures and an
    interrupted leg, fit 60 to 160 columns: tables, setup lines, notes and warnings alike."""
    text = format_terminal(request.getfixturevalue(doc), width=width)
    assert widest(text) <= width, text


def test_a_wide_terminal_gets_the_full_tables(real):
    """At 160 columns a real result is shown in the full layout: one updater table with every
    column, its headers on one line; at 100 the compact one, whose tables name the counts
    during the operation apart."""
    wide = format_terminal(real, width=160)
    assert any(line.split() == " ".join(FULL_UPDATER).split() for line in wide.splitlines())
    assert "Counts during the munmap" not in wide
    narrow = format_terminal(real, width=100)
    assert "Counts during the munmap" in narrow
    assert "IPI round p50" not in narrow


@pytest.mark.parametrize("width", [100, 160])
def test_numbers_carry_thousands_separators_and_are_right_aligned(big, width):
    """Counts, rates, ratios and long times are written 32,505,856, 12,345,678, 2,534x,
    1,090 s; in the updater table each number ends under the end of its header."""
    text = format_terminal(big, width=width)
    for figure in ("32,505,856", "253,952", "12,345,678", "1,234,567", "2,534x", "1,090 s",
                   "253,952 THPs"):
        assert figure in text
    assert "32505856" not in text and "253952" not in text
    lines = text.splitlines()
    header = next(i for i, line in enumerate(lines) if "IPIs sent" in line)
    end = lines[header].index("IPIs sent") + len("IPIs sent")
    ipi = next(line for line in lines[header:] if line.startswith("ipi "))
    assert ipi[:end].endswith("32,505,856")


def test_the_mark_lands_on_the_figure_it_qualifies(real):
    """Few IPI rounds mark ipi's IPI round p50 and p99, too few walks in the walker phase mark
    count's walker figures, the unsafe control not caught marks none's safety: never a
    strategy's name; each has its numbered note."""
    doc = copy.deepcopy(real)
    ipi, count = doc["legs"][0], doc["legs"][1]
    ipi["ipi_round_s"].update(n=9, median=6.81e-3, p99=25.7e-3, cv=0.2)
    count["walker_side"].update(walks=3, begin_end_median_ns=3300.0)
    annotate(doc)
    for width in (100, 160):
        text = format_terminal(doc, width=width)
        assert "6.81 ms?" in rows_of(text, "ipi") and "25.7 ms?" in rows_of(text, "ipi")
        assert "3.3 us?" in rows_of(text, "count")
        assert "not caught?" in rows_of(text, "none")
        assert not any(f"{name}?" in text for name in ("ipi", "count", "percpu", "v5.8", "sync-one", "sync-mm", "none"))
        # Numbered in order; the real run may add notes of its own (a loaded host's), so
        # the numbers are not fixed, only that each mark has one.
        assert re.search(r"\[\d+\] ipi: only 9 IPI rounds: the median is not reliable", text)
        assert re.search(r"\[\d+\] count: only 3 walks in", text)
    assert re.search(r"\| +6\.81 ms\? +\|", format_markdown(doc))


def test_every_reason_not_to_trust_a_figure_marks_a_figure():
    """Each reason verdicts gives not to trust a leg's figures names the figures it is about
    (none falls back to the strategy's name), and only figures the tables have."""
    leg = {"strategy": "none", "safe": False, "ipi_round_s": {"n": 3, "cv": 0.0},
           "walker_side": {"walks": MIN_SAMPLES - 1, "seconds": 0.1},
           "walk_lateness_s": 1.0, "wall_s": 10.0, "walks": 1, "pool_exhausted": 2,
           "violations": {"total": 0}}
    config = {"walk_rate": 20.0, "active_cpus": 8, "op": "munmap"}
    flagged = flagged_warnings(leg, {}, config)
    flagged += flagged_warnings({**leg, "ipi_round_s": {"n": MIN_SAMPLES, "cv": 2.0}}, {},
                                config)
    assert len({text for text, _ in flagged}) == 8
    assert all(figures and "strategy" not in figures for _, figures in flagged)
    assert {key for _, figures in flagged for key in figures} <= set(FIGURES)


def test_the_overlap_table_shows_count_and_percpu_and_marks_a_disagreement(real):
    """count and percpu, which skip the IPI when no walk is seen, get a row each in the
    overlap table (no other strategy does), with the model beside what they found; when
    count found a walker in far more checks than the model predicts, its share is marked
    ``?`` with a note naming both."""
    doc = copy.deepcopy(real)
    count = doc["legs"][1]
    for sample in count["samples"]:
        sample.update(walks=2, serialisations=sample["skipped"], walks_in_rounds=0)
    count.update(combine(count["samples"]))
    del count["intervals"]
    annotate(doc)
    found = count["overlap"]
    assert found["disagrees"] and found["observed"] > 2 * found["predicted"]
    text = format_terminal(doc, width=250)
    table = text.split(OVERLAP_TITLE)[1].split("\n\n")[0]
    assert [line.split()[0] for line in table.splitlines()[3:]] == ["count", "percpu"]
    assert f"{found['observed']:.2%}?" in rows_of(table, "count")
    assert f"count: found a walker in {found['observed']:.2%} of its checks, where the " \
           f"overlap model predicts {found['predicted']:.2%}" in " ".join(text.split())
    assert f"## {OVERLAP_TITLE}" in format_markdown(doc)


def test_a_stalled_ipi_round_is_flagged_on_the_time():
    """One IPI round of 22 s among rounds whose p99 is 2 ms (the reference run's stall of the
    host) is 7% of a 305 s munmap: the time is marked, the note says how long the round was
    and its share; a round 5x the p99, or one under 1% of the time, is no stall."""
    leg = {"strategy": "ipi", "safe": True, "walker_side": None, "walk_lateness_s": None,
           "wall_s": 305.0, "walks": 0, "pool_exhausted": 0, "violations": {"total": 0},
           "ipi_round_s": {"n": 238068, "cv": 11.8, "p99": 2e-3, "max": 22.0}}
    config = {"walk_rate": 0.0, "active_cpus": 128, "op": "munmap"}
    (text, figures), = [(t, f) for t, f in flagged_warnings(leg, {}, config) if "stalled" in t]
    assert figures == ("time",)
    assert text.startswith("one IPI round took 22 s, 11,000x the p99") and "7% of the munmap" in text
    for rounds in ({"p99": 2e-3, "max": 10e-3}, {"p99": 2e-3, "max": 2.0}):
        quiet = {**leg, "ipi_round_s": {**leg["ipi_round_s"], **rounds}}
        assert not any("stalled" in t for t, _ in flagged_warnings(quiet, {}, config))


def test_a_leg_cut_short_shows_its_partial_figures(big):
    """An interrupted leg's row shows its time so far with the share of operations done, its
    time per operation, IPI rounds as a lower bound, IPIs sent, walks and its walker phase,
    marked INTERRUPTED; a line says how far it got."""
    for width in (100, 160):
        text = format_terminal(big, width=width)
        rows = rows_of(text, "count")
        for cell in ("1,234 s (30%)", "16.2 ms", ">=76,186", "9,751,808", "4,321",
                     "INTERRUPTED"):
            assert cell in rows, (cell, rows)
        assert f"{big['legs'][1]['partial']['walker_side']['walks_per_s']:,.0f}" in rows
        assert "count was interrupted during the munmap after 76,186 of 253,952 operations " \
               "in 1,234 s" in " ".join(text.split())


def test_markdown_keeps_the_full_tables_on_any_terminal(big, monkeypatch):
    """The Markdown report has every column in one table whatever the terminal's width."""
    monkeypatch.setenv("COLUMNS", "80")
    markdown = format_markdown(big)
    header = next(line for line in markdown.splitlines() if line.startswith("| strategy"))
    assert [cell.strip() for cell in header.strip("|").split("|")] == FULL_UPDATER
    assert len(UPDATER) == len(FULL_UPDATER)


def test_a_result_not_yet_judged_formats_as_a_judged_one(big):
    """The formatters judge a result themselves when it carries no verdicts (a document from
    elsewhere, a caller that skipped annotate): the same text, no KeyError, and the input is
    left as it was."""
    raw = copy.deepcopy(big)
    for leg in raw["legs"]:
        for key in ("safety", "warnings", "warning_figures", "walker_vs_ipi", "speedup_vs_ipi"):
            leg.pop(key, None)
    raw.pop("warnings", None)
    before = copy.deepcopy(raw)
    judged = annotate(copy.deepcopy(raw))
    assert format_terminal(raw, width=160) == format_terminal(judged, width=160)
    assert format_markdown(raw) == format_markdown(judged)
    assert raw == before
