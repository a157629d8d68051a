"""The native fitting engine: a fast path for models linear in their free parameters and a
Levenberg-Marquardt path (XSPEC's ``leven``) for general models, with Delta-stat confidence ranges.

Linear fast path (:func:`fit_linear`)
    When only normalisations are free, the model counts of spectrum g are
    ``m_g = A_g theta + o_g``. The statistic is then convex in theta (cstat: -ln of a linear
    function; chi with data variance: quadratic), its gradient ``A^T dS/dm`` and Hessian
    ``A^T diag(d2S/dm2) A`` are exact and cheap, and a projected Newton iteration with box
    constraints (each step solves a small bound-constrained quadratic problem by an active set,
    then an Armijo line search on the true statistic) converges in a few iterations.
    For cstat the first iterations use the Fisher (expected) curvature ``2/m`` instead of the
    observed ``2d/m^2``: that step is the weighted least-squares solution with weights 1/m,
    which does not depend on the overall scale of the start, so presets wrong by factors
    1e-4..1e4 are corrected in one or two steps (plain Newton only doubles a too-small value per
    iteration). Once a step changes the statistic by less than 1 the exact Newton step is used.
    The products with A run over each spectrum's non-zero design columns (its own norms and the
    shared ones), not over the stacked matrix.

Convergence
    XSPEC's ``leven`` stops when an iteration lowers the statistic by <= the critical delta
    (default 1e-4; ``LevMarq::doPerform``). A small change after a heavily damped step is not
    the optimum, so here a fit is declared converged when the *undamped* (Gauss-)Newton step
    predicts a further decrease <= ``tol``: the next iteration could not change the statistic by
    more than the critical delta. Reaching ``max_iter``, a failed line search or a singular
    curvature matrix (degenerate parameters) gives ``converged=False`` with a message.

Errors
    ``covariance = (H/2)^-1`` with H the Hessian of the statistic over the parameters not at a
    limit (for cstat, C/2 = -ln L + const). Parameters at a limit get error 0 and
    ``at_bound=True`` (XSPEC pegs them and quotes no error).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..errors import FitError
from .result import ConfidenceInterval, FitOutput
from .statistics import get_statistic

__all__ = [
    "GeneralProblem",
    "LinearProblem",
    "confidence_interval",
    "fit_general",
    "fit_linear",
]

#: Relative threshold on the eigenvalues of the correlation-scaled curvature matrix below
#: which parameters are called degenerate (condition number 1e12).
_SINGULAR_RCOND = 1e-12


# ---------------------------------------------------------------------------------------------
# Problem definitions
# ---------------------------------------------------------------------------------------------

def _float_array(value, field, ndim=None):
    """``value`` as a float array (not copied if it is one already), checked finite."""
    try:
        arr = np.asarray(value, dtype=float)
    except (TypeError, ValueError) as exc:
        raise FitError(f"cannot convert to numbers ({exc})", field=field) from None
    if ndim is not None and arr.ndim != ndim:
        raise FitError(f"expected a {ndim}-D array, got shape {arr.shape}", field=field)
    # a finite sum has no NaN or infinity in it (one pass, no temporary); else check each value
    with np.errstate(over="ignore", invalid="ignore"):
        total = arr.sum()
    if not np.isfinite(total) and not np.all(np.isfinite(arr)):
        raise FitError("contains NaN or infinite values", field=field)
    return arr


def _bounds(lower, upper, n):
    lo = np.zeros(n) if lower is None else np.array(lower, dtype=float).reshape(-1)
    hi = np.full(n, np.inf) if upper is None else np.array(upper, dtype=float).reshape(-1)
    if lo.size != n or hi.size != n:
        raise FitError(f"bounds must have {n} values (got {lo.size} lower, {hi.size} upper)",
                       field="lower/upper")
    if np.any(np.isnan(lo)) or np.any(np.isnan(hi)):
        raise FitError("bounds contain NaN", field="lower/upper")
    if np.any(lo > hi):
        i = int(np.argmax(lo > hi))
        raise FitError(f"lower bound {lo[i]:g} > upper bound {hi[i]:g} for parameter {i + 1}",
                       field="lower/upper")
    return lo, hi


def _names(names, n):
    if names is None:
        return [f"p{i + 1}" for i in range(n)]
    names = [str(x) for x in names]
    if len(names) != n:
        raise FitError(f"{len(names)} names for {n} parameters", field="names")
    return names


class LinearProblem:
    """Spectra whose model counts are linear in the free parameters.

    ``model_g = design_g @ theta + offset_g`` (counts per noticed, grouped bin of spectrum g).

    Parameters
    ----------
    data : list of numpy.ndarray
        Counts per bin of each spectrum, shape (n_bins_g,).
    design : list of numpy.ndarray
        Model counts per unit of each free parameter, shape (n_bins_g, n_free).
    offset : list of numpy.ndarray, optional
        Fixed part of the model counts, shape (n_bins_g,); zeros if None.
    lower, upper : numpy.ndarray, optional
        Parameter limits, shape (n_free,); default 0 and +inf (normalisations).
    names : list of str, optional
        Parameter names for reports.

    Float arrays are used as given, not copied: do not change them while the problem is in use.
    """

    def __init__(self, data, design, offset=None, lower=None, upper=None, *, names=None):
        if isinstance(data, np.ndarray) and data.ndim == 1:
            data = [data]
        if isinstance(design, np.ndarray) and design.ndim == 2:
            design = [design]
        data = list(data)
        design = list(design)
        if len(data) == 0:
            raise FitError("no spectra given", field="data")
        if len(design) != len(data):
            raise FitError(f"{len(design)} design matrices for {len(data)} spectra", field="design")
        if offset is None:
            offset = [None] * len(data)
        elif isinstance(offset, np.ndarray) and offset.ndim == 1 and len(data) == 1:
            offset = [offset]
        offset = list(offset)
        if len(offset) != len(data):
            raise FitError(f"{len(offset)} offsets for {len(data)} spectra", field="offset")
        ds, As, os_ = [], [], []
        n_free = None
        for g, (d, a, o) in enumerate(zip(data, design, offset)):
            d = _float_array(d, f"data[{g}]", ndim=1)
            a = _float_array(a, f"design[{g}]")
            if a.ndim == 1 and d.size == a.size:
                a = a[:, None]
            if a.ndim != 2 or a.shape[0] != d.size:
                raise FitError(f"shape {a.shape} does not match {d.size} bins", field=f"design[{g}]")
            if n_free is None:
                n_free = a.shape[1]
            elif a.shape[1] != n_free:
                raise FitError(f"{a.shape[1]} columns, spectrum 0 has {n_free}", field=f"design[{g}]")
            o = np.zeros(d.size) if o is None else _float_array(o, f"offset[{g}]", ndim=1)
            if o.size != d.size:
                raise FitError(f"{o.size} values for {d.size} bins", field=f"offset[{g}]")
            ds.append(d)
            As.append(a)
            os_.append(o)
        self.data = ds
        self.design = As
        self.offset = os_
        self.n_free = int(n_free)
        self.lower, self.upper = _bounds(lower, upper, self.n_free)
        self.names = _names(names, self.n_free)
        self.n_bins = [d.size for d in ds]
        # Stacked arrays: the statistics are sums over bins, so spectra can be concatenated.
        self.d = np.concatenate(ds)
        self.o = np.concatenate(os_)
        # Each spectrum's design is zero outside the columns of its own norms (and the shared
        # ones): the products run over these column blocks, not the stacked matrix (the demo's
        # 8 spectra use 33 of 72 columns each, so ~4x fewer operations per Newton step).
        self._blocks = []
        start = 0
        for a in As:
            cols = np.flatnonzero(a.any(axis=0))
            self._blocks.append((slice(start, start + a.shape[0]), cols, np.ascontiguousarray(a[:, cols])))
            start += a.shape[0]
        self._A = None

    @property
    def A(self):
        """The stacked design matrix, shape (sum of n_bins, n_free)."""
        if self._A is None:
            self._A = np.ascontiguousarray(np.vstack(self.design))
        return self._A

    def product(self, theta):
        """``A theta`` (stacked)."""
        out = np.empty(self.d.size)
        for rows, cols, a in self._blocks:
            out[rows] = a @ theta[cols]
        return out

    def counts(self, theta):
        """Stacked model counts ``A theta + o``."""
        return self.product(theta) + self.o

    def gradient(self, r):
        """``A^T r`` for a per-bin vector r (stacked)."""
        g = np.zeros(self.n_free)
        for rows, cols, a in self._blocks:
            g[cols] += a.T @ r[rows]
        return g

    def curvature(self, w):
        """``A^T diag(w) A`` for per-bin weights w (stacked)."""
        H = np.zeros((self.n_free, self.n_free))
        for rows, cols, a in self._blocks:
            H[np.ix_(cols, cols)] += a.T @ (a * w[rows, None])
        return H

    def model(self, theta):
        """Model counts per spectrum for parameters ``theta`` (list of arrays)."""
        theta = np.asarray(theta, dtype=float)
        return [a @ theta + o for a, o in zip(self.design, self.offset)]

    def fix(self, index, value):
        """The same problem with parameter ``index`` frozen at ``value`` (moved to the offset)."""
        keep = [i for i in range(self.n_free) if i != index]
        return LinearProblem(
            self.data,
            [a[:, keep] for a in self.design],
            [o + a[:, index] * value for a, o in zip(self.design, self.offset)],
            self.lower[keep], self.upper[keep], names=[self.names[i] for i in keep])


@dataclass
class GeneralProblem:
    """A non-linear fit problem: ``model_fn(theta) -> list of model-count arrays``.

    Parameters
    ----------
    model_fn : callable
        theta (n_free,) -> list of arrays of model counts, one per spectrum.
    data : list of numpy.ndarray
        Counts per bin of each spectrum.
    lower, upper : numpy.ndarray
        Parameter limits.
    theta0 : numpy.ndarray, optional
        Starting values.
    jac : callable, optional
        theta -> (n_bins_total, n_free) array (or a list of per-spectrum blocks) of dmodel/dtheta.
    names : list of str, optional
    """

    model_fn: object
    data: list
    lower: object
    upper: object
    theta0: object = None
    jac: object = None
    names: list = None

    def fix(self, index, value):
        """The same problem with parameter ``index`` frozen at ``value``."""
        lo, hi = _bounds(self.lower, self.upper, len(np.atleast_1d(self.lower)))
        n = lo.size
        keep = [i for i in range(n) if i != index]

        def full(sub):
            theta = np.empty(n)
            theta[keep] = sub
            theta[index] = value
            return theta

        fn = self.model_fn

        def model_fn(sub):
            return fn(full(sub))

        jac = None
        if self.jac is not None:
            j0 = self.jac

            def jac(sub):
                return _stack_jac(j0(full(sub)), n)[:, keep]

        theta0 = None if self.theta0 is None else np.asarray(self.theta0, float)[keep]
        names = None if self.names is None else [self.names[i] for i in keep]
        return GeneralProblem(model_fn, self.data, lo[keep], hi[keep], theta0, jac, names)


def _stack_jac(jac_value, n):
    if isinstance(jac_value, (list, tuple)):
        jac_value = np.vstack([np.asarray(b, float).reshape(-1, n) for b in jac_value])
    return np.asarray(jac_value, dtype=float).reshape(-1, n)


# ---------------------------------------------------------------------------------------------
# Linear algebra helpers
# ---------------------------------------------------------------------------------------------

def _solve_sym(H, b):
    """Solve H x = b for symmetric positive (semi-)definite H; least squares if singular."""
    try:
        L = np.linalg.cholesky(H)
        y = np.linalg.solve(L, b)
        return np.linalg.solve(L.T, y)
    except np.linalg.LinAlgError:
        return np.linalg.lstsq(H, b, rcond=None)[0]


def _box_qp(H, g, lo, hi):
    """Minimise ``g.x + x.H.x/2`` subject to ``lo <= x <= hi`` (with lo <= 0 <= hi).

    A primal active-set method (n is small, <= ~40): solve on the free variables, step to the
    first limit hit, and release a bounded variable whose multiplier has the wrong sign.
    Variables are scaled by 1/sqrt(H_ii) so that parameters of very different sizes
    (norms of 1e-9 and of 1) are handled alike.
    """
    n = g.size
    if n == 0:
        return np.zeros(0)
    diag = np.diag(H).copy()
    s = np.where(diag > 0, 1.0 / np.sqrt(np.where(diag > 0, diag, 1.0)), 1.0)
    Hs = H * s[:, None] * s[None, :]
    gs = g * s
    los = lo / s
    his = hi / s
    x = np.zeros(n)
    state = np.zeros(n, dtype=int)  # 0 free, -1 at lower, +1 at upper
    fixed = los >= his
    state[(los >= 0) & (gs >= 0)] = -1
    state[(his <= 0) & (gs < 0)] = 1
    state[fixed] = -1
    eps = 1e-12 * (np.max(np.abs(gs)) + 1.0)
    for _ in range(5 * n + 20):
        at_lo = state == -1
        at_hi = state == 1
        x[at_lo] = los[at_lo]
        x[at_hi] = his[at_hi]
        free = state == 0
        z = x.copy()
        if free.any():
            rhs = -(gs[free] + Hs[np.ix_(free, ~free)] @ x[~free])
            z[free] = _solve_sym(Hs[np.ix_(free, free)], rhs)
        low = free & (z < los)
        high = free & (z > his)
        if low.any() or high.any():
            p = z - x
            t = np.ones(n)
            t[low] = (los[low] - x[low]) / p[low]
            t[high] = (his[high] - x[high]) / p[high]
            block = low | high
            tmin = float(np.clip(np.min(t[block]), 0.0, 1.0))
            x[free] += tmin * p[free]
            hit = block & (t <= tmin * (1 + 1e-12) + 1e-300)
            state[hit & low] = -1
            state[hit & high] = 1
            continue
        x = z
        r = gs + Hs @ x
        wrong = np.zeros(n)
        wrong[at_lo & ~fixed] = np.maximum(-r[at_lo & ~fixed], 0.0)
        wrong[at_hi & ~fixed] = np.maximum(r[at_hi & ~fixed], 0.0)
        j = int(np.argmax(wrong))
        if wrong[j] <= eps:
            break
        state[j] = 0
    x = np.clip(x, los, his)
    return x * s


def _is_singular(M):
    """True if the symmetric PSD matrix M is (numerically) singular, after diagonal scaling."""
    if M.size == 0:
        return False
    diag = np.diag(M)
    if np.any(~np.isfinite(M)) or np.any(diag <= 0):
        return True
    s = 1.0 / np.sqrt(diag)
    C = M * s[:, None] * s[None, :]
    ev = np.linalg.eigvalsh(C)
    return bool(ev[0] <= _SINGULAR_RCOND * ev[-1])


def _covariance(H, at_bound):
    """(H/2)^-1 over the parameters not at a limit; zero rows for those at a limit.

    Returns (cov, errors, singular)."""
    n = H.shape[0]
    cov = np.zeros((n, n))
    errors = np.zeros(n)
    free = ~at_bound
    if not free.any():
        return cov, errors, False
    Hf = 0.5 * H[np.ix_(free, free)]
    if _is_singular(Hf):
        idx = np.flatnonzero(free)
        cov[np.ix_(idx, idx)] = np.nan
        errors[idx] = np.nan
        return cov, errors, True
    s = 1.0 / np.sqrt(np.diag(Hf))
    inv = np.linalg.inv(Hf * s[:, None] * s[None, :]) * s[:, None] * s[None, :]
    inv = 0.5 * (inv + inv.T)
    cov[np.ix_(free, free)] = inv
    errors[free] = np.sqrt(np.clip(np.diag(inv), 0.0, None))
    return cov, errors, False


def _at_bound(theta, lo, hi):
    return (theta <= lo) | (theta >= hi)


def _initial_theta(theta0, lo, hi, d, product, o):
    """Starting values: theta0 clipped into the limits; without theta0 (or a zero model), a
    common scale of ones that matches the total counts. ``product(theta)`` is ``A theta``."""
    n = lo.size
    if theta0 is not None:
        theta = _float_array(theta0, "theta0", ndim=1)
        if theta.size != n:
            raise FitError(f"{theta.size} starting values for {n} parameters", field="theta0")
        theta = np.clip(theta, lo, hi)
        if np.any(product(theta) != 0) or n == 0:
            return theta
    theta = np.clip(np.ones(n), lo, hi)
    total = float(np.sum(product(theta)))
    excess = float(np.sum(d) - np.sum(o))
    if total > 0 and excess > 0:
        theta = np.clip(theta * excess / total, lo, hi)
    return theta


# ---------------------------------------------------------------------------------------------
# Linear fast path
# ---------------------------------------------------------------------------------------------

def fit_linear(problem, statistic="cstat", theta0=None, *, max_iter=200, tol=1e-4):
    """Fit a :class:`LinearProblem` by projected (Fisher-then-exact) Newton iterations.

    Parameters
    ----------
    problem : LinearProblem
    statistic : {'cstat', 'chi'} or Statistic
    theta0 : numpy.ndarray, optional
        Starting values (clipped into the limits); default: a common scale matching the counts.
    max_iter : int
        Maximum number of iterations.
    tol : float
        Critical delta on the statistic (XSPEC ``leven`` default 1e-4).

    Returns
    -------
    FitOutput
    """
    if not isinstance(problem, LinearProblem):
        raise FitError(f"expected a LinearProblem, got {type(problem).__name__}", field="problem")
    stat = get_statistic(statistic)
    for g, d in enumerate(problem.data):
        stat.validate(d, field=f"data[{g}]")
    if not (tol > 0):
        raise FitError(f"tol must be > 0, got {tol!r}", field="tol")
    d = problem.d
    lo, hi = problem.lower, problem.upper
    n = problem.n_free
    theta = _initial_theta(theta0, lo, hi, d, problem.product, problem.o)
    m = problem.counts(theta)
    f = stat.value(d, m)
    # Fisher scoring first only where it differs from the exact Hessian (cstat).
    fisher = stat.name == "cstat"
    converged = False
    message = ""
    n_iter = 0
    if n == 0:
        converged, message = True, "no free parameters"
    while not converged and n_iter < max_iter:
        n_iter += 1
        w = stat.fisher_diag(d, m) if fisher else stat.hessian_diag(d, m)
        g = problem.gradient(stat.gradient(d, m))
        H = problem.curvature(w)
        delta = _box_qp(H, g, lo - theta, hi - theta)
        gd = float(g @ delta)
        pred = -(gd + 0.5 * float(delta @ H @ delta))
        if not fisher and pred <= tol:
            # At the optimum to within the critical delta: take the last (tiny) step if it helps.
            trial = np.clip(theta + delta, lo, hi)
            mt = problem.counts(trial)
            ft = stat.value(d, mt)
            if ft <= f:
                theta, m, f = trial, mt, ft
            converged = True
            message = f"converged: predicted change of {stat.name} {max(pred, 0.0):.2g} <= {tol:g}"
            break
        if gd >= 0:
            if fisher:
                fisher = False
                continue
            message = f"no descent direction (predicted change {pred:.3g} > tol)"
            break
        alpha, accepted = 1.0, False
        while alpha > 1e-12:
            trial = np.clip(theta + alpha * delta, lo, hi)
            mt = problem.counts(trial)
            ft = stat.value(d, mt)
            if ft <= f + 1e-4 * alpha * gd:
                accepted = True
                break
            alpha *= 0.3
        if not accepted:
            if fisher:
                fisher = False
                continue
            message = f"line search failed (predicted change {pred:.3g} > tol {tol:g})"
            break
        df = f - ft
        theta, m, f = trial, mt, ft
        if fisher and df < 1.0:
            fisher = False
    else:
        if not converged:
            message = f"not converged after {max_iter} iterations"
    return _finish(problem.curvature, d, m, theta, f, stat, lo, hi, n_iter, converged, message,
                   names=problem.names, n_bins=d.size, method="newton",
                   context={"problem": problem, "statistic": stat.name, "tol": tol})


def _finish(curvature, d, m, theta, f, stat, lo, hi, n_iter, converged, message, *, names, n_bins,
            method, context):
    """Covariance, limits, degeneracy check and the FitOutput; ``curvature(w)`` is
    ``J^T diag(w) J`` for the Jacobian J of the model counts at the solution.

    Two kinds of undetermined parameters are told apart:

    * a parameter that does not change the model at all at the solution (zero column of the
      Jacobian: a template with no counts in the noticed range, or the shape of a component
      whose norm is 0). XSPEC holds such parameters ("temporarily frozen due to zero model
      norms" / "pegged due to zero pivot") and still finishes the fit: here it is flagged in
      ``undetermined``, its error is NaN, the message names it, and ``converged`` is kept;
    * a genuine degeneracy between parameters that do change the model (two identical
      templates): the curvature matrix is singular, ``singular=True`` and ``converged=False``.
    """
    n = theta.size
    at_bound = _at_bound(theta, lo, hi) if n else np.zeros(0, bool)
    fixed = lo >= hi
    if n:
        H = curvature(stat.hessian_diag(d, m))
        F = curvature(stat.fisher_diag(d, m))
    else:
        H = F = np.zeros((0, 0))
    diag_f = np.diag(F)
    no_effect = ~fixed & ~(diag_f > 0)
    vary = ~fixed & ~no_effect
    # Degeneracy: the expected curvature over every variable parameter (also those at a limit:
    # two identical templates stay degenerate when one is pushed to 0).
    singular = _is_singular(F[np.ix_(vary, vary)]) if vary.any() else False
    cov, errors, singular_h = _covariance(H, at_bound | no_effect)
    singular = singular or singular_h
    notes = []
    if no_effect.any():
        cov[no_effect, :] = np.nan
        cov[:, no_effect] = np.nan
        errors[no_effect] = np.nan
        bad = ", ".join(nm for nm, b in zip(names, no_effect) if b)
        notes.append(f"{bad}: no effect on the model at the best fit (held, error undefined)")
    if singular:
        bad = _degenerate_names(F[np.ix_(vary, vary)], [nm for nm, v in zip(names, vary) if v])
        notes.insert(0, f"degenerate parameters ({bad}): the curvature matrix is singular")
        converged = False
    if notes:
        message = "; ".join(notes + ([message] if message else []))
    context = dict(context)
    context["curvature"] = 0.5 * diag_f if n else np.zeros(0)
    return FitOutput(theta=theta, stat=float(f), covariance=cov, errors=errors, n_iter=n_iter,
                     converged=bool(converged), message=message.strip(),
                     dof=int(n_bins - n - stat.dof_offset), statistic=stat.name,
                     at_bound=at_bound, singular=bool(singular), names=list(names),
                     n_bins=int(n_bins), method=method, context=context,
                     undetermined=no_effect)


def _degenerate_names(M, names):
    """Names of the parameters in the null space of M (or with no curvature at all)."""
    if M.size == 0:
        return ""
    diag = np.diag(M)
    if np.any(diag <= 0) or not np.all(np.isfinite(M)):
        return ", ".join(nm for nm, v in zip(names, diag) if not v > 0) or "?"
    s = 1.0 / np.sqrt(diag)
    _, vec = np.linalg.eigh(M * s[:, None] * s[None, :])
    v = np.abs(vec[:, 0])
    return ", ".join(nm for nm, x in zip(names, v) if x > 0.1) or "?"


# ---------------------------------------------------------------------------------------------
# General (non-linear) path: Levenberg-Marquardt on the statistic
# ---------------------------------------------------------------------------------------------

def _model_vector(model_fn, theta, n_bins_total):
    try:
        out = model_fn(theta)
    except Exception as exc:  # noqa: BLE001  (a failing user model is a FitError, not a traceback)
        raise FitError(f"model evaluation failed ({type(exc).__name__}: {exc})", field="model_fn") from None
    if isinstance(out, np.ndarray) and out.ndim == 1:
        vec = out.astype(float, copy=False)
    else:
        vec = np.concatenate([np.asarray(x, dtype=float).reshape(-1) for x in out])
    if vec.size != n_bins_total:
        raise FitError(f"model has {vec.size} bins, data have {n_bins_total}", field="model_fn")
    return vec


def _numerical_jacobian(model_fn, theta, m0, lo, hi, scale, rel_step, n_bins_total):
    """Forward differences with a relative step (backwards when the step would leave the limits)."""
    n = theta.size
    J = np.empty((n_bins_total, n))
    for j in range(n):
        h = rel_step * max(abs(theta[j]), scale[j])
        if theta[j] + h > hi[j]:
            h = -h
        t = theta.copy()
        t[j] += h
        J[:, j] = (_model_vector(model_fn, t, n_bins_total) - m0) / h
    return J


def fit_general(model_fn, data, theta0, lower, upper, *, statistic="cstat", jac=None,
                max_iter=1000, tol=1e-4, rel_step=1e-6, names=None):
    """Levenberg-Marquardt minimisation of the statistic (XSPEC ``method leven``).

    The curvature matrix is ``J^T diag(w) J`` (second derivatives of the model neglected, as in
    XSPEC's ``LevMarq``), with the Fisher weights (2/m for cstat) during the iterations and the
    observed ones (2d/m^2) for the final covariance; ``lambda`` starts at 1e-3 and is divided by
    10 after a successful step and multiplied by 10 after a failed one. Limits: a step is
    projected onto the box and a parameter at a limit whose gradient points outwards is held.

    Parameters
    ----------
    model_fn : callable
        theta -> list of model-count arrays (one per spectrum), or one concatenated array.
    data : list of numpy.ndarray
        Counts per bin of each spectrum.
    theta0, lower, upper : array_like
        Starting values and limits (shape (n_free,)).
    statistic : {'cstat', 'chi'}
    jac : callable, optional
        theta -> (n_bins_total, n_free) array or per-spectrum blocks; numerical if None.
    max_iter : int
    tol : float
        Critical delta on the statistic.
    rel_step : float
        Relative forward-difference step for the numerical Jacobian.
    names : list of str, optional

    Returns
    -------
    FitOutput
    """
    stat = get_statistic(statistic)
    if not (tol > 0):
        raise FitError(f"tol must be > 0, got {tol!r}", field="tol")
    if isinstance(data, np.ndarray) and data.ndim == 1:
        data = [data]
    ds = [_float_array(x, f"data[{g}]", ndim=1) for g, x in enumerate(data)]
    for g, x in enumerate(ds):
        stat.validate(x, field=f"data[{g}]")
    d = np.concatenate(ds)
    N = d.size
    theta = _float_array(theta0, "theta0", ndim=1)
    n = theta.size
    lo, hi = _bounds(lower, upper, n)
    theta = np.clip(theta, lo, hi)
    names = _names(names, n)
    scale = np.where(np.abs(theta) > 0, np.abs(theta), 1.0)

    def jacobian(th, m0):
        if jac is None:
            return _numerical_jacobian(model_fn, th, m0, lo, hi, scale, rel_step, N)
        J = _stack_jac(jac(th), n)
        if J.shape[0] != N:
            raise FitError(f"Jacobian has {J.shape[0]} rows, data have {N} bins", field="jac")
        return J

    m = _model_vector(model_fn, theta, N)
    f = stat.value(d, m)
    if not np.isfinite(f):
        raise FitError("the statistic is not finite at the starting values", field="theta0")
    lam = 1e-3
    converged = False
    message = ""
    n_iter = 0
    J = np.zeros((N, n))
    fixed = lo >= hi
    if n == 0 or fixed.all():
        converged, message = True, "no free parameters"
    while not converged and n_iter < max_iter:
        n_iter += 1
        J = jacobian(theta, m)
        g = J.T @ stat.gradient(d, m)
        H = J.T @ (J * stat.fisher_diag(d, m)[:, None])
        hold = fixed | ((theta <= lo) & (g > 0)) | ((theta >= hi) & (g < 0))
        free = ~hold
        if not free.any():
            converged, message = True, "every parameter is held at a limit"
            break
        Hf = H[np.ix_(free, free)]
        gf = g[free]
        step0 = _solve_sym(Hf, -gf)
        pred = -(float(gf @ step0) + 0.5 * float(step0 @ Hf @ step0))
        if pred <= tol:
            converged = True
            message = f"converged: predicted change of {stat.name} {max(pred, 0.0):.2g} <= {tol:g}"
            break
        dg = np.diag(Hf).copy()
        dg[dg <= 0] = 1e-300
        accepted = False
        while lam < 1e20:
            step = _solve_sym(Hf + lam * np.diag(dg), -gf)
            trial = theta.copy()
            trial[free] += step
            trial = np.clip(trial, lo, hi)
            mt = _model_vector(model_fn, trial, N)
            ft = stat.value(d, mt)
            if np.isfinite(ft) and ft <= f:
                accepted = True
                lam = max(lam * 0.1, 1e-30)
                break
            lam *= 10.0
        if not accepted:
            message = f"Levenberg-Marquardt could not lower {stat.name} (predicted change {pred:.3g})"
            break
        theta, m, f = trial, mt, ft
    else:
        if not converged:
            message = f"not converged after {max_iter} iterations"
    if n:
        J = jacobian(theta, m)
    context = {"problem": GeneralProblem(model_fn, ds, lo, hi, theta, jac, names),
               "statistic": stat.name, "tol": tol}
    return _finish(lambda w: J.T @ (J * w[:, None]), d, m, theta, f, stat, lo, hi, n_iter, converged, message,
                   names=names,
                   n_bins=N, method="leven", context=context)


# ---------------------------------------------------------------------------------------------
# Confidence intervals by profiling the statistic
# ---------------------------------------------------------------------------------------------

def confidence_interval(fit_output, index, problem_or_fn=None, *, delta_stat=1.0, statistic=None,
                        data=None, lower=None, upper=None, jac=None, max_expand=80):
    """Range of parameter ``index`` over which the profiled statistic stays within
    ``delta_stat`` of the minimum (XSPEC ``error``: 1.0 = 1 sigma, 2.706 = 90 % for one parameter).

    The other parameters are re-fitted at each trial value; each end is bracketed by doubling
    steps from the best fit (starting at the 1-sigma error estimate) and located by ``brentq``.

    Parameters
    ----------
    fit_output : FitOutput
        A converged fit.
    index : int
        0-based parameter index.
    problem_or_fn : LinearProblem, GeneralProblem or callable, optional
        What was fitted; default: the problem recorded in ``fit_output``. A callable is a
        ``model_fn`` and needs ``data``, ``lower`` and ``upper`` (and optionally ``jac``).
    delta_stat : float
        Rise of the statistic defining the range.
    statistic : str, optional
        Default: the statistic of ``fit_output``.

    Returns
    -------
    ConfidenceInterval
        ``(lo, hi)``; ``lo_at_bound`` / ``hi_at_bound`` say when an end is the parameter limit
        (the statistic did not rise by ``delta_stat`` before it).
    """
    if not isinstance(fit_output, FitOutput):
        raise FitError("expected a FitOutput", field="fit_output")
    if not (delta_stat > 0):
        raise FitError(f"delta_stat must be > 0, got {delta_stat!r}", field="delta_stat")
    n = fit_output.n_free
    if not (isinstance(index, (int, np.integer)) and 0 <= index < n):
        raise FitError(f"parameter index {index!r} is not in 0..{n - 1}", field="index")
    if not fit_output.converged:
        raise FitError(f"cannot compute a confidence range from a fit that did not converge "
                       f"({fit_output.message})", field="fit_output")
    if fit_output.undetermined[index]:
        raise FitError("the parameter has no effect on the model at the best fit: no range",
                       field=fit_output.names[index])
    stat_name = statistic or fit_output.statistic
    problem = problem_or_fn if problem_or_fn is not None else fit_output.context.get("problem")
    if callable(problem) and not isinstance(problem, (LinearProblem, GeneralProblem)):
        if data is None or lower is None or upper is None:
            raise FitError("a model function needs data, lower and upper", field="problem_or_fn")
        problem = GeneralProblem(problem, data, lower, upper, fit_output.theta, jac, fit_output.names)
    if not isinstance(problem, (LinearProblem, GeneralProblem)):
        raise FitError("no problem given to profile", field="problem_or_fn")
    if isinstance(problem, LinearProblem):
        lo_all, hi_all = problem.lower, problem.upper
    else:
        lo_all, hi_all = _bounds(problem.lower, problem.upper, n)
    best = fit_output.theta.copy()
    f0 = float(fit_output.stat)
    tol_inner = min(float(fit_output.context.get("tol", 1e-4)), 1e-6)
    keep = [i for i in range(n) if i != index]
    warm = {"theta": best[keep]}

    def profile(v):
        sub = problem.fix(index, v)
        if isinstance(sub, LinearProblem):
            out = fit_linear(sub, stat_name, theta0=warm["theta"], tol=tol_inner)
        else:
            out = fit_general(sub.model_fn, sub.data, warm["theta"], sub.lower, sub.upper,
                              statistic=stat_name, jac=sub.jac, tol=tol_inner)
        if not out.converged and not (out.n_free == 0):
            raise FitError(f"profile fit at {fit_output.names[index]} = {v:g} failed: {out.message}",
                           field=fit_output.names[index])
        warm["theta"] = out.theta
        return out.stat - f0

    err = float(fit_output.errors[index])
    step = err if (np.isfinite(err) and err > 0) else float("nan")
    if not np.isfinite(step):
        curv = fit_output.context.get("curvature")
        c = float(curv[index]) if curv is not None and len(curv) == n else 0.0
        step = 1.0 / math.sqrt(c) if c > 0 else max(abs(best[index]), 1.0)

    def one_side(sign):
        limit = hi_all[index] if sign > 0 else lo_all[index]
        x0 = best[index]
        warm["theta"] = best[keep]
        if x0 == limit:
            return x0, True
        prev = x0
        s = step
        for _ in range(max_expand):
            x = x0 + sign * s
            if (sign > 0 and x >= limit) or (sign < 0 and x <= limit):
                x = limit
            dv = profile(x)
            if dv < -10 * tol_inner - 1e-3:
                raise FitError(f"found a lower {stat_name} ({f0 + dv:.6g} < {f0:.6g}) at "
                               f"{fit_output.names[index]} = {x:g}: the fit was not at the minimum",
                               field=fit_output.names[index])
            if dv >= delta_stat:
                a, b = (prev, x) if sign > 0 else (x, prev)
                xtol = 1e-10 * max(abs(a), abs(b), step) + 1e-300
                from scipy.optimize import brentq  # lazy: scipy.optimize costs 0.2 s of every CLI start-up

                root = brentq(lambda v: profile(v) - delta_stat, a, b, xtol=xtol, rtol=1e-10)
                return root, False
            if x == limit:
                return limit, True
            prev = x
            s *= 2.0
        raise FitError(f"could not bracket the {stat_name} rise of {delta_stat:g} for "
                       f"{fit_output.names[index]}", field=fit_output.names[index])

    lo_v, lo_b = one_side(-1)
    hi_v, hi_b = one_side(+1)
    notes = []
    if lo_b:
        notes.append("lower end at the parameter limit")
    if hi_b:
        notes.append("upper end at the parameter limit")
    return ConfidenceInterval(lo_v, hi_v, lo_at_bound=lo_b, hi_at_bound=hi_b, best=best[index],
                              delta_stat=delta_stat, message="; ".join(notes))
