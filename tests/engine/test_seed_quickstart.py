"""The seed's command lines, verbatim, in the seed's folder layout (issue 17).

``test_seed_readme_quickstart`` runs every shell block of the nuskybgd-py README (Quick start, §2-3
and "Add detabs to rmf" / "Create fake spectra") with only the scripts' ``.py`` suffix dropped
(``getspecnoarf.py`` -> ``nuskybgd getspecnoarf``), each in the directory its block names, on a
simulated observation, and checks that every file the README names is where it says.
``test_seed_walkthrough_sequence`` runs the command sequence of nuskybgd-py's walkthrough notebook
(``notebooks/walkthroughs/nuskybgd_walkthrough.ipynb``): one-module bgdinfo, fit, spec with
``bgdinfo.json FIT.xcm``, simplify with ``bgdinfo.json bgd_src.xcm``; the interactive XSPEC fit in
between is replaced by ``nuskybgd fit --run``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits

from nuskybgd_engine.constants import channel_edges

pytestmark = pytest.mark.slow

OBSID = "90201039002"

# The shell blocks of the nuskybgd-py README, in order: (directory relative to the top level, text).
# The README's mkimgs example uses another OBSID (50002031004) than the rest; the simulated
# observation has one, so that block is run with 90201039002. The `cd /Users/qw/...` of the absrmf
# block is that user's event_cl/.
SEED_BLOCKS = [
    (".", """
# (cd into the top level)
./mkimgs.py ./ 90201039002 3 20
"""),
    ("90201039002/event_cl", """
# New syntax for getspecnoarf.py
# In event_cl/
getspecnoarf.py nu90201039002A01_cl.evt reg=bgd/bgd1.reg \\
    indir=. outdir=bgd outprefix=bgd1A \\
    attfile=../auxil/nu90201039002_att.fits.gz >& bgd/bgd1A.log

getspecnoarf.py nu90201039002A01_cl.evt reg=bgd/bgd2.reg \\
    indir=. outdir=bgd outprefix=bgd2A \\
    attfile=../auxil/nu90201039002_att.fits.gz >& bgd/bgd2A.log

getspecnoarf.py nu90201039002A01_cl.evt reg=bgd/bgd3.reg \\
    indir=. outdir=bgd outprefix=bgd3A \\
    attfile=../auxil/nu90201039002_att.fits.gz >& bgd/bgd3A.log

getspecnoarf.py nu90201039002B01_cl.evt reg=bgd/bgd1.reg \\
    indir=. outdir=bgd outprefix=bgd1B \\
    attfile=../auxil/nu90201039002_att.fits.gz >& bgd/bgd1B.log

getspecnoarf.py nu90201039002B01_cl.evt reg=bgd/bgd2.reg \\
    indir=. outdir=bgd outprefix=bgd2B \\
    attfile=../auxil/nu90201039002_att.fits.gz >& bgd/bgd2B.log

getspecnoarf.py nu90201039002B01_cl.evt reg=bgd/bgd3.reg \\
    indir=. outdir=bgd outprefix=bgd3B \\
    attfile=../auxil/nu90201039002_att.fits.gz >& bgd/bgd3B.log
"""),
    ("90201039002/event_cl", """
# In event_cl/
mkdir spec

getspecnoarf.py nu90201039002A01_cl.evt reg=src1.reg \\
    indir=. outdir=spec outprefix=src1A \\
    attfile=../auxil/nu90201039002_att.fits.gz >& spec/src1A.log

getspecnoarf.py nu90201039002B01_cl.evt reg=src.reg \\
    indir=. outdir=spec outprefix=src1B \\
    attfile=../auxil/nu90201039002_att.fits.gz >& spec/src1B.log
"""),
    ("90201039002/event_cl", """
# In event_cl/ or where the spectral files are
find . -iname "*.pha" -type f -exec phafix.py {} \\;
"""),
    ("90201039002/event_cl", """
# In event_cl/

nuskybgd mkinstrmap nu90201039002A01_cl.evt

nuskybgd mkinstrmap nu90201039002B01_cl.evt
"""),
    ("90201039002/event_cl", """
# In event_cl/

nuskybgd projobs nu90201039002A_det1.fits gtifile=nu90201039002A01_gti.fits \\
    out=aspecthistA.fits

nuskybgd projobs nu90201039002B_det1.fits gtifile=nu90201039002B01_gti.fits \\
    out=aspecthistB.fits
"""),
    ("90201039002/event_cl/bgd", """
# In event_cl/bgd/

nuskybgd projinitbgds refimg=../imB3to20keV.fits out=bgdapA.fits \\
\tmod=A det=1234 chipmap=../newinstrmapA.fits aspect=../aspecthistA.fits

nuskybgd projinitbgds refimg=../imB3to20keV.fits out=bgdapB.fits \\
\tmod=B det=1234 chipmap=../newinstrmapB.fits aspect=../aspecthistB.fits
"""),
    ("90201039002/event_cl/bgd", """
# In event_cl/bgd/
nuskybgd fitab bgdinfo.json savefile=IC342bgd >& fitab.log
"""),
    ("90201039002/event_cl", """
absrmf.py nu90201039002A01_cl.evt bgd/det
absrmf.py nu90201039002B01_cl.evt bgd/det
"""),
    ("90201039002/event_cl/bgd", """
imrefspec.py AB 0123
"""),
]

# The README's bgdinfo.json, as printed there.
SEED_BGDINFO = """{
    "bgfiles": [
        "bgd1A_sr_g30.pha", "bgd1B_sr_g30.pha",
        "bgd2A_sr_g30.pha", "bgd2B_sr_g30.pha",
        "bgd3A_sr_g30.pha", "bgd3B_sr_g30.pha"
    ],

    "regfiles": [
        "bgd1.reg", "bgd1.reg",
        "bgd2.reg", "bgd2.reg",
        "bgd3.reg", "bgd3.reg"
    ],

    "refimgf": "bgdapA.fits",

    "bgdapfiles": {
        "A": "bgdapA.fits",
        "B": "bgdapB.fits"
    },

    "bgddetfiles": {
        "A": [
            "det0Aim.fits",
            "det1Aim.fits",
            "det2Aim.fits",
            "det3Aim.fits"
        ],
        "B": [
            "det0Bim.fits",
            "det1Bim.fits",
            "det2Bim.fits",
            "det3Bim.fits"
        ]
    }
}
"""

# Files the README names, relative to the top level, after each block (index into SEED_BLOCKS).
E = f"{OBSID}/event_cl"
NAMED = {
    0: [f"{E}/imA3to20keV.fits", f"{E}/imB3to20keV.fits"],
    1: [f"{E}/bgd/bgd{r}{m}{s}" for r in (1, 2, 3) for m in "AB" for s in ("_sr.pha", "_sr_g30.pha", "_sr.rmf")],
    2: [f"{E}/spec/src1{m}{s}" for m in "AB" for s in ("_sr.pha", "_sr_g30.pha", "_sr.rmf")],
    4: [f"{E}/newinstrmapA.fits", f"{E}/newinstrmapB.fits"],
    5: [f"{E}/aspecthistA.fits", f"{E}/aspecthistB.fits"],
    6: [f"{E}/bgd/bgdap{m}.fits" for m in "AB"] + [f"{E}/bgd/det{n}{m}im.fits" for m in "AB" for n in range(4)],
    7: [f"{E}/bgd/IC342bgd.xcm"],
    8: [f"{E}/bgd/det{n}{m}.rmf" for m in "AB" for n in range(4)],
    9: [f"{E}/bgd/{k}bgd{m}_det{n}.pha" for k in ("aper", "fcxb") for m in "AB" for n in range(4)],
}


def as_ours(block):
    """The seed's block with only the scripts' `.py` dropped: `./mkimgs.py` -> `nuskybgd mkimgs`."""
    return re.sub(r"(?:\./)?\b([a-z]+)\.py\b", r"nuskybgd \1", block)


def _bindir(tmp_path):
    """A PATH directory whose `nuskybgd` runs this interpreter's CLI."""
    bindir = tmp_path / "bin"
    bindir.mkdir(exist_ok=True)
    exe = bindir / "nuskybgd"
    exe.write_text(f"#!/bin/sh\nexec {sys.executable} -m nuskybgd_engine \"$@\"\n")
    exe.chmod(0o755)
    return bindir


def _detabs_caldb(root):
    """A small CALDB for absrmf: DETABS and GRPRMF of FPMA and FPMB (the RMFs are the nominal ones)."""
    from nuskybgd_engine.io.ogip import write_rmf
    from nuskybgd_engine.spectra.responses import nominal_rmf

    edges = channel_edges()
    e = 0.5 * (edges[:-1] + edges[1:])
    d = "data/nustar/fpm/bcf/detabs"
    r = "data/nustar/fpm/bcf/rmf"
    (root / d).mkdir(parents=True)
    (root / r).mkdir(parents=True)
    rows = []
    for m in "AB":
        write_rmf(nominal_rmf(m), root / r / f"nu{m}det_v1.rmf")
        grp = [fits.PrimaryHDU()] + [fits.BinTableHDU.from_columns(
            [fits.Column(name="RMFFILE", format="40A", array=[f"nu{m}det_v1.rmf"])], name="GRPRMF") for _ in range(4)]
        fits.HDUList(grp).writeto(root / r / f"nu{m}grprmf20100101v001.fits")
        rows += [("NUSTAR", f"FPM{m}", f"DET{n}", "GRPRMF", "2010-01-01", "00:00:00", r,
                  f"nu{m}grprmf20100101v001.fits", "DEPTHCUT(NOMINAL)", n + 1) for n in range(4)]
        hdus = [fits.PrimaryHDU()]
        hdus[0].header["INSTRUME"], hdus[0].header["TELESCOP"] = f"FPM{m}", "NuSTAR"
        for n in range(4):
            t = fits.BinTableHDU.from_columns([
                fits.Column(name="ENERG_LO", format="E", array=edges[:-1]),
                fits.Column(name="ENERG_HI", format="E", array=edges[1:]),
                fits.Column(name="DETABS", format="E", array=1.0 - (0.5 + 0.05 * n) * np.exp(-e / 5.0))],
                name="DETABS")
            t.header["DETNAM"], t.header["INSTRUME"] = f"DET{n}", f"FPM{m}"
            hdus.append(t)
        fits.HDUList(hdus).writeto(root / d / f"nu{m}detabs20100101v002.fits")
        rows.append(("NUSTAR", f"FPM{m}", "-", "DETABS", "2010-01-01", "00:00:00", d,
                     f"nu{m}detabs20100101v002.fits", "NONE", 1))
    names = ["TELESCOP", "INSTRUME", "DETNAM", "CAL_CNAM", "CAL_VSD", "CAL_VST", "CAL_DIR", "CAL_FILE", "CAL_CBD"]
    cols = [fits.Column(name=k, format="70A", array=[r[i] for r in rows]) for i, k in enumerate(names)]
    cols += [fits.Column(name="CAL_QUAL", format="I", array=[0] * len(rows)),
             fits.Column(name="CAL_XNO", format="I", array=[r[9] for r in rows])]
    fits.HDUList([fits.PrimaryHDU(), fits.BinTableHDU.from_columns(cols, name="CIF")]).writeto(
        root / "data/nustar/fpm/caldb.indx")
    return root


def _env(tmp_path, caldb=None):
    env = dict(os.environ)
    env["PATH"] = f"{_bindir(tmp_path)}{os.pathsep}{env.get('PATH', '')}"
    env.pop("CALDB", None)
    if caldb is not None:
        env["CALDB"] = str(caldb)
    return env


def _run(block, cwd, env):
    out = subprocess.run(["bash", "-e", "-c", block], cwd=cwd, env=env, capture_output=True, text=True)
    assert out.returncode == 0, f"in {cwd}:\n{block}\n{out.stdout}\n{out.stderr}"
    return out


@pytest.fixture(scope="module")
def _simulated(tmp_path_factory):
    """The observation simulated once for the module (through the CLI, as a user would)."""
    base = tmp_path_factory.mktemp("seed")
    top = base / "top"
    top.mkdir()
    _run(f"nuskybgd simulate . --obsid {OBSID} --exposure 20000 --seed 3", top, _env(base))
    return top


@pytest.fixture
def simulated_top(_simulated, tmp_path):
    """The top level (TARGET/) of a simulated observation, with the user's regions placed as the seed has them
    (a fresh copy of the module's simulation for each test)."""
    top = tmp_path / "top"
    shutil.copytree(_simulated, top, symlinks=True)
    evt = top / OBSID / "event_cl"
    (evt / "bgd").mkdir()  # "Create the bgd/ folder if this is the first time."
    regs = top / OBSID / "regions"
    for r in (1, 2, 3):
        shutil.copy(regs / f"bgd{r}.reg", evt / "bgd" / f"bgd{r}.reg")
    # The README extracts A from src1.reg and B from src.reg.
    shutil.copy(regs / "src_point.reg", evt / "src1.reg")
    shutil.copy(regs / "src_point.reg", evt / "src.reg")
    return top


def test_as_ours_drops_only_the_py_suffix():
    assert as_ours("./mkimgs.py ./ 1 3 20") == "nuskybgd mkimgs ./ 1 3 20"
    assert as_ours("find . -exec phafix.py {} \\;") == "find . -exec nuskybgd phafix {} \\;"
    assert as_ours("nuskybgd mkinstrmap a.evt") == "nuskybgd mkinstrmap a.evt"


def test_seed_readme_quickstart(simulated_top, tmp_path):
    env = _env(tmp_path)
    # The README's environment has $CALDB; absrmf needs its DETABS (other steps use nominal responses).
    env_caldb = _env(tmp_path, caldb=_detabs_caldb(tmp_path / "caldb"))
    top = simulated_top
    for i, (where, block) in enumerate(SEED_BLOCKS):
        if i == 7:  # "Create a file bgdinfo.json in bgd/" (by hand, in the README)
            (top / E / "bgd" / "bgdinfo.json").write_text(SEED_BGDINFO)
        _run(as_ours(block), top / where, env_caldb if "absrmf" in block else env)
        missing = [p for p in NAMED.get(i, []) if not (top / p).is_file()]
        assert not missing, f"after block {i} ({where}): missing {missing}"
    # Nothing was written at the top level (IDL mkimgs writes into OBSID/event_cl/).
    assert sorted(p.name for p in top.iterdir()) == [OBSID]
    log = (top / E / "bgd" / "fitab.log").read_text()
    assert "wrote IC342bgd.xcm" in log
    # The images hold the 3-20 keV events of each module.
    with fits.open(top / E / "imA3to20keV.fits") as hdul:
        assert hdul[0].data.sum() > 0 and hdul[0].header["PILOW"] == 35


def test_seed_walkthrough_sequence(simulated_top, tmp_path):
    """nuskybgd-py's walkthrough notebook: FPMA only, fit, spec and simplify with the bgdinfo.json first."""
    env = _env(tmp_path)
    top = simulated_top
    evt = top / E
    bgd = evt / "bgd"
    o = OBSID
    # The walkthrough's images come from nustar_gen (`nu<obsid>A01_cl_3to20keV.fits`); nuskybgd-py's
    # `mkimgs EVT OUTNAME EMIN EMAX` writes that name.
    _run(f"nuskybgd mkimgs nu{o}A01_cl.evt nu{o}A01_cl_3to20keV 3 20", evt, env)
    assert (evt / f"nu{o}A01_cl_3to20keV.fits").is_file() and (evt / f"nu{o}A01_cl_3to20keVdet.fits").is_file()
    for r in (1, 2, 3):  # background spectra, named as nustar_gen's make_spectra does
        _run(f"nuskybgd getspecnoarf ../nu{o}A01_cl.evt reg=bgd{r}.reg outdir=. outprefix=nu{o}A01_bgd{r}A", bgd, env)
    shutil.copy(evt / "src1.reg", bgd / "srcA.reg")
    _run(f"nuskybgd getspecnoarf ../nu{o}A01_cl.evt reg=srcA.reg outdir=. outprefix=nu{o}A01_srcA", bgd, env)
    _run(f"""
nuskybgd mkinstrmap nu{o}A01_cl.evt

nuskybgd mkinstrmap nu{o}B01_cl.evt
""", evt, env)
    _run(f"""
nuskybgd aspecthist nu{o}A_det1.fits gtifile=nu{o}A01_gti.fits \\
    out=aspecthistA.fits

nuskybgd aspecthist nu{o}B_det1.fits gtifile=nu{o}B01_gti.fits \\
    out=aspecthistB.fits
""", evt, env)
    _run(f"""
nuskybgd projbgd refimg=../nu{o}A01_cl_3to20keV.fits out=bgdapA.fits \\
\tmod=A det=1234 chipmap=../newinstrmapA.fits aspect=../aspecthistA.fits

nuskybgd projbgd refimg=../nu{o}A01_cl_3to20keV.fits out=bgdapB.fits \\
\tmod=B det=1234 chipmap=../newinstrmapB.fits aspect=../aspecthistB.fits
""", bgd, env)
    # The walkthrough's fpma.json (its trailing comma after "bgdapA.fits" removed: that is not JSON).
    (bgd / "fpma.json").write_text(json.dumps({
        "bgfiles": [f"nu{o}A01_bgd{r}A_sr.pha" for r in (1, 2, 3)],
        "regfiles": [f"bgd{r}.reg" for r in (1, 2, 3)],
        "refimgf": "bgdapA.fits",
        "bgdapfiles": {"A": "bgdapA.fits"},
        "bgddetfiles": {"A": [f"det{n}Aim.fits" for n in range(4)]},
        "intbgd_fix_line_ratios": True}, indent=4))
    _run("nuskybgd fit fpma.json savefile=n132d_2020_fpma >& fita.log", bgd, env)
    assert (bgd / "n132d_2020_fpma.xcm").is_file()
    # In XSPEC the user fits and saves n132d_2020_fpma_fit.xcm; here the native fit writes it.
    _run("nuskybgd fit fpma.json savefile=n132d_2020_fpma_fit --run > fit.log", bgd, env)
    _run(f"nuskybgd spec fpma.json n132d_2020_fpma_fit.xcm srcA.reg nu{o}A01_srcA_sr.pha", bgd, env)
    assert (bgd / "bgd_srcA.xcm").is_file()
    _run("nuskybgd simplify fpma.json bgd_srcA.xcm", bgd, env)
    text = (bgd / "bgd_only_srcA.xcm").read_text()
    assert f"nu{o}A01_srcA_sr.pha" in text and "bgd1A_sr.pha" not in text
    # Either order of the two files (told apart by content), and image in the seed's form.
    _run("nuskybgd simplify bgd_srcA.xcm fpma.json savefile=again.xcm", bgd, env)
    assert (bgd / "again.xcm").read_text().split("\n", 3)[3] == text.split("\n", 3)[3]
    _run("nuskybgd image fpma.json n132d_2020_fpma_fit.xcm 3 20 prefix=im_", bgd, env)
    with fits.open(bgd / "im_bgd_total_A.fits") as hdul:
        assert hdul[0].data.sum() > 0
