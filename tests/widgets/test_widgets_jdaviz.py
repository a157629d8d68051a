"""The optional jdaviz bridge, driven by a stand-in Imviz (jdaviz itself is an optional ~1 GB extra)."""

import sys

import pytest
from regions import CirclePixelRegion, PixCoord

from nuskybgd_engine.errors import BadConfigError
from nuskybgd_engine.simulate import SimulationSpec, simulate_observation
from nuskybgd_widgets.jdaviz_bridge import import_jdaviz, open_imviz, session_import_imviz_regions
from nuskybgd_widgets.session import Session


class FakeSubsetTools:
    def __init__(self, owner):
        self.owner = owner

    def get_regions(self):
        return dict(self.owner.drawn)


class FakeImviz:
    """Records what is loaded; 'drawn' plays the user's drawing in the Imviz window."""

    def __init__(self):
        self.data, self.loaded, self.drawn = {}, [], {}
        self.plugins = {"Subset Tools": FakeSubsetTools(self)}

    def load_data(self, hdu, data_label=None):
        self.data[data_label] = hdu

    def load_regions(self, shapes):
        self.loaded.extend(shapes)


@pytest.fixture(scope="module")
def session(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    simulate_observation(root, SimulationSpec(obsid="90000000071", seed=3, exposure=8000.0, source="none"))
    s = Session(data_root=root, workspace=tmp_path_factory.mktemp("ws"))
    s.load("90000000071", demo_regions=False)
    return s


def test_missing_jdaviz_is_one_line(monkeypatch):
    monkeypatch.setitem(sys.modules, "jdaviz", None)
    with pytest.raises(BadConfigError, match=r"jdaviz is not available.*\[jdaviz\]"):
        import_jdaviz()


@pytest.mark.slow
def test_regions_round_trip_through_imviz(session):
    obs = session.observation
    # A region of the session goes to Imviz with the counts image and its WCS ...
    x, y = obs.grid.wcs.world_to_pixel_values(obs["A"].image.header["CRVAL1"], obs["A"].image.header["CRVAL2"])
    session.add_region(CirclePixelRegion(PixCoord(float(x), float(y)), 40.0), name="bgd1")
    imviz = open_imviz(session, "A", imviz=FakeImviz())
    (hdu,) = imviz.data.values()
    assert hdu.data.shape == (1000, 1000) and hdu.header["CTYPE1"] == "RA---TAN"
    assert [r.meta["label"] for r in imviz.loaded] == ["bgd1"]
    # ... and what the user draws there (astropy regions objects) comes back as session regions.
    drawn = CirclePixelRegion(PixCoord(float(x) + 70, float(y) - 30), 35.0)
    moved = CirclePixelRegion(PixCoord(float(x) - 5, float(y) + 5), 40.0)
    imviz.drawn = {"Subset 1": drawn, "bgd1": moved}
    names = session_import_imviz_regions(session, imviz)
    assert names == ["Subset_1", "bgd1"]
    assert session.region("Subset_1").regions[0].shape is drawn
    assert session.region("bgd1").regions[0].shape.center.x == pytest.approx(float(x) - 5)
    assert len(session.spectrum_names()) == 2 * len(session.region_names("background"))
