"""Judging a result: the safety verdict, the reasons not to trust a figure (pyperf-style
warnings), the walker side against ipi's, and the exit status."""

import copy
import statistics

from lpw_mp.results.overlap import DISAGREE_FACTOR, overlap
from lpw_mp.results.repeats import figure_values, intervals
from lpw_mp.results.stats import MIN_SAMPLES, P99_SAMPLES
from lpw_mp.units import format_duration

#: Above this many simulated CPUs per host core, latencies are mostly host scheduling.
OVERSUBSCRIBED = 4.0
#: Coefficient of variation of IPI rounds above which the median is called unstable.
UNSTABLE_CV = 0.5
#: Walks during the operation below this share of those asked for are flagged.
SHORTFALL = 0.5
#: An IPI round this many times the p99 is a stall of the host (every CPU acknowledged it in
#: the end), flagged when it is at least OUTLIER_SHARE of the operation's time.
OUTLIER, OUTLIER_SHARE = 10.0, 0.01


def safety_verdict(leg: dict) -> str:
    """``ok``, ``VIOLATED`` (a safe strategy let a walker use freed memory: an emulator bug,
    or a plugin's own, ``blame``), ``caught`` (the unsafe control was caught, as it should
    be) or ``not caught``."""
    total = leg["violations"]["total"]
    if leg["safe"]:
        return "VIOLATED" if total else "ok"
    return "caught" if total else "not caught"


def blame(leg: dict) -> str:
    """Whose fault a ``VIOLATED`` leg is. A built-in profile is safe by the kernel's argument,
    so a violation means lpw_mp is wrong; a strategy from outside the package (its leg
    records its spec under ``plugin``) that lets a walker use freed memory is unsafe itself,
    whatever it claims."""
    if leg.get("plugin"):
        return (f"The strategy {leg['strategy']} ({leg['plugin']}) is marked safe but let a "
                f"walker use freed memory itself: it is unsafe as written, not a bug in lpw_mp.")
    return "This is a bug in lpw_mp."


def shown_names(strategies, legs) -> list:
    """The names ``config.strategies`` are shown by: a built-in's is its own, a plugin's spec
    becomes the name its legs give beside it (``plugin``)."""
    by_spec = {leg["plugin"]: leg["strategy"] for leg in legs if leg.get("plugin")}
    return [by_spec.get(spec, spec) for spec in strategies]


#: The figures of a leg a warning can qualify, by the keys the tables use for them.
FIGURES = ("time", "ipi_p50", "ipi_p99", "walks", "walks_per_s", "walker_p50", "walker_p99",
           "found", "safety", "strategy")


def flagged_warnings(leg: dict, host: dict, config: dict) -> list:
    """Reasons, pyperf-style, not to trust a leg's figures: ``(text, figures)`` pairs, where
    ``figures`` names the figures (``FIGURES``) the reason is about, for the ``?`` marks."""
    out = []
    rounds = leg["ipi_round_s"]
    if 0 < rounds["n"] < MIN_SAMPLES:
        out.append((f"only {rounds['n']} IPI rounds: the median is not reliable",
                    ("ipi_p50", "ipi_p99")))
    elif MIN_SAMPLES <= rounds["n"] < P99_SAMPLES:
        out.append((f"p99 of only {rounds['n']} IPI rounds: it rests on one or two samples",
                    ("ipi_p99",)))
    if rounds["n"] >= MIN_SAMPLES and rounds["cv"] > UNSTABLE_CV:
        out.append((f"IPI round latency is unstable (coefficient of variation "
                    f"{rounds['cv']:.2f})", ("ipi_p50",)))
    longest, p99, wall = rounds.get("max"), rounds.get("p99"), leg["wall_s"]
    if rounds["n"] >= MIN_SAMPLES and longest and p99 and wall and longest > OUTLIER * p99 \
            and longest >= OUTLIER_SHARE * wall:
        out.append((f"one IPI round took {format_duration(longest)}, {longest / p99:,.0f}x the "
                    f"p99: the host stalled (every CPU acknowledged in the end), and that round "
                    f"is {longest / wall:.0%} of the {config['op']} time (--repeat takes the "
                    f"median over repeats)", ("time",)))
    walker = leg.get("walker_side")
    if walker is not None and walker["walks"] < MIN_SAMPLES:
        out.append((f"only {walker['walks']} walks in {walker['seconds']:.1f} s of walker "
                    f"phase: walker-side figures are not reliable (raise --walker-time or "
                    f"--walk-rate)", ("walks_per_s", "walker_p50", "walker_p99")))
    rate = config["walk_rate"]
    late = leg["walk_lateness_s"]
    if rate and late is not None and late > max(1.0 / rate, 0.005):
        out.append((f"walks started {format_duration(late)} late on average: the host could "
                    f"not keep up with --walk-rate {rate:g}", ("walks",)))
    # Walks are drawn at --walk-rate but only start when the host runs the CPU: on a busy host
    # the updater then met far fewer walks than the figures are said to be for.
    wall, active = leg["wall_s"], config["active_cpus"]
    expected = rate * wall * active if wall and active else 0
    if expected >= MIN_SAMPLES and leg["walks"] < expected * SHORTFALL:
        out.append((f"walks ran at {leg['walks'] / wall / active:.3g}/s per CPU during the "
                    f"{config['op']}, under {SHORTFALL:.0%} of the {rate:g}/s asked "
                    f"(--walk-rate): the host could not keep up, so the updater met fewer "
                    f"walks than asked", ("walks",)))
    if leg["pool_exhausted"]:
        out.append((f"{leg['pool_exhausted']} splits skipped: the PTE page pool ran out",
                    ("time",)))
    found = leg.get("overlap")
    if found and found["disagrees"]:
        out.append((f"found a walker in {found['observed']:.2%} of its checks, where the "
                    f"overlap model predicts {found['predicted']:.2%} (more than "
                    f"{DISAGREE_FACTOR:g}x apart): the host's scheduling, not only the walk "
                    f"rate, decided how often it IPIed (README, 'How often count and percpu "
                    f"must IPI')", ("found",)))
    if safety_verdict(leg) == "not caught":
        out.append(("the unsafe control was not caught: the workload did not hit the race "
                    "(see README, 'Catching the race')", ("safety",)))
    return out


def leg_warnings(leg: dict, host: dict, config: dict) -> list:
    """The texts of ``flagged_warnings``."""
    return [text for text, _ in flagged_warnings(leg, host, config)]


def run_warnings(result: dict) -> list:
    host, out = result["host"], []
    if host["oversubscription"] > OVERSUBSCRIBED:
        out.append(f"{host['oversubscription']:g} simulated CPUs per host core: latencies include "
                   f"host scheduling delay, not only the emulated protocol")
    load = host.get("load_average")
    if load and load[0] > host["usable_cores"]:
        out.append(f"the host was already busy (load average {load[0]:.1f} on "
                   f"{host['usable_cores']} cores) when the run started")
    return out


def annotate(result: dict) -> dict:
    """Add the safety verdicts, warnings, walker-side ratios and intervals to ``result`` in
    place. Ratios to ipi are medians of the per-round ratios (``repeats.PAIRED``)."""
    legs_ok = [leg for leg in result["legs"] if leg.get("status") == "ok"]
    base = next((leg for leg in legs_ok if leg["strategy"] == "ipi"), None)
    for leg in legs_ok:
        leg["safety"] = safety_verdict(leg)
        leg["overlap"] = overlap(leg, result["config"])
        flagged = flagged_warnings(leg, result["host"], result["config"])
        leg["warnings"] = [text for text, _ in flagged]
        leg["warning_figures"] = [list(figures) for _, figures in flagged]
        leg["walker_vs_ipi"] = rel = compare_to_ipi(leg.get("walker_side"),
                                                    base.get("walker_side") if base else None)
        # ipi against itself is 1 in every round: no interval to give.
        leg["intervals"] = intervals(leg, base if leg is not base else None)
        if base is None:
            continue
        speedups = figure_values(leg, "vs_ipi", base)
        if speedups:
            leg["speedup_vs_ipi"] = statistics.median(speedups)
        for key, ratio in (("walker_vs_ipi", "begin_end_ratio"), ("p99_vs_ipi", "p99_ratio")):
            values = figure_values(leg, key, base)
            if values and rel[ratio] is not None:
                rel[ratio] = statistics.median(values)
    result["warnings"] = run_warnings(result)
    result["unsafe_violations"] = sum(leg["violations"]["total"] for leg in legs_ok
                                      if leg["safe"])
    return result


def annotated(result: dict) -> dict:
    """``result`` if it carries its verdicts, else an annotated copy: what a formatter reads
    is there whoever made the document."""
    legs_ok = [leg for leg in result["legs"] if leg.get("status") == "ok"]
    if "warnings" in result and all("safety" in leg and "warnings" in leg and "intervals" in leg
                                    for leg in legs_ok):
        return result
    return annotate(copy.deepcopy(result))


def exit_status(result: dict) -> int:
    """0: all legs ran and every safe strategy was safe; 1: a leg failed or a safe strategy
    let a walker use freed memory; 128+N: interrupted by signal N."""
    if result["status"] == "interrupted":
        return 130 if result.get("signal") == "SIGINT" else 143
    if result["status"] == "failed" or result.get("unsafe_violations"):
        return 1
    return 0


def compare_to_ipi(phase: dict, ipi_phase: dict) -> dict:
    """Walker-side figures relative to ipi's, whose walker only sets and clears its IRQ flag:
    the ratio of median begin/end costs, the median time added per walk, that addition as a
    share of ipi's median IRQ-off window (the figure the 2026 per-CPU series quotes as about
    3% of GUP-fast), and the ratio of p99s (where contention shows)."""
    out = {"begin_end_ratio": None, "added_ns": None, "added_share": None, "p99_ratio": None,
           "resolved": None}
    if not (phase and ipi_phase and phase["walks"] and ipi_phase["walks"]):
        return out
    mine, base = phase["begin_end_median_ns"], ipi_phase["begin_end_median_ns"]
    out["begin_end_ratio"] = mine / base
    out["added_ns"] = mine - base
    out["added_share"] = out["added_ns"] / ipi_phase["irq_off_median_ns"]
    out["p99_ratio"] = phase["begin_end_p99_ns"] / ipi_phase["begin_end_p99_ns"]
    # Medians closer than one histogram bucket (a factor 2**(1/steps)) cannot be told apart.
    resolution = 2 ** (1 / ipi_phase["hist_steps"])
    out["resolved"] = not (1 / resolution < out["begin_end_ratio"] < resolution)
    return out
