"""The walker-overlap model (lpw_mp.results.overlap) on synthetic inputs: its limits, its shape,
a seeded Monte Carlo of the process it describes, and what ``overlap`` makes of a leg; and the
updater's count of walks started during its IPI rounds, on a small real machine."""

import math
import random

import pytest

from helpers import acquire, wait_until
from lpw_mp.harness.emulator import Emulator
from lpw_mp.kernel.hooks import WalkHook
from lpw_mp.results.overlap import (KERNEL_OWN_TIME_S, SKIPS_WHEN_IDLE, after_hit_share,
                                    after_miss_share, disagrees, hit_share,
                                    hit_share_of_gaps, overlap)
from lpw_mp.results.stats import log_histogram

US = 1e-6


def simulate(rate, own_time, window, checks, walks_in_rounds, seed, latency=50 * US):
    """The process itself, event by event: walk starts at ``rate`` (Poisson), each ``window``
    long; the updater's own time between checks exponential with mean ``own_time``; a check
    hits iff a walk started within ``window`` before it, and a hit is followed by a round that
    lasts until every walk in progress has ended, plus ``latency``. ``walks_in_rounds``: walks
    go on starting during the round (as on CPUs that took the IPI); else none start in it.
    Returns the share of checks that hit."""
    rng = random.Random(seed)
    t, hits = 0.0, 0
    next_start = rng.expovariate(rate)
    recent = []  # starts within the last window

    def starts_until(until):
        nonlocal next_start
        while next_start <= until:
            recent.append(next_start)
            next_start += rng.expovariate(rate)

    for _ in range(checks):
        t += rng.expovariate(1.0 / own_time)
        starts_until(t)
        recent[:] = [s for s in recent if s > t - window]
        if not recent:
            continue
        hits += 1
        end = max(recent) + window + latency
        if walks_in_rounds:
            starts_until(end)
            recent[:] = [s for s in recent if s > end - window]
        else:
            next_start += end - t  # the Poisson clock stands still during the round
            recent.clear()
        t = end
    return hits / checks


def leg(**over):
    """A leg of ``count`` as runner.leg_result writes it, with round figures that make the
    arithmetic easy: 1,000 checks, 10 hits, 1 ms of own time, 8,000 walks/s."""
    base = {"strategy": "count", "status": "ok", "serialisations": 10, "skipped": 990,
            "frees_deferred": 0, "batch_failures": 0, "wall_s": 0.002,
            "ipi_round_s": {"n": 10, "mean": 0.0001}, "walks": 16, "deferred_free_s": None}
    base.update(over)
    return base


CONFIG = {"walk_window": 20 * US}


# -- the model ------------------------------------------------------------------------------

def test_windows_much_longer_than_the_own_time_give_lambda_c_over_one_plus_lambda_c():
    """After a miss, a check sees every walk that started since the previous one when windows
    outlast the updater's own time: a = λc/(1+λc)."""
    for rate, c in [(8000, 2 * US), (1000, 154e-9), (50000, 10 * US)]:
        assert after_miss_share(rate, c, 1.0) == pytest.approx(rate * c / (1 + rate * c))


def test_with_few_walks_in_a_window_the_share_is_the_after_miss_share():
    """When λw is small the correction for walks that start during a round vanishes:
    p = a/(a + exp(-λw)) tends to a, and with w >> c to λc/(1+λc)."""
    rate, c, w = 10.0, 1 * US, 100 * US  # λw = 0.001, w = 100 c
    a = after_miss_share(rate, c, w)
    assert hit_share(rate, c, w) == pytest.approx(a, rel=2e-3)
    assert hit_share(rate, c, w) == pytest.approx(rate * c / (1 + rate * c), rel=2e-3)


def test_no_walks_means_no_hits():
    """λ = 0 gives 0, and the share falls towards 0 with λ."""
    assert hit_share(0.0, 2 * US, 20 * US) == 0.0
    shares = [hit_share(rate, 2 * US, 20 * US) for rate in (1e3, 1e1, 1e-1, 1e-3)]
    assert shares == sorted(shares, reverse=True) and shares[-1] < 1e-8


def test_no_window_means_no_hits():
    """w = 0 gives 0 (a walk that keeps IRQs off for no time cannot be seen), and the share
    falls towards 0 with w."""
    assert hit_share(8000, 2 * US, 0.0) == 0.0
    assert hit_share(8000, 2 * US, 1e-12) < 1e-7


def test_no_own_time_means_no_hits():
    """An updater that spends no time of its own between checks sees no walk start after a
    miss: c <= 0 gives 0, not a division by zero."""
    assert hit_share(8000, 0.0, 20 * US) == 0.0
    assert hit_share(8000, -1.0, 20 * US) == 0.0


@pytest.mark.parametrize("window", [1 * US, 20 * US, 1e-3])
def test_the_share_grows_with_the_walk_rate_and_the_own_time(window):
    """More walks, or more of the updater's own time between checks, make a hit more likely
    (until it is certain: λw of hundreds saturates it at 1)."""
    rates = [10.0 * 2 ** k for k in range(16)]
    times = [10e-9 * 2 ** k for k in range(16)]
    for c in times:
        by_rate = [hit_share(rate, c, window) for rate in rates]
        assert all(x < y or x == y == 1.0 for x, y in zip(by_rate, by_rate[1:]))
    for rate in rates:
        by_time = [hit_share(rate, c, window) for c in times]
        assert all(x < y or x == y == 1.0 for x, y in zip(by_time, by_time[1:]))


def test_a_fixed_own_time_agrees_to_first_order():
    """With X fixed at c instead of exponential, a = 1 - exp(-λ min(c, w)): the same to first
    order in λc (the relative gap shrinks with λc)."""
    gaps = []
    for rate in (1e2, 1e3, 1e4):
        c, w = 1 * US, 20 * US
        fixed = -math.expm1(-rate * min(c, w))
        gaps.append(abs(after_miss_share(rate, c, w) / fixed - 1))
    assert gaps == sorted(gaps) and gaps[0] < 1e-3 and gaps[-1] < 0.02


def test_after_a_hit_a_check_sees_the_walks_of_a_whole_window():
    """q = 1 - exp(-λw): nothing is known of the window before a check that follows a round."""
    assert after_hit_share(8000, 20 * US) == pytest.approx(1 - math.exp(-0.16))
    assert after_hit_share(0, 20 * US) == 0.0 and after_hit_share(8000, 0) == 0.0


@pytest.mark.parametrize("rate,c", [(8000, 5 * US), (25000, 2 * US)])
def test_the_model_matches_a_monte_carlo_of_the_process(rate, c):
    """A seeded simulation of the process, walk by walk: with walks going on during rounds the
    share of hits is p = a/(a + exp(-λw)); with none starting in a round it is a. At λw = 0.5
    (the second case) the two differ by 1.5x, so the simulation tells them apart."""
    w, n = 20 * US, 60_000
    going_on = simulate(rate, c, w, n, walks_in_rounds=True, seed=1)
    paused = simulate(rate, c, w, n, walks_in_rounds=False, seed=2)
    assert going_on == pytest.approx(hit_share(rate, c, w), rel=0.06)
    assert paused == pytest.approx(after_miss_share(rate, c, w), rel=0.06)


def test_the_kernels_own_time_is_154_ns_per_thp():
    """v5.8: 39 ms for 253,952 THPs."""
    assert KERNEL_OWN_TIME_S == pytest.approx(154e-9, rel=0.01)


# -- a leg ----------------------------------------------------------------------------------

def test_a_legs_figures():
    """checks, hits, c = (wall - rounds) / checks, λ = walks / wall, and the model at those
    and at the kernel's c."""
    out = overlap(leg(), CONFIG)
    assert out["checks"] == 1000 and out["hits"] == 10 and out["observed"] == 0.01
    assert out["own_time_s"] == pytest.approx(1 * US)
    assert out["rate_per_s"] == pytest.approx(8000)
    assert out["window_s"] == 20 * US
    assert out["predicted"] == pytest.approx(hit_share(8000, 1 * US, 20 * US))
    assert out["kernel_own_time_s"] == KERNEL_OWN_TIME_S
    assert out["kernel_predicted"] == pytest.approx(hit_share(8000, KERNEL_OWN_TIME_S, 20 * US))
    assert out["kernel_predicted"] < out["predicted"]
    assert out["ratio"] == pytest.approx(0.01 / out["predicted"])
    assert out["disagrees"] is False


def test_pte_table_slots_are_not_checks():
    """A munmap of a slot mapped through a PTE page calls tlb_remove_table, which checks no
    walker: its deferred free counts as skipped and its sync IPI (no batch page) as a
    serialisation, and neither is a check."""
    out = overlap(leg(serialisations=13, skipped=1090, frees_deferred=100, batch_failures=3),
                  CONFIG)
    assert out["checks"] == 1000 and out["hits"] == 10


def test_walks_are_counted_over_the_wait_for_deferred_frees_too():
    """The walker counters run until the last deferred free: λ is over that span."""
    out = overlap(leg(deferred_free_s=0.004), CONFIG)
    assert out["rate_per_s"] == pytest.approx(4000)


def test_walks_during_ipi_rounds_are_left_out_of_the_rate_when_counted():
    """A leg that counted the walks started during IPI rounds gives the rate outside them,
    the one the updater's checks meet: (16 - 6) walks over 2 ms - 1 ms of rounds."""
    out = overlap(leg(walks_in_rounds=6), CONFIG)
    assert out["rate_per_s"] == pytest.approx(10_000)
    assert overlap(leg(walks_in_rounds=None), CONFIG)["rate_per_s"] == pytest.approx(8000)


def _gaps(*pairs):
    """A gap histogram (8 buckets per doubling, ns) with ``count`` gaps in the bucket of each
    ``ns``."""
    counts = [0] * 320
    for ns, count in pairs:
        counts[int(math.log2(ns) * 8)] += count
    return log_histogram(counts, 8)


def test_measured_gaps_replace_the_exponential_of_their_mean():
    """With the gaps between checks measured, a check after a gap X finds a walk with
    1 - exp(-λ min(X, w)): 999 gaps of 1 us and one of 4 ms (the host descheduled the
    updater) have a mean of 5 us, but predict about a fifth of what an exponential of mean
    5 us does, since the long gap meets at most one window of walks."""
    gaps = _gaps((1000, 999), (4_000_000, 1))
    rate, window = 8000.0, 20 * US
    middle = 2 ** ((int(math.log2(1000) * 8) + 0.5) / 8) * 1e-9   # the 1 us bucket's
    a = (999 * -math.expm1(-rate * middle) + -math.expm1(-rate * window)) / 1000
    assert hit_share_of_gaps(rate, gaps, window) == pytest.approx(
        a / (a + math.exp(-rate * window)))
    assert hit_share_of_gaps(rate, gaps, window) < hit_share(rate, 5 * US, window) / 4
    assert hit_share_of_gaps(0.0, gaps, window) == 0.0
    # A leg that carries its gaps is predicted from them, not from its mean own time.
    out = overlap(leg(check_gap_histogram=gaps), CONFIG)
    assert out["predicted"] == pytest.approx(hit_share_of_gaps(out["rate_per_s"], gaps,
                                                               window))


def test_a_leg_with_repeats_takes_the_median_of_its_samples():
    """A format 2 leg's own figures are medians without the gap histograms: the overlap is
    that of each sample, then the median of each figure."""
    samples = [{"repeat": r, **{k: v for k, v in leg(serialisations=h).items()
                                if k != "strategy"}} for r, h in ((1, 10), (2, 30), (3, 20))]
    out = overlap({**leg(), "samples": samples}, CONFIG)
    assert out["hits"] == 20 and out["samples"] == 3
    assert out["observed"] == pytest.approx(20 / (20 + 990))


def test_the_strategies_that_skip_when_idle_are_the_kernels():
    """SKIPS_WHEN_IDLE names exactly the strategies whose updater counts walks in rounds
    (``Strategy.skips_when_idle``); the results layer cannot import the kernel to ask."""
    from lpw_mp.kernel.strategies import STRATEGIES
    assert set(SKIPS_WHEN_IDLE) == {n for n, cls in STRATEGIES.items() if cls.skips_when_idle}


@pytest.mark.parametrize("factor,disagree", [(2.1, True), (1 / 2.1, True), (1.9, False),
                                             (1 / 1.9, False), (1.0, False)])
def test_more_than_2x_apart_either_way_disagrees(factor, disagree):
    """Observed above twice the prediction, or below half of it, disagrees; within 2x it
    does not."""
    predicted = hit_share(8000, 1 * US, 20 * US)
    hits = round(1_000_000 * predicted * factor)
    out = overlap(leg(serialisations=hits, skipped=1_000_000 - hits, wall_s=1.0 + hits * 1e-4,
                      walks=int(8000 * (1.0 + hits * 1e-4)), ipi_round_s={"n": hits,
                                                                           "mean": 1e-4}),
                  CONFIG)
    assert out["own_time_s"] == pytest.approx(1 * US)
    assert out["ratio"] == pytest.approx(factor, rel=1e-3)
    assert out["disagrees"] is disagree


def test_a_zero_beside_a_nonzero_disagrees():
    """No hits against a predicted share, or hits where none were predicted, disagree; zero
    against zero does not."""
    assert disagrees(0.0, 0.01) and disagrees(0.01, 0.0) and not disagrees(0.0, 0.0)
    out = overlap(leg(serialisations=0, skipped=1000, ipi_round_s={"n": 0, "mean": None}),
                  CONFIG)
    assert out["observed"] == 0 and out["predicted"] > 0 and out["disagrees"] is True
    out = overlap(leg(walks=0), CONFIG)
    assert out["predicted"] == 0 and out["ratio"] is None and out["disagrees"] is True


@pytest.mark.parametrize("name", ["ipi", "v5.8", "sync-one", "sync-mm", "none"])
def test_a_strategy_that_always_serialises_has_no_overlap(name):
    """Only the strategies that skip the IPI when no walk is seen have a share to predict."""
    assert name not in SKIPS_WHEN_IDLE
    assert overlap(leg(strategy=name), CONFIG) is None


def test_percpu_is_modelled_too():
    """percpu skips the IPI when no CPU is inside a walk: the same model."""
    assert overlap(leg(strategy="percpu"), CONFIG)["checks"] == 1000


@pytest.mark.parametrize("over", [{"status": "interrupted"}, {"status": "not run"},
                                  {"serialisations": 0, "skipped": 0}])
def test_a_leg_without_checks_has_no_overlap(over):
    """A leg cut short or not run has no figures to compare; one without checks has no
    share."""
    assert overlap(leg(**over), CONFIG) is None


# -- the updater's count of walks started during its rounds (real processes) -----------------

@pytest.mark.timeout(60)
def test_a_walk_under_way_when_the_round_begins_did_not_start_in_it(cfg, ctx):
    """count finds a walker paused in its window and IPIs; the round ends when that walk
    does. The walk started before the round, so walks_in_rounds stays 0 (a walk is counted
    once started, ended or not)."""
    c = cfg(cpus=3, memory=16 << 20, pte_fraction=0.0, walk_rate=0.0)
    hook = WalkHook(ctx, cpu=1, slot=3)
    with Emulator(c, "count", hooks=[hook], ctx=ctx) as emu:
        acquire(hook.paused, what="walker to pause")
        emu.start_coordinator(slots=[5])
        m = emu.machine
        wait_until(lambda: m.ipi_gen[1] == 1, what="the IPI to CPU 1")
        hook.resume.release()
        st = emu.wait_coordinator()["stats"]
    assert st["serialisations"] == 1 and st["walks_in_rounds"] == 0


@pytest.mark.timeout(60)
def test_strategies_that_always_serialise_do_not_count(cfg):
    """Only a strategy that skips the IPI when idle pays for the count (two reads of every
    CPU's counters per round): under ipi it is None."""
    with Emulator(cfg(cpus=2, memory=8 << 20, pte_fraction=0.0, walk_rate=0.0), "ipi") as emu:
        emu.start_coordinator()
        st = emu.wait_coordinator()["stats"]
    assert st["serialisations"] == 4 and st["walks_in_rounds"] is None
    assert st["check_gaps"] is None


@pytest.mark.timeout(60)
def test_the_updater_keeps_the_gap_before_every_check_but_the_first(cfg):
    """count's updater keeps its own time between one check and the next, less IPI rounds:
    one gap per check after the first (no PTE-table slot here, and those check no walker),
    each positive and under the whole operation."""
    with Emulator(cfg(cpus=2, memory=32 << 20, pte_fraction=0.0, walk_rate=0.0),
                  "count") as emu:
        emu.start_coordinator()
        st = emu.wait_coordinator()["stats"]
    assert st["skipped"] == 16 and len(st["check_gaps"]) == 15
    assert all(0 < gap < st["wall_s"] for gap in st["check_gaps"])
