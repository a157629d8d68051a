"""Files given to the seed's steps are told apart by content (simplify/image/spec take either order)."""

import json

import pytest

from nuskybgd_engine.commands._forms import file_kind, sort_inputs
from nuskybgd_engine.errors import BadConfigError


def test_file_kinds(tmp_path):
    (tmp_path / "b.json").write_text(json.dumps({"bgfiles": []}))
    (tmp_path / "f.json").write_text(json.dumps({"parameters": [], "bgdinfo": "x"}))
    (tmp_path / "s.xcm").write_text("# saved\nstatistic cstat\ndata 1:1 a.pha\n")
    (tmp_path / "o.json").write_text("[1, 2]")
    (tmp_path / "t.txt").write_text("hello\n")
    assert [file_kind(tmp_path / n) for n in ("b.json", "f.json", "s.xcm")] == ["bgdinfo", "fit", "xcm"]
    for name in ("o.json", "t.txt", "nosuch.xcm"):
        with pytest.raises(BadConfigError, match=name):
            file_kind(tmp_path / name)
    got = sort_inputs([tmp_path / "s.xcm", tmp_path / "b.json"], {"xcm", "bgdinfo"})
    assert got == {"xcm": tmp_path / "s.xcm", "bgdinfo": tmp_path / "b.json"}
    with pytest.raises(BadConfigError, match="two"):
        sort_inputs([tmp_path / "b.json", tmp_path / "b.json"], {"bgdinfo", "xcm"})
    with pytest.raises(BadConfigError, match="expected"):
        sort_inputs([tmp_path / "f.json"], {"bgdinfo", "xcm"})
