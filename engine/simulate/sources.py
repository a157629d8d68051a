"""Sky sources of a simulation: a point source with a NuSTAR-like PSF and a β-model cluster."""

from __future__ import annotations

import math

import numpy as np

from ..constants import PIXEL_ARCSEC
from ..model.components import evaluate
from .spec import PSF_RC_ARCSEC, PSF_RMAX_ARCSEC


def _king_radius(n, rng, rc, rmax):
    """Radii from the 2-D profile (1 + (r/rc)²)^-1.5, truncated at ``rmax`` (same units)."""
    fmax = 1.0 - 1.0 / math.sqrt(1.0 + (rmax / rc) ** 2)
    q = rng.uniform(0.0, fmax, n)
    return rc * np.sqrt((1.0 - q) ** -2 - 1.0)


def source_definitions(spec, grid, cal):
    """The sources of ``spec.source`` with their sky positions (0-based pixels) and spectra."""
    edges = np.concatenate([cal.rmf.energ_lo, cal.rmf.energ_hi[-1:]])
    pix_arcsec = PIXEL_ARCSEC
    out = []
    kinds = {"none": (), "point": ("point",), "cluster": ("cluster",), "both": ("point", "cluster")}[spec.source]
    # The target near the aim point (the array centre), as in a real observation; with both
    # kinds the point source sits 1.2' from the cluster centre.
    places = {"point": (505.0, 496.0), "cluster": (480.0, 515.0)}
    for kind in kinds:
        x0, y0 = places[kind]
        ra, dec = grid.wcs.pixel_to_world_values(x0, y0)
        if kind == "point":
            params = {"model": "powerlaw", "PhoIndex": 1.8, "norm": 4.0e-4, "psf_hpd_arcsec": 58.0}
            flux = evaluate("powerlaw", edges, (params["PhoIndex"], params["norm"]))
            rc, rmax, core = PSF_RC_ARCSEC / pix_arcsec, PSF_RMAX_ARCSEC / pix_arcsec, 0.0
        else:
            params = {"model": "bremss", "kT": 6.0, "norm": 3.0e-3, "beta": 2.0 / 3.0, "rc_arcsec": 45.0,
                      "rmax_arcsec": 360.0}
            flux = evaluate("bremss", edges, (params["kT"], params["norm"]))
            rc, rmax, core = 45.0 / pix_arcsec, 360.0 / pix_arcsec, 1.0

        def sample(n, rng, x0=x0, y0=y0, rc=rc, rmax=rmax, core=core):
            r = _king_radius(n, rng, rc, rmax)
            phi = rng.uniform(0, 2 * np.pi, n)
            x, y = x0 + r * np.cos(phi), y0 + r * np.sin(phi)
            if core:  # the cluster is seen through the PSF too
                r2 = _king_radius(n, rng, PSF_RC_ARCSEC / pix_arcsec, PSF_RMAX_ARCSEC / pix_arcsec)
                p2 = rng.uniform(0, 2 * np.pi, n)
                x, y = x + r2 * np.cos(p2), y + r2 * np.sin(p2)
            return x, y

        params.update({"x": x0, "y": y0, "ra": float(ra), "dec": float(dec)})
        out.append({"name": kind, "photon_flux": flux, "sample": sample, "params": params,
                    "radius_pix": (90.0 if kind == "point" else 150.0) / pix_arcsec})
    return out
