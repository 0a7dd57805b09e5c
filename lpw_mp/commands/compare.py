"""``python -m lpw_mp compare RUN RUN...``: runs side by side, each figure as a ratio to the
first, with a verdict on whether the difference is real.

    python -m lpw_mp compare 20261125-221441-4995cb 20261125-223012-8a01f2 --vary cpus

A RUN is a run folder, its ``result.json``, or a run id under ``--runs-dir``. Per strategy,
every run's figure (the median of its repeats, with the interval of that median) and, for
every run after the first, the ratio of its median to the first's and the verdict of
``significance.verdict`` on the two sets of samples: ``1.20x slower``, ``not significant``,
or ``one sample, cannot tell`` when a run was made without ``--repeat``. ``--json`` prints
the same as a JSON document (``comparison``).

Where the configurations differ in a key not named by ``--vary`` (what is compared on
purpose), a warning names the keys and their values; so does a comparison across hosts, and
one of a run with itself."""

import argparse
import json
import os
import statistics
from dataclasses import asdict

from tabulate import tabulate

from lpw_mp.commands.shell import Parser, UsageError, invoked_as, load_document
from lpw_mp.harness.config import Config
from lpw_mp.results import significance
from lpw_mp.results.formats import RESULT
from lpw_mp.results.repeats import (FIGURES, PAIRED, figure, figure_key, figure_text,
                                    figure_values)
from lpw_mp.results.stats import median_interval
from lpw_mp.units import format_value

SUMMARY = "set runs side by side, each figure as a ratio to the first, with a verdict"

#: Keys that follow from others (npmds from memory) or do not change a measurement (repeat
#: changes how many samples there are, shown beside each run, not what they measure).
IGNORED_KEYS = {*Config.DERIVED_KEYS, "runs_dir", "strategies", "repeat"}
#: Host facts that make two runs' timings incomparable when they differ.
HOST_KEYS = ("hostname", "usable_cores", "processor", "python")
#: What --metric takes: every figure of the tables, as an option spells it (per-op, vs-ipi).
METRICS = [key.replace("_", "-") for key in (*FIGURES, *PAIRED)]
#: The strategy the PAIRED figures are relative to.
BASELINE = "ipi"
#: What the footer suggests to a run without repeats.
SUGGESTED_REPEAT = 5


def metric_key(text: str) -> str:
    """The ``repeats`` key of a --metric value (``per-op`` and ``per_op`` are ``per_op``)."""
    key = figure_key(text)
    if key not in FIGURES and key not in PAIRED:
        raise argparse.ArgumentTypeError(f"{text!r} is not a figure (choose from "
                                         f"{', '.join(METRICS)})")
    return key


def load_run(spec: str, runs_dir: str) -> tuple:
    """``(result, path)``: the result in ``spec`` (a folder, a result.json or a run id under
    ``runs_dir``) and the resolved path of its result.json.

    UsageError naming the problem when it is missing, not an lpw_mp result of this version,
    or not valid against that version's JSON Schema (see ``shell.load_document``)."""
    result, path = load_document(spec, runs_dir, RESULT)
    result.setdefault("run_id", os.path.basename(os.path.dirname(os.path.abspath(path))))
    return result, os.path.realpath(path)


def differing_keys(results: list) -> dict:
    """Configuration keys whose values are not all equal: key -> value per run. A key a run
    predates (``memory_model``, say) counts as its default: what that run did."""
    defaults = asdict(Config())
    keys = []
    for r in results:
        keys += [k for k in r["config"] if k not in keys and k not in IGNORED_KEYS]
    values = {k: [r["config"].get(k, defaults.get(k)) for r in results] for k in keys}
    return {k: v for k, v in values.items() if len({json.dumps(x) for x in v}) > 1}


def _letter(i: int) -> str:
    return chr(ord("A") + i)


def warnings(results: list, vary: list, paths: list = None) -> list:
    out = []
    for i, j, what in same_runs(results, paths or [None] * len(results)):
        out.append(f"{_letter(i)} and {_letter(j)} are the same run ({what}): a run compared "
                   f"with itself says nothing")
    diff = differing_keys(results)
    unexpected = {k: v for k, v in diff.items() if k not in vary}
    if unexpected:
        shown = "; ".join(f"{k.replace('_', '-')} {' / '.join(_show(k, x) for x in v)}"
                          for k, v in unexpected.items())
        out.append(f"the configurations differ in more than what is compared ({shown}): the "
                   f"ratios mix those changes (name the keys with --vary if intended)")
    for k in vary:
        if k not in diff:
            out.append(f"--vary {k.replace('_', '-')}: every run has the same {k}")
    hosts = [k for k in HOST_KEYS if len({str(r["host"].get(k)) for r in results}) > 1]
    if hosts:
        out.append(f"the runs were measured on different hosts (they differ in "
                   f"{', '.join(hosts)}): their timings do not compare")
    for r in results:
        if r.get("status") != "complete":
            out.append(f"{r['run_id']} is {r.get('status')}: some strategies have no figures")
    return out


def same_runs(results: list, paths: list) -> list:
    """``(i, j, what)`` for every pair of runs ``i < j`` that are one run: the same result.json
    (``what`` is its path) or, copied elsewhere, the same run id (``what`` names both)."""
    out = []
    for j in range(len(results)):
        for i in range(j):
            if paths[i] is not None and paths[i] == paths[j]:
                out.append((i, j, paths[i]))
            elif results[i]["run_id"] == results[j]["run_id"]:
                where = f" at {paths[i]} and {paths[j]}" if paths[i] and paths[j] else ""
                out.append((i, j, f"run id {results[i]['run_id']}{where}"))
    return out


def _show(key: str, value) -> str:
    return "-" if value is None else format_value(key, value)


def _strategies(results: list) -> list:
    names = []
    for r in results:
        names += [leg["strategy"] for leg in r["legs"] if leg["strategy"] not in names]
    return names


# -- the comparison: every figure, ratio and verdict, as --json prints it ---------------------

def _cell(result: dict, strategy: str, key: str) -> dict:
    """One run's figure ``key`` for ``strategy``: its status (``missing`` when the run has no
    such leg), its samples, their median and the interval of the median."""
    leg = next((leg for leg in result["legs"] if leg["strategy"] == strategy), None)
    status = "missing" if leg is None else leg.get("status", "?")
    values = []
    # A figure relative to ipi is 1 for ipi itself, by definition: no figure to compare.
    if status == "ok" and not (key in PAIRED and strategy == BASELINE):
        base = next((other for other in result["legs"] if other["strategy"] == BASELINE
                     and other.get("status") == "ok"), None)
        values = figure_values(leg, key, base)
    return {"status": status, "value": statistics.median(values) if values else None,
            "interval": median_interval(values), "n": len(values), "samples": values,
            "ratio": None, "verdict": None, "p_value": None, "test": None}


def _versus(first: dict, cell: dict, key: str) -> None:
    """Fill ``cell``'s ratio to ``first`` and the verdict on their samples, where both have
    samples."""
    if first["samples"] and cell["samples"]:
        found = significance.verdict(first["samples"], cell["samples"],
                                     figure(key).higher_is_better)
        cell.update({k: found[k] for k in ("ratio", "verdict", "p_value", "test")})


def _samples_per_leg(result: dict) -> int:
    """The most samples any ok leg of ``result`` has (a version 1 result: 1)."""
    return max((len(leg.get("samples") or [leg]) for leg in result["legs"]
                if leg.get("status") == "ok"), default=0)


def comparison(results: list, paths: list, key: str, vary: list) -> dict:
    """What compare shows, as a document: ``runs`` (letter, run id, resolved result.json,
    repeats asked and the most samples a leg has, status, and the configuration keys that
    differ between the runs), the ``metric``, the ``test`` (its name, alpha and minimum
    effect), per strategy a cell per run (``status``, ``value``: the median, ``interval``,
    ``n``, ``samples``, and against the first run ``ratio``, ``verdict``, ``p_value`` and
    ``test``, null for the first run and where a side has no figure; for a figure relative to
    ipi, ipi's own cells have none), ``notes`` (what the footer says) and ``warnings``."""
    diff = differing_keys(results)
    runs = [{"letter": _letter(i), "run_id": r["run_id"], "path": paths[i],
             "repeat": r["config"].get("repeat", 1), "samples_per_leg": _samples_per_leg(r),
             "status": r.get("status"), "differs": {k: v[i] for k, v in diff.items()}}
            for i, r in enumerate(results)]
    strategies = []
    for strategy in _strategies(results):
        cells = [_cell(r, strategy, key) for r in results]
        for cell in cells[1:]:
            _versus(cells[0], cell, key)
        strategies.append({"strategy": strategy,
                           "runs": [{"letter": _letter(i), **cell}
                                    for i, cell in enumerate(cells)]})
    fig = figure(key)
    document = {
        "metric": {"key": key, "name": key.replace("_", "-"), "title": fig.title,
                   "unit": fig.unit, "higher_is_better": fig.higher_is_better,
                   "relative_to": BASELINE if key in PAIRED else None},
        "test": {"name": significance.LOG_TEST, "alpha": significance.ALPHA,
                 "min_effect": significance.MIN_EFFECT},
        "runs": runs, "strategies": strategies}
    document["notes"] = notes(document)
    document["warnings"] = warnings(results, vary, paths)
    return document


def notes(document: dict) -> list:
    """The footer: how the verdicts were reached, what the intervals are, and for runs of
    one sample per leg, how to get a verdict."""
    out = []
    cells = [cell for row in document["strategies"] for cell in row["runs"]]
    if any(cell["verdict"] for cell in cells):
        test = document["test"]
        out.append(f"verdicts: {test['name']} (two-sided, alpha {test['alpha']:g}); a ratio "
                   f"within {test['min_effect']:.0%} of 1 is not significant")
    levels = [cell["interval"] for cell in cells if cell["interval"]]
    if levels:
        weakest = min(levels, key=lambda i: i["confidence"])
        line = ("(low-high): the interval of the median of the repeats, from the order "
                "statistics")
        if weakest["confidence"] < 0.95:
            line += (f"; with {weakest['n']} samples it is their range, at "
                     f"{weakest['confidence']:.1%} confidence (6 give 95%)")
        out.append(line)
    single = [run["letter"] for run in document["runs"] if run["samples_per_leg"] == 1]
    if single:
        who = (f"{single[0]} has" if len(single) == 1
               else f"{', '.join(single[:-1])} and {single[-1]} have")
        out.append(f"one sample, cannot tell: {who} one sample per strategy, so no "
                   f"difference can be told from noise; run with --repeat "
                   f"{SUGGESTED_REPEAT} or more for verdicts")
    return out


# -- the table --------------------------------------------------------------------------------

def _value_text(cell: dict, unit: str) -> str:
    """The median with its interval, ``4.26 ms (4.1-4.39 ms)``; a leg without the figure
    shows its status in capitals, a run without the leg ``-``."""
    if cell["value"] is None:
        return cell["status"].upper() if cell["status"] not in ("ok", "missing") else "-"
    return figure_text(unit, cell["value"], cell["interval"])


def compare_table(document: dict, fmt: str = "simple") -> str:
    """Per strategy: each run's figure, and for every run after the first its ratio to the
    first (``B/A``) and the verdict (``B vs A``)."""
    metric = document["metric"]
    letters = [run["letter"] for run in document["runs"]]
    headers = ["strategy", f"{letters[0]} {metric['title']}"]
    align = ["left", "right"]
    for letter in letters[1:]:
        headers += [f"{letter} {metric['title']}", f"{letter}/{letters[0]}",
                    f"{letter} vs {letters[0]}"]
        align += ["right", "right", "left"]
    rows = []
    for row in document["strategies"]:
        first, *others = row["runs"]
        if row["strategy"] == metric["relative_to"]:
            rows.append([row["strategy"], "baseline", *["baseline", "-", "-"] * len(others)])
            continue
        cells = [row["strategy"], _value_text(first, metric["unit"])]
        for cell in others:
            ratio = cell["ratio"]
            cells += [_value_text(cell, metric["unit"]),
                      f"{ratio:.3g}x" if ratio is not None else "-",
                      significance.describe(cell) if cell["verdict"] else "-"]
        rows.append(cells)
    return tabulate(rows, headers, tablefmt=fmt, disable_numparse=True, colalign=align)


def legend(document: dict, vary: list) -> list:
    """A line per run: its letter, its id, its repeats and its values of the keys that
    differ (those named by --vary first)."""
    out = []
    for run in document["runs"]:
        keys = [k for k in run["differs"] if k in vary] + \
               [k for k in run["differs"] if k not in vary]
        n = run["samples_per_leg"]
        repeats = "one sample" if n == 1 else f"{n} repeats" if n else "no figures"
        out.append(f"{run['letter']}: {run['run_id']} ({repeats})"
                   + "".join(f", {k.replace('_', '-')} {_show(k, run['differs'][k])}"
                             for k in keys))
    return out


def build_parser() -> Parser:
    keys = [k for k in vars(Config()) if k not in IGNORED_KEYS]
    p = Parser(prog=f"{invoked_as()} compare",
               description="Show runs side by side, per strategy, with the ratio of each to "
                           "the first and a verdict: faster, slower, not significant "
                           f"({significance.LOG_TEST}, alpha {significance.ALPHA:g}), or one "
                           "sample, cannot tell (a run without --repeat).")
    p.add_argument("runs", nargs="+", metavar="RUN",
                   help="run folders, result.json files or run ids under --runs-dir")
    p.add_argument("--runs-dir", default="runs", help="where run ids are looked up (default runs)")
    p.add_argument("--vary", default="", metavar="KEY[,KEY]",
                   help="configuration keys that differ on purpose (no warning for them): "
                        + ", ".join(k.replace("_", "-") for k in keys))
    p.add_argument("--metric", type=metric_key, default="time", metavar="FIGURE",
                   help="the figure to compare: " + ", ".join(METRICS)
                        + " (default time: the whole operation)")
    p.add_argument("--json", action="store_true",
                   help="print the comparison as JSON instead of a table")
    return p


def main(argv) -> int:
    args = build_parser().parse_args(argv)
    if len(args.runs) < 2:
        raise UsageError("compare needs at least two runs")
    allowed = {k for k in vars(Config()) if k not in IGNORED_KEYS}
    vary = [k.strip().replace("-", "_") for k in args.vary.split(",") if k.strip()]
    for k in vary:
        if k not in allowed:
            raise UsageError(f"--vary: {k!r} is not a configuration key")
    loaded = [load_run(spec, args.runs_dir) for spec in args.runs]
    results, paths = [r for r, _ in loaded], [p for _, p in loaded]
    document = comparison(results, paths, args.metric, vary)
    if args.json:
        print(json.dumps(document, indent=2))
        return 0
    print("\n".join(legend(document, vary)))
    print()
    print(compare_table(document))
    if document["notes"]:
        print()
        print("\n".join(document["notes"]))
    if document["warnings"]:
        print()
        print("\n".join(f"warning: {n}" for n in document["warnings"]))
    return 0
