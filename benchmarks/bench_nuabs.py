"""How IDL nuskybgd's ``nuabs`` compares with our detector-absorption treatment (issue 17).

``nuabs`` (IDL nuskybgd before 2015) multiplied apbgd, intbgd and fcxb by the transmission of the
detector's Pt contact and CZT dead layer, ``exp(-mu_Pt t_Pt - mu_CZT t_CZT)`` with per-region
thicknesses (``auxil/nuabs.dat`` weighted by detector fractions). nuskybgd (IDL after 2015,
nuskybgd-py and this package) applies CALDB DETABS instead, and only to apbgd (its ARF). This
script measures, with attenuation coefficients that share nothing with either (xraydb, Elam
tables; ``pip install xraydb``):

1. nuabs vs CALDB DETABS per FPMA detector (``nuAdetabs20100101v002.fits`` in ``../shared/data``);
2. for every data group of the real IDL fit (``nustar_jupiter_analysis/bgd_20013036002.xcm``),
   the 3-20 keV photon counts of apbgd, intbgd and fcxb with and without its nuabs: the factor by
   which the imported norms, read into our model (intbgd and fcxb unabsorbed), predict more
   counts than IDL's own session did.

Run: ``python benchmarks/bench_nuabs.py`` (``NUSKYBGD_SHARED`` overrides ``../shared``).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np


def _shared():
    return Path(os.environ.get("NUSKYBGD_SHARED") or Path(__file__).resolve().parents[2] / "shared")


def transmission(energy_kev, pt_um, czt_um, cd_ratio=0.9):
    """exp(-mu_Pt t_Pt - mu_CZT t_CZT) with xraydb's linear attenuation (1/cm)."""
    import xraydb

    e = np.asarray(energy_kev, float) * 1000.0
    czt = f"Cd{cd_ratio:g}Zn{1 - cd_ratio:g}Te"
    tau = (xraydb.material_mu("Pt", e, density=21.45) * pt_um * 1e-4
           + xraydb.material_mu(czt, e, density=5.78) * czt_um * 1e-4)
    return np.exp(-tau)


def main():
    try:
        import xraydb  # noqa: F401
    except ImportError:
        print("needs xraydb (pip install xraydb)")
        return 1
    from astropy.io import fits

    from nuskybgd_engine.constants import channel_edges
    from nuskybgd_engine.idl import idl_to_nuskybgd
    from nuskybgd_engine.model.components import evaluate
    from nuskybgd_engine.model.xcm_model import session_to_state
    from nuskybgd_engine.xcm import read_xcm

    shared = _shared()
    edges = channel_edges()
    mid = 0.5 * (edges[:-1] + edges[1:])
    band = (mid >= 3.0) & (mid <= 20.0)
    # nuabs.dat (IDL auxil, 2013): Pt, CZT thicknesses (um) per detector.
    nuabs_dat = {"A": ([0.1143, 0.0993, 0.0712, 0.1081], [0.2275, 0.3069, 0.3476, 0.2554]),
                 "B": ([0.1209, 0.0867, 0.1091, 0.0869], [0.2451, 0.2887, 0.2430, 0.3248])}

    detabs_path = shared / "data/caldb-detabs-arf-mccal/nuAdetabs20100101v002.fits"
    if detabs_path.is_file():
        print("1. nuabs (nuabs.dat thicknesses, xraydb) vs CALDB DETABS v002, FPMA, 3-20 keV")
        with fits.open(detabs_path) as h:
            for n in range(4):
                d = h[n + 1].data
                e = 0.5 * (d["ENERG_LO"] + d["ENERG_HI"])
                sel = (e >= 3.0) & (e <= 20.0)
                t = transmission(e[sel], nuabs_dat["A"][0][n], nuabs_dat["A"][1][n])
                rel = t / d["DETABS"][sel] - 1.0
                j = int(np.argmax(np.abs(rel)))
                print(f"   {h[n + 1].header.get('DETNAM', n)}: mean |nuabs/DETABS - 1| = {np.abs(rel).mean():.4f}, "
                      f"max {abs(rel[j]):.4f} at {e[sel][j]:.2f} keV (3 keV: nuabs {t[0]:.4f}, "
                      f"DETABS {d['DETABS'][sel][0]:.4f})")
    else:
        print(f"1. skipped: {detabs_path} not found")

    xcm = shared / "data/nustar_jupiter_analysis/bgd_20013036002.xcm"
    auxil = Path(os.environ.get("NUSKYBGD_AUXIL") or shared / "nustar-auxil")
    if not xcm.is_file() or not (auxil / "be.arf").is_file():
        print(f"2. skipped: {xcm} or {auxil / 'be.arf'} not found")
        return 0
    session, conv = idl_to_nuskybgd(read_xcm(xcm))
    state = session_to_state(session)

    def arf(name):
        with fits.open(auxil / name) as h:
            return np.asarray(h[1].data["SPECRESP"], float)  # by row index (be.arf's energies are corrupt)

    be = arf("be.arf")
    print("2. IDL fit bgd_20013036002: 3-20 keV photon counts with nuabs / without (per unit exposure)")
    print("   group  Pt     CZT    apbgd   intbgd  fcxb")
    worst = {"apbgd": 1.0, "intbgd": 1.0, "fcxb": 1.0}
    for g in range(1, state["apbgd"].n_groups + 1):
        nu = conv.nuabs[("apbgd", g)]
        t = transmission(mid, nu["Pt"], nu["CZT"], nu["CdRatio"])
        module = "A" if g <= 4 else "B"
        fc = arf(f"fcxb{module}.arf")
        ratios = {}
        for src, resp in (("apbgd", be), ("fcxb", fc)):
            s = state[src]
            ph = evaluate("cutoffpl", edges, [state.value(src, s.index(g, k)) for k in (1, 2, 3)]) * resp
            ratios[src] = float((ph * t)[band].sum() / ph[band].sum())
        s = state["intbgd"]
        ph = np.zeros(mid.size)
        for cname, ctype in s.components:
            if ctype != "lorentz":
                continue
            k0 = [c for c, _t in s.components].index(cname)
            local = 4 + 3 * (k0 - 1) + 1
            vals = [state.value("intbgd", s.index(g, local + j)) for j in range(3)]
            ph += evaluate("lorentz", edges, vals)
        apec_norm = state.value("intbgd", s.index(g, 4))
        ph += evaluate("bremss", edges, [1.14579, apec_norm])  # apec's shape stand-in (continuum only)
        ratios["intbgd"] = float((ph * t)[band].sum() / ph[band].sum())
        for k, v in ratios.items():
            worst[k] = min(worst[k], v)
        print(f"   {g:5d}  {nu['Pt']:.4f} {nu['CZT']:.4f} {ratios['apbgd']:.4f}  {ratios['intbgd']:.4f}  "
              f"{ratios['fcxb']:.4f}")
    print("   apbgd: our DETABS ARF applies the same absorption (part 1). intbgd and fcxb: absorbed in IDL, not "
          "here: the imported norms give up to "
          f"{(1 / worst['intbgd'] - 1) * 100:.0f}% (intbgd) and {(1 / worst['fcxb'] - 1) * 100:.0f}% (fcxb) more "
          "3-20 keV counts until refitted.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
