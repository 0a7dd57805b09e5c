"""Run and sweep folders, written atomically: complete or absent, never replacing another."""

import ctypes
import errno
import json
import os
import secrets
import shutil
import time

from lpw_mp.results import sweeps
from lpw_mp.results.plot import write_plot
from lpw_mp.results.tables import format_markdown

#: Fresh ids drawn before giving up when every one is taken (one clash is 1 in 16 million).
ID_TRIES = 20
_AT_FDCWD, _RENAME_NOREPLACE = -100, 1
_renameat2 = getattr(ctypes.CDLL(None, use_errno=True), "renameat2", None)


def new_run_id() -> str:
    """Time-ordered and unique even for two runs started in the same second."""
    return time.strftime("%Y%m%d-%H%M%S") + "-" + secrets.token_hex(3)


def rename_noreplace(src: str, dst: str) -> None:
    """Rename ``src`` to ``dst``, or raise FileExistsError if ``dst`` exists, even as an empty
    folder (which a plain ``os.rename`` would silently replace)."""
    if _renameat2 is not None:
        if _renameat2(_AT_FDCWD, os.fsencode(src), _AT_FDCWD, os.fsencode(dst),
                      _RENAME_NOREPLACE) == 0:
            return
        err = ctypes.get_errno()
        if err not in (errno.EINVAL, errno.ENOSYS):  # EINVAL: the file system cannot do it
            raise OSError(err, os.strerror(err), dst)
    # Without renameat2: claim the name (mkdir is exclusive), then replace our own empty folder.
    os.mkdir(dst)
    os.rename(src, dst)


def write_file(path: str, text: str) -> None:
    """Write ``text`` to ``path`` and onto the disk, so that a folder renamed into place
    afterwards never holds a truncated file, even after a crash."""
    with open(path, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())


def write_through_temp(path: str, write):
    """``write(tmp)`` into a temporary file beside ``path``, renamed over ``path`` unless it
    returns False (nothing written: matplotlib would not import): a reader, or a crash, sees
    the old file or the new one whole, never a part. Returns what ``write`` returned."""
    tmp = os.path.join(os.path.dirname(path), f".{os.path.basename(path)}.{os.getpid()}.tmp")
    try:
        written = write(tmp)
        if written is not False:
            os.replace(tmp, path)
        return written
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def replace_file(path: str, text: str) -> None:
    """Put ``text`` at ``path`` whole (``write_through_temp``), on the disk."""
    write_through_temp(path, lambda tmp: write_file(tmp, text))


def write_folder(runs_dir: str, prefix: str, write, folder_id=None) -> str:
    """Make a new folder ``runs_dir/<prefix><id>/`` filled by ``write(stage, folder_id)``.

    ``write`` fills a hidden staging folder, renamed into place only if nothing has that name
    yet: the folder is complete or absent, and an existing one is never touched, even by
    another run that drew the same id at the same moment. On a clash a new id is drawn and
    ``write`` runs again. ``folder_id``, if given, is tried first. Returns the folder."""
    os.makedirs(runs_dir, exist_ok=True)
    stage = os.path.join(runs_dir, f".staging-{os.getpid()}-{secrets.token_hex(4)}")
    os.mkdir(stage)
    try:
        for _ in range(ID_TRIES):
            folder_id = folder_id or prefix + new_run_id()
            write(stage, folder_id)
            final = os.path.join(runs_dir, folder_id)
            try:
                rename_noreplace(stage, final)
                return final
            except FileExistsError:
                folder_id = None
        raise FileExistsError(errno.EEXIST, f"no free folder name after {ID_TRIES} tries",
                              runs_dir)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise


def write_run(result: dict, runs_dir: str, extra=None, files=None) -> str:
    """Write ``report.md`` and ``result.json`` into a new ``runs_dir/<run-id>/`` (see
    ``write_folder``); ``result["run_id"]``, if set, is tried first, and is set to the id used.
    ``extra`` maps more file names to functions rendering them from the result; ``files`` maps
    file names to functions writing them at a path (a trace), which run first, so that what
    they say of themselves in the result is in its files."""
    def write(stage, run_id):
        result["run_id"] = run_id
        for name, write_to in (files or {}).items():
            write_to(os.path.join(stage, name))
        write_file(os.path.join(stage, "result.json"), json.dumps(result, indent=2) + "\n")
        write_file(os.path.join(stage, "report.md"), format_markdown(result))
        for name, render in (extra or {}).items():
            write_file(os.path.join(stage, name), render(result))
    return write_folder(runs_dir, "", write, result.get("run_id"))


def start_sweep(manifest, runs_dir: str) -> str:
    """Make a new sweep folder ``runs_dir/sweep-<id>/`` holding ``manifest`` (a
    ``manifests.Manifest``, given the folder and its id) before any point runs: a sweep cut
    short leaves it for ``sweep --resume``. Returns the folder."""
    def write(stage, folder_id):
        manifest.doc["sweep_id"] = folder_id
        write_file(os.path.join(stage, "manifest.json"), manifest.text())
    manifest.folder = write_folder(runs_dir, "sweep-", write)
    return manifest.folder


def write_sweep(sweep: dict, folder: str, draw: bool = True) -> bool:
    """Write ``sweep.json``, ``sweep.md`` and (if ``draw``, with matplotlib) ``sweep.png`` into
    the sweep's folder, each replacing any earlier one whole (a resumed sweep's); True if the
    figure was drawn."""
    sweep["sweep_id"] = os.path.basename(folder)
    plotted = draw and write_through_temp(os.path.join(folder, "sweep.png"),
                                          lambda tmp: write_plot(sweep, tmp))
    replace_file(os.path.join(folder, "sweep.json"), json.dumps(sweep, indent=2) + "\n")
    replace_file(os.path.join(folder, "sweep.md"),
                 sweeps.format_markdown(sweep, "sweep.png" if plotted else None))
    return plotted
