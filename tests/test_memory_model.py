"""The memory models behind the kernel primitives, shown with the classic litmus tests: two
CPUs (two ``Model``s, switched in and out as the primitives' current one) running a fixed
interleaving on shared words. Each outcome asserted is allowed or forbidden by the
architecture the model stands for (Documentation/memory-barriers.txt; x86-TSO; POWER)."""

import contextlib
from multiprocessing.sharedctypes import RawArray

import pytest

from lpw_mp.kernel import memory_model as mm
from lpw_mp.kernel.memory_model import (READ_ONCE, WRITE_ONCE, Model, atomic_inc, atomic_read,
                                        smp_load_acquire, smp_mb, smp_rmb, smp_store_release,
                                        smp_wmb)


@pytest.fixture(autouse=True)
def plain_afterwards():
    yield
    mm.install("sc")


class CPUs:
    """Two or more CPUs' models in this one process; ``on(n)`` runs a block as CPU n."""

    def __init__(self, kind, n=2, adversarial=True, seed=0):
        self.models = [Model(kind, adversarial, seed=f"{seed}/{c}") for c in range(n)]

    @contextlib.contextmanager
    def on(self, cpu):
        mm._mm = self.models[cpu]
        try:
            yield
        finally:
            mm._mm = None


def words(n=2):
    return RawArray("q", n)


def store_buffering(kind, barrier):
    """SB: CPU 0 stores x and loads y; CPU 1 stores y and loads x. Both loads reading 0
    means each store was still buffered when the other CPU loaded."""
    x, y = words(1), words(1)
    cpus = CPUs(kind)
    with cpus.on(0):
        WRITE_ONCE(x, 0, 1)
        if barrier:
            smp_mb()
    with cpus.on(1):
        WRITE_ONCE(y, 0, 1)
        if barrier:
            smp_mb()
    with cpus.on(0):
        r0 = READ_ONCE(y, 0)
    with cpus.on(1):
        r1 = READ_ONCE(x, 0)
    return r0, r1


@pytest.mark.parametrize("kind,expected", [("sc", (1, 1)), ("tso", (0, 0)), ("weak", (0, 0))])
def test_store_buffering_is_seen_under_tso_and_weak_only(kind, expected):
    """Without barriers, x86 and POWER let both loads miss the other CPU's store (a store
    followed by a load of another word is reordered); sequential consistency does not."""
    assert store_buffering(kind, barrier=False) == expected


@pytest.mark.parametrize("kind", ["sc", "tso", "weak"])
def test_smp_mb_forbids_store_buffering(kind):
    """With smp_mb() between each CPU's store and load, at least one load sees a store."""
    assert store_buffering(kind, barrier=True) != (0, 0)


def message_passing(kind, writer_barrier=None, reader_barrier=None, drain=False):
    """MP: CPU 0 writes data then flag (``drain``: then a full barrier, so both are out);
    CPU 1 read data once before, then reads flag and data. ``(1, 0)``, the flag seen with
    the old data, needs a reordering of the two stores or of the two loads."""
    data, flag = words(1), words(1)
    cpus = CPUs(kind)
    with cpus.on(1):
        READ_ONCE(data, 0)              # an earlier read a weak CPU may still answer from
    with cpus.on(0):
        WRITE_ONCE(data, 0, 1)
        if writer_barrier:
            writer_barrier()
        WRITE_ONCE(flag, 0, 1)
        if drain:
            smp_mb()
    with cpus.on(1):
        seen_flag = READ_ONCE(flag, 0)
        if reader_barrier:
            reader_barrier()
        seen_data = READ_ONCE(data, 0)
    return seen_flag, seen_data


def test_message_passing_breaks_under_weak_without_barriers():
    """POWER reorders two stores, and two loads: the flag is seen, the data is not."""
    assert message_passing("weak") == (1, 0)


def test_message_passing_holds_under_tso():
    """x86 keeps stores in order and loads in order: a seen flag means seen data."""
    assert message_passing("tso") == (0, 0)            # both still buffered
    assert message_passing("tso", drain=True) == (1, 1)


def test_message_passing_under_weak_needs_both_wmb_and_rmb():
    """smp_wmb() on the writer and smp_rmb() on the reader restore the order; either alone
    does not: without the wmb the flag passes the data, without the rmb the data read is
    answered from before the flag read."""
    assert message_passing("weak", smp_wmb, smp_rmb, drain=True) == (1, 1)
    assert message_passing("weak", None, smp_rmb) == (1, 0)
    assert message_passing("weak", smp_wmb, None, drain=True) == (1, 0)


def test_a_cpu_sees_its_own_stores_first():
    """Store forwarding: a CPU reads its own buffered store, before anyone else can."""
    x = words(1)
    cpus = CPUs("tso")
    with cpus.on(0):
        WRITE_ONCE(x, 0, 7)
        assert READ_ONCE(x, 0) == 7
    assert x[0] == 0
    with cpus.on(1):
        assert READ_ONCE(x, 0) == 0


@pytest.mark.parametrize("seed", range(20))
def test_stores_to_one_word_stay_in_order_under_weak(seed):
    """Coherence: however a weak CPU's buffer drains, the last store to a word wins, and a
    CPU that reads a word after its own store never sees an older value."""
    x, y = words(1), words(1)
    cpus = CPUs("weak", adversarial=False, seed=seed)
    with cpus.on(0):
        for value in range(1, 6):
            WRITE_ONCE(x, 0, value)
            WRITE_ONCE(y, 0, value)
            assert READ_ONCE(x, 0) == value
        smp_mb()
    assert (x[0], y[0]) == (5, 5)


def test_release_store_is_not_passed_by_nor_passes_earlier_stores():
    """smp_store_release: the data written before it is visible no later than the flag."""
    data, flag = words(1), words(1)
    cpus = CPUs("weak")
    with cpus.on(0):
        WRITE_ONCE(data, 0, 1)
        smp_store_release(flag, 0, 1)
    assert (flag[0], data[0]) == (0, 0)   # both still buffered; neither passed the other
    mm._mm = cpus.models[0]
    cpus.models[0]._drain_one()
    assert (flag[0], data[0]) == (0, 1)   # the data first
    mm._mm = None


def test_acquire_load_orders_later_loads():
    """smp_load_acquire: a load after it is not answered from before it (no stale value)."""
    data, flag = words(1), words(1)
    cpus = CPUs("weak")
    with cpus.on(1):
        READ_ONCE(data, 0)
    data[0], flag[0] = 1, 1
    with cpus.on(1):
        assert smp_load_acquire(flag, 0) == 1
        assert READ_ONCE(data, 0) == 1


def test_weak_load_is_stale_at_most_once():
    """A weak CPU's view lags, but catches up: the second read of a word sees memory."""
    x = words(1)
    cpus = CPUs("weak")
    with cpus.on(0):
        assert READ_ONCE(x, 0) == 0
    x[0] = 1
    with cpus.on(0):
        assert READ_ONCE(x, 0) == 0
        assert READ_ONCE(x, 0) == 1


class FakeMachine:
    def __init__(self):
        self.stop = RawArray("b", 1)
        self.doing = RawArray("b", 2)


@pytest.mark.parametrize("kind,visible", [("sc", 1), ("tso", 1), ("weak", 0)])
def test_atomic_inc_is_unordered_only_under_weak(kind, visible):
    """atomic_inc implies no barrier (Documentation/atomic_t.txt): on POWER it may become
    visible late, while its own CPU already reads it; on x86 it is a LOCK'd instruction that
    also drains the stores before it."""
    import multiprocessing
    ctx = multiprocessing.get_context("fork")
    counter = mm.atomic_t(ctx, FakeMachine(), "walkers")
    x = words(1)
    cpus = CPUs(kind)
    with cpus.on(0):
        WRITE_ONCE(x, 0, 1)
        atomic_inc(counter)
        assert atomic_read(counter) == 1
    assert counter.words.value == visible
    assert x[0] == (1 if kind != "weak" else 0)
    with cpus.on(0):
        smp_mb()
    assert counter.words.value == 1 and x[0] == 1


def test_the_plain_path_installs_nothing():
    """sc with no step hook and no log is the measured path: no model, plain accesses."""
    assert mm.install("sc") is None and mm.current() is None
    x = words(1)
    WRITE_ONCE(x, 0, 3)
    assert x[0] == 3 and READ_ONCE(x, 0) == 3


def test_an_unknown_model_is_refused():
    """A model name not in MODELS is a ValueError naming the choices."""
    with pytest.raises(ValueError, match="sc, tso, weak"):
        Model("arm")


def test_a_run_records_and_reports_its_memory_model(tmp_path, capsys):
    """--memory-model reaches the run: result.json's configuration records it, and the
    report's first line says that the timings are the model's (an sc run says nothing)."""
    import json
    from lpw_mp.commands.cli import main
    runs = tmp_path / "runs"
    base = ["--cpus", "2", "--memory", "16M", "--strategy", "percpu", "--walker-time", "0.1",
            "--runs-dir", str(runs)]
    assert main([*base, "--memory-model", "tso", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["config"]["memory_model"] == "tso"
    assert main([*base, "--memory-model", "weak"]) == 0
    first = capsys.readouterr().out.splitlines()[0]
    assert "memory model weak (stores buffered" in first
    assert main(base) == 0
    assert "memory model" not in capsys.readouterr().out.splitlines()[0]


@pytest.mark.parametrize("kind,release,expected", [
    ("weak", False, ([], 1)),     # the store is visible, the earlier use not yet satisfied
    ("weak", True, ([0], 0)),     # a release store waits for the use (and the buffer)
    ("tso", False, ([0], 0)),     # x86: loads are satisfied in order, stores wait
])
def test_a_store_passes_an_earlier_use_only_under_weak(kind, release, expected):
    """Load->store: under weak a walker's use of what it read may be satisfied only at its
    next barrier, and a later store (its end of walk) can become visible first; a release
    store, or tso, keeps the order. Once the barrier comes, the late use sees memory as it is
    then."""
    x, y = words(1), words(1)
    cpus = CPUs(kind)
    seen = []
    with cpus.on(0):
        mm._mm.defer(lambda: seen.append(x[0]), "the use")
        (smp_store_release if release else WRITE_ONCE)(y, 0, 1)
    assert (seen, y[0]) == expected
    x[0] = 1                        # another CPU writes once it sees y (or not)
    with cpus.on(0):
        smp_mb()
    assert seen[-1] == (1 if expected[0] == [] else 0) and y[0] == 1
