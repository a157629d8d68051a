"""Every real file in ../shared/data and ../shared/nustar-auxil loads with the reader for its kind."""

import pytest

pytestmark = pytest.mark.requires_data

# (glob under shared/data, reader name); the readers are resolved lazily so that import errors show per file.
CASES = [
    ("nustar_sac/*_cl_sunpos.evt", "events"),
    ("toa_extractor/nustar_test.evt.gz", "events_time_pi"),
    ("nustarFittingExample/*_det1.fits.gz", "aspect"),
    ("nustarFittingExample/*_gti.fits", "gti"),
    ("heasoft-test-base/time_gti.fits", "gti"),
    ("nustar-gen-utils/usrgti.fits", "gti"),
    ("nustarFittingExample/*_bp.fits", "badpix"),
    ("nustarFittingExample/*_hp.fits", "badpix"),
    ("nustarFittingExample/*_sr.pha", "pha"),
    ("nustar_axions/*_sr.pha", "pha"),
    ("nustar_background/*.pha", "pha"),
    ("nustarFittingExample/*_sr.arf", "arf"),
    ("nustar_axions/*_sr.arf", "arf"),
    ("nustar-gen-utils/*_sr.arf", "arf"),
    ("caldb-detabs-arf-mccal/nuA20100101v006.arf", "arf"),
    ("caldb-rmf-hendrics/*.rmf.gz", "rmf"),
    ("caldb-pixpos-nuwavsource/*.fits.gz", "pixpos"),
    ("caldb-detabs-arf-mccal/nuAdetabs20100101v002.fits", "detabs"),
    ("nustarFittingExample/*_sk.img.gz", "image"),
    ("nustar_axions/images/*.fits.gz", "image"),
    ("**/*.reg", "region"),
    ("nustar_jupiter_analysis/*.xcm", "xcm"),
    ("nustar_background/*.xcm", "xcm"),
]


def _read(kind, path):
    if kind == "events":
        from nuskybgd_engine.io.events import read_events

        return read_events(path)
    if kind == "events_time_pi":
        from nuskybgd_engine.io.events import read_events

        return read_events(path, columns=("TIME", "PI"))
    if kind == "aspect":
        from nuskybgd_engine.io.aspect import read_aspect

        return read_aspect(path)
    if kind == "gti":
        from nuskybgd_engine.io.gti import read_gti

        return read_gti(path)
    if kind == "badpix":
        from nuskybgd_engine.io.events import read_badpix

        return read_badpix(path)
    if kind == "pha":
        from nuskybgd_engine.io.ogip import read_pha

        return read_pha(path)
    if kind == "arf":
        from nuskybgd_engine.io.ogip import read_arf

        return read_arf(path)
    if kind == "rmf":
        from nuskybgd_engine.io.ogip import read_rmf

        return read_rmf(path)
    if kind == "pixpos":
        from nuskybgd_engine.maps import pixel_maps_from_pixpos

        return pixel_maps_from_pixpos(path)
    if kind == "detabs":
        from nuskybgd_engine.spectra.responses import read_detabs

        return read_detabs(path)
    if kind == "image":
        from nuskybgd_engine.io.regions import SkyGrid

        return SkyGrid.from_fits(path)
    if kind == "region":
        from nuskybgd_engine.io.regions import RegionSet

        return RegionSet.read_ds9(path)
    if kind == "xcm":
        from nuskybgd_engine.xcm import read_xcm

        return read_xcm(path)
    raise AssertionError(kind)


def _cases():
    from ..conftest import shared_dir

    data = shared_dir() / "data"
    out = []
    for pattern, kind in CASES:
        for path in sorted(data.glob(pattern)) if data.is_dir() else []:
            # A full RMF takes seconds to decompress and read.
            marks = pytest.mark.slow if kind == "rmf" else ()
            out.append(pytest.param(kind, path, id=f"{kind}:{path.relative_to(data)}", marks=marks))
    return out or [pytest.param("none", None, id="no-shared-data")]


@pytest.mark.parametrize("kind,path", _cases())
def test_real_file_loads(kind, path):
    if path is None:
        pytest.skip("real files not available")
    assert _read(kind, path) is not None


def test_every_auxil_file_loads(auxil_dir):
    from nuskybgd_engine.calibration import resolve
    from nuskybgd_engine.calibration.products import load_ratios
    from nuskybgd_engine.io.ogip import read_arf, read_rmf
    from nuskybgd_engine.maps import read_aperture_params, read_aperture_template
    from nuskybgd_engine.maps.instrmap import read_det1_map

    for name in ("be.arf", "template.arf", "fcxbA.arf", "fcxbB.arf"):
        assert len(read_arf(auxil_dir / name).specresp) == 4096
    assert read_rmf(auxil_dir / "diag.rmf").matrix.nnz == 4096
    for m in "AB":
        assert read_aperture_template(auxil_dir / f"det{m}_det1.img.gz").shape == (576, 576)
        for kind in ("detnum", "pixmap"):
            assert read_det1_map(auxil_dir / f"{kind}{m}.fits")[0].shape == (360, 360)
    assert len(read_aperture_params(auxil_dir / "nomapbgdparams.dat")) == 10
    data, source = load_ratios(auxil_dir / "ratios.json")
    assert len(data["models"]) == 4 and source == "path"
    assert resolve("ratios.json", path=auxil_dir / "ratios.json").source == "path"
