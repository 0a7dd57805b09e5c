"""``python -m lpw_mp compare RUN RUN...``: runs side by side, each figure as a ratio to the first.

    python -m lpw_mp compare 20261125-221441-4995cb 20261125-223012-8a01f2 --vary cpus

A RUN is a run folder, its ``result.json``, or a run id under ``--runs-dir``. Where the
configurations differ in a key not named by ``--vary`` (what is compared on purpose), a warning
names the keys and their values; so does a comparison across hosts."""

import json
import os

from tabulate import tabulate

from lpw_mp.commands.shell import Parser, UsageError, invoked_as, load_document
from lpw_mp.harness.config import Config
from lpw_mp.results.formats import RESULT
from lpw_mp.units import format_duration, format_value

SUMMARY = "set runs side by side, each figure as a ratio to the first"

#: Keys that follow from others (npmds from memory) or do not change a measurement.
IGNORED_KEYS = {*Config.DERIVED_KEYS, "runs_dir", "strategies"}
#: Host facts that make two runs' timings incomparable when they differ.
HOST_KEYS = ("hostname", "usable_cores", "processor", "python")


def _ipi_p50(leg):
    return leg["ipi_round_s"]["median"]


#: What can be compared: name -> (column title, figure of a leg).
METRICS = {
    "time": ("time", lambda leg: leg["wall_s"]),
    "per-op": ("per op", lambda leg: leg["per_op_s"]),
    "ipi-p50": ("IPI round p50", _ipi_p50),
}


def load_run(spec: str, runs_dir: str) -> dict:
    """The result in ``spec`` (a folder, a result.json or a run id under ``runs_dir``).

    UsageError naming the problem when it is missing, not an lpw_mp result of this version,
    or not valid against that version's JSON Schema (see ``shell.load_document``)."""
    result, path = load_document(spec, runs_dir, RESULT)
    result.setdefault("run_id", os.path.basename(os.path.dirname(os.path.abspath(path))))
    return result


def differing_keys(results: list) -> dict:
    """Configuration keys whose values are not all equal: key -> value per run."""
    keys = []
    for r in results:
        keys += [k for k in r["config"] if k not in keys and k not in IGNORED_KEYS]
    return {k: [r["config"].get(k) for r in results] for k in keys
            if len({json.dumps(r["config"].get(k)) for r in results}) > 1}


def warnings(results: list, vary: list) -> list:
    out = []
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


def _show(key: str, value) -> str:
    return "-" if value is None else format_value(key, value)


def _strategies(results: list) -> list:
    names = []
    for r in results:
        names += [leg["strategy"] for leg in r["legs"] if leg["strategy"] not in names]
    return names


def _figure(result: dict, strategy: str, metric):
    """The leg's figure, or its status in capitals when it has none."""
    leg = next((leg for leg in result["legs"] if leg["strategy"] == strategy), None)
    if leg is None:
        return None, "-"
    if leg.get("status") != "ok":
        return None, leg.get("status", "?").upper()
    value = metric(leg)
    return value, format_duration(value)


def compare_table(results: list, metric: str, fmt: str = "simple") -> str:
    """Per strategy: each run's figure, and for every run after the first its ratio to it."""
    title, fn = METRICS[metric]
    letters = [chr(ord("A") + i) for i in range(len(results))]
    headers = ["strategy", f"{letters[0]} {title}"]
    for letter in letters[1:]:
        headers += [f"{letter} {title}", f"{letter}/{letters[0]}"]
    rows = []
    for strategy in _strategies(results):
        first, text = _figure(results[0], strategy, fn)
        row = [strategy, text]
        for r in results[1:]:
            value, text = _figure(r, strategy, fn)
            row += [text, f"{value / first:.3g}x" if value is not None and first else "-"]
        rows.append(row)
    return tabulate(rows, headers, tablefmt=fmt, disable_numparse=True)


def legend(results: list, vary: list) -> list:
    """A line per run: its letter, its id and its values of the keys that differ."""
    diff = differing_keys(results)
    shown = [k for k in diff if k in vary] + [k for k in diff if k not in vary]
    return [f"{chr(ord('A') + i)}: {r['run_id']}"
            + "".join(f", {k.replace('_', '-')} {_show(k, diff[k][i])}" for k in shown)
            for i, r in enumerate(results)]


def build_parser() -> Parser:
    keys = [k for k in vars(Config()) if k not in IGNORED_KEYS]
    p = Parser(prog=f"{invoked_as()} compare",
               description="Show runs side by side, per strategy, with the ratio of each to "
                           "the first.")
    p.add_argument("runs", nargs="+", metavar="RUN",
                   help="run folders, result.json files or run ids under --runs-dir")
    p.add_argument("--runs-dir", default="runs", help="where run ids are looked up (default runs)")
    p.add_argument("--vary", default="", metavar="KEY[,KEY]",
                   help="configuration keys that differ on purpose (no warning for them): "
                        + ", ".join(k.replace("_", "-") for k in keys))
    p.add_argument("--metric", choices=sorted(METRICS), default="time",
                   help="the figure to compare (default time: the whole operation)")
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
    results = [load_run(spec, args.runs_dir) for spec in args.runs]
    print("\n".join(legend(results, vary)))
    print()
    print(compare_table(results, args.metric))
    notes = warnings(results, vary)
    if notes:
        print()
        print("\n".join(f"warning: {n}" for n in notes))
    return 0
