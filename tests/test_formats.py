"""Each result format has one owner (lpw_mp.results.formats): its header, its history, and a
loader that refuses, on one line, anything that is not a valid document of its version."""

import json
import pathlib

import pytest

from lpw_mp.results import schemas
from lpw_mp.results.formats import FORMATS, RESULT, SWEEP, FormatError

(REFERENCE,) = map(str, (pathlib.Path(__file__).parents[1] / "runs" / "reference").glob(
    "*/result.json"))
#: A real sweep.json of format version 1 (three memory sizes, ipi and count, run once each),
#: written by the lpw_mp of the commit before --repeat.
SWEEP_V1 = str(pathlib.Path(__file__).parent / "data" / "sweep-v1.json")


def test_every_format_has_a_header_a_history_and_a_schema():
    """A writer stamps the header; the history's last entry is the current version; the
    schema for that version is shipped (an empty document is invalid against it)."""
    for fmt in FORMATS:
        assert fmt.header() == {"format": fmt.name, "format_version": fmt.version}
        assert fmt.history[-1][0] == fmt.version
        assert "is not a valid" in fmt.problem(fmt.header())


def test_a_real_result_loads(tmp_path):
    """The committed reference run loads as a result, and is refused as a sweep."""
    assert RESULT.load(REFERENCE)["config"]["cpus"] == 128
    with pytest.raises(FormatError, match=r"is not an lpw_mp sweep \(format 'lpw_mp-result'"):
        SWEEP.load(REFERENCE)


@pytest.mark.parametrize("content,message", [
    (None, "cannot read"),
    ("{", "is not an lpw_mp result (not JSON: Expecting property name"),
    ("[]", "is not an lpw_mp result (format None, expected 'lpw_mp-result')"),
    ('{"format": "lpw_mp-result", "format_version": 3}',
     "has result format version 3; this lpw_mp reads versions 1, 2"),
    ('{"format": "lpw_mp-result", "format_version": 2}',
     "is not a valid lpw_mp result: "),
    ('{"format": "lpw_mp-result", "format_version": 1}',
     "is not a valid lpw_mp result: "),
])
def test_anything_else_is_refused_on_one_line(tmp_path, content, message):
    """A missing file, broken JSON, another format, another version, or a document with the
    right header and nothing else: a FormatError of one line naming the file."""
    path = tmp_path / "result.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(FormatError) as info:
        RESULT.load(str(path))
    text = str(info.value)
    assert "\n" not in text and text.startswith(str(path) if content else "cannot read")
    assert message in text


def test_a_wrongly_typed_figure_is_named_with_its_path(tmp_path):
    """A valid document with one figure of the wrong type is refused with that figure's
    JSON path."""
    document = json.loads(open(REFERENCE).read())
    document["legs"][0]["wall_s"] = "fast"
    path = tmp_path / "result.json"
    path.write_text(json.dumps(document))
    with pytest.raises(FormatError, match=r"'fast' is not of type 'number' \(at \$\.legs\[0\]\."
                                          r"wall_s\)"):
        RESULT.load(str(path))


def test_a_version_1_sweep_loads_as_version_2():
    """A version 1 sweep is read as a version 2 one, valid against sweep-v2.json: its
    configuration says repeat 1, each ok leg is its own one sample (round 1, the leg's own
    figures), its figure is the time, and its fits are made again over those samples, with
    the version 2 fields (here three points, so an interval)."""
    with open(SWEEP_V1) as f:
        original = json.load(f)
    assert original["format_version"] == 1
    sweep = SWEEP.load(SWEEP_V1)
    assert sweep["format_version"] == 2 and sweep["config"]["repeat"] == 1
    assert sweep["metric"] == "time"
    assert schemas.first_error(json.loads(json.dumps(sweep)), SWEEP.name, 2) is None
    for before, after in zip(original["points"], sweep["points"]):
        for old, leg in zip(before["legs"], after["legs"]):
            (sample,) = leg["samples"]
            assert leg["repeats"] == leg["repeats_asked"] == sample["repeat"] == 1
            assert sample["wall_s"] == old["wall_s"] == leg["wall_s"]
            assert "strategy" not in sample and "warnings" not in sample
    assert [(f["strategy"], f["points"], f["samples"]) for f in sweep["fits"]] == [
        ("ipi", 3, 3), ("count", 3, 3)]
    for old, new in zip(original["fits"], sweep["fits"]):
        assert new["exponent"] == pytest.approx(old["exponent"])
        assert new["low"] < new["exponent"] < new["high"]


def test_a_sweep_of_a_later_version_is_refused_naming_the_versions_read(tmp_path):
    """A sweep of format version 3 is refused on one line that names the versions this
    lpw_mp reads."""
    path = tmp_path / "sweep.json"
    path.write_text('{"format": "lpw_mp-sweep", "format_version": 3}')
    with pytest.raises(FormatError, match="has sweep format version 3; this lpw_mp reads "
                                          "versions 1, 2$"):
        SWEEP.load(str(path))
