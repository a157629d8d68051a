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
from nuskybgd_engine.io.files import write_numbered
from nuskybgd_engine.io.fitsutil import atomic_output, write_fits
from nuskybgd_engine.io.ogip import write_pha
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
