"""The documents lpw_mp writes, each with one owner: its name, its version and the history of
its versions, its JSON Schema, the header a writer stamps on it, and ``load``, which a reader
calls before it reads a single key (pyperf keeps the same beside its ``_JSON_VERSION``).

A new version: bump ``version``, add a line to ``history``, ship ``<kind>-v<N>.json`` in
``schemas/`` and register it there; readers refuse other versions with one line."""

import json
from dataclasses import dataclass

from lpw_mp.results import schemas


class FormatError(ValueError):
    """A document that is missing, unreadable, of another format or version, or invalid
    against its schema; the message is one line naming the file and what is wrong."""


@dataclass(frozen=True)
class Format:
    name: str
    version: int
    #: What the document is, in messages: "lpw_mp result".
    title: str
    #: The file it is written to in its folder, what such a folder is called, and where a
    #: reader of that folder should look instead.
    filename: str
    folder: str
    contents: str
    #: ``(version, what changed)``, oldest first.
    history: tuple

    def header(self) -> dict:
        """The keys every document of this format starts with."""
        return {"format": self.name, "format_version": self.version}

    def problem(self, document) -> str:
        """Why ``document`` is not of this format and version, or "" if it is."""
        kind = document.get("format") if isinstance(document, dict) else None
        if kind != self.name:
            return f"is not an {self.title} (format {kind!r}, expected {self.name!r})"
        if document.get("format_version") != self.version:
            return (f"has {self.title.split()[-1]} format version "
                    f"{document.get('format_version')!r}; this lpw_mp reads version "
                    f"{self.version}")
        error = schemas.first_error(document, self.name, self.version)
        return f"is not a valid {self.title}: {error}" if error else ""

    def load(self, path: str) -> dict:
        """The document in the file ``path``, checked against this format; FormatError if it
        is not one."""
        try:
            with open(path, encoding="utf-8") as f:
                document = json.load(f)
        except (OSError, UnicodeDecodeError) as exc:
            raise FormatError(f"cannot read {path}: {getattr(exc, 'strerror', None) or exc}") \
                from None
        except json.JSONDecodeError as exc:
            raise FormatError(f"{path} is not an {self.title} (not JSON: {exc.msg} at line "
                              f"{exc.lineno})") from None
        problem = self.problem(document)
        if problem:
            raise FormatError(f"{path} {problem}")
        return document


RESULT = Format(
    name="lpw_mp-result", version=1, title="lpw_mp result", filename="result.json",
    folder="run", contents="its report.md has the tables",
    history=((1, "result.json of run and reproduce: command, config, host, legs (updater "
                 "figures, walker phase, violations), warnings, errors, status; reproduce "
                 "adds a reproduce section"),))

SWEEP = Format(
    name="lpw_mp-sweep", version=1, title="lpw_mp sweep", filename="sweep.json",
    folder="sweep", contents="its sweep.md has the table",
    history=((1, "sweep.json: command, base config, vary, host, points (each a run's legs "
                 "without violation examples), power-law fits, status"),))

FORMATS = (RESULT, SWEEP)

