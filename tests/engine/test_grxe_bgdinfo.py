"""bgdinfo key ``grxe`` (IDL ``grxe=``): one projected GRXE map per module, validated and written back."""

import json

import pytest

from nuskybgd_engine.bgdinfo import observation_subset, read_bgdinfo, write_bgdinfo
from nuskybgd_engine.errors import BadConfigError


def _files(tmp_path, tag=""):
    names = {"bg": f"bgA{tag}.pha", "reg": f"bgA{tag}.reg", "ap": f"bgdapA{tag}.fits", "grxe": f"bgdgrxeA{tag}.fits",
             "det": [f"det{i}Aim{tag}.fits" for i in range(4)]}
    for n in [names["bg"], names["reg"], names["ap"], names["grxe"], *names["det"]]:
        (tmp_path / n).write_text("")
    return {"bgfiles": [names["bg"]], "regfiles": [names["reg"]], "bgdapfiles": {"A": names["ap"]},
            "bgddetfiles": {"A": names["det"]}, "grxe": {"A": names["grxe"]}}


def _write(tmp_path, data):
    p = tmp_path / "bgdinfo.json"
    p.write_text(json.dumps(data))
    return p


def test_grxe_key_read_and_written_back(tmp_path):
    info = read_bgdinfo(_write(tmp_path, _files(tmp_path)), check_files=False)
    assert info.grxefiles == {"A": tmp_path / "bgdgrxeA.fits"}
    out = tmp_path / "sub" / "copy.json"
    out.parent.mkdir()
    write_bgdinfo(info, out)
    again = read_bgdinfo(out, check_files=False)
    assert again.grxefiles == {"A": (tmp_path / "bgdgrxeA.fits").resolve()}


def test_no_grxe_key_means_no_maps(tmp_path):
    data = _files(tmp_path)
    del data["grxe"]
    assert read_bgdinfo(_write(tmp_path, data), check_files=False).grxefiles == {}


@pytest.mark.parametrize("grxe, field, words", [
    ("bgdgrxeA.fits", "grxe", "must be an object"),
    ({}, "grxe.A", "every module needs a GRXE map"),
    ({"A": "bgdgrxeA.fits", "B": "bgdgrxeA.fits"}, "grxe.B", "no aperture map"),
    ({"A": "nothere.fits"}, "grxe.A", "file not found"),
])
def test_bad_grxe_key_is_one_line_naming_the_field(tmp_path, grxe, field, words):
    data = _files(tmp_path)
    data["grxe"] = grxe
    with pytest.raises(BadConfigError) as exc:
        read_bgdinfo(_write(tmp_path, data), check_files=False)
    assert exc.value.field == field and words in str(exc.value) and "\n" not in str(exc.value)
    assert "bgdinfo.json" in str(exc.value)


def test_grxe_per_observation(tmp_path):
    obs = [dict(_files(tmp_path, "1"), key="e1"), dict(_files(tmp_path, "2"), key="e2")]
    del obs[1]["grxe"]
    info = read_bgdinfo(_write(tmp_path, {"observations": obs}), check_files=False)
    assert [o.grxefiles for o in info.observations] == [{"A": tmp_path / "bgdgrxeA1.fits"}, {}]
    assert observation_subset(info, "e1").grxefiles == {"A": tmp_path / "bgdgrxeA1.fits"}
    assert observation_subset(info, "e2").grxefiles == {}
    with pytest.raises(BadConfigError, match="per observation or at the top level"):
        read_bgdinfo(_write(tmp_path, {"observations": obs, "grxe": {"A": "bgdgrxeA1.fits"}}), check_files=False)
