"""Progress bars for long runs (tqdm), shown only on a terminal."""

import sys

from tqdm import tqdm

# tqdm's monitor is a thread that outlives the bar; a CPU forked while it holds a lock (its
# own, or stdio's) could hang on first use of it. The emulator forks only from a
# single-threaded parent, so no bar may start one.
tqdm.monitor_interval = 0


def progress_factory(cfg, stream=None):
    """A factory of per-strategy progress callbacks, or None when not on a terminal.

    A callback takes ``(done, total)``; ``(None, None)`` closes the bar."""
    stream = stream or sys.stderr
    if not stream.isatty():
        return None

    def make(strategy):
        bar = None

        def update(done, total):
            nonlocal bar
            if done is None:
                if bar is not None:
                    bar.close()
                return
            if bar is None:
                if not total:
                    return
                bar = tqdm(total=total, desc=f"{strategy:>7}", unit="op", file=stream,
                           leave=False, dynamic_ncols=True)
            bar.n = done
            bar.refresh()
        return update
    return make
