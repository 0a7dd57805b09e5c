"""The walker side of a strategy, measured on its own: the CPUs walk for a fixed time with no
updater running, so every strategy is timed over the same number of seconds, however fast its
updater side is."""

import time
from multiprocessing.connection import wait

from lpw_mp.harness.emulator import EmulatorError
from lpw_mp.kernel.machine import HIST_STEPS, Deadline
from lpw_mp.results.stats import hist_percentile, log_histogram

#: What each CPU adds to the bound on leaving the walker phase: a time slice of the host's
#: scheduler, with a margin (the CPUs walk back to back, so each uses its whole slice).
SETTLE_PER_CPU = 0.01


def measure_walkers(emu, seconds: float) -> dict:
    """Let every CPU of ``emu`` walk back to back for ``seconds``; return the walks per second
    and the time each walk spends in IRQ-disable + ``begin_lockless_pgtbl_walk`` and
    ``end_lockless_pgtbl_walk`` + IRQ-enable (the strategy's walker-side cost): mean, median
    and p99, and the whole IRQ-off window, with the two histograms they come from
    (``stats.log_histogram``: unit, bucket edges and counts).

    Back to back, the CPUs' caches are warm, so the median is the cost of the code itself,
    while all of them contend for whatever the strategy shares; the mean and p99 add what
    that contention (and host preemption) costs."""
    m = emu.machine
    before = emu.walker_stats()
    start = time.perf_counter()
    m.saturate.value = 1
    m.wake_all()
    sentinels = [proc.sentinel for proc in emu.cpus]
    try:
        while (left := seconds - (time.perf_counter() - start)) > 0:
            if wait(sentinels, timeout=left):
                emu.raise_if_cpu_died("while measuring the walker side")
    finally:
        for cpu in range(m.ncpus):
            m.settled[cpu] = 0
        m.saturate.value = 0
    elapsed = time.perf_counter() - start
    # The updater must not start while CPUs are still walking back to back: under count that
    # would turn skipped serialisations into broadcasts. Each CPU leaves once the host runs it
    # again, and all of them are runnable: the bound allows a pass of the host's scheduler.
    bound = emu.cfg.ipi_timeout + SETTLE_PER_CPU * m.ncpus
    deadline = Deadline(bound)
    # A poll registers every CPU's sentinel: at thousands of CPUs, poll less often.
    poll = max(0.002, m.ncpus * 5e-6)
    while not all(m.settled):
        if wait(sentinels, timeout=poll):
            emu.raise_if_cpu_died("while ending the walker phase")
        if deadline.expired():
            late = [cpu for cpu in range(m.ncpus) if not m.settled[cpu]]
            raise EmulatorError(f"simulated CPUs did not leave the walker phase within "
                                f"{bound:g} s under strategy {emu.strategy_name}: "
                                f"{emu.describe_cpus(late)}")
    # Read once every CPU has finished its last back-to-back walk, so that the counters and
    # the histograms describe the same walks.
    after = emu.walker_stats(since=before)
    walks = after["walks"]
    cost, window = after["cost_hist"], after["window_hist"]
    return {
        "seconds": elapsed,
        "walks": walks,
        "walks_per_s": walks / elapsed,
        "begin_end_median_ns": hist_percentile(cost, 50, HIST_STEPS),
        "begin_end_p99_ns": hist_percentile(cost, 99, HIST_STEPS),
        "begin_end_mean_ns": after["begin_end_ns"] / walks if walks else None,
        "irq_off_median_ns": hist_percentile(window, 50, HIST_STEPS),
        "irq_off_mean_ns": after["walk_ns"] / walks if walks else None,
        # The histograms the figures above come from, each with its unit and bucket edges:
        # HIST_STEPS buckets per doubling (9% wide at 8), the figures interpolated within one.
        "begin_end_histogram": log_histogram(cost, HIST_STEPS),
        "irq_off_histogram": log_histogram(window, HIST_STEPS),
        # What result-v1 requires and older documents have: every bucket of the first, and
        # the buckets per doubling (how finely the medians can tell two costs apart).
        "begin_end_hist": cost,
        "hist_steps": HIST_STEPS,
    }
