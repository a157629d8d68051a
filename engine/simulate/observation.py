"""The whole simulated observation: files in the NuSTAR pipeline layout and its ``truth.json``."""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from astropy.io import fits
from astropy.time import Time

from ..errors import BadFileError, OutputExistsError
from ..io.aspect import write_aspect
from ..io.events import write_events
from ..io.files import write_json
from ..io.gti import write_gti
from ..io.regions import SkyGrid, region_cutout
from ..maps.aspecthist import aspect_histogram
from ..maps.module_calibration import module_calibration
from ..maps.projection import project_maps
from .events import (
    COMPONENT_NAMES,
    component_photon_spectra,
    internal_area,
    module_detectors,
    simulate_module_events,
)
from .sources import source_definitions
from .spec import BAND_SLICES, SimulationSpec
from .timeline import aspect_centre_for, make_aspect_track, make_gti
from .truth import (
    CONVENTIONS,
    expected_counts,
    fraction_in_cutout,
    source_landing,
    suggested_regions,
    unit_channel_counts,
)


@dataclass
class SimulatedObservation:
    """Paths written by :func:`simulate_observation` and the truth dictionary."""

    root: Path
    event_files: dict
    aspect_files: dict
    gti_files: dict
    region_files: dict
    truth: dict

    def __repr__(self):
        n = {m: self.truth["modules"][m]["n_events"] for m in self.truth["modules"]}
        return f"SimulatedObservation({self.root}, events={n}, regions={sorted(self.region_files)})"


def sky_frame(spec):
    """Sky-pixel WCS keywords (1000×1000 TAN) of the simulated observation, centred on its pointing."""
    return {"NAXIS1": 1000, "NAXIS2": 1000, "CTYPE1": "RA---TAN", "CTYPE2": "DEC--TAN", "CRPIX1": 500.5,
            "CRPIX2": 500.5, "CRVAL1": spec.ra, "CRVAL2": spec.dec, "CDELT1": -6.828076e-4,
            "CDELT2": 6.828076e-4, "CUNIT1": "deg", "CUNIT2": "deg"}


def time_keywords(spec, gti):
    """Header keywords of the observation (the same for both modules)."""
    mjdref = 55197.00076601852
    tstart, tstop = float(gti.start[0] - 60.0), float(gti.stop[-1] + 60.0)
    iso = lambda t: Time(mjdref + t / 86400.0, format="mjd", scale="tt").isot[:19]  # noqa: E731
    ontime = gti.exposure
    return {
        "OBS_ID": spec.obsid, "OBJECT": f"SIM_{spec.source.upper()}", "TARG_ID": 0,
        "DATE-OBS": iso(tstart), "DATE-END": iso(tstop), "TSTART": tstart, "TSTOP": tstop,
        "TELAPSE": tstop - tstart, "ONTIME": ontime, "EXPOSURE": spec.exposure, "LIVETIME": spec.exposure,
        "DEADC": spec.exposure / ontime, "TIMESYS": "TT", "TIMEUNIT": "s", "TIMEREF": "LOCAL",
        "MJDREFI": 55197, "MJDREFF": 7.6601852e-4, "CLOCKAPP": False,
        "RA_NOM": spec.ra, "DEC_NOM": spec.dec, "RA_PNT": spec.ra, "DEC_PNT": spec.dec, "PA_PNT": spec.pa,
        "RA_OBJ": spec.ra, "DEC_OBJ": spec.dec, "EQUINOX": 2000.0, "RADECSYS": "FK5",
        "CREATOR": "nuskybgd simulate", "ORIGIN": "nuskybgd-widgets",
    }


def simulate_observation(outdir, spec=None, *, calibration=None, overwrite=False, progress=None):
    """Simulate one observation (both modules) and write it under ``outdir/<obsid>``.

    All files are written into a staging directory first and moved into place at the end, so
    a failure leaves nothing behind; an existing ``outdir/<obsid>`` is replaced only with
    ``overwrite=True``.

    Parameters
    ----------
    outdir : path-like
        Existing, writable directory.
    spec : SimulationSpec, optional
    calibration : callable(module) -> ModuleCalibration, optional
        Defaults to :func:`nuskybgd_engine.maps.module_calibration.module_calibration`.
    overwrite : bool
    progress : callable(str), optional
        Receives short progress messages.

    Returns
    -------
    SimulatedObservation
    """
    spec = spec or SimulationSpec()
    say = progress or (lambda msg: None)
    outdir = Path(outdir)
    if not outdir.is_dir():
        raise BadFileError("output directory does not exist", path=outdir)
    if not os.access(outdir, os.W_OK):
        raise BadFileError("output directory is not writable", path=outdir)
    final = outdir / spec.obsid
    if final.exists() and not overwrite:
        raise OutputExistsError(f"already holds observation {spec.obsid} (use --overwrite)", path=final)
    calibration = calibration or module_calibration

    rng = np.random.default_rng(spec.seed)
    staging = Path(tempfile.mkdtemp(prefix=f".{spec.obsid}.", dir=outdir))
    try:
        root = staging / spec.obsid
        evdir = root / "event_cl"
        regdir = root / "regions"
        evdir.mkdir(parents=True)
        regdir.mkdir()
        sky = sky_frame(spec)
        ref_header = fits.Header()
        ref_header["NAXIS"] = 2
        for k, v in sky.items():
            ref_header[k] = v
        ref_header["PA_PNT"] = spec.pa
        grid = SkyGrid.from_header(ref_header)
        gti = make_gti(spec.exposure, rng)
        keys = time_keywords(spec, gti)
        centre = aspect_centre_for(spec.pa)
        cals, tracks, maps = {}, {}, {}
        for m in spec.modules:
            say(f"FPM{m}: calibration, aspect and projected maps")
            cals[m] = calibration(m)
            tracks[m] = make_aspect_track(m, gti, centre, rng, header={k: keys[k] for k in (
                "OBS_ID", "OBJECT", "RA_NOM", "DEC_NOM", "TSTART", "TSTOP", "DATE-OBS", "DATE-END", "MJDREFI",
                "MJDREFF", "TIMESYS")})
            hist = aspect_histogram(tracks[m], gti)
            maps[m] = project_maps(ref_header, cals[m].instrument_map, hist, module=m,
                                   aperture=cals[m].aperture_det1)
        sources = source_definitions(spec, grid, cals[spec.modules[0]])
        truth = {"obsid": spec.obsid, "seed": spec.seed, "exposure": spec.exposure, "pa_pnt": spec.pa,
                 "ra_nom": spec.ra, "dec_nom": spec.dec, "source": spec.source, "norms": spec.norms,
                 "conventions": CONVENTIONS,
                 "sources": [s["params"] for s in sources], "modules": {}, "regions": {},
                 "calibration": {m: cals[m].describe() for m in spec.modules}}
        event_files, aspect_files, gti_files = {}, {}, {}
        unit, source_chan = {}, {}  # per module: folded unit spectra, per-source counts/s per channel
        for m in spec.modules:
            say(f"FPM{m}: events")
            detectors = module_detectors(cals[m])
            spectra = component_photon_spectra(cals[m], m, spec.norms)
            ev = simulate_module_events(spec, m, cals[m], tracks[m], gti, rng, sources, detectors=detectors,
                                        spectra=spectra)
            unit[m] = unit_channel_counts(cals[m], m, spec.norms, spectra=spectra)
            source_chan[m] = [detectors[0].channel_counts(s["photon_flux"], cals[m].fcxb_arf) for s in sources]
            stem = f"nu{spec.obsid}{m}"
            event_files[m] = evdir / f"{stem}01_cl.evt"
            write_events(event_files[m], ev.columns, m, keys, sky, gti=gti)
            aspect_files[m] = evdir / f"{stem}_det1.fits"
            write_aspect(tracks[m], aspect_files[m])
            gti_files[m] = evdir / f"{stem}01_gti.fits"
            write_gti(gti, gti_files[m], keywords={k: keys[k] for k in ("TSTART", "TSTOP", "MJDREFI", "MJDREFF",
                                                                         "OBS_ID")})
            truth["modules"][m] = {
                "internal_area": internal_area(cals[m].detnum),
                "n_events": int(ev.columns["TIME"].size),
                "n_by_component": {name: int(np.count_nonzero(ev.component == i))
                                   for i, name in enumerate(COMPONENT_NAMES)},
                "lost": ev.lost,
            }
        say("regions and expected counts")
        region_sets = suggested_regions(maps, sources)
        # Where each source's Monte Carlo photons land does not depend on the region.
        landing = {m: [source_landing(s, tracks[m], gti, cals[m], spec.pa) for s in sources]
                   for m in spec.modules}
        region_files = {}
        for name, rs in region_sets.items():
            region_files[name] = regdir / f"{name}.reg"
            rs.write_ds9(region_files[name], coord="fk5", grid=grid)
            entry = {"file": f"regions/{name}.reg", "kind": "source" if name.startswith("src") else "background",
                     "modules": {}}
            cut = region_cutout(rs, grid)
            for m in spec.modules:
                sums = {"W": float(cut.sum(maps[m].bgdap)), "A": [float(cut.sum(d)) for d in maps[m].det]}
                expected = expected_counts(cals[m], m, spec.norms, maps[m], sums, spec.exposure, unit=unit[m])
                for s, land, base in zip(sources, landing[m], source_chan[m]):
                    frac = fraction_in_cutout(land, cut)
                    chan = base * spec.exposure * frac
                    for band, counts in expected.items():
                        counts[s["name"]] = float(chan[BAND_SLICES[band]].sum())
                entry["modules"][m] = {"weights": sums, "expected": expected}
            entry["npix"] = int(cut.npix)
            truth["regions"][name] = entry
        write_json(root / "truth.json", truth)
        if final.exists():
            shutil.rmtree(final)
        os.replace(root, final)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    rel = lambda d: {k: final / Path(v).relative_to(root) for k, v in d.items()}  # noqa: E731
    return SimulatedObservation(final, rel(event_files), rel(aspect_files), rel(gti_files), rel(region_files),
                                truth)
