"""The fit of a session's background model and what it predicts.

:class:`FitState` runs the engine's fit and keeps, observable, the last result shown to the user
(``result``) and its ``warnings``. Whether that result still describes the model is read from the
engine (the analysis clears its own ``result`` when regions or values change): :attr:`current`.
"""

from __future__ import annotations

from nuskybgd_engine.errors import FitError, NuSkyBgdError
from nuskybgd_engine.model.background import region_weights
from nuskybgd_engine.startvalues import apply_start_values
from traitlets import Any, Bool, HasTraits, List

from .data import check_band

__all__ = ["FitState"]


class FitState(HasTraits):
    """Fit and prediction over a :class:`~.model.BackgroundModelState`.

    Parameters
    ----------
    model : BackgroundModelState
    say : callable(text, level)
        Where notes go (the session's message list).
    """

    #: FitResult of the last fit (kept, marked not current, when the model changes after it).
    result = Any(None, allow_none=True)
    #: Warnings of the last fit (apec stand-in, fcxb poorly constrained, non-convergence).
    warnings = List()
    #: True while fitting.
    busy = Bool(False)
    #: The engine's FitOutput (statistic, dof, convergence) of the fit under way, set as soon as its
    #: optimum is found, before the errors and goodness that make ``result``; None otherwise.
    optimum = Any(None, allow_none=True)

    def __init__(self, model, say=None):
        super().__init__()
        self.model = model
        self._say = say or (lambda text, level="info": None)
        self._start_values_applied = False  # image-based starts are used once, before the first fit

    @property
    def current(self):
        """True when the last fit belongs to the current regions and parameter values."""
        an = self.model.analysis
        return self.result is not None and an is not None and an.result is self.result

    def clear(self):
        """Forget the last fit (a new observation, or the model reset to its presets)."""
        self._start_values_applied = False
        with self.hold_trait_notifications():
            self.warnings = []
            self.result = None

    def fit(self):
        """Fit the background model (statistic ``model.statistic``).

        Returns the FitResult; its warnings (and the apec stand-in flag) go to ``warnings``.
        A fit that does not converge raises FitError; its message is in ``warnings`` too.
        """
        an = self.model.need_analysis()
        self.busy = True
        try:
            if self.result is None and not self._start_values_applied and not an.model.is_linear:
                # First fit of these regions with free shape parameters: start from the counts
                # image, not from the presets. A norms-only fit is convex (one optimum whatever
                # the start; the demo's fit agrees to 1e-8 either way), so the 2-5 s of image
                # start values are skipped there: Fit shows its result in a fraction of a second.
                try:
                    apply_start_values(an, self.model.data.need_observation())
                    self._start_values_applied = True
                except NuSkyBgdError as exc:
                    self._say(f"image-based starting values not used: {exc}", "warning")
            result = an.fit(self.model.statistic, on_optimum=self._found)
        except FitError as exc:
            with self.hold_trait_notifications():
                self.result = an.result
                self.warnings = [str(exc)] + list(getattr(an.result, "warnings", []) or [])
            self.model.announce(None, "fit")
            raise
        finally:
            self.busy = False
            self.optimum = None
        with self.hold_trait_notifications():
            self.result = result
            self.warnings = list(result.warnings)
        self.model.announce(None, "fit")
        return result

    def _found(self, out):
        self.optimum = out

    def need_current(self):
        """The analysis, fitted for the current model; else FitError asking for a fit."""
        an = self.model.need_analysis()
        if not self.current:
            raise FitError("fit the background first (regions or parameters changed since the last fit)"
                           if self.result is not None else "fit the background first", field="fit")
        return an

    def predict(self, item, band=(3.0, 20.0)):
        """Predicted background counts (± 1σ, stat ⊕ sys) in region ``item``, per module.

        Returns
        -------
        dict
            ``{module: Prediction}`` for each module with fitted spectra.
        """
        an = self.need_current()
        band = check_band(band)
        obs = self.model.data.need_observation()
        out = {}
        for m in self.model.data.modules:
            if m in an.state.modules:
                w = region_weights(item.regions, obs.grid, obs[m].maps, name=f"{item.name}{m}")
                out[m] = an.predict(w, band=band)
        return out
