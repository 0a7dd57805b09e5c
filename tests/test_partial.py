"""A leg cut short keeps what was known of it: interrupted by SIGINT at a chosen point of a real
run (from inside the progress display, which the runner calls at that point), the leg is
``interrupted`` with its ``partial`` figures, in a result that validates, and its row in the
tables shows them."""

import signal

import pytest

from lpw_mp.harness.progress import Progress
from lpw_mp.harness.runner import run
from lpw_mp.results import schemas
from lpw_mp.results.formats import RESULT
from lpw_mp.results.tables import format_markdown, format_terminal
from lpw_mp.results.verdicts import annotate

pytestmark = pytest.mark.timeout(60)


class InterruptAt(Progress):
    """A display that sends this process SIGINT, once, when the runner reaches ``point``."""

    def __init__(self, point):
        self.point = point
        self.sent = False

    def _maybe(self, point):
        if point == self.point and not self.sent:
            self.sent = True
            signal.raise_signal(signal.SIGINT)

    def cpus_started(self, count):
        self._maybe(("cpus_started", count))

    def walker_phase(self):
        self._maybe("walker_phase")

    def ops(self, done, total):
        if done:  # the first time the parent sees operations done
            self._maybe("ops")


def interrupted_run(cfg, point, **overrides):
    values = dict(strategies=["ipi", "count"], cpus=2, walker_time=0.1)
    values.update(overrides)
    display = InterruptAt(point)
    result = run(cfg(**values), progress=display)
    assert display.sent
    assert result["status"] == "interrupted" and result["signal"] == "SIGINT"
    assert [leg["status"] for leg in result["legs"]] == ["interrupted", "not run"]
    annotate(result)
    result["run_id"] = "test"
    assert schemas.first_error(result, "lpw_mp-result", RESULT.version) is None
    return result, result["legs"][0]["partial"]


def test_a_leg_interrupted_during_the_operation_keeps_its_figures(cfg):
    """SIGINT once the parent sees operations done, in a munmap of 131,072 THPs under ipi:
    the leg keeps how many operations were done of how many, their time, the IPIs sent (two
    CPUs: two per round), the IPI rounds (at least one per operation done, at most one more),
    the walks and its finished walker phase; the tables show them, marked INTERRUPTED, with a
    line saying how far it got."""
    result, part = interrupted_run(cfg, "ops", memory=256 << 30, pte_fraction=0.0)
    assert part["phase"] == "operation"
    assert part["operations_total"] == 131072
    assert 0 < part["operations_done"] < 131072
    assert part["op_elapsed_s"] > 0
    assert part["operations_done"] <= part["ipi_rounds_at_least"] \
        <= part["operations_done"] + 1
    assert part["ipis_sent"] == 2 * part["ipi_rounds_at_least"]
    assert part["violations"]["total"] == 0
    assert part["walker_side"]["walks"] > 0
    done = f"{part['operations_done']:,}"
    for text in (format_terminal(result, width=100), format_terminal(result, width=160),
                 format_markdown(result)):
        # ipi's rows, of however many tables the layout has
        rows = " ".join(line for line in text.splitlines()
                        if line.strip("| ").startswith("ipi "))
        assert "INTERRUPTED" in rows
        assert f">={part['ipi_rounds_at_least']:,}" in rows
        assert f"{part['ipis_sent']:,}" in rows
        assert f"ipi was interrupted during the munmap after {done} of 131,072 operations" \
            in text
        assert f"{part['walker_side']['walks_per_s']:,.0f}" in text  # its walker phase


def test_a_leg_interrupted_in_its_walker_phase_says_so(cfg):
    """SIGINT at the start of the walker phase: the leg is interrupted in that phase, with
    every CPU started, no operation figures and no walker phase to show."""
    result, part = interrupted_run(cfg, "walker_phase")
    assert part["phase"] == "walker phase"
    assert part["cpus_started"] == 2
    assert (part["operations_done"], part["operations_total"], part["op_elapsed_s"]) == \
        (0, None, None)
    assert part["walker_side"] is None
    assert "ipi was interrupted during its walker phase" in format_terminal(result, width=100)


def test_a_leg_interrupted_while_its_cpus_start_says_how_many_had(cfg):
    """SIGINT as the first of four CPUs is forked: the fork is finished and recorded first
    (signals wait for it), then the leg stops, saying that 1 of 4 CPUs had started."""
    result, part = interrupted_run(cfg, ("cpus_started", 1), cpus=4)
    assert part["phase"] == "starting"
    assert part["cpus_started"] == 1
    assert "ipi was interrupted while starting its CPUs (1 of 4 started)" in \
        format_terminal(result, width=100)
