"""The commands read every ds9 region through our parser (physical frame, sectors, skipped shapes)."""

from __future__ import annotations

import numpy as np
import pytest
from astropy.io import fits

from nuskybgd_engine.cli import main
from nuskybgd_engine.io.ogip import read_pha

from ..conftest import make_event_hdul


def test_getspecnoarf_physical_panda_with_a_point_and_an_exclude(tmp_path, capsys):
    hdul = make_event_hdul(n=6000, seed=5)
    d = hdul["EVENTS"].data
    d["X"], d["Y"], d["GRADE"] = np.round(d["X"]), np.round(d["Y"]), 0
    evt = tmp_path / "ev.evt"
    hdul.writeto(evt)
    reg = tmp_path / "sector.reg"
    reg.write_text("# Region file format: DS9 version 4.1\n"
                   "global color=green\n"
                   "physical\n"
                   "panda(500,500,30,250,4,20,120.5,3)\n"
                   "-circle(450,520,15.5)\n"
                   "point(500,500) # point=x\n")
    out = tmp_path / "out"
    out.mkdir()
    assert main(["getspecnoarf", str(evt), f"reg={reg}", f"outdir={out}"]) == 0
    assert f"note: {reg} line 6: point skipped" in capsys.readouterr().out
    # physical = the X/Y column values: select by hand
    e = fits.getdata(evt, "EVENTS")
    dx, dy = e["X"] - 500.0, e["Y"] - 500.0
    r2 = dx ** 2 + dy ** 2
    phi = np.degrees(np.arctan2(dy, dx)) % 360
    keep = (r2 > 20 ** 2) & (r2 <= 120.5 ** 2) & (phi >= 30) & (phi < 250)
    keep &= (e["X"] - 450.0) ** 2 + (e["Y"] - 520.0) ** 2 > 15.5 ** 2
    keep &= (e["PI"] >= 0) & (e["PI"] < 4096)
    assert 500 < keep.sum() == read_pha(out / "sector_sr.pha").total_counts


def test_region_errors_name_file_and_line(tmp_path, capsys):
    hdul = make_event_hdul(n=100, seed=5)
    evt = tmp_path / "ev.evt"
    hdul.writeto(evt)
    reg = tmp_path / "bad.reg"
    reg.write_text("fk5\ncircle(10,10,3\")\nlinear\ncircle(1,1,1)\n")
    out = tmp_path / "out"
    out.mkdir()
    assert main(["getspecnoarf", str(evt), f"reg={reg}", f"outdir={out}"]) == 2
    err = capsys.readouterr().err.strip()
    assert f"{reg} line 3: coordinate system 'linear" in err and "\n" not in err


@pytest.mark.slow
def test_dashboard_imports_sectors_annuli_and_physical(tmp_path):
    from nuskybgd_engine.simulate import SimulationSpec, simulate_observation
    from nuskybgd_widgets.app import build_app

    obsid = "90000000007"
    simulate_observation(tmp_path, SimulationSpec(obsid=obsid, seed=7, exposure=15000.0))
    app = build_app(data_root=tmp_path, workspace=tmp_path / "ws")
    app.panels["data"].path.value = obsid
    app.panels["data"].load()
    reg = tmp_path / obsid / "regions" / "sect.reg"
    reg.write_text("physical\npanda(500,500,30,250,4,20,120.5,3)\n"
                   "ellipse(300,300,10,5,30,15,20)\n-bpanda(500,500,0,90,1,4,2,40,20,1,10)\n")
    app.panels["image"].import_regions(str(reg))
    assert app.session.region_names() == ["sect"]
    assert "imported sect (3 shape(s))" in app.panels["image"].message.value
    im = app.panels["image"]
    xs = np.concatenate([np.asarray(m.x, float).ravel() for m in im.view.region_lines.values()])
    assert np.isfinite(xs).sum() > 100  # the outlines are drawn
