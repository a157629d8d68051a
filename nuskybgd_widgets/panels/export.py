"""Export panel: fit/spec/simplify .xcm, bgdinfo.json for the CLI, background images, predicted background;
list of files written."""

from __future__ import annotations

import html

import ipywidgets as w
from nuskybgd_engine.errors import BadConfigError

from .base import Panel, guarded

__all__ = ["ExportPanel"]


class ExportPanel(Panel):
    """Writes into the session's workspace (numbered names, never overwriting).

    Scripting API (``user_api``): ``export_xcm()``, ``export_bgdinfo()``, ``export_spec()``, ``export_simplify()``,
    ``export_bgdspec()``, ``export_images()``, ``predict()``, ``export_regions()`` (what the buttons
    do); settable ``source`` (the source region they use), ``emin``, ``emax`` (keV band of images and
    predictions); read-only ``written`` (paths), ``prediction`` (text shown).
    """

    title = "Export"
    api_expose = ("export_xcm", "export_bgdinfo", "export_spec", "export_simplify", "export_bgdspec", "export_images", "predict",
                  "export_regions", "source", "emin", "emax")
    api_readonly = ("written", "prediction")

    def __init__(self, session):
        super().__init__(session)
        s = session
        ws = str(s.workspace) if s.workspace is not None else "(no workspace: exports disabled)"
        self.xcm_button = w.Button(description="Fit .xcm", button_style="primary").add_class("nsb-export-xcm-button")
        self.bgdinfo_button = w.Button(description="bgdinfo.json", tooltip="spectra, regions, maps and options as "
                                       "a bgdinfo.json for `nuskybgd fit` (every observation loaded)"
                                       ).add_class("nsb-export-bgdinfo-button")
        self.source = w.Dropdown(options=s.region_names("source"), description="source")
        self.spec_button = w.Button(description="spec .xcm").add_class("nsb-export-spec-button")
        self.simplify_button = w.Button(description="simplify .xcm").add_class("nsb-export-simplify-button")
        self.bgdspec_button = w.Button(description="background PHA").add_class("nsb-export-bgdspec-button")
        self.emin = w.BoundedFloatText(value=3.0, min=1.6, max=165.0, description="band keV",
                                       layout=w.Layout(width="170px"))
        self.emax = w.BoundedFloatText(value=20.0, min=1.6, max=165.0, layout=w.Layout(width="80px"))
        self.images_button = w.Button(description="Background images").add_class("nsb-export-images-button")
        self.predict_button = w.Button(description="Predict background").add_class("nsb-predict-button")
        self.regions_button = w.Button(description="Regions .reg").add_class("nsb-export-regions-button")
        self.prediction = w.HTML("").add_class("nsb-prediction")
        self.file_list = w.HTML("<i>nothing written yet</i>").add_class("nsb-export-list")
        self.xcm_button.on_click(lambda _b: self.export_xcm())
        self.bgdinfo_button.on_click(lambda _b: self.export_bgdinfo())
        self.spec_button.on_click(lambda _b: self.export_spec())
        self.simplify_button.on_click(lambda _b: self.export_simplify())
        self.bgdspec_button.on_click(lambda _b: self.export_bgdspec())
        self.images_button.on_click(lambda _b: self.export_images())
        self.predict_button.on_click(lambda _b: self.predict())
        self.regions_button.on_click(lambda _b: self.export_regions())
        s.regions.observe(self._on_regions, "items")
        s.exports.observe(self._on_written, "written")
        self.widget = w.VBox([
            self._header(), w.Label(f"workspace: {ws}"),
            w.HBox([self.xcm_button, self.bgdinfo_button, self.regions_button]),
            w.HBox([self.source, self.spec_button, self.simplify_button, self.bgdspec_button]),
            w.HBox([self.emin, self.emax, self.images_button, self.predict_button]),
            self.prediction, self.message, self.file_list,
        ]).add_class("nsb-export-panel")

    @property
    def written(self):
        """Paths written by the exports of this session, oldest first."""
        return list(self.session.written)

    def _on_regions(self, _change=None):
        names = self.session.region_names("source")
        if list(self.source.options) != names:
            old = self.source.value
            self.source.options = names
            self.source.value = old if old in names else (names[0] if names else None)

    def _on_written(self, _change=None):
        ws = self.session.workspace
        items = []
        for p in self.session.written:
            try:
                text = str(p.relative_to(ws))
            except ValueError:
                text = str(p)
            items.append(f"<li>{html.escape(text)}</li>")
        self.file_list.value = f"<b>written ({len(items)})</b><ul>{''.join(items)}</ul>"

    def _need_source(self):
        if not self.source.value:
            raise BadConfigError("choose a source region (draw one with role 'source')", field="source")
        return self.source.value

    def _done(self, paths):
        self.show(f"wrote {len(paths)} file(s): {', '.join(p.name for p in paths[:4])}"
                  f"{' …' if len(paths) > 4 else ''}")
        return paths

    @guarded
    def export_xcm(self):
        """The fitted model as an XSPEC .xcm (+ the files it loads)."""
        return self._done(self.session.export_xcm())

    @guarded
    def export_bgdinfo(self):
        """The session as a bgdinfo.json (+ spectra, regions, maps) that ``nuskybgd fit`` reads."""
        return self._done(self.session.export_bgdinfo())

    @guarded
    def export_spec(self):
        """nuskybgd spec: the background plus the source region's spectra, as .xcm."""
        return self._done(self.session.export_spec(self._need_source()))

    @guarded
    def export_simplify(self):
        """nuskybgd simplify: the spec session without the background spectra."""
        return self._done(self.session.export_simplify(self._need_source()))

    @guarded
    def export_bgdspec(self):
        """Source and model-background spectra (BACKFILE set) of the source region."""
        return self._done(self.session.export_bgdspec(self._need_source()))

    @guarded
    def export_images(self):
        """Background model images (FITS) per module and component in the band."""
        return self._done(self.session.export_images((self.emin.value, self.emax.value)))

    @guarded
    def export_regions(self):
        """Every region as a ds9 file."""
        return self._done(self.session.export_regions())

    @guarded
    def predict(self):
        """Predicted background counts ± 1σ of the source region (shown, and written as JSON)."""
        name = self._need_source()
        band = (self.emin.value, self.emax.value)
        pred = self.session.predict(name, band)
        paths = self.session.export_prediction(name, band)
        lines = [f"FPM{m}: {p.total:.1f} counts ± {p.stat_error:.1f} (stat) ± {p.sys_error:.1f} (sys, "
                 f"{100 * p.systematic_fraction:.2f} % floor; stat ⊕ sys {p.stat_sys_error:.1f}) "
                 f"({band[0]:g}-{band[1]:g} keV; "
                 + ", ".join(f"{k} {v:.1f}" for k, v in p.components.items()) + ")" for m, p in pred.items()]
        if self.session.apec_standin:
            lines.append("apec evaluated with the bremss stand-in (no AtomDB)")
        self.prediction.value = "<br>".join(html.escape(x) for x in lines)
        self._done(paths)
        return pred
