"""Files a session writes: XSPEC sessions, background spectra, model images, predictions, regions.

Everything goes to the workspace under a numbered name (never overwriting); :class:`ExportState`
lists what was written in ``written`` (observable, oldest first).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from astropy.io import fits
from nuskybgd_engine.bgdspec import (
    background_spectrum,
    set_backfile,
    write_background_spectrum,
)
from nuskybgd_engine.errors import BadConfigError
from nuskybgd_engine.export import ExportWriter, export_fit_xcm
from nuskybgd_engine.maps.projection import projected_paths, write_projected_maps
from nuskybgd_engine.io.files import write_json, write_numbered
from nuskybgd_engine.io.fitsutil import atomic_output, write_fits
from nuskybgd_engine.io.ogip import write_pha
from nuskybgd_engine.io.regions.shapes import is_sky
from nuskybgd_engine.spectra.extract import extract_spectrum
from nuskybgd_engine.spectra.responses import region_rmf
from nuskybgd_engine.workflow import simplify_session, spec_export
from nuskybgd_engine.xcm import read_xcm, write_xcm
from traitlets import HasTraits, List

from .data import check_band
from .model import COMPONENTS

__all__ = ["ExportState"]


class ExportState(HasTraits):
    """Exports of a session's model and fit.

    Parameters
    ----------
    regions : RegionsState
    model : BackgroundModelState
    fit : FitState
    """

    #: Paths written, oldest first.
    written = List()

    def __init__(self, regions, model, fit):
        super().__init__()
        self.regions, self.model, self.fit = regions, model, fit
        self.data = model.data

    def record(self, paths):
        """Add ``paths`` to ``written``; returns them as a list."""
        self.written = list(self.written) + [Path(p) for p in paths]
        return list(paths)

    def _source_groups(self, name):
        item = self.regions.region(name)
        return [self.model.make_group(item, m) for m in self.data.modules]

    def export_xcm(self, path=None):
        """The background model as an XSPEC ``.xcm`` (+ responses it needs) in the workspace."""
        out = self.data.output_path(path, "bgd_fit.xcm")
        an = self.model.need_analysis()
        return self.record(export_fit_xcm(an, out, statistic=self.model.statistic))

    def export_bgdinfo(self, path=None):
        """The session as a ``bgdinfo.json`` the CLI reads (``nuskybgd fit DIR/bgdinfo.json``), in a new
        folder of the workspace: spectra with their RMFs, one ds9 file per background region (image
        coordinates for drawn pixel shapes, else fk5),
        the projected maps of each observation, the links and options. Several observations are
        written in the ``observations`` form (one block per key, ``internal`` as set); the regions
        are the same files in every block, so fcxb is shared per region as in the session.

        Returns the files written, ``bgdinfo.json`` first.
        """
        an = self.model.need_analysis()
        out = self.data.output_path(path, "bgdinfo")
        out.mkdir(parents=True)
        writer = ExportWriter(out)
        first = next(iter(self.data.products.values()))
        written, regfile = [], {}
        for item in self.regions:
            if item.role == "background":
                regfile[item.name] = f"{item.name}.reg"
                # pixel shapes stay pixel shapes (same masks, hence same weights, in the CLI); they
                # exist only while every observation is on one grid
                coord = "fk5" if any(is_sky(e.shape) for e in item.regions) else "image"
                written.append(item.regions.write_ds9(out / regfile[item.name], coord=coord, grid=first.grid))
        several = len(self.data.products) > 1
        blocks = {}
        for key, obs in self.data.products.items():
            sub = f"{key}/" if several else ""
            (out / sub).mkdir(exist_ok=True)
            for m in self.data.modules:
                written += write_projected_maps(obs[m].maps, out / sub / f"bgdap{m}.fits")
            dets = {m: projected_paths(out / f"bgdap{m}.fits", m)[1].values() for m in self.data.modules}
            blocks[key] = {"key": key, "bgfiles": [], "regfiles": [],
                           "refimgf": f"{sub}bgdap{self.data.modules[0]}.fits",
                           "bgdapfiles": {m: f"{sub}bgdap{m}.fits" for m in self.data.modules},
                           "bgddetfiles": {m: [f"{sub}{p.name}" for p in dets[m]] for m in self.data.modules}}
        for g, key, region in zip(an.groups, self.model.observations, self.model.regions_of_groups):
            stem = g.name
            rmf = writer.response(g.rmf, f"nominal{g.module}.rmf" if getattr(g.rmf, "path", None) is None
                                  and g.rmf.header.get("NOMINAL") else f"{stem}_sr.rmf")
            blocks[key]["bgfiles"].append(writer.spectrum(g, stem, respfile=rmf))
            blocks[key]["regfiles"].append(regfile[region])
        info = {"fcxb_config": {"links": [list(p) for p in self.model.link_pairs()]},
                "intbgd_fix_line_ratios": bool(self.model.fix_line_ratios), "no_solar": bool(self.model.no_solar),
                "negative_norms": bool(self.model.negative_norms), "statistic": self.model.statistic}
        if several:
            info.update(observations=list(blocks.values()), internal=self.model.internal)
        else:
            info.update({k: v for k, v in next(iter(blocks.values())).items() if k != "key"})
        bgdinfo = write_json(out / "bgdinfo.json", info, overwrite=False, indent=1)
        return self.record([bgdinfo] + written + list(writer.written))

    def export_spec(self, source_name, path=None):
        """nuskybgd ``spec``: the fitted background plus the source region's spectra, linked."""
        an = self.model.need_analysis()
        groups = self._source_groups(source_name)
        return self.record(spec_export(an, groups, self.data.output_path(path, f"{source_name}_spec.xcm"),
                                       statistic=self.model.statistic))

    def export_simplify(self, source_name, path=None):
        """nuskybgd ``simplify``: the ``spec`` session with the background spectra dropped, frozen."""
        written = self.export_spec(source_name)
        session = simplify_session(read_xcm(written[0]), len(self.model.analysis.groups))
        out = self.data.output_path(path, f"{source_name}_simple.xcm")
        write_xcm(session, out, overwrite=False)
        return written + self.record([out])

    def export_bgdspec(self, source_name, path=None):
        """Background spectra (OGIP PHA, model counts with STAT_ERR/SYS_ERR) of a source region.

        For each module the source spectrum is extracted from the events and written with its RMF,
        the background spectrum for that region from the fit is written next to it, and the source's
        BACKFILE points at it, so XSPEC/Sherpa load both with ``data src.pha``.
        """
        an = self.fit.need_current()
        item = self.regions.region(source_name)
        obs = self.data.need_observation()
        writer = ExportWriter(self.data.outdir())
        out = []
        for m in self.data.modules:
            # What group_from_events does, without extracting twice: the spectrum and its region RMF.
            rs = extract_spectrum(obs[m].events, item.regions, grid=obs.grid)
            region_response, _ = region_rmf(obs[m].events, rs.det_counts)
            rmf = writer.response(region_response, f"nominal{m}.rmf" if region_response.header.get("NOMINAL")
                                  else f"{source_name}{m}_sr.rmf")
            spec = rs.spectrum
            spec.header["RESPFILE"] = rmf
            src = self.data.output_path(None if path is None else f"{Path(path).stem}{m}.pha",
                                        f"{source_name}{m}_sr.pha")
            write_pha(spec, src)
            bspec = background_spectrum(an, item.regions, src, grid=obs.grid, maps=obs[m].maps)
            bgd = write_numbered(self.data.outdir(), f"{source_name}{m}_sr_bgd.pha",
                                 lambda p, bspec=bspec: write_background_spectrum(bspec, p))
            set_backfile(src, bgd)
            out += [src, bgd]
        return self.record(list(writer.written) + out)

    def export_images(self, band=None, components=("total",) + COMPONENTS):
        """Background model images (counts per pixel) per module and component, as FITS."""


        band = check_band(band if band is not None else self.data.band)
        images = self.model.background_images(band)
        out = []
        for m, per in images.items():
            header = self.data.observation[m].image.header.copy()
            header["NSB_COMP"] = ("background model component", "")
            for comp in components:
                if comp not in per:
                    raise BadConfigError(f"no background component {comp!r}", field="components")
                h = header.copy()
                h["NSB_COMP"] = comp
                h["NSB_EMIN"], h["NSB_EMAX"] = band
                h["BUNIT"] = "count"
                hdu = fits.PrimaryHDU(np.asarray(per[comp], dtype=np.float32), header=h)
                path = write_numbered(self.data.outdir(), f"bgd_{comp}{m}_{band[0]:g}to{band[1]:g}keV.fits",
                                      lambda p, hdu=hdu: write_fits(hdu, p))
                out.append(path)
        return self.record(out)

    def export_prediction(self, region_name, band=(3.0, 20.0), path=None):
        """Predicted background of a region (counts ± σ per module and component) as JSON."""
        pred = self.fit.predict(self.regions.region(region_name), band)
        out = self.data.output_path(path, f"{region_name}_bgd_predict.json")
        data = {"region": region_name, "apec_evaluated_by": self.model.analysis.apec.evaluated_by,
                "modules": {m: p.to_dict() for m, p in pred.items()}}
        with atomic_output(out, overwrite=False) as tmp:
            Path(tmp).write_text(json.dumps(data, indent=1, default=float) + "\n")
        return self.record([out])

    def export_regions(self, names=None, coord="fk5"):
        """Write each region to ``<workspace>/<name>.reg`` (numbered if taken); returns the paths."""
        grid = self.data.grid
        out = []
        for n in names if names is not None else self.regions.names():
            item = self.regions.region(n)
            path = write_numbered(self.data.outdir(), f"{n}.reg",
                                  lambda p, item=item: item.regions.write_ds9(p, coord=coord, grid=grid))
            out.append(path)
        return self.record(out)
