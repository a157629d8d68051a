"""The ``pyxspec`` fit backend: the same model fitted by XSPEC itself, through PyXspec.

PyXspec comes with HEASoft (it is not on PyPI): initialise HEASoft (``headas-init.sh``) in the
environment where Python runs, check that ``python -c "import xspec"`` works, then use
``nuskybgd fit ... --run --backend pyxspec`` or ``analysis.fit(backend="pyxspec")``.

The backend writes the model exactly as the ``.xcm`` export does (spectra, responses, links;
apec as apec when PyXspec evaluates it), restores it with ``Xset.restore``, runs ``Fit.perform``
and reads every parameter, the statistic, the dof and the covariance back into the analysis.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

import numpy as np

from ..errors import FitError
from ..export import export_fit_xcm
from ..model.xcm_model import exported_parameter_map
from .result import FitOutput

__all__ = ["PyXspecBackend"]


@contextlib.contextmanager
def _cwd(path):
    old = os.getcwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(old)


class PyXspecBackend:
    """Fits a :class:`~nuskybgd_engine.analysis.BackgroundAnalysis` with PyXspec.

    Parameters
    ----------
    xspec : module
        The imported ``xspec`` package (injected so tests can use a stand-in).
    """

    name = "pyxspec"

    def __init__(self, xspec):
        self.xspec = xspec

    def fit(self, problem, *args, **kw):
        raise FitError("the pyxspec backend fits whole background analyses (BackgroundAnalysis.fit), not bare "
                       "LinearProblems", field="backend")

    def fit_analysis(self, analysis, statistic, *, workdir=None, max_iter=30000, tol=1e-4):
        """Fit ``analysis`` in XSPEC; the analysis state is updated to XSPEC's best fit."""
        xs = self.xspec
        with tempfile.TemporaryDirectory(prefix="nuskybgd-xspec-") as tmp:
            work = Path(workdir or tmp)
            xcm = work / "model.xcm"
            export_fit_xcm(analysis, xcm, statistic=statistic, overwrite=True)
            with _cwd(work):
                try:
                    xs.Xset.chatter = 0
                    xs.AllData.clear()
                    xs.AllModels.clear()
                    xs.Xset.restore(str(xcm))
                    xs.Fit.statMethod = statistic
                    xs.Fit.method = ["leven", int(max_iter), float(tol)]
                    xs.Fit.query = "yes"
                    xs.Fit.perform()
                except Exception as exc:  # PyXspec raises plain Exceptions with XSPEC's message
                    raise FitError(f"XSPEC failed: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}",
                                   field="backend") from None
                free = analysis.model.free()
                theta, errors = [], []
                standin = analysis.apec.xspec_component()
                for source, index in free:
                    par = self._parameter(source, index, analysis)
                    p = analysis.state[source][index]
                    # The stand-in's bremss norm is norm_factor × the apec norm.
                    f = (standin["norm_factor"] if p.component == "apec" and p.name == "norm" else 1.0)
                    theta.append(float(par.values[0]) / f)
                    errors.append(float(par.sigma) / f)
                stat = float(xs.Fit.statistic)
                dof = int(xs.Fit.dof)
                cov = self._covariance(len(free), errors)
        analysis.model.set_free_values(free, np.asarray(theta))
        out = FitOutput(theta=np.asarray(theta), stat=stat, covariance=cov, errors=np.asarray(errors), n_iter=0,
                        converged=True, message="fitted by XSPEC (Fit.perform)", dof=dof, statistic=statistic,
                        names=[f"{s}:p{k}" for s, k in free], method="leven (XSPEC)")
        result = analysis.result_from_fit(out, free, statistic, "pyxspec")
        return result

    def _parameter(self, source, index, analysis):
        """XSPEC parameter object of ``source:p<index>`` (global index → group, local)."""
        src = analysis.state[source]
        group, local = divmod(index - 1, src.n_par)
        # With the apec stand-in the exported intbgd is renumbered (bremss has 2 parameters).
        mapping, _ = exported_parameter_map(src, analysis.apec.evaluated_by != "pyxspec")
        model = self.xspec.AllModels(group + 1, source)
        return model(mapping[local + 1])

    def _covariance(self, n, errors):
        try:
            flat = list(self.xspec.Fit.covariance)
        except Exception:  # noqa: BLE001 - no covariance (e.g. a fit with pegged parameters)
            flat = []
        cov = np.full((n, n), np.nan)
        if len(flat) == n * (n + 1) // 2:
            k = 0
            for i in range(n):
                for j in range(i + 1):
                    cov[i, j] = cov[j, i] = flat[k]
                    k += 1
        else:
            cov[np.diag_indices(n)] = np.square(errors)
        return cov

    def __repr__(self):
        return "<PyXspecBackend>"
