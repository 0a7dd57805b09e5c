"""Each result format has one owner (lpw_mp.results.formats): its header, its history, and a
loader that refuses, on one line, anything that is not a valid document of its version."""

import json
import pathlib

import pytest

from lpw_mp.results.formats import FORMATS, RESULT, SWEEP, FormatError

(REFERENCE,) = map(str, (pathlib.Path(__file__).parents[1] / "runs" / "reference").glob(
    "*/result.json"))


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
