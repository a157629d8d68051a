"""Calibration look-up: search order, CALDB index rule, verified auxil download, `nuskybgd auxil`."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits

from nuskybgd_engine.calibration import caldb, fetch, resolver
from nuskybgd_engine.calibration.caldb import caldb_lookup
from nuskybgd_engine.calibration.fetch import fetch_auxil, load_manifest
from nuskybgd_engine.calibration.resolver import AUXIL_FILES, Resolved, cache_dir, register_nominal, resolve
from nuskybgd_engine.cli import main
from nuskybgd_engine.errors import BadConfigError, BadFileError, CalibrationNotFoundError, NuSkyBgdError

ENV_VARS = ("NUSKYBGD_AUXIL", "CALDB", "NUSKYBGD_CACHE", "XDG_CACHE_HOME", "NUSKYBGD_AUXIL_URL")


@pytest.fixture(autouse=True)
def clean_env(monkeypatch, tmp_path):
    """No calibration variable from the caller's shell, an empty cache, and an empty nominal registry."""
    for var in ENV_VARS:
        monkeypatch.delenv(var, raising=False)
    cache = tmp_path / "cache"
    monkeypatch.setenv("NUSKYBGD_CACHE", str(cache))
    # The nominal module (if any) must not register names behind the tests' back.
    monkeypatch.setattr(resolver, "_nominal_loaded", True)
    monkeypatch.setattr(resolver, "NOMINAL_AVAILABLE", set())
    return cache


def _sha(data):
    return hashlib.sha256(data).hexdigest()


# ---------------------------------------------------------------------------------------------
# Search order of auxil files
# ---------------------------------------------------------------------------------------------

def test_precedence_path_then_env_then_cache_then_nominal(tmp_path, monkeypatch, clean_env):
    auxil = tmp_path / "auxil"
    auxil.mkdir()
    (auxil / "be.arf").write_bytes(b"env")
    clean_env.mkdir()
    (clean_env / "be.arf").write_bytes(b"cache")
    explicit = tmp_path / "mine.arf"
    explicit.write_bytes(b"explicit")
    monkeypatch.setenv("NUSKYBGD_AUXIL", str(auxil))
    register_nominal("be.arf")

    got = resolve("be.arf", path=explicit)
    assert (got.source, got.path) == ("path", explicit)
    got = resolve("be.arf")
    assert (got.source, got.path) == ("auxil", auxil / "be.arf")
    monkeypatch.delenv("NUSKYBGD_AUXIL")
    got = resolve("be.arf")
    assert (got.source, got.path) == ("cache", clean_env / "be.arf")
    (clean_env / "be.arf").unlink()
    got = resolve("be.arf")
    assert got == Resolved("be.arf", "nominal", None, None, got.detail)
    assert "nominal" in str(got)
    with pytest.raises(CalibrationNotFoundError, match="nominal calibration not allowed"):
        resolve("be.arf", allow_nominal=False)


def test_env_dir_without_the_file_falls_through_to_cache(tmp_path, monkeypatch, clean_env):
    auxil = tmp_path / "auxil"
    auxil.mkdir()
    clean_env.mkdir()
    (clean_env / "ratios.json").write_text("{}")
    monkeypatch.setenv("NUSKYBGD_AUXIL", str(auxil))
    got = resolve("ratios.json")
    assert got.source == "cache"
    with pytest.raises(CalibrationNotFoundError) as err:
        resolve("be.arf")
    assert f"not in NUSKYBGD_AUXIL={auxil}" in str(err.value)


def test_idl_uncompressed_aperture_map_is_accepted(tmp_path, monkeypatch):
    auxil = tmp_path / "idl-auxil"
    auxil.mkdir()
    (auxil / "detB_det1.img").write_bytes(b"x")
    monkeypatch.setenv("NUSKYBGD_AUXIL", str(auxil))
    assert resolve("detB_det1.img.gz").path == auxil / "detB_det1.img"


@pytest.mark.parametrize("kind", ["missing", "file"])
def test_bad_auxil_variable_is_a_clear_error(tmp_path, monkeypatch, kind):
    target = tmp_path / "nothing"
    if kind == "file":
        target.write_text("not a directory")
    monkeypatch.setenv("NUSKYBGD_AUXIL", str(target))
    with pytest.raises(BadConfigError) as err:
        resolve("be.arf")
    assert err.value.field == "NUSKYBGD_AUXIL"
    assert str(err.value).startswith("NUSKYBGD_AUXIL:") and str(target) in str(err.value)


def test_explicit_path_must_exist(tmp_path):
    with pytest.raises(CalibrationNotFoundError) as err:
        resolve("fcxbA.arf", path=tmp_path / "nope.arf")
    assert err.value.path == str(tmp_path / "nope.arf")
    with pytest.raises(CalibrationNotFoundError, match="directory"):
        resolve("fcxbA.arf", path=tmp_path)


def test_unknown_name_is_rejected():
    with pytest.raises(BadConfigError) as err:
        resolve("bee.arf")
    assert err.value.field == "name" and "bee.arf" in str(err.value)


def test_missing_file_message_lists_places_in_order(clean_env):
    with pytest.raises(CalibrationNotFoundError) as err:
        resolve("be.arf")
    text = str(err.value)
    assert "\n" not in text
    assert text.startswith("be.arf: not found:")
    steps = ["no path given", "NUSKYBGD_AUXIL unset", f"not in cache {clean_env}", "no embedded nominal",
             "nuskybgd auxil fetch"]
    positions = [text.index(s) for s in steps]
    assert positions == sorted(positions)


def test_cache_dir_precedence(tmp_path, monkeypatch):
    monkeypatch.setenv("NUSKYBGD_CACHE", str(tmp_path / "a"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir() == tmp_path / "a"
    assert cache_dir(tmp_path / "override") == tmp_path / "override"
    monkeypatch.delenv("NUSKYBGD_CACHE")
    assert cache_dir() == tmp_path / "xdg" / "nuskybgd" / "auxil"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache_dir() == tmp_path / "home" / ".cache" / "nuskybgd" / "auxil"
    (tmp_path / "afile").write_text("x")
    with pytest.raises(BadConfigError):
        cache_dir(tmp_path / "afile")


def test_nominal_registration_and_removal():
    registry = resolver.NOMINAL_AVAILABLE
    try:
        assert register_nominal("instrmap") == "INSTRMAP"
        got = resolve("INSTRMAP", module="A")
        assert got.source == "nominal" and got.path is None
        with pytest.raises(CalibrationNotFoundError):
            resolve("INSTRMAP", module="A", allow_nominal=False)
    finally:
        registry.discard("INSTRMAP")
    with pytest.raises(CalibrationNotFoundError):
        resolve("INSTRMAP", module="A")
    with pytest.raises(BadConfigError):
        register_nominal("not-a-calibration-file")


# ---------------------------------------------------------------------------------------------
# CALDB index
# ---------------------------------------------------------------------------------------------

D = "data/nustar/fpm/bcf"
#: (TELESCOP, INSTRUME, DETNAM, CAL_CNAM, CAL_VSD, CAL_VST, CAL_DIR, CAL_FILE, CAL_CBD[0], CAL_QUAL, CAL_XNO)
ROWS = [
    ("NUSTAR", "FPMA", "-", "INSTRMAP", "2010-01-01", "00:00:00", f"{D}/instrmap", "nuAinstrmap20100101v001.fits",
     "NONE", 0, 1),
    ("NUSTAR", "FPMA", "-", "INSTRMAP", "2010-01-01", "00:00:00", f"{D}/instrmap", "nuAinstrmap20100101v002.fits",
     "NONE", 0, 1),
    ("NUSTAR", "FPMA", "-", "INSTRMAP", "2016-06-01", "00:00:00", f"{D}/instrmap", "nuAinstrmap20160601v003.fits",
     "NONE", 0, 1),
    # Newest name, but flagged bad: CAL_QUAL != 0 must exclude it.
    ("NUSTAR", "FPMA", "-", "INSTRMAP", "2010-01-01", "00:00:00", f"{D}/instrmap", "nuAinstrmap20990101v009.fits",
     "NONE", 5, 1),
    # Another mission with a later name: TELESCOP must exclude it.
    ("SWIFT", "FPMA", "-", "INSTRMAP", "2010-01-01", "00:00:00", f"{D}/zzz", "zz.fits", "NONE", 0, 1),
    ("NUSTAR", "FPMB", "-", "INSTRMAP", "2010-01-01", "00:00:00", f"{D}/instrmap", "nuBinstrmap20100101v002.fits",
     "NONE", 0, 1),
] + [
    ("NUSTAR", "FPMA", f"DET{n}", "PIXPOS", "2010-01-01", "00:00:00", f"{D}/pixpos", "nuApixpos20100101v007.fits",
     "NONE", 0, n + 1) for n in range(4)
] + [
    ("NUSTAR", "FPMA", "DET0", "GRPRMF", "2010-01-01", "00:00:00", f"{D}/rmf", "nuAgrprmf20100101v001.fits",
     "DEPTHCUT(NOMINAL)", 0, 1),
    ("NUSTAR", "FPMA", "DET0", "GRPRMF", "2010-01-01", "00:00:00", f"{D}/rmf", "nuAgrprmf20100101v002.fits",
     "DEPTHCUT(NONE)", 0, 1),
    ("NUSTAR", "FPM", "-", "BEABSPAR", "2010-01-01", "00:00:00", f"{D}/beabs", "nuCbeabs20100101v001.fits",
     "NONE", 0, 1),
    ("NUSTAR", "FPMA", "-", "BADPIX", "2010-01-01", "00:00:00", f"{D}/badpix", "nuAbadpix20100101v001.fits",
     "NONE", 3, 1),
]


def write_index(root, rows=ROWS, *, vector_cbd=True, drop=(), install=True):
    """Write a tiny CALDB (index + empty placeholder files) under ``root``; return the root."""
    names = ["TELESCOP", "INSTRUME", "DETNAM", "CAL_CNAM", "CAL_VSD", "CAL_VST", "CAL_DIR", "CAL_FILE"]
    cols = []
    for k, name in enumerate(names):
        values = [r[k] for r in rows]
        cols.append(fits.Column(name=name, format=f"{max(len(v) for v in values) + 4}A", array=values))
    cbd = [r[8] for r in rows]
    if vector_cbd:  # real indexes: 9 boundary strings of 70 characters per row
        arr = np.array([[c] + ["NONE"] * 8 for c in cbd])
        cols.append(fits.Column(name="CAL_CBD", format="630A", dim="(70,9)", array=arr))
    else:
        cols.append(fits.Column(name="CAL_CBD", format="70A", array=cbd))
    cols.append(fits.Column(name="CAL_QUAL", format="I", array=[r[9] for r in rows]))
    cols.append(fits.Column(name="CAL_XNO", format="I", array=[r[10] for r in rows]))
    cols = [c for c in cols if c.name not in drop]
    hdu = fits.BinTableHDU.from_columns(cols, name="CIF")
    index = caldb.caldb_index_path(root)
    index.parent.mkdir(parents=True, exist_ok=True)
    fits.HDUList([fits.PrimaryHDU(), hdu]).writeto(index)
    if install:
        for r in rows:
            f = Path(root) / r[6] / r[7]
            f.parent.mkdir(parents=True, exist_ok=True)
            f.write_bytes(b"")
    return Path(root)


@pytest.fixture(params=[True, False], ids=["vector-cbd", "scalar-cbd"])
def caldb_root(tmp_path, request):
    return write_index(tmp_path / "caldb", vector_cbd=request.param)


@pytest.mark.parametrize("date,expected", [
    ("2015-01-01T00:00:00", "nuAinstrmap20100101v002.fits"),
    ("2016-06-01T00:00:00", "nuAinstrmap20100101v002.fits"),  # validity start must be strictly before
    ("2016-06-01T00:00:01", "nuAinstrmap20160601v003.fits"),
    ("2020-03-04T05:06:07.5Z", "nuAinstrmap20160601v003.fits"),
    (None, "nuAinstrmap20160601v003.fits"),
])
def test_caldb_date_quality_and_telescope(caldb_root, date, expected):
    match = caldb_lookup(caldb_root, "INSTRMAP", "A", date=date)
    assert match.path == caldb_root / D / "instrmap" / expected
    assert match.extension == 1
    assert match.relpath.endswith(expected)
    assert not any("v009" in c or "zz.fits" in c for c in match.candidates)


def test_caldb_module_b_and_module_independent_products(caldb_root):
    assert caldb_lookup(caldb_root, "INSTRMAP", "FPMB").path.name == "nuBinstrmap20100101v002.fits"
    assert caldb_lookup(caldb_root, "BEABSPAR", "A").path.name == "nuCbeabs20100101v001.fits"
    assert caldb_lookup(caldb_root, "BEABSPAR", None).path.name == "nuCbeabs20100101v001.fits"


def test_caldb_detnam_selects_the_extension(caldb_root):
    for n in range(4):
        match = caldb_lookup(caldb_root, "PIXPOS", "A", detector=n, date="2015-01-01")
        assert match.path.name == "nuApixpos20100101v007.fits" and match.extension == n + 1
    assert caldb_lookup(caldb_root, "PIXPOS", "A", detector="det2").extension == 3
    # Without DETNAM the file is one, the extension is ambiguous: whole file.
    assert caldb_lookup(caldb_root, "PIXPOS", "A").extension is None
    with pytest.raises(BadConfigError) as err:
        caldb_lookup(caldb_root, "PIXPOS", "A", detector=4)
    assert err.value.field == "detector"


def test_caldb_grprmf_needs_depthcut_nominal(caldb_root):
    # v002 sorts last but its CAL_CBD is DEPTHCUT(NONE).
    assert caldb_lookup(caldb_root, "GRPRMF", "A", detector=0).path.name == "nuAgrprmf20100101v001.fits"


def test_caldb_failures_name_the_filter(caldb_root):
    with pytest.raises(CalibrationNotFoundError, match="valid before 2009-01-01"):
        caldb_lookup(caldb_root, "INSTRMAP", "A", date="2009-01-01")
    with pytest.raises(CalibrationNotFoundError, match="CAL_QUAL"):
        caldb_lookup(caldb_root, "BADPIX", "A")
    with pytest.raises(CalibrationNotFoundError, match="no entry"):
        caldb_lookup(caldb_root, "DETABS", "B")
    with pytest.raises(CalibrationNotFoundError, match="DETNAM DET3"):
        caldb_lookup(caldb_root, "GRPRMF", "A", detector=3)
    with pytest.raises(BadConfigError) as err:
        caldb_lookup(caldb_root, "INSTRMAP", "A", date="last tuesday")
    assert err.value.field == "date"
    with pytest.raises(BadConfigError) as err:
        caldb_lookup(caldb_root, "INSTRMAP", "C")
    assert err.value.field == "module"


def test_caldb_selected_file_not_installed(tmp_path):
    root = write_index(tmp_path / "caldb", install=False)
    with pytest.raises(CalibrationNotFoundError, match="not installed") as err:
        caldb_lookup(root, "INSTRMAP", "A")
    assert err.value.path.endswith("nuAinstrmap20160601v003.fits")


def test_caldb_index_without_required_column(tmp_path):
    root = write_index(tmp_path / "caldb", drop=("CAL_VSD",))
    with pytest.raises(BadFileError) as err:
        caldb_lookup(root, "INSTRMAP", "A")
    assert err.value.field == "CAL_VSD" and err.value.path.endswith("caldb.indx")


def test_caldb_without_quality_and_extension_columns(tmp_path):
    # The reference ignores CAL_QUAL: without the column, the v009 row is a valid candidate.
    root = write_index(tmp_path / "caldb", drop=("CAL_QUAL", "CAL_XNO"))
    match = caldb_lookup(root, "INSTRMAP", "A")
    assert match.path.name == "nuAinstrmap20990101v009.fits" and match.extension is None


def test_resolve_caldb_product_through_the_environment(tmp_path, monkeypatch, caldb_root):
    with pytest.raises(CalibrationNotFoundError, match="CALDB unset"):
        resolve("INSTRMAP", module="A")
    monkeypatch.setenv("CALDB", str(caldb_root))
    got = resolve("instrmap", module="A", date="2015-01-01")
    assert (got.source, got.path.name, got.extension) == ("caldb", "nuAinstrmap20100101v002.fits", 1)
    explicit = tmp_path / "my_instrmap.fits"
    explicit.write_bytes(b"")
    assert resolve("INSTRMAP", module="A", path=explicit).source == "path"
    with pytest.raises(CalibrationNotFoundError) as err:
        resolve("DETABS", module="B", allow_nominal=False)
    text = str(err.value)
    assert text.startswith("DETABS (FPMB): not found: no path given; CALDB=") and "no entry" in text
    # Auxil files are never looked up in CALDB.
    with pytest.raises(CalibrationNotFoundError) as err:
        resolve("be.arf")
    assert "CALDB" not in str(err.value)


def test_resolve_caldb_without_index(tmp_path, monkeypatch):
    monkeypatch.setenv("CALDB", str(tmp_path))
    with pytest.raises(CalibrationNotFoundError, match="has no NuSTAR index"):
        resolve("PIXPOS", module="A", detector=0)


# ---------------------------------------------------------------------------------------------
# Manifest and download
# ---------------------------------------------------------------------------------------------

def test_manifest_lists_exactly_the_auxil_files():
    manifest = load_manifest()
    assert set(manifest["files"]) == set(AUXIL_FILES)
    for entry in manifest["files"].values():
        assert len(entry["sha256"]) == 64 and entry["size"] > 0
        assert entry["repository"] in manifest["repositories"]
    assert fetch.file_url("be.arf") == fetch.DEFAULT_BASE_URL + "be.arf"


@pytest.mark.requires_data
def test_manifest_matches_the_shared_auxil_files(auxil_dir):
    for name, entry in load_manifest()["files"].items():
        data = (auxil_dir / name).read_bytes()
        assert (len(data), _sha(data)) == (entry["size"], entry["sha256"]), name


@pytest.mark.requires_data
def test_fetch_real_files_via_file_url(auxil_dir, tmp_path, monkeypatch, clean_env):
    remote = tmp_path / "remote"
    remote.mkdir()
    for name in AUXIL_FILES:
        (remote / name).symlink_to(auxil_dir / name)
    seen = []
    status = fetch_auxil(base_url=remote.as_uri(), progress=lambda n, s, p: seen.append((n, s)))
    assert status == {name: "fetched" for name in AUXIL_FILES}
    assert [n for n, _ in seen] == list(AUXIL_FILES)
    for name in AUXIL_FILES:
        cached = clean_env / name
        assert not cached.is_symlink()
        assert _sha(cached.read_bytes()) == _sha((auxil_dir / name).read_bytes())
    assert sorted(p.name for p in clean_env.iterdir()) == sorted(AUXIL_FILES)  # no temporary left
    assert fetch_auxil(base_url=remote.as_uri()) == {name: "present" for name in AUXIL_FILES}
    assert resolve("polarmodel.fits").source == "cache"


@pytest.fixture
def fake_remote(tmp_path, monkeypatch):
    """A remote directory with two synthetic files and a manifest patched to describe them."""
    remote = tmp_path / "remote"
    remote.mkdir()
    files = {"be.arf": b"synthetic Be window\n" * 50, "ratios.json": json.dumps({"a": 1}).encode()}
    for name, data in files.items():
        (remote / name).write_bytes(data)
    manifest = {"repositories": {"nuskybgd-py": "https://invalid.example/"},
                "files": {name: {"sha256": _sha(data), "size": len(data), "repository": "nuskybgd-py"}
                          for name, data in files.items()}}
    monkeypatch.setattr(fetch, "load_manifest", lambda path=None: manifest)
    return remote, manifest, files


def test_fetch_synthetic_files_and_resolve_them(fake_remote, clean_env):
    remote, _, files = fake_remote
    assert fetch_auxil(base_url=remote.as_uri(), names=list(files)) == {n: "fetched" for n in files}
    for name, data in files.items():
        assert (clean_env / name).read_bytes() == data
        assert resolve(name).source == "cache"


def test_fetch_accepts_a_plain_directory_and_the_url_variable(fake_remote, tmp_path, monkeypatch):
    remote, _, files = fake_remote
    assert fetch_auxil(base_url=str(remote), cache_dir=tmp_path / "c1", names=["be.arf"]) == {"be.arf": "fetched"}
    monkeypatch.setenv("NUSKYBGD_AUXIL_URL", remote.as_uri())
    assert fetch_auxil(cache_dir=tmp_path / "c2", names=["ratios.json"]) == {"ratios.json": "fetched"}
    assert (tmp_path / "c2" / "ratios.json").read_bytes() == files["ratios.json"]


@pytest.mark.parametrize("corruption", ["bytes", "longer", "shorter"])
def test_corrupt_download_is_rejected_and_leaves_nothing(fake_remote, clean_env, corruption):
    remote, _, files = fake_remote
    data = files["be.arf"]
    bad = {"bytes": b"X" + data[1:], "longer": data + b"!", "shorter": data[:-1]}[corruption]
    (remote / "be.arf").write_bytes(bad)
    with pytest.raises(BadFileError) as err:
        fetch_auxil(base_url=remote.as_uri(), names=["be.arf"])
    assert "be.arf" in err.value.path
    if corruption == "bytes":
        assert err.value.field == "sha256"
    assert list(clean_env.iterdir()) == []


def test_network_failure_names_the_url_and_leaves_nothing(fake_remote, tmp_path, clean_env):
    with pytest.raises(NuSkyBgdError) as err:
        fetch_auxil(base_url=(tmp_path / "no-such-dir").as_uri() + "/", names=["be.arf"])
    assert "download failed" in str(err.value) and "no-such-dir/be.arf" in err.value.path
    assert list(clean_env.iterdir()) == []


def test_fetch_bad_arguments(fake_remote, tmp_path):
    remote, _, _ = fake_remote
    with pytest.raises(BadConfigError, match="scheme"):
        fetch_auxil(base_url="ftp://example.org/auxil/", cache_dir=tmp_path / "c")
    with pytest.raises(BadConfigError, match="neither a URL nor a directory"):
        fetch_auxil(base_url=str(tmp_path / "nope"), cache_dir=tmp_path / "c")
    with pytest.raises(BadConfigError):
        fetch_auxil(base_url=remote.as_uri(), cache_dir=tmp_path / "c", names=["nope.arf"])


def test_wrong_cached_file_needs_overwrite(fake_remote, clean_env):
    remote, _, files = fake_remote
    clean_env.mkdir()
    (clean_env / "be.arf").write_bytes(b"stale")
    with pytest.raises(BadFileError, match="overwrite") as err:
        fetch_auxil(base_url=remote.as_uri(), names=["be.arf"])
    assert err.value.path == str(clean_env / "be.arf")
    assert (clean_env / "be.arf").read_bytes() == b"stale"
    assert fetch_auxil(base_url=remote.as_uri(), names=["be.arf"], overwrite=True) == {"be.arf": "fetched"}
    assert (clean_env / "be.arf").read_bytes() == files["be.arf"]


# ---------------------------------------------------------------------------------------------
# CLI
# ---------------------------------------------------------------------------------------------

def _row(out, label):
    lines = [line.split() for line in out.splitlines() if line.startswith(label + " ")]
    assert len(lines) == 1, out
    return lines[0]


def test_cli_info_shows_the_source_of_each_file(tmp_path, monkeypatch, clean_env, capsys):
    auxil = tmp_path / "auxil"
    auxil.mkdir()
    (auxil / "be.arf").write_bytes(b"x")
    clean_env.mkdir()
    (clean_env / "ratios.json").write_text("{}")
    monkeypatch.setenv("NUSKYBGD_AUXIL", str(auxil))
    assert main(["auxil", "info"]) == 0
    out = capsys.readouterr().out
    assert _row(out, "be.arf") == ["be.arf", "auxil", str(auxil / "be.arf")]
    assert _row(out, "ratios.json") == ["ratios.json", "cache", str(clean_env / "ratios.json")]
    assert _row(out, "fcxbA.arf")[1] == "missing"
    assert _row(out, "INSTRMAP FPMA")[2] == "missing"
    assert "CALDB: unset" in out and "nuskybgd auxil fetch" in out
    assert main(["auxil", "info", "--verify"]) == 0
    assert _row(capsys.readouterr().out, "be.arf")[2] == "differs"


def test_cli_info_with_caldb(tmp_path, monkeypatch, capsys):
    root = write_index(tmp_path / "caldb")
    monkeypatch.setenv("CALDB", str(root))
    assert main(["auxil", "info", "date=2015-01-01"]) == 0
    out = capsys.readouterr().out
    assert _row(out, "INSTRMAP FPMA")[2:] == ["caldb", f"{root / D / 'instrmap' / 'nuAinstrmap20100101v002.fits'}[1]"]
    assert _row(out, "BEABSPAR FPMB")[3].endswith("nuCbeabs20100101v001.fits[1]")
    assert _row(out, "DETABS FPMA")[2] == "missing"
    assert f"index {caldb.caldb_index_path(root)}" in out


def test_cli_info_bad_auxil_variable_is_one_line_exit_2(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("NUSKYBGD_AUXIL", str(tmp_path / "missing"))
    assert main(["auxil", "info"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "NUSKYBGD_AUXIL" in err


def test_cli_fetch(fake_remote, tmp_path, capsys):
    remote, _, files = fake_remote
    target = tmp_path / "target"
    assert main(["auxil", "fetch", "be.arf", "ratios.json", "--base-url", remote.as_uri(), "--cache",
                 str(target)]) == 0
    out = capsys.readouterr().out
    assert "2 fetched, 0 already present" in out
    assert (target / "be.arf").read_bytes() == files["be.arf"]
    # Seed-style key=value syntax; second run finds the files.
    assert main(["auxil", "fetch", "be.arf", f"base_url={remote.as_uri()}", f"cache={target}"]) == 0
    assert "0 fetched, 1 already present" in capsys.readouterr().out


def test_cli_fetch_failure_is_one_line_exit_2(fake_remote, tmp_path, capsys):
    remote, _, _ = fake_remote
    (remote / "be.arf").write_bytes(b"corrupt")
    assert main(["auxil", "fetch", "be.arf", "--base-url", remote.as_uri(), "--cache", str(tmp_path / "t")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "be.arf" in err
    assert not (tmp_path / "t" / "be.arf").exists()


def test_cli_auxil_requires_an_action(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["auxil"])
    assert exit_.value.code == 2
    assert os.linesep not in capsys.readouterr().err.strip()
