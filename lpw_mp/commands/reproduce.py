"""``python -m lpw_mp reproduce``: the seed's scenario beside the figures published for it.

128 CPUs unmap 496 GB of 2 MiB THPs (253,952 PMDs) under every strategy; the emulator's times
and its speedups over its own ``ipi`` leg are printed next to the published times and the
published speedups over their own "before". The run folder gets ``reproduce.md`` besides the
usual report, and ``result.json`` a ``reproduce`` section, including what differs from the
hardware the figures were measured on."""

import re
from dataclasses import dataclass

from tabulate import tabulate

from lpw_mp.commands.shell import (Parser, UsageError, add_run_options, finish, invoked_as,
                                  parse_config, written)
from lpw_mp.harness.signals import deferred_signals
from lpw_mp.harness.progress import terminal_progress
from lpw_mp.results.folders import write_run
from lpw_mp.results.repeats import interval_text
from lpw_mp.results.tables import format_terminal
from lpw_mp.results.verdicts import annotate, exit_status, shown_names
from lpw_mp.harness.runner import run
from lpw_mp.kernel.strategies import STRATEGIES, canonical
from lpw_mp.units import format_duration, format_size

SUMMARY = "the seed's scenario (128 CPUs, 496G) beside the published figures"

#: The seed's scenario (v5 cover letter): the published figures were measured on this.
SEED = {"cpus": 128, "memory": 496 << 30, "thp_size": 2 << 20, "op": "munmap",
        "strategies": list(STRATEGIES)}
#: Repeats unless --repeat says otherwise: the ipi leg alone takes minutes, so three (whose
#: range holds the median with 75% confidence), not the six a 95% interval needs.
DEFAULT_REPEAT = 3
SEED_THPS = SEED["memory"] // SEED["thp_size"]
PRESETS = {"seed": SEED}


@dataclass(frozen=True)
class Published:
    strategy: str    # the emulator strategy that stands for it
    source: str
    what: str
    as_published: str
    seconds: float
    series: str      # figures of one series share a "before"


SEED_V5 = "seed v5 cover letter"
V58 = "Aneesh's v5.8 series cover"
SEED_BEFORE = Published("ipi", SEED_V5, "before: an IPI per THP", "275 s", 275.0, "v5")
NO_IPI = Published("v5.8", V58, "IPI removed", "39 ms", 0.039, "v5.8")
PUBLISHED = (
    SEED_BEFORE,
    Published("count", SEED_V5, "atomic count of walks", "418 ms", 0.418, "v5"),
    # The v6 letter gives the time after; its "before" is the v5 letter's 275 s.
    Published("percpu", "v6 cover letter", "per-CPU walk slot", "430 ms", 0.430, "v5"),
    Published("ipi", V58, "before", "82,150 ms", 82.150, "v5.8"),
    NO_IPI,
    Published("v5.8", V58, "IPI removed, with the TLB flush of 75358ea359e7",
              "369 ms", 0.369, "v5.8"),
)


def _before(series: str) -> Published:
    return next(p for p in PUBLISHED if p.series == series and p.strategy == "ipi")


# -- the command line ------------------------------------------------------------------------

def build_parser() -> Parser:
    p = Parser(prog=f"{invoked_as()} reproduce",
               description="Run the seed's scenario (128 CPUs, 496G of 2M THPs, munmap, every "
                           "strategy) and print it beside the published figures. Any run "
                           "option overrides the preset.")
    p.add_argument("--preset", choices=sorted(PRESETS), default="seed",
                   help="the published scenario to reproduce (default seed)")
    add_run_options(p)
    # The preset's values are the defaults: say so in --help.
    shown = {"cpus": str(SEED["cpus"]), "memory": format_size(SEED["memory"]),
             "thp_size": format_size(SEED["thp_size"]), "strategies": "all",
             "repeat": str(DEFAULT_REPEAT)}
    for action in p._actions:
        if action.dest in shown:
            action.default = {**SEED, "repeat": DEFAULT_REPEAT}[action.dest]
            action.help = re.sub(r"\(default [^)]*\)", f"(default {shown[action.dest]})",
                                 action.help)
    return p


def config(argv):
    args, cfg = parse_config(build_parser(), argv)
    if cfg.op != "munmap":
        raise UsageError(f"the published figures are for munmap, not --op {cfg.op}")
    return args, cfg


# -- the comparison --------------------------------------------------------------------------

def _legs(result: dict) -> dict:
    # A result recorded before the profiles names v5.8 by its old alias, rcu.
    return {canonical(leg["strategy"]): leg for leg in result["legs"] if leg.get("status") == "ok"}


def compare_rows(result: dict) -> list:
    """One row per published figure (and one per strategy without one): emulator time, per THP
    and speedup over the emulator's ipi leg; published time, per THP and speedup over its own
    "before"."""
    legs = _legs(result)
    thps = result["config"]["npmds"]
    base = legs.get("ipi")
    rows = []
    # Each strategy once, though ipi and v5.8 have two published figures each: the loop below
    # gives a strategy a row per figure.
    asked = shown_names(result["config"]["strategies"], result["legs"])
    names = dict.fromkeys([canonical(n) for n in asked]
                          + [p.strategy for p in PUBLISHED])
    for name in names:
        leg = legs.get(name)
        spans = (leg or {}).get("intervals") or {}
        emulator = {"strategy": name, "emulator_s": leg["wall_s"] if leg else None,
                    "emulator_per_thp_s": leg["wall_s"] / thps if leg else None,
                    "emulator_speedup": _speedup(leg, base),
                    # With --repeat: the intervals of the median time and speedup.
                    "emulator_interval": spans.get("time"),
                    "emulator_speedup_interval": spans.get("vs_ipi"),
                    "status": leg["status"] if leg else _status(result, name)}
        published = [p for p in PUBLISHED if p.strategy == name] or [None]
        for p in published:
            rows.append({**emulator,
                         "source": p.source if p else None,
                         "published_what": p.what if p else None,
                         "published": p.as_published if p else None,
                         "published_s": p.seconds if p else None,
                         "published_per_thp_s": p.seconds / SEED_THPS if p else None,
                         "published_speedup": _before(p.series).seconds / p.seconds
                         if p else None})
    return rows


def _speedup(leg, base):
    """The leg's speedup over ipi: the median of the per-round ratios once annotated."""
    if not (leg and base and leg["wall_s"]):
        return None
    if leg is base:
        return 1.0
    return leg.get("speedup_vs_ipi") or base["wall_s"] / leg["wall_s"]


def _status(result: dict, name: str) -> str:
    leg = next((leg for leg in result["legs"] if leg["strategy"] == name), None)
    return leg.get("status", "?") if leg else "not asked"


def scenario_differences(cfg: dict) -> list:
    """How the run's configuration departs from the published scenario, one line each."""
    out = []
    for key, want in SEED.items():
        if key == "strategies":
            continue
        have = cfg[key]
        if have != want:
            show = format_size if key in ("memory", "thp_size") else str
            out.append(f"{key.replace('_', '-')} {show(have)} (published: {show(want)})")
    return out


def hardware_differences(result: dict) -> list:
    """What the reader must know before comparing the two columns: where the emulator is not
    the machine the figures were measured on. Written from the run's own figures."""
    c, h = result["config"], result["host"]
    legs = _legs(result)
    out = [
        f"CPUs: {c['cpus']} simulated CPUs are {c['cpus']} Python processes, plus the "
        f"coordinator, on {h['usable_cores']} host cores ({h['oversubscription']:g} per core). "
        f"The published figures come from qemu with 128 vCPUs on a powerpc host, whose CPUs "
        f"run at once; here the host scheduler runs them in turn.",
    ]
    ipi = legs.get("ipi")
    if ipi and ipi["ipi_round_s"]["n"]:
        r = ipi["ipi_round_s"]
        out.append(
            f"IPIs: a broadcast is a futex wake per 32 CPUs and {c['cpus']} context switches "
            f"before the last acknowledgement; a round took {format_duration(r['median'])} "
            f"(median; p99 {format_duration(r['p99'])}) here, against "
            f"{format_duration(SEED_BEFORE.seconds / SEED_THPS)} per THP for the "
            f"whole munmap in the seed. A hardware IPI reaches all CPUs in parallel.")
    none = legs.get("none")
    if none:
        out.append(
            f"Per-THP work: the coordinator is interpreted Python, "
            f"{format_duration(none['per_op_s'])} per THP with no serialisation at all "
            f"(`none`), where the kernel spent {format_duration(NO_IPI.seconds / SEED_THPS)} per "
            f"THP in all ({NO_IPI.as_published} for {SEED_THPS:,} THPs with the IPI removed). "
            f"The strategies that skip the IPI measure mostly this floor, so their speedups over "
            f"`ipi` are not the kernel's.")
    out.append(
        f"Memory: the {format_size(c['memory'])} are not allocated; only the page table is, in "
        f"shared memory (one PMD word per THP, a PTE page for {c['pte_fraction']:g} of them). "
        f"No page is freed and no TLB is flushed: compare `v5.8` with the 39 ms "
        f"(IPI removed), not the 369 ms that includes the TLB flush of 75358ea359e7.")
    out.append(
        f"Walkers: each running CPU walks {c['walk_rate']:g} times a second (Poisson) with IRQs "
        f"off for {format_duration(c['walk_window'])}, a guess at a lightly loaded guest; the "
        f"published figures do not say how busy qemu's vCPUs were. `count` and `percpu` send "
        f"an IPI only when a walk is in progress, so their cost depends on this guess"
        + "".join(f"; `{name}` sent one for {legs[name]['serialisations']:,} of "
                  f"{c['npmds']:,} THPs" for name in ("count", "percpu") if name in legs)
        + ".")
    for name in ("count", "percpu"):
        found = (legs.get(name) or {}).get("overlap")
        if found and found["observed"] and found["kernel_predicted"]:
            out.append(
                f"How often `{name}` found a walker: in {found['observed']:.2%} of its checks "
                f"(the overlap model predicts {found['predicted']:.2%} from the walk starts and "
                f"the {format_duration(found['own_time_s'])} the updater spends per check); at "
                f"the kernel's 154 ns per check the model gives {found['kernel_predicted']:.2%}, "
                f"so here it IPIs about {found['observed'] / found['kernel_predicted']:.0f} "
                f"times as often as the kernel would at the same walker activity.")
    out.append(
        "The two published \"before\" figures (275 s and 82,150 ms) were measured for this "
        "scenario on different kernels and machines: they differ 3.3x, so compare speedups "
        "rather than times.")
    load = h.get("load_average")
    if load:
        out.append(f"Host load: load average {load[0]:.1f} on {h['usable_cores']} cores when the "
                   f"run started; other work on the host lengthens the `ipi` leg most.")
    return out


def reproduce_section(result: dict, preset: str) -> dict:
    """The ``reproduce`` section of result.json."""
    return {"preset": preset,
            "published_scenario": {k: v for k, v in SEED.items() if k != "strategies"},
            "scenario_differences": scenario_differences(result["config"]),
            "rows": compare_rows(result),
            "hardware_differences": hardware_differences(result)}


def _ratio(x) -> str:
    if x is None:
        return "-"
    return f"{x:,.0f}x" if x >= 10 else f"{x:.2g}x"


def reproduce_table(section: dict, fmt: str) -> str:
    headers = ["strategy", "emulator", "per THP", "speedup vs ipi", "published", "per THP",
               "speedup vs before", "source"]
    rows, last = [], None
    for r in section["rows"]:
        # A strategy with two published figures: show its emulator figures once.
        same = r["strategy"] == last
        last = r["strategy"]
        if same:
            emulator = ["", "", ""]
        elif r["emulator_s"] is None:
            emulator = [r["status"].upper(), "", ""]
        else:
            time, speedup = format_duration(r["emulator_s"]), _ratio(r["emulator_speedup"])
            if r.get("emulator_interval"):
                time += interval_text(r["emulator_interval"], format_duration)
            if r.get("emulator_speedup_interval"):
                speedup += interval_text(r["emulator_speedup_interval"], _ratio)
            emulator = [time, format_duration(r["emulator_per_thp_s"]), speedup]
        source = f"{r['source']}: {r['published_what']}" if r["source"] else "-"
        rows.append(["" if same else r["strategy"], *emulator, r["published"] or "-",
                     format_duration(r["published_per_thp_s"]), _ratio(r["published_speedup"]),
                     source])
    return tabulate(rows, headers, tablefmt=fmt, disable_numparse=True)


def format_reproduce(section: dict, fmt: str = "simple") -> list:
    """The comparison table and its caveats, as lines."""
    lines = [reproduce_table(section, fmt)]
    if section["scenario_differences"]:
        lines += ["", "NOT the published scenario: "
                  + "; ".join(section["scenario_differences"])
                  + ". Times do not compare; speedups grow with memory and CPUs."]
    lines += ["", "What differs from the hardware of the published figures:"]
    lines += [f"- {d}" for d in section["hardware_differences"]]
    return lines


def format_markdown(result: dict) -> str:
    section = result["reproduce"]
    c = result["config"]
    parts = [f"# lpw_mp reproduce ({section['preset']}) {result['run_id']}", "",
             f"Status: **{result['status']}**, started {result['started']}, finished "
             f"{result['finished']}. Command: `{' '.join(result['command'])}`", "",
             f"{c['cpus']} simulated CPUs unmap {c['memory_h']} of {c['thp_size_h']} THPs "
             f"({c['npmds']:,} PMDs). Speedups are over each column's own `ipi` / \"before\".",
             "The full table of the run is in [report.md](report.md).", ""]
    return "\n".join(parts + format_reproduce(section, "github")) + "\n"


def main(argv) -> int:
    args, cfg = config(argv)
    show_progress = not (args.quiet or args.json)
    with deferred_signals():
        result = run(cfg, argv=[f"{invoked_as()} reproduce", *argv],
                     progress=terminal_progress(cfg) if show_progress else None)
        annotate(result)
        result["reproduce"] = reproduce_section(result, args.preset)
        return finish(
            args, result,
            lambda doc: write_run(doc, cfg.runs_dir, extra={"reproduce.md": format_markdown}),
            lambda folder: "\n".join([
                format_terminal(result), "",
                "against the published figures (128 CPUs, 496G of 2M THPs, munmap):",
                *format_reproduce(result["reproduce"]), "",
                written(folder, "reproduce.md", "report.md", "result.json")]),
            exit_status)
