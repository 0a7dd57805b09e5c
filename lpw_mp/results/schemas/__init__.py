"""JSON Schemas of the documents lpw_mp writes, and validation against them.

``result-v2.json`` describes ``result.json`` (format ``lpw_mp-result``, version 2) and
``sweep-v2.json`` describes ``sweep.json`` (``lpw_mp-sweep``, version 2), which refers to the
first for the configuration, host and legs; ``result-v1.json`` and ``sweep-v1.json`` (which
refers to ``result-v1.json``) are kept to read older documents. A reader validates a document
before it reads a key, so that a document that only looks right (the right ``format``, keys
missing or of the wrong type) is refused with one line saying what is wrong and where."""

import functools
import json
from importlib import resources

import jsonschema
from referencing import Registry, Resource

#: (format, format_version) -> schema file in this package.
SCHEMAS = {("lpw_mp-result", 1): "result-v1.json", ("lpw_mp-result", 2): "result-v2.json",
           ("lpw_mp-sweep", 1): "sweep-v1.json", ("lpw_mp-sweep", 2): "sweep-v2.json"}
#: A message quoting a large part of the document is cut to this many characters.
MAX_MESSAGE = 160


def load(name: str) -> dict:
    return json.loads(resources.files(__package__).joinpath(name).read_text(encoding="utf-8"))


@functools.cache
def _registry() -> Registry:
    """Every shipped schema under its ``$id``, so that one can refer to another."""
    schemas = [Resource.from_contents(load(name)) for name in SCHEMAS.values()]
    return Registry().with_resources((schema.id(), schema) for schema in schemas)


@functools.cache
def validator(kind: str, version: int):
    schema = load(SCHEMAS[kind, version])
    cls = jsonschema.validators.validator_for(schema)
    return cls(schema, registry=_registry())


def first_error(document, kind: str, version: int):
    """The most relevant way ``document`` departs from the schema, on one line with its JSON
    path (``'config' is a required property (at top level)``); None if it is valid."""
    error = jsonschema.exceptions.best_match(validator(kind, version).iter_errors(document))
    if error is None:
        return None
    message = " ".join(error.message.split())
    if len(message) > MAX_MESSAGE:
        message = message[:MAX_MESSAGE - 3] + "..."
    where = error.json_path if error.absolute_path else "top level"
    return f"{message} (at {where})"
