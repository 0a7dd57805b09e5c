"""The JSON Schemas shipped in lpw_mp/schemas: the documents the product really writes validate,
and compare refuses mutilated ones on one line, with the JSON path of what is wrong."""

import copy
import json

import jsonschema
import pytest

from lpw_mp.results import schemas
from lpw_mp.commands.cli import main
from test_cli import assert_refused

pytestmark = pytest.mark.timeout(90)

RESULT, SWEEP = ("lpw_mp-result", 2), ("lpw_mp-sweep", 2)
TINY = ["--cpus", "2", "--memory", "16M", "--walker-time", "0.1"]


@pytest.fixture(scope="module")
def real_result(tmp_path_factory):
    """result.json of a tiny real run of every strategy, made once for the module."""
    runs = tmp_path_factory.mktemp("schema") / "runs"
    assert main([*TINY, "--strategy", "all", "--runs-dir", str(runs), "--quiet"]) == 0
    (folder,) = list(runs.iterdir())
    return folder / "result.json"


def test_the_shipped_schemas_are_valid_json_schemas():
    """Each schema is itself valid under the metaschema it names, and loads from the package."""
    for name in schemas.SCHEMAS.values():
        schema = schemas.load(name)
        jsonschema.validators.validator_for(schema).check_schema(schema)


def test_a_real_result_validates(real_result):
    """The result.json a real run writes, with every strategy and a walker phase, is valid
    against result-v1.json, checked both through lpw_mp and by jsonschema on its own."""
    document = json.loads(real_result.read_text())
    assert {leg["strategy"] for leg in document["legs"]} == {"ipi", "count", "percpu", "v5.8",
                                                             "sync-one", "sync-mm", "none"}
    assert all(leg["walker_side"] for leg in document["legs"])
    assert schemas.first_error(document, *RESULT) is None
    schemas.validator(*RESULT).validate(document)


def test_legs_that_did_not_run_validate(real_result):
    """A failed, interrupted or not-run leg carries no figures, and a run interrupted by a
    signal names it: both are valid results too."""
    document = json.loads(real_result.read_text())
    document["status"], document["signal"] = "interrupted", "SIGINT"
    document["legs"][1:] = [
        {"strategy": "count", "safe": True, "kernel": "v5", "status": "failed", "error": "x"},
        {"strategy": "rcu", "safe": True, "kernel": "v5.8", "status": "interrupted"},
        {"strategy": "none", "safe": False, "kernel": "-", "status": "not run"}]
    assert schemas.first_error(document, *RESULT) is None


def test_a_real_sweep_validates(tmp_path):
    """The sweep.json a real two-point sweep with two repeats writes is valid against
    sweep-v2.json, whose configuration, host and legs are the result format's: every leg
    keeps its two samples, and neither the leg nor its samples keep violation examples."""
    runs = tmp_path / "runs"
    assert main(["sweep", "--vary", "memory=8M,16M", "--strategy", "ipi,rcu", "--cpus", "2",
                 "--walker-time", "0", "--repeat", "2", "--runs-dir", str(runs),
                 "--quiet"]) == 0
    (folder,) = list(runs.iterdir())
    document = json.loads((folder / "sweep.json").read_text())
    assert len(document["points"]) == 2 and document["config"]["repeat"] == 2
    legs = [leg for point in document["points"] for leg in point["legs"]]
    assert all(len(leg["samples"]) == 2 and leg["repeats"] == 2 for leg in legs)
    assert not any("examples" in row["violations"] for leg in legs
                   for row in (leg, *leg["samples"]))
    assert schemas.first_error(document, *SWEEP) is None
    broken = copy.deepcopy(document)
    del broken["points"][1]["legs"][0]["wall_s"]
    assert schemas.first_error(broken, *SWEEP) == \
        "'wall_s' is a required property (at $.points[1].legs[0])"


def _set(path, value):
    """A mutation setting (or, for ``DELETE``, removing) the key at ``path``."""
    def mutate(document):
        *parents, last = path
        target = document
        for key in parents:
            target = target[key]
        if value is DELETE:
            del target[last]
        else:
            target[last] = value
    return mutate


DELETE = object()

#: Documents with the right format header that the schema refuses: name -> (mutation, message).
MUTILATED = {
    "no config": (_set(["config"], DELETE), "'config' is a required property (at top level)"),
    "header only": (lambda d: [d.pop(k) for k in list(d) if not k.startswith("format")],
                    "is a required property (at top level)"),
    "legs not a list": (_set(["legs"], {}), "{} is not of type 'array' (at $.legs)"),
    "no legs": (_set(["legs"], []), "(at $.legs)"),
    "time as text": (_set(["legs", 0, "wall_s"], "1 s"),
                     "'1 s' is not of type 'number' (at $.legs[0].wall_s)"),
    "negative time": (_set(["legs", 0, "wall_s"], -1),
                      "-1 is less than the minimum of 0 (at $.legs[0].wall_s)"),
    "an ok leg without figures": (_set(["legs", 1, "ipi_round_s"], DELETE),
                                  "'ipi_round_s' is a required property (at $.legs[1])"),
    "a median as text": (_set(["legs", 0, "ipi_round_s", "median"], "fast"),
                         "(at $.legs[0].ipi_round_s.median)"),
    "unknown status": (_set(["status"], "done"), "(at $.status)"),
    "a leg without a strategy": (_set(["legs", 0, "strategy"], DELETE),
                                 "'strategy' is a required property (at $.legs[0])"),
    "host cores as text": (_set(["host", "usable_cores"], "2"),
                           "'2' is not of type 'integer' (at $.host.usable_cores)"),
    "cpus as a float": (_set(["config", "cpus"], 2.5),
                        "2.5 is not of type 'integer' (at $.config.cpus)"),
    "interrupted without a signal": (_set(["status"], "interrupted"),
                                     "'signal' is a required property (at top level)"),
    "no violation examples": (_set(["legs", 0, "violations", "examples"], DELETE),
                              "'examples' is a required property (at $.legs[0].violations)"),
    "no violation examples in a sample": (
        _set(["legs", 0, "samples", 0, "violations", "examples"], DELETE),
        "'examples' is a required property (at $.legs[0].samples[0].violations)"),
}


@pytest.mark.parametrize("kind", MUTILATED)
def test_compare_refuses_a_mutilated_result(tmp_path, real_result, capsys, kind):
    """A result.json with the right format and version but a key missing or of the wrong
    type: compare exits 2 with one line naming the file, the first problem and its JSON path,
    and prints no table."""
    mutate, message = MUTILATED[kind]
    document = json.loads(real_result.read_text())
    mutate(document)
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(document))
    code = main(["compare", str(real_result), str(bad)])
    captured = capsys.readouterr()
    assert_refused(code, captured.err, f"{bad} is not a valid lpw_mp result: ")
    assert message in captured.err, captured.err
    assert captured.out == ""


def test_a_huge_wrong_value_is_quoted_short(tmp_path, real_result, capsys):
    """A message that would quote a large part of the document is cut: still one short line."""
    document = json.loads(real_result.read_text())
    document["legs"] = [list(range(100_000))]
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(document))
    code = main(["compare", str(real_result), str(bad)])
    err = capsys.readouterr().err
    assert_refused(code, err, "... (at $.legs[0])")
    assert len(err) < 300 + len(str(bad))
