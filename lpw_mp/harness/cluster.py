"""``sweep --cluster ADDRESS``: a sweep's points run on the workers of an existing
``dask.distributed`` scheduler, one point per host at a time.

``distributed`` is the ``cluster`` extra and is imported only here, inside the functions
that need it: a local sweep works without it. Every error is a ``ClusterError`` of one line,
which the command prints before anything runs (or, for a scheduler lost mid-sweep, after
keeping what finished).

What comes from Dask and what is ours:

- A worker must declare the resource ``host`` (``dask worker ADDRESS --nworkers 1
  --nthreads 1 --resources host=1``), and every point asks for ``host=1``: Dask's scheduler
  then never runs two points at once on one worker, whatever its thread count. A point
  uses every core of its host; two at once would measure each other.
- A worker runs its task in a thread; ``harness.point.run_point`` runs the point in a fresh
  process (a point forks hundreds of CPUs, which must not happen from a threaded process).
  That process dies with the worker (``PR_SET_PDEATHSIG``), and its CPUs with it.
- When a worker dies mid-task, Dask's scheduler re-runs the task elsewhere by itself, up to
  its own ``distributed.scheduler.allowed-failures`` (default 3) workers lost under it,
  before the client ever hears of it; only then does the future fail with
  ``KilledWorker``. On ``KilledWorker`` or a closed connection, ``run_points`` submits the
  point once more, under a new key; a second loss fails it. ``attempts`` counts our
  submissions only, not the scheduler's own re-runs.
- Cancelling a future (on Ctrl-C) releases it on the scheduler; a point already running on a
  worker runs on to its end there (Dask cannot stop a running task), and its result is
  dropped.
- Anyone who can reach the scheduler can run code on its workers and feed results back to
  its clients (tasks and results travel pickled): keep it on loopback or a private network,
  or require TLS with client certificates (``security_from``).
"""

import contextlib
import logging
import os
import socket
import uuid

from lpw_mp import __version__
from lpw_mp.harness.point import run_point
from lpw_mp.harness.signals import Interrupted

INSTALL = "pip install 'lpw_mp[cluster]'"
#: How a worker must be started (``{address}``: the scheduler's).
WORKER_COMMAND = "dask worker {address} --nworkers 1 --nthreads 1 --resources host=1"
#: The resource a point asks for, one per host.
RESOURCE = "host"
#: Submissions of a point whose worker was lost (the first, and one retry).
ATTEMPTS = 2


class ClusterError(Exception):
    """The scheduler cannot be used (unreachable, no fit workers, a bad TLS file) or was
    lost; the message is one line."""


def _distributed():
    """The ``distributed`` module, or a ClusterError saying how to install it."""
    try:
        import distributed
    except ImportError:
        raise ClusterError(f"--cluster needs dask.distributed, which is not installed: "
                           f"{INSTALL}") from None
    return distributed


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 300 else text[:297] + "..."


def security_from(tls_ca_file=None, tls_cert=None, tls_key=None):
    """A ``distributed.security.Security`` that requires encryption (``tls://`` addresses)
    and presents the client certificate ``tls_cert`` (and ``tls_key``, unless the
    certificate file holds the key), checked against ``tls_ca_file``; None when none is
    given. ClusterError if a file is missing or the set is incomplete."""
    given = {"--tls-ca-file": tls_ca_file, "--tls-cert": tls_cert, "--tls-key": tls_key}
    if not any(given.values()):
        return None
    for option, path in given.items():
        if path and not os.path.isfile(path):
            raise ClusterError(f"{option} {path}: no such file")
    if not tls_ca_file:
        raise ClusterError("--tls-cert and --tls-key need --tls-ca-file, the authority the "
                           "scheduler's certificate is checked against")
    if tls_key and not tls_cert:
        raise ClusterError("--tls-key needs --tls-cert")
    _distributed()
    from distributed.security import Security
    return Security(tls_ca_file=tls_ca_file, tls_client_cert=tls_cert,
                    tls_client_key=tls_key, require_encryption=True)


def _worker_identity() -> tuple:
    """Run on each worker at connection: the lpw_mp it would run points with, and its host.
    Pickled by reference, so a worker without lpw_mp fails to run it."""
    return __version__, socket.gethostname()


def connect(address: str, security=None, timeout: float = 10.0) -> "Cluster":
    """A ``Cluster`` on the scheduler at ``address`` whose every worker can take points.

    ClusterError (one line) if the scheduler cannot be reached within ``timeout`` seconds,
    has no worker, or has a worker that does not declare the resource ``host`` (naming it,
    and how to start one), that cannot import lpw_mp or runs another version of it."""
    distributed = _distributed()

    class Client(distributed.Client):
        def start(self, **kwargs):
            """Dask's, but a client that cannot connect stops the thread of its IO loop (a
            failed ``Client()`` leaves it running, and a process with a thread must not
            fork a machine's CPUs)."""
            try:
                super().start(**kwargs)
            except BaseException:
                with contextlib.suppress(Exception):
                    self.close()   # returns at once if Dask closed it already
                self._loop_runner.stop()   # a no-op if close() stopped it
                raise

    try:
        client = Client(address, security=security, timeout=timeout, set_as_default=False)
    except Exception as exc:  # OSError, TimeoutError, ValueError (a bad address), TLS errors
        raise ClusterError(f"cannot reach the dask scheduler at {address}: "
                           f"{_one_line(exc)}") from None
    try:
        return Cluster(client, address)
    except BaseException:
        client.close()
        raise


class Cluster:
    """A connected scheduler whose workers have been checked (``connect`` makes one)."""

    def __init__(self, client, address: str):
        self.client, self.address = client, address
        workers = self._workers()
        start = WORKER_COMMAND.format(address=address)
        if not workers:
            raise ClusterError(f"the dask scheduler at {address} has no workers: start one "
                               f"per host with `{start}`")
        for worker, info in sorted(workers.items()):
            if (info.get("resources") or {}).get(RESOURCE, 0) < 1:
                raise ClusterError(f"the dask worker {worker} does not declare the resource "
                                   f"'{RESOURCE}' (one point per host at a time): start "
                                   f"every worker with `{start}`")
        identities = self.client.run(_worker_identity, on_error="return")
        self.hosts = {}
        for worker, identity in sorted(identities.items()):
            if isinstance(identity, BaseException):
                raise ClusterError(f"the dask worker {worker} cannot run lpw_mp: "
                                   f"{type(identity).__name__}: {_one_line(identity)} "
                                   f"({INSTALL} where it runs)")
            version, hostname = identity
            if version != __version__:
                raise ClusterError(f"the dask worker {worker} runs lpw_mp {version}, this "
                                   f"is lpw_mp {__version__}: run the same version on both")
            self.hosts[worker] = hostname

    def _workers(self) -> dict:
        try:
            info = self.client.scheduler_info(n_workers=-1)
        except TypeError:  # distributed before n_workers: it gives every worker anyway
            info = self.client.scheduler_info()
        return info.get("workers", {})

    def describe(self) -> list:
        """The distinct hosts the workers run on (their host names), sorted: for a line such
        as "running 12 points on 3 hosts"."""
        return sorted(set(self.hosts.values()))

    def run_points(self, points, on_done, timeout=None) -> None:
        """Run every ``(index, config, argv)`` of ``points`` (``config``, a
        ``Config.to_dict()``) on the workers, and call ``on_done(index, outcome)`` in this
        thread as each one finishes, in the order they finish. ``outcome`` is
        ``{"status": "ok", "result": <annotated result document>, "attempts": n,
        "worker": address}`` or ``{"status": "failed", "error": "<one line>", "attempts":
        n}``; the result's ``host`` says where it ran. ``timeout`` (seconds) bounds each
        point on its worker.

        A point whose worker was lost (``KilledWorker``, after the scheduler's own
        ``allowed-failures`` re-runs; or a closed connection) is submitted once more; any
        other error (the point's own, ``PointError``) fails it at once. On
        ``KeyboardInterrupt`` or ``Interrupted`` every outstanding point is cancelled and
        the exception goes on. A scheduler lost mid-sweep is a ClusterError, raised with no
        more ``on_done`` calls: what finished before it has been handed over."""
        distributed = _distributed()
        from distributed.comm.core import CommClosedError
        lost_worker = (distributed.KilledWorker, CommClosedError)
        pending = {}   # future -> (index, config, argv, attempt)
        done = distributed.as_completed(loop=self.client.loop)

        def submit(index, config, argv, attempt):
            future = self.client.submit(run_point, config, argv, timeout,
                                        resources={RESOURCE: 1},
                                        key=f"lpw_mp-point-{index}-{uuid.uuid4().hex}",
                                        pure=False)
            pending[future] = (index, config, argv, attempt)
            done.add(future)

        try:
            for index, config, argv in points:
                submit(index, config, argv, 1)
            for future in done:
                index, config, argv, attempt = pending.pop(future)
                if future.cancelled():
                    raise ClusterError(self._lost_scheduler(future))
                exc = future.exception()
                if exc is None:
                    outcome = {"status": "ok", "result": future.result(), "attempts": attempt,
                               "worker": self._where(future)}
                elif isinstance(exc, lost_worker) and attempt < ATTEMPTS:
                    future.release()
                    submit(index, config, argv, attempt + 1)
                    continue
                else:
                    error = _one_line(exc)
                    if isinstance(exc, lost_worker):
                        error = (f"its worker was lost on each of {attempt} attempts "
                                 f"({type(exc).__name__}: {error})")
                    elif type(exc).__name__ != "PointError":
                        error = f"{type(exc).__name__}: {error}"
                    outcome = {"status": "failed", "error": error, "attempts": attempt}
                future.release()
                on_done(index, outcome)
        except (KeyboardInterrupt, Interrupted):
            if pending:
                self.client.cancel(list(pending))
            raise
        except ClusterError:
            raise
        except (OSError, CommClosedError, distributed.TimeoutError) as exc:
            raise ClusterError(f"lost the dask scheduler at {self.address}: "
                               f"{_one_line(exc)}") from None

    def _lost_scheduler(self, future) -> str:
        """Why a future we did not cancel was cancelled: the client lost the scheduler (it
        cancels every future then), or something else did (a restart of the scheduler)."""
        try:
            future.result()
            why = "the point was cancelled on the scheduler"
        except Exception as exc:   # FutureCancelledError: its msg says why
            why = getattr(exc, "msg", None) or getattr(exc, "reason", None) or \
                "the point was cancelled on the scheduler"
        return f"lost the dask scheduler at {self.address}: {_one_line(why)}"

    def _where(self, future):
        """The worker that holds ``future``'s result (the one that ran it), or None."""
        try:
            holders = self.client.who_has([future]).get(future.key) or []
        except Exception:   # only informative: a result must not be lost for it
            return None
        return holders[0] if holders else None

    def close(self) -> None:
        """Disconnect. After a lost scheduler, Dask's client logs the reconnection it gives up
        as an error with a traceback; the ClusterError has said it in one line already."""
        logger = logging.getLogger("distributed.client")
        level = logger.level
        logger.setLevel(logging.CRITICAL)
        try:
            self.client.close()
        finally:
            logger.setLevel(level)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
