"""bgdinfo key ``grxe`` (IDL ``grxe=``): one projected GRXE map per module, validated and written back."""

import json
from dataclasses import replace

import numpy as np
import pytest
from astropy.io import fits

from nuskybgd_engine.bgdinfo import observation_subset, read_bgdinfo, write_bgdinfo
from nuskybgd_engine.errors import BadConfigError, CalibrationNotFoundError
from nuskybgd_engine.io.regions import RegionSet, SkyGrid
from nuskybgd_engine.maps.projection import ProjectedMaps
from nuskybgd_engine.model.background import region_weights
from nuskybgd_engine.model.components import COMPONENTS
from nuskybgd_engine.model.tablemodel import register_grxe_table, unregister_table_model
from nuskybgd_engine.simulate import sky_frame
from nuskybgd_engine.simulate.spec import SimulationSpec


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


def test_grxe_table_not_found_is_one_line(tmp_path, monkeypatch):
    monkeypatch.setenv("NUSKYBGD_AUXIL", str(tmp_path))
    with pytest.raises(CalibrationNotFoundError) as exc:
        register_grxe_table(cache=tmp_path / "cache")
    msg = str(exc.value)
    assert exc.value.field == "grxe" and "polarmodel.fits" in msg and "auxil fetch" in msg and "\n" not in msg


@pytest.mark.requires_data
def test_grxe_table_from_the_auxil(auxil_dir, monkeypatch):
    monkeypatch.setenv("NUSKYBGD_AUXIL", str(auxil_dir))
    comp = register_grxe_table()
    try:
        assert comp.name == "atable{polarmodel.fits}" and COMPONENTS[comp.name] is comp
    finally:
        unregister_table_model(comp.name)


def test_region_weights_take_g_from_the_maps():
    """``ProjectedMaps.grxe`` (read from bgdinfo's ``grxe``) fills G wherever weights are cut."""
    grid_maps = ProjectedMaps(bgdap=np.ones((1000, 1000)), det=[np.ones((1000, 1000))] * 4, header=fits.Header(),
                              module="A", exposure=1.0, grxe=np.full((1000, 1000), 0.5))
    grid = SkyGrid.from_header(fits.Header(sky_frame(SimulationSpec())), shape=(1000, 1000))
    regions = RegionSet.from_string("image\ncircle(500,500,10)")
    w = region_weights(regions, grid, grid_maps)
    assert w.G == pytest.approx(0.5 * w.W) and w.G > 0
    assert region_weights(regions, grid, replace(grid_maps, grxe=None)).G is None
