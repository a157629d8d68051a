"""User GTIs (nuproducts ``usrgtifile``): intersection, exposure scaling, products, real GTI layouts.

Expected values are computed here independently: intersections by sampling time on a fine grid,
event selections with numpy on the raw columns, the dead-time ratio from the file's DEADC keyword.
"""

import numpy as np
import pytest
from astropy.io import fits

from nuskybgd_engine.cli import main
from nuskybgd_engine.errors import BadConfigError
from nuskybgd_engine.io.aspect import read_aspect
from nuskybgd_engine.io.events import read_events
from nuskybgd_engine.io.gti import Gti, apply_gti, gti_paths, intersect_gtis, read_gti, write_gti
from nuskybgd_engine.io.regions import RegionSet
from nuskybgd_engine.maps import aspect_histogram, make_counts_image
from nuskybgd_engine.spectra.extract import extract_spectrum

T0 = 275856515.0  # TSTART of the solar file; its GTI is [T0, T0 + 101 s)


def sampled_exposure(gtis, lo, hi, step=0.01):
    """Good time common to all ``gtis`` by sampling [lo, hi) every ``step`` seconds."""
    t = np.arange(lo, hi, step) + step / 2
    good = np.ones(t.shape, dtype=bool)
    for g in gtis:
        good &= np.any((t[:, None] >= g.start[None]) & (t[:, None] < g.stop[None]), axis=1)
    return good.sum() * step


@pytest.mark.parametrize("seed", range(5))
def test_intersection_matches_sampling(seed):
    rng = np.random.default_rng(seed)
    gtis = []
    for _ in range(3):
        edges = np.sort(rng.uniform(0, 100, 2 * rng.integers(2, 7)))
        gtis.append(Gti(edges[::2], edges[1::2]))
    try:
        got = intersect_gtis([(f"g{k}", g) for k, g in enumerate(gtis)]).exposure
    except BadConfigError:
        got = 0.0
    assert got == pytest.approx(sampled_exposure(gtis, 0, 100), abs=0.05)


def test_overlapping_rows_are_merged():
    g = Gti([0, 0, 5, 30], [10, 10, 20, 40])
    assert g.exposure == 30.0 and len(g) == 2
    assert g.contains([9.5, 15, 25, 35]).tolist() == [True, True, False, True]
    # Rows that only touch are kept as they are (files without overlaps are unchanged).
    assert len(Gti([0, 10], [10, 20])) == 2


def test_gti_paths_forms():
    assert gti_paths("a.fits, b.fits") == ["a.fits", "b.fits"]
    assert gti_paths(["a.fits", "b.fits,c.fits"]) == ["a.fits", "b.fits", "c.fits"]
    assert gti_paths("NONE") == [] and gti_paths(None) == []


@pytest.mark.requires_data
def test_real_gti_layouts(data_dir):
    usr = read_gti(data_dir / "nustar-gen-utils/usrgti.fits")  # ext STDGTI, 8 rows
    assert len(usr) == 8 and usr.exposure == pytest.approx(81096.0, abs=1)
    dup = read_gti(data_dir / "heasoft-test-base/time_gti.fits")  # 2 identical rows
    assert len(dup) == 1 and dup.exposure == pytest.approx(100.0, abs=0.01)
    obs = read_gti(data_dir / "nustarFittingExample/nu80415201001A06_gti.fits")
    # Different years: nothing in common, one clear line naming both.
    with pytest.raises(BadConfigError) as exc:
        intersect_gtis([("usrgti.fits", usr)], base=obs, base_name="nu80415201001A06_gti.fits")
    text = str(exc.value)
    assert "no good time left" in text and "usrgti.fits" in text and "nu80415201001A06_gti.fits" in text


@pytest.fixture(scope="module")
def solar(solar_events):
    path, raw, header = solar_events
    return path, raw, float(header["DEADC"])


@pytest.fixture
def user_gtis(tmp_path):
    paths = {}
    for name, (lo, hi) in {"u1": (10, 60), "u2": (40, 90), "far": (-1e6, -1e6 + 50)}.items():
        paths[name] = tmp_path / f"{name}.fits"
        write_gti(Gti([T0 + lo], [T0 + hi]), paths[name])
    return paths


@pytest.mark.requires_data
def test_real_events_with_user_gti(solar, user_gtis):
    path, raw, deadc = solar
    ev = read_events(path)
    cut = apply_gti(ev, str(user_gtis["u1"]))
    keep = (raw["TIME"] >= T0 + 10) & (raw["TIME"] < T0 + 60)
    assert len(cut) == int(keep.sum()) and len(ev) == len(raw["TIME"])  # the original is untouched
    assert cut.header["ONTIME"] == pytest.approx(50.0)
    assert cut.exposure == pytest.approx(50.0 * deadc, rel=1e-9)  # LIVETIME/ONTIME of the file = DEADC
    assert cut.gti.exposure == pytest.approx(50.0)
    # Two user GTIs (comma-separated, or a list): their overlap with the event GTI, 20 s.
    both = apply_gti(ev, f"{user_gtis['u1']},{user_gtis['u2']}")
    assert both.header["ONTIME"] == pytest.approx(20.0)
    assert apply_gti(ev, [str(user_gtis["u1"]), str(user_gtis["u2"])]).exposure == pytest.approx(both.exposure)
    with pytest.raises(BadConfigError, match="no good time left"):
        apply_gti(ev, str(user_gtis["far"]))


@pytest.mark.requires_data
def test_real_products_carry_the_user_gti_exposure(solar, user_gtis):
    path, raw, deadc = solar
    ev = read_events(path)
    img = make_counts_image(ev, 3, 20, gti=str(user_gtis["u1"]))
    sel = (raw["TIME"] >= T0 + 10) & (raw["TIME"] < T0 + 60) & (raw["PI"] >= 35) & (raw["PI"] <= 459)
    assert img.counts == int(sel.sum())
    assert img.header["EXPOSURE"] == pytest.approx(50.0 * deadc) and img.header["USRGTI"].endswith("u1.fits")
    rs = extract_spectrum(ev, RegionSet.from_string("image\nbox(1048.5,1630.5,140,140,0)\n"),
                          gti=[str(user_gtis["u1"]), str(user_gtis["u2"])])
    inside = ((raw["X"] >= 979) & (raw["X"] <= 1118) & (raw["Y"] >= 1561) & (raw["Y"] <= 1700)
              & (raw["GRADE"] <= 26) & (raw["TIME"] >= T0 + 40) & (raw["TIME"] < T0 + 60))
    assert rs.total_counts == int(inside.sum())
    spec = rs.spectrum
    assert spec.exposure == pytest.approx(20.0 * deadc)
    assert spec.gti.exposure == pytest.approx(20.0)
    gti_ext = next(h for h in spec.extra_hdus if h.name == "GTI")
    assert gti_ext.header["EXPOSURE"] == pytest.approx(20.0 * deadc) and gti_ext.header["ONTIME"] == pytest.approx(20)


@pytest.mark.requires_data
def test_real_aspect_histogram_with_user_gti(data_dir, tmp_path):
    base = data_dir / "nustarFittingExample"
    track = read_aspect(base / "nu80415201001A_det1.fits.gz")
    obs = read_gti(base / "nu80415201001A06_gti.fits")  # 274283401-274284608, 274285429-274286987
    usr = Gti([274284000.0], [274285800.0])  # overlaps the end of the first and the start of the second
    full = aspect_histogram(track, obs)
    part = aspect_histogram(track, [obs, usr])
    expected = sampled_exposure([obs, usr], 274283000, 274287100, step=0.5)
    assert expected == pytest.approx(608 + 371, abs=1)
    assert part.exposure == pytest.approx(expected, rel=0.01)
    assert part.exposure < full.exposure
    path = tmp_path / "usr.fits"
    write_gti(usr, path)
    from nuskybgd_engine.maps.aspecthist import aspect_histogram_from_files

    same = aspect_histogram_from_files(base / "nu80415201001A_det1.fits.gz", base / "nu80415201001A06_gti.fits",
                                       usrgti=str(path))
    assert same.exposure == pytest.approx(part.exposure)


@pytest.mark.requires_data
@pytest.mark.slow
def test_real_cli_usrgti_forms(solar, user_gtis, tmp_path, monkeypatch, capsys):
    path = str(solar[0])
    monkeypatch.chdir(tmp_path)
    (tmp_path / "r.reg").write_text("image\nbox(1048.5,1630.5,140,140,0)\n")
    u1, u2 = str(user_gtis["u1"]), str(user_gtis["u2"])
    assert main(["getspecnoarf", path, "reg=r.reg", "outprefix=a", f"usrgti={u1},{u2}"]) == 0
    assert main(["getspecnoarf", path, "reg=r.reg", "outprefix=b", f"usrgti={u1}", f"usrgti={u2}"]) == 0
    ha, hb = fits.getheader("a_sr.pha", "SPECTRUM"), fits.getheader("b_sr.pha", "SPECTRUM")
    assert ha["EXPOSURE"] == hb["EXPOSURE"] == pytest.approx(20.0 * solar[2])
    assert ha["TOTCTS"] == hb["TOTCTS"]
    capsys.readouterr()
    assert main(["getspecnoarf", path, "reg=r.reg", "outprefix=c", f"usrgti={user_gtis['far']}"]) == 2
    err = capsys.readouterr().err.strip()
    assert "no good time left" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "c_sr.pha").exists()
    assert main(["aspecthist", f"events={path}", f"usrgti={u1}", "out=asp.fits"]) == 0
    assert fits.getheader("asp.fits")["EXPOSURE"] == pytest.approx(50.0, abs=1.0)


@pytest.mark.slow
def test_prepare_observation_with_user_gti(tmp_path):
    """The in-memory observation (dashboard, batch) takes user GTIs for every product."""
    from nuskybgd_engine.observation import prepare_observation
    from nuskybgd_engine.simulate import SimulationSpec, simulate_observation

    simulate_observation(tmp_path, SimulationSpec(obsid="60000000001", seed=3, exposure=2000.0))
    obsdir = tmp_path / "60000000001"
    evt = obsdir / "event_cl" / "nu60000000001A01_cl.evt"
    with fits.open(evt) as hdul:
        times = np.asarray(hdul["EVENTS"].data["TIME"])
        h = hdul["EVENTS"].header
        ratio = h["LIVETIME"] / h["ONTIME"]
        own = Gti(hdul["GTI"].data["START"], hdul["GTI"].data["STOP"])
    t0, t1 = own.start.min(), own.stop.max()
    usr = Gti([t0 + 0.2 * (t1 - t0)], [t0 + 0.7 * (t1 - t0)])
    obs = prepare_observation(obsdir, modules=("A",), gti=usr)["A"]
    ontime = sampled_exposure([own, usr], t0, t1, step=0.1)
    assert obs.events.gti.exposure == pytest.approx(ontime, abs=0.5)
    assert obs.events.exposure == pytest.approx(obs.events.gti.exposure * ratio)
    assert obs.image.header["EXPOSURE"] == pytest.approx(obs.events.exposure)
    in_own = np.any((times[:, None] >= own.start[None]) & (times[:, None] < own.stop[None]), axis=1)
    in_usr = (times >= usr.start[0]) & (times < usr.stop[0])
    assert len(obs.events) == int(np.sum(in_own & in_usr)) < len(times)
    assert obs.aspect.exposure == pytest.approx(ontime, rel=0.01)
