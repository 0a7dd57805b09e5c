"""How often ``count`` and ``percpu`` must IPI: the walker-overlap model, against a leg's count.

``count`` and ``percpu`` skip the IPI broadcast when the updater sees no walk in progress. The
share of its checks that find one is not the share of time walkers spend in a window: the
updater checks one operation after another, and each time it finds a walker it waits in the IPI
round until that walk is over. The model, for one check of a long sequence:

- walks start as a Poisson process at rate ``λ`` (walk starts per second, all CPUs together);
  each keeps IRQs off, and is visible to the check, for ``w`` seconds;
- between two checks the updater spends ``X`` of its own time (outside IPI rounds), of mean
  ``c``. A check sees a walk iff one started within the last ``w`` before it.

After a **miss**, no walk started in the ``w`` before the previous check, so the check sees a
walk iff one started in the last ``min(X, w)``: ``1 - exp(-λ min(X, w))``. Taking ``X``
exponential with mean ``c`` (a race between the next walk start and the next check) and
integrating::

    a = λc/(1+λc) · (1 - exp(-w(λ + 1/c)))          (after_miss_share)

which is ``λc/(1+λc)`` when ``w >> c``. (A fixed ``X = c`` gives ``1 - exp(-λ min(c, w))``,
equal to first order in ``λc``.)

After a **hit**, the IPI round waits out every walk in progress when it began, but walks go on
starting during the round, on CPUs that have taken the IPI (and, under ``percpu``, on CPUs it
never sent one). When the round and the next ``X`` together outlast ``w``, nothing is known of
the ``w`` before the next check, which sees a walk with probability::

    q = 1 - exp(-λw)                                  (after_hit_share)

Checks are then a two-state Markov chain (``P(hit | miss) = a``, ``P(hit | hit) = q``), whose
stationary share of hits is::

    p = a / (1 - q + a) = a / (a + exp(-λw))          (hit_share)

Taking ``q = a``, as if a round left no walk in progress, gives back ``p = a``. The correction
is at most ``exp(λw)`` (reached for small ``a``) and matters when ``λw`` is not small: at 8 CPUs
x 1000 walks/s and 20 us windows ``λw = 0.16`` and ``p`` is up to ``a`` x 1.17; at 2000 walks/s,
up to x 1.38. The emulator's rounds (tens of us to ms) outlast a 20 us window as a rule; if the
kernel's were shorter than ``w``, ``q`` would be smaller (it is an upper bound), which moves the
kernel's ``p`` by less than that factor.

When the leg carries the gaps themselves (``check_gap_histogram``: the updater of ``count``
and ``percpu`` keeps every one, from the start of a check to the start of the next, less IPI
rounds), ``a`` is ``1 - exp(-λ min(X, w))`` averaged over them (``hit_share_of_gaps``) rather
than the exponential of their mean: on a shared host a few gaps are milliseconds long (the
updater descheduled), which makes the mean large but meets at most ``w`` of walks each.

``c`` and ``λ`` are measured from a leg (``overlap``):

- checks: ``serialisations + skipped`` counts every serialising step, and a munmap of a slot
  mapped through a PTE page is one (``tlb_remove_table``) that checks no walker: it is counted
  as skipped when its free is deferred (``frees_deferred``) and as a serialisation when it
  synced with an IPI instead (``batch_failures``). Both are taken out of checks, and the
  latter out of hits;
- ``c = (wall_s - time in IPI rounds) / checks``: the updater's own time per check, whatever
  it spends it on (the operation itself, polling RCU, being descheduled by the host);
- ``λ``: walk starts per second outside IPI rounds, when the leg has ``walks_in_rounds`` (the
  updater of a strategy in ``SKIPS_WHEN_IDLE`` counts the walks that start during its rounds):
  ``(walks - walks_in_rounds) / (span - time in IPI rounds)``; else over the whole span,
  ``walks / span``. The span is what the walker counters cover: the operation and the wait for
  its deferred frees (``deferred_free_s``), not ``wall_s`` alone. Walks do not start at one
  rate in and out of rounds here: a CPU woken by an IPI starts a walk that was due at once
  (``count`` IPIs every CPU, and 8 CPUs on 2 cores measured 6,400 walk starts per second
  outside rounds and 10,000 inside for 8,000 on average), and with the simulated CPUs sharing
  a core a round can hold walks back instead (``percpu`` pinned: 25,000 outside, 9,700
  inside for 16,000). Checks meet the rate outside rounds.

The kernel's ``c`` is 154 ns per THP (``KERNEL_OWN_TIME_S``); the emulator's is 4-9 us
(benchmarks/overlap.py on a 2-core host), so at the same ``λ`` and ``w`` the model has the
emulator's ``count`` and ``percpu`` IPI 20-45 times as often as the kernel's would.
``kernel_predicted`` says by how much for each leg.
"""

import math
import statistics

#: Strategies that skip the IPI broadcast when their updater sees no walk in progress, and so
#: IPI on the share of checks this model predicts: ``count`` (its counter reads zero) and
#: ``percpu`` (no CPU of mm_cpumask has its slot set). Every other strategy serialises every
#: time (``ipi``, ``v5.8``), or never, or through RCU.
SKIPS_WHEN_IDLE = ("count", "percpu")

#: The kernel's own time per check: 154 ns per THP, v5.8's munmap of a 496 GB guest's 253,952
#: THPs in 39 ms with no IPI (Aneesh Kumar's cover letter, v3 00/22 "Avoid IPI while updating
#: page table entries", ``20200420124434.47330-1-aneesh.kumar@linux.ibm.com``: "delta = 39ms";
#: docs/kernel-sources.md).
KERNEL_OWN_TIME_S = 0.039 / 253952

#: Observed and predicted disagree when one is more than this many times the other.
DISAGREE_FACTOR = 2.0


def after_miss_share(rate: float, own_time: float, window: float) -> float:
    """``a``: the probability that a check finds a walk when the previous one found none, for
    walk starts at ``rate`` per second, ``own_time`` seconds (mean, exponential) of the
    updater's own between checks and walks ``window`` seconds long."""
    if rate <= 0 or own_time <= 0 or window <= 0:
        return 0.0
    lc = rate * own_time
    return lc / (1.0 + lc) * -math.expm1(-window * (rate + 1.0 / own_time))


def after_hit_share(rate: float, window: float) -> float:
    """``q``: the probability that a check finds a walk when the previous one did (and its IPI
    round, with the updater's own time after it, outlasted ``window``)."""
    if rate <= 0 or window <= 0:
        return 0.0
    return -math.expm1(-rate * window)


def hit_share(rate: float, own_time: float, window: float) -> float:
    """``p``: the share of a long sequence of checks that find a walk in progress (and IPI)."""
    a = after_miss_share(rate, own_time, window)
    if a == 0.0:
        return 0.0
    return a / (a + math.exp(-rate * window))


def hit_share_of_gaps(rate: float, gaps: dict, window: float) -> float:
    """``p`` as ``hit_share``, with ``a`` averaged over the measured gaps between checks
    (``gaps``, a ``stats.log_histogram`` in ns) instead of an exponential of their mean: a
    check after a gap ``X`` finds a walk with ``1 - exp(-λ min(X, w))``. A few long gaps
    (the host descheduling the updater) make the mean large but meet at most ``w`` of walks
    each, which the exponential of the mean cannot know."""
    total = sum(gaps["counts"])
    if rate <= 0 or window <= 0 or not total:
        return 0.0
    edges = gaps["edges"]
    a = sum(count * -math.expm1(-rate * min(math.sqrt(edges[i] * edges[i + 1]) / 1e9, window))
            for i, count in enumerate(gaps["counts"]) if count) / total
    return a / (a + math.exp(-rate * window))


def overlap(leg: dict, config) -> dict:
    """``sample_overlap`` of every sample of ``leg`` (a leg of format 2 has them; its own
    figures are medians, without the gap histograms), each figure the median over them and
    the verdict on those medians; None as ``sample_overlap``."""
    if leg.get("strategy") not in SKIPS_WHEN_IDLE or leg.get("status", "ok") != "ok":
        return None
    found = [sample_overlap({"strategy": leg["strategy"], **sample}, config)
             for sample in leg.get("samples") or [leg]]
    found = [o for o in found if o is not None]
    if not found:
        return None
    out = {key: statistics.median_low(o[key] for o in found) for key in ("checks", "hits")}
    out.update({key: statistics.median(o[key] for o in found)
                for key in ("observed", "rate_per_s", "own_time_s", "predicted",
                            "kernel_predicted")})
    out.update(window_s=found[0]["window_s"], kernel_own_time_s=KERNEL_OWN_TIME_S,
               samples=len(found),
               ratio=out["observed"] / out["predicted"] if out["predicted"] else None,
               disagrees=disagrees(out["observed"], out["predicted"]))
    return out


def sample_overlap(leg: dict, config) -> dict:
    """The observed share of checks that found a walker beside the model's, for one leg of a
    result and the run's ``config`` (its dict, with ``walk_window``); None for a strategy not
    in ``SKIPS_WHEN_IDLE``, a leg without figures (cut short, not run) or without checks.

    Keys: ``checks``, ``hits``, ``observed`` (hits / checks), ``rate_per_s`` (λ: outside IPI
    rounds when the leg has ``walks_in_rounds``), ``own_time_s`` (c), ``window_s`` (w),
    ``predicted`` (``hit_share`` at the measured λ, c),
    ``kernel_own_time_s``, ``kernel_predicted`` (at the kernel's c, same λ and w), ``ratio``
    (observed / predicted; None if predicted is 0) and ``disagrees`` (they differ by more than
    ``DISAGREE_FACTOR`` either way, or one is zero and the other is not)."""
    if leg.get("strategy") not in SKIPS_WHEN_IDLE or leg.get("status", "ok") != "ok" \
            or leg.get("serialisations") is None or leg.get("skipped") is None:
        return None
    # A PTE-table slot's tlb_remove_table is a serialising step that checks no walker.
    failures = leg.get("batch_failures") or 0
    hits = leg["serialisations"] - failures
    checks = hits + leg["skipped"] - (leg.get("frees_deferred") or 0)
    if checks <= 0:
        return None
    rounds = leg.get("ipi_round_s") or {}
    in_rounds = rounds["mean"] * rounds["n"] if rounds.get("n") and rounds.get("mean") else 0.0
    wall = leg["wall_s"]
    own_time = max(0.0, wall - in_rounds) / checks
    span = max(wall, leg.get("deferred_free_s") or 0.0)
    walks, outside = leg["walks"], span
    if leg.get("walks_in_rounds") is not None:
        walks, outside = walks - leg["walks_in_rounds"], span - in_rounds
    rate = max(0, walks) / outside if outside > 0 else 0.0
    window = config["walk_window"]
    observed = hits / checks
    gaps = leg.get("check_gap_histogram")
    if gaps and gaps["counts"]:
        predicted = hit_share_of_gaps(rate, gaps, window)
    else:
        predicted = hit_share(rate, own_time, window)
    return {
        "checks": checks, "hits": hits, "observed": observed,
        "rate_per_s": rate, "own_time_s": own_time, "window_s": window,
        "predicted": predicted,
        "kernel_own_time_s": KERNEL_OWN_TIME_S,
        "kernel_predicted": hit_share(rate, KERNEL_OWN_TIME_S, window),
        "ratio": observed / predicted if predicted else None,
        "disagrees": disagrees(observed, predicted),
    }


def disagrees(observed: float, predicted: float) -> bool:
    """More than ``DISAGREE_FACTOR`` apart either way, or one zero and the other not."""
    if observed == 0 or predicted == 0:
        return (observed == 0) != (predicted == 0)
    return max(observed / predicted, predicted / observed) > DISAGREE_FACTOR
