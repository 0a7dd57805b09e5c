"""A sweep's manifest (``manifest.json`` in its folder): the plan of the sweep and the state of
every point, rewritten atomically each time a point ends, so that a sweep cut short (Ctrl-C, a
scheduler that went away, a host that rebooted) leaves a folder that ``sweep --resume``
completes, running only the points that are not done.

A point's state: ``pending`` (not run yet), ``done`` (its run finished: it keeps its record,
as sweep.json's ``points`` has it), ``failed`` (its run failed, or its host was lost twice:
run again by ``--resume``), ``interrupted`` (cut short: run again)."""

import json
import os

from lpw_mp.results.folders import replace_file

FORMAT, FORMAT_VERSION = "lpw_mp-sweep-manifest", 1
FILENAME = "manifest.json"
STATES = ("pending", "done", "failed", "interrupted")


class ManifestError(ValueError):
    """A folder without a readable manifest of this version; one line."""


class Manifest:
    """The manifest of the sweep folder ``folder``: ``argv`` (the sweep's own command line,
    which plans it again), and per point its ``values``, ``state``, ``attempts``, ``record``
    and ``error``."""

    def __init__(self, folder: str, document: dict):
        self.folder, self.doc = folder, document

    @classmethod
    def new(cls, argv: list, points: list, command: list) -> "Manifest":
        """The manifest of a sweep about to run ``points`` (``[(values, Config)]``), not yet
        in a folder (``start``)."""
        return cls(None, {"format": FORMAT, "format_version": FORMAT_VERSION,
                          "command": command, "argv": list(argv), "sweep_id": None,
                          "points": [{"index": i, "values": values, "state": "pending",
                                      "attempts": 0, "record": None, "error": None}
                                     for i, (values, _) in enumerate(points)]})

    @classmethod
    def load(cls, folder: str) -> "Manifest":
        path = os.path.join(folder, FILENAME)
        if not os.path.isdir(folder):
            raise ManifestError(f"--resume {folder}: not a folder")
        try:
            with open(path, encoding="utf-8") as f:
                doc = json.load(f)
        except FileNotFoundError:
            raise ManifestError(f"--resume {folder}: no {FILENAME} (not a sweep folder, or "
                                f"one written before sweeps could be resumed)") from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ManifestError(f"--resume {folder}: cannot read its {FILENAME}: "
                                f"{getattr(exc, 'strerror', None) or exc}") from None
        if not isinstance(doc, dict) or doc.get("format") != FORMAT:
            raise ManifestError(f"--resume {folder}: {FILENAME} is not a sweep manifest")
        if doc.get("format_version") != FORMAT_VERSION:
            raise ManifestError(f"--resume {folder}: manifest version "
                                f"{doc.get('format_version')!r}; this lpw_mp reads "
                                f"{FORMAT_VERSION}")
        points = doc.get("points")
        if (not isinstance(doc.get("argv"), list) or not isinstance(points, list)
                or any(not isinstance(p, dict) or p.get("state") not in STATES
                       for p in points)):
            raise ManifestError(f"--resume {folder}: {FILENAME} is damaged (argv, points)")
        return cls(folder, doc)

    @property
    def points(self) -> list:
        return self.doc["points"]

    def todo(self) -> list:
        """The indexes of the points to run: every one not done."""
        return [p["index"] for p in self.points if p["state"] != "done"]

    def text(self) -> str:
        return json.dumps(self.doc, indent=1) + "\n"

    def ended(self, index: int, state: str, record=None, error=None) -> None:
        """Point ``index`` ended in ``state``, with its record (done, or a failed run's) or
        the error that cost it; written at once."""
        point = self.points[index]
        point.update(state=state, record=record, error=error, attempts=point["attempts"] + 1)
        self.save()

    def save(self) -> None:
        """Rewrite the manifest in its folder, atomically (a crash leaves the old or the new)."""
        replace_file(os.path.join(self.folder, FILENAME), self.text())
