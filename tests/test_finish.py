"""The end of every command that produces a result (run, reproduce, sweep): a signal that
arrives while the result is written waits until the folder is complete and its path printed,
and a runs folder that became unwritable during the command costs the folder, not the
result."""

import json
import os
import shutil
import signal
import subprocess
import sys

import pytest

from lpw_mp.harness import runner
from lpw_mp.commands.cli import main

pytestmark = pytest.mark.timeout(120)

TINY = ["--cpus", "2", "--memory", "8M", "--walker-time", "0", "--strategy", "ipi"]
COMMANDS = {
    "run": ([], "result.json"),
    "reproduce": (["reproduce"], "reproduce.md"),
    "sweep": (["sweep", "--vary", "cpus=1,2"], "sweep.json"),
}

#: Runs lpw_mp with a SIGTERM sent to itself in the middle of writing the result folder.
SIGTERM_WHILE_WRITING = """
import os, signal, sys
from lpw_mp.results import folders
from lpw_mp.commands.cli import main

real = folders.write_file
def write_file(path, text):
    os.kill(os.getpid(), signal.SIGTERM)
    real(path, text)
folders.write_file = write_file
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.parametrize("command", COMMANDS)
def test_sigterm_while_the_result_is_written_still_prints_where_it_is(tmp_path, command):
    """SIGTERM arrives while the result folder is being written: the folder is completed and
    renamed into place, its path is printed, and only then does the signal end the process
    (killed by SIGTERM, as the sender asked). No staging folder is left."""
    words, expected = COMMANDS[command]
    runs = tmp_path / "runs"
    proc = subprocess.run([sys.executable, "-c", SIGTERM_WHILE_WRITING, *words, *TINY, "-q",
                           "--runs-dir", str(runs)], capture_output=True, text=True, timeout=100)
    assert proc.returncode == -signal.SIGTERM, proc.stderr
    folder = proc.stdout.strip()
    assert folder and os.path.isdir(folder), proc.stdout
    assert os.listdir(runs) == [os.path.basename(folder)]
    assert os.path.isfile(os.path.join(folder, expected))
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize("command", COMMANDS)
def test_a_runs_folder_that_became_unwritable_prints_the_result(tmp_path, monkeypatch, capsys,
                                                                command):
    """The runs folder is replaced by a file while the command runs (after the check made
    before it started; a sweep's folder, made at its start, goes with it): the command prints
    its result document as JSON on stdout, one line on stderr saying the folder could not be
    written (a sweep first says, once, that its manifest can no longer be kept), and exits
    1."""
    words, _ = COMMANDS[command]
    runs = tmp_path / "runs"
    calls = []
    real_now = runner.now

    def now():
        calls.append(1)
        if len(calls) == 2:  # the end of the first run: the runs folder goes away
            shutil.rmtree(runs, ignore_errors=True)
            runs.write_text("not a folder")
        return real_now()

    monkeypatch.setattr(runner, "now", now)
    code = main([*words, *TINY, "-q", "--runs-dir", str(runs)])
    out, err = capsys.readouterr()
    assert code == 1
    lines = err.splitlines()
    if command == "sweep":
        assert lines.pop(0).startswith("lpw_mp: warning: cannot update the sweep's manifest")
    assert len(lines) == 1 and "could not write a run folder" in lines[0]
    document = json.loads(out)
    assert document["format"] == ("lpw_mp-sweep" if command == "sweep" else "lpw_mp-result")
    assert document["status"] == "complete"
