"""The documents lpw_mp writes, each with one owner: its name, its version and the history of
its versions, its JSON Schema, the header a writer stamps on it, and ``load``, which a reader
calls before it reads a single key (pyperf keeps the same beside its ``_JSON_VERSION``).

A new version: bump ``version``, add a line to ``history``, ship ``<kind>-v<N>.json`` in
``schemas/`` and register it there, and give ``upgrades`` a function that turns a document of
the previous version into one of the new: a reader then reads every version since the first
(checked against its own schema, then upgraded), and refuses others with one line."""

import json
from dataclasses import dataclass

from lpw_mp.results import schemas
from lpw_mp.results.repeats import sample_of


def read_json(path: str, error, what: str):
    """The JSON document in the file ``path``; ``error`` (an exception class) with one line
    naming the file if it cannot be read or is not JSON (``what`` it should be: "a trace")."""
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, UnicodeDecodeError) as exc:
        raise error(f"cannot read {path}: {getattr(exc, 'strerror', None) or exc}") from None
    except json.JSONDecodeError as exc:
        raise error(f"{path} is not {what} (not JSON: {exc.msg} at line {exc.lineno})") \
            from None


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
    #: ``version -> f(document)``: a document of that version as one of the next, in place.
    upgrades: dict = None

    def header(self) -> dict:
        """The keys every document of this format starts with."""
        return {"format": self.name, "format_version": self.version}

    def readable(self) -> list:
        """The versions a reader takes: this one and every one it can upgrade from."""
        return sorted({self.version, *(self.upgrades or {})})

    def problem(self, document) -> str:
        """Why ``document`` is not of this format and of a version it reads, or "" if it
        is. Call ``upgrade`` after."""
        kind = document.get("format") if isinstance(document, dict) else None
        if kind != self.name:
            return f"is not an {self.title} (format {kind!r}, expected {self.name!r})"
        version = document.get("format_version")
        readable = self.readable()
        if version not in readable or isinstance(version, bool):
            shown = ", ".join(map(str, readable))
            return (f"has {self.title.split()[-1]} format version {version!r}; this lpw_mp "
                    f"reads version{'s' if len(readable) > 1 else ''} {shown}")
        error = schemas.first_error(document, self.name, version)
        return f"is not a valid {self.title}: {error}" if error else ""

    def upgrade(self, document: dict) -> dict:
        """``document`` (valid, of a version it reads) as one of the current version."""
        while document["format_version"] < self.version:
            self.upgrades[document["format_version"]](document)
            document["format_version"] += 1
        return document

    def load(self, path: str) -> dict:
        """The document in the file ``path``, checked against this format; FormatError if it
        is not one."""
        document = read_json(path, FormatError, f"an {self.title}")
        problem = self.problem(document)
        if problem:
            raise FormatError(f"{path} {problem}")
        return self.upgrade(document)


def _legs_v1_to_v2(config: dict, legs: list) -> None:
    """Legs of a run of version 1, which ran every strategy once: each ok leg becomes its own
    one sample (round 1), and the configuration says ``repeat`` 1. In place."""
    config["repeat"] = 1
    for leg in legs:
        if leg.get("status") == "ok":
            leg.update(repeats=1, repeats_asked=1, samples=[sample_of(leg, 1)])


def _result_v1_to_v2(document: dict) -> None:
    _legs_v1_to_v2(document["config"], document["legs"])


RESULT = Format(
    name="lpw_mp-result", version=2, title="lpw_mp result", filename="result.json",
    folder="run", contents="its report.md has the tables",
    history=((1, "result.json of run and reproduce: command, config, host, legs (updater "
                 "figures, walker phase, violations), warnings, errors, status; reproduce "
                 "adds a reproduce section"),
             (2, "--repeat: config.repeat; an ok leg has samples (one row per repeat, with "
                 "its round), repeats, repeats_asked, figures that are medians over the "
                 "samples and intervals (median, low, high, n, confidence) per figure; "
                 "version 1 results are read as one-sample legs")),
    upgrades={1: _result_v1_to_v2})


def _sweep_v1_to_v2(document: dict) -> None:
    """A version 1 sweep ran every point once: its points' legs become one-sample legs, as a
    version 1 result's do, its figure is the time, and its fits are made again from the
    points (the same least squares, now with the exponent's interval)."""
    # Not at the top: sweeps reads documents this module loads.
    from lpw_mp.results.sweeps import fit_sweep

    _legs_v1_to_v2(document["config"], [leg for point in document["points"]
                                        for leg in point["legs"]])
    document["metric"] = "time"
    document["fits"] = fit_sweep(document)


SWEEP = Format(
    name="lpw_mp-sweep", version=2, title="lpw_mp sweep", filename="sweep.json",
    folder="sweep", contents="its sweep.md has the table",
    history=((1, "sweep.json: command, base config, vary, host, points (each a run's legs "
                 "without violation examples), power-law fits, status"),
             (2, "--repeat: config.repeat; points' legs are result version 2 legs (samples, "
                 "medians, intervals; no violation examples, in the samples either); metric, "
                 "the figure of the table and fits; fits over every sample, with points, "
                 "samples, the exponent's stderr and t interval (low, high, confidence) and "
                 "trend; version 1 sweeps are read as one-sample legs, their fits made again")),
    upgrades={1: _sweep_v1_to_v2})

FORMATS = (RESULT, SWEEP)

