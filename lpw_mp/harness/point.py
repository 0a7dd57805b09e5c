"""One sweep point in a process of its own: ``python -m lpw_mp.harness.point`` reads
``{"config": <Config.to_dict()>, "argv": [...]}`` on stdin, runs it (``runner.run``, then
``verdicts.annotate``) and writes the result document on stdout.

This is what a ``sweep --cluster`` worker runs (``run_point``). A Dask worker runs its tasks
in threads, and a point forks hundreds of processes: forking from a threaded process can
deadlock the child, so the point never runs inside the worker, always in a fresh process.
That process asks to be killed with its parent (``die_with_parent``), and the machine's CPUs
ask the same of it, so a worker that is killed takes its point and every CPU of it along.
(Linux ties ``PR_SET_PDEATHSIG`` to the parent's thread: the worker thread that started the
point waits in ``run_point`` for it to end, so it outlives it.)

A bad input (not JSON, a configuration that does not validate, one this host cannot start)
is one line on stderr and exit status 2; a run that fails is a result document like any
other (``runner.run`` never raises for a failed leg)."""

import json
import os
import subprocess
import sys
import tempfile

from lpw_mp.harness.config import Config, ConfigError
from lpw_mp.harness.child import die_with_parent
from lpw_mp.harness.resources import preflight
from lpw_mp.harness.runner import run
from lpw_mp.results.verdicts import annotate

MODULE = "lpw_mp.harness.point"


class PointError(Exception):
    """A point that did not give a result document; the message is one line (the child's
    last line on stderr, or why it could not be started)."""


def config_from(values) -> Config:
    """The validated ``Config`` of ``values`` (a ``Config.to_dict()``; its derived keys are
    dropped). ``ConfigError`` for anything else.

    ``runs_dir`` is kept as given but not checked here: the point writes nothing (the caller
    writes the run folder, on its own host), and the caller's folder need not exist on a
    worker's."""
    if not isinstance(values, dict):
        raise ConfigError(f"the configuration must be a JSON object, not {type(values).__name__}")
    values = {k: v for k, v in values.items() if k not in Config.DERIVED_KEYS}
    runs_dir = values.get("runs_dir", Config.runs_dir)
    try:
        cfg = Config(**{**values, "runs_dir": tempfile.gettempdir()})
    except TypeError as exc:  # an unknown key: the caller runs another lpw_mp version
        raise ConfigError(f"not a configuration of this lpw_mp: {exc}") from None
    cfg.validate()
    cfg.runs_dir = runs_dir
    if cfg.trace:
        # runner.run would keep the traces in this process, which writes no run folder.
        raise ConfigError("--trace cannot run as a point of its own: its traces would not "
                          "reach the run folder")
    return cfg


def read_request(text: str):
    """``(Config, argv)`` from the JSON text on stdin; ``ConfigError`` if it is not one."""
    try:
        request = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"the request is not JSON ({exc.msg} at line {exc.lineno})") \
            from None
    if not isinstance(request, dict) or set(request) != {"config", "argv"}:
        raise ConfigError('the request must be a JSON object {"config": ..., "argv": [...]}')
    argv = request["argv"]
    if not isinstance(argv, list) or not all(isinstance(a, str) for a in argv):
        raise ConfigError("argv must be a list of strings")
    return config_from(request["config"]), argv


def main() -> int:
    die_with_parent(os.getppid())
    try:
        cfg, argv = read_request(sys.stdin.read())
        preflight(cfg)   # against this host's limits, which the caller could not see
    except ConfigError as exc:
        print(f"lpw_mp: error: {exc}", file=sys.stderr, flush=True)
        return 2
    # The result is the only thing on stdout: anything else written to fd 1 (by this process
    # or a CPU it forks) goes to stderr instead.
    out = os.fdopen(os.dup(1), "w", encoding="utf-8")
    os.dup2(2, 1)
    result = annotate(run(cfg, argv=argv))
    with out:
        json.dump(result, out)
    return 0


def run_point(config: dict, argv: list, timeout=None) -> dict:
    """Run one point (``config``, a ``Config.to_dict()``; ``argv``, the command it belongs
    to, recorded in the result) in a fresh ``python -m lpw_mp.harness.point`` and return its
    annotated result document. ``PointError`` (one line) if it gives none: a bad
    configuration, a host that cannot start it, a crash, or ``timeout`` seconds passed (the
    child is then killed, and its CPUs with it).

    A ``sweep --cluster`` worker runs this as its task; it needs only this package (the same
    version as the caller's) installed where it runs."""
    request = json.dumps({"config": config, "argv": list(argv)})
    try:
        proc = subprocess.run([sys.executable, "-m", MODULE], input=request, text=True,
                              capture_output=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise PointError(f"the point did not finish within {timeout:g} s") from None
    except OSError as exc:
        raise PointError(f"cannot start {sys.executable} -m {MODULE}: {exc}") from None
    if proc.returncode == 0:
        try:
            return json.loads(proc.stdout)
        except json.JSONDecodeError:
            pass
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    last = lines[-1].strip().removeprefix("lpw_mp: error: ") if lines else "no message"
    status = (f"killed by signal {-proc.returncode}" if proc.returncode < 0
              else f"exit status {proc.returncode}")
    raise PointError(f"the point failed ({status}): {last}")


if __name__ == "__main__":
    sys.exit(main())
