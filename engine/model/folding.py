"""Folding the background model through each spectrum's responses, with caching.

For data group ``g`` and source ``s`` with response ``R`` (rows = energies, columns = channels)
and ARF ``a``: counts per channel ``C = T · (F · a) @ R`` (spec §3.4), ``F`` the bin-integrated
photon flux of the component on the RMF's energy grid and ``T`` the exposure.

The unit-norm folded spectrum of every (group, source, component) is computed once per set of
shape-parameter values and cached, so the model is a weighted sum of cached templates: changing
a norm or a region weight costs a few vector operations, and a norms-only fit is linear.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..errors import BadConfigError, BadFileError
from .components import ApecShape, param_specs, unit_shape

__all__ = ["GroupData", "Binning", "FoldedModel", "RESPONSE_OF_SOURCE", "DEFAULT_IGNORE"]

#: Which response each background source uses: the spectrum's RMF with the aperture ARF, the RMF
#: alone, the RMF with the fcxb ARF, and the identity ``diag.rmf``; GRXE (IDL source 6) as the aperture.
RESPONSE_OF_SOURCE = {"apbgd": ("rmf", "ap_arf"), "intbgd": ("rmf", None), "fcxb": ("rmf", "fcxb_arf"),
                      "intn": ("diag", None), "grxe": ("rmf", "ap_arf")}
#: Noticed energy range of the nuskybgd fit: ``ignore **:**-3.0 150.0-**``.
DEFAULT_IGNORE = (3.0, 150.0)


@dataclass
class GroupData:
    """One background spectrum with everything needed to fold the model for it."""

    name: str
    module: str
    counts: np.ndarray
    exposure: float
    rmf: object
    diag: object
    ap_arf: np.ndarray
    fcxb_arf: np.ndarray
    grouping: np.ndarray | None = None
    quality: np.ndarray | None = None
    weights: object = None
    files: dict = field(default_factory=dict)

    def __post_init__(self):
        self.counts = np.asarray(self.counts, dtype=float)
        if not (np.isfinite(self.exposure) and self.exposure > 0):
            raise BadFileError(f"EXPOSURE is {self.exposure!r}: cannot model a zero-exposure spectrum",
                               path=self.files.get("spectrum", self.name), field="EXPOSURE")
        if not np.all(np.isfinite(self.counts)) or np.any(self.counts < 0):
            raise BadFileError("spectrum has NaN or negative counts", path=self.files.get("spectrum", self.name),
                               field="COUNTS")
        n_chan = self.rmf.n_channels
        if self.counts.size != n_chan:
            raise BadFileError(f"spectrum has {self.counts.size} channels, its RMF {n_chan}",
                               path=self.files.get("spectrum", self.name), field="RESPFILE")
        for key in ("ap_arf", "fcxb_arf"):
            arr = np.asarray(getattr(self, key), dtype=float)
            if arr.shape != (self.rmf.n_energies,):
                raise BadFileError(f"{key} has {arr.size} rows, the RMF {self.rmf.n_energies}",
                                   path=self.files.get(key, self.name))
            setattr(self, key, arr)

    def __repr__(self):
        return f"GroupData({self.name!r}, FPM{self.module}, {self.counts.sum():.0f} counts, {self.exposure:.0f} s)"


@dataclass
class Binning:
    """Grouped bins of a spectrum and which of them are noticed.

    A group is noticed when its centre energy (mid-point of its first channel's low edge and its
    last channel's high edge) lies in [emin, emax] and all its channels have QUALITY 0. For bins
    aligned with the 0.04 keV channel edges this equals XSPEC's ``ignore **-3.0 150.0-**``; XSPEC
    does not document partial channels (spec §3.4), so results never depend on them.
    """

    starts: np.ndarray
    noticed: np.ndarray
    e_lo: np.ndarray
    e_hi: np.ndarray

    @classmethod
    def from_group(cls, group, ignore=DEFAULT_IGNORE):
        n = group.counts.size
        if group.grouping is None:
            starts = np.arange(n)
        else:
            grouping = np.asarray(group.grouping)
            starts = np.flatnonzero(grouping != -1)
            if starts.size == 0 or starts[0] != 0:
                starts = np.concatenate([[0], starts[starts > 0]])
        ends = np.append(starts[1:], n) - 1
        e_min, e_max = np.asarray(group.rmf.e_min, float), np.asarray(group.rmf.e_max, float)
        e_lo, e_hi = e_min[starts], e_max[ends]
        centre = 0.5 * (e_lo + e_hi)
        emin, emax = ignore
        noticed = (centre >= emin) & (centre <= emax)
        if group.quality is not None:
            bad = np.add.reduceat((np.asarray(group.quality) != 0).astype(int), starts) > 0
            noticed &= ~bad
        return cls(starts=starts, noticed=noticed, e_lo=e_lo, e_hi=e_hi)

    def bin(self, channel_values):
        """Sum channel values into the noticed groups."""
        return np.add.reduceat(np.asarray(channel_values, dtype=float), self.starts)[self.noticed]

    @property
    def n_noticed(self):
        return int(np.count_nonzero(self.noticed))


def _edges(resp, name):
    lo, hi = np.asarray(resp.energ_lo, float), np.asarray(resp.energ_hi, float)
    if lo.size > 1 and not np.allclose(hi[:-1], lo[1:], rtol=1e-6, atol=1e-9):
        raise BadFileError("response energy grid has gaps; cannot evaluate the model on it", path=name,
                           field="ENERG_LO")
    return np.append(lo, hi[-1])


class FoldedModel:
    """The background model of a set of data groups, folded and cached.

    Parameters
    ----------
    state : ModelState
        Sources ``apbgd``, ``intbgd``, ``fcxb``, ``intn`` (one parameter copy per group).
    groups : list of GroupData
        In data-group order.
    apec : ApecShape, optional
        How apec is evaluated (PyXspec or the documented stand-in, see
        :class:`~nuskybgd_engine.model.components.ApecShape`).
    ignore : (float, float)
        Noticed energy range (keV).
    """

    def __init__(self, state, groups, *, apec=None, ignore=DEFAULT_IGNORE):
        self.state = state
        self.groups = list(groups)
        for s in state:
            if s.n_groups != len(self.groups):
                raise BadConfigError(f"source {s.name} has {s.n_groups} groups, there are {len(self.groups)} spectra",
                                     field=s.name)
        self.apec = apec or ApecShape()
        self.ignore = tuple(float(v) for v in ignore)
        if not self.ignore[0] < self.ignore[1]:
            raise BadConfigError(f"noticed range {self.ignore} is empty", field="ignore")
        self.binning = [Binning.from_group(g, self.ignore) for g in self.groups]
        for g, b in zip(self.groups, self.binning):
            if b.n_noticed == 0:
                raise BadFileError(f"no noticed bins in {self.ignore[0]}-{self.ignore[1]} keV",
                                   path=g.files.get("spectrum", g.name))
        self._matrices = {}
        self._templates = {}
        self._edges = {}

    # -- responses ---------------------------------------------------------------------------

    def _response(self, g, source):
        """(response, ARF or None, cache key) of a (group, source)."""
        group = self.groups[g - 1]
        which, arf_name = RESPONSE_OF_SOURCE[source]
        resp = group.rmf if which == "rmf" else group.diag
        arf = None if arf_name is None else getattr(group, arf_name)
        akey = None if arf is None else hash(arf.tobytes())
        # The entry keeps the response alive, so that its id() keys no other object's templates.
        self._matrices.setdefault(id(resp), [resp, None, None])
        return resp, arf, (id(resp), akey)

    def _matrix(self, g, source):
        """(transposed float64 matrix, energy edges) of a (group, source), made when first folded."""
        resp, _arf, (rkey, _a) = self._response(g, source)
        entry = self._matrices[rkey]
        if entry[1] is None:
            # The float64 matrix's transpose as a CSC view (no copy: as fast to multiply as a
            # transposed CSR, and the same sums in the same order), shared by every group and
            # source that uses the same response object.
            which = RESPONSE_OF_SOURCE[source][0]
            group = self.groups[g - 1]
            entry[1:] = [resp.matrix64.T, _edges(resp, group.files.get(which, group.name))]
        return entry[1], entry[2]

    # -- templates -----------------------------------------------------------------------------

    def _component_params(self, source, g):
        """[(component name, type, resolved shape values, norm global index)] for group g."""
        src = self.state[source]
        out, k = [], 0
        for cname, ctype in src.components:
            n = len(param_specs(ctype))
            idx = [src.index(g, k + j + 1) for j in range(n)]
            shape = tuple(self.state.value(source, i) for i in idx[:-1])
            out.append((cname, ctype, shape, idx[-1]))
            k += n
        return out

    def _flux(self, ctype, shape, edges):
        if ctype == "apec":
            same = shape == (self.apec.kT, self.apec.abundance, self.apec.redshift)
            apec = self.apec if same else ApecShape(*shape, route=self.apec.route)
            return apec.unit_shape(edges)
        return unit_shape(ctype, edges, shape)

    def _fold(self, g, source, wanted):
        """Unit-norm folded counts/s per channel of the (ctype, shape) pairs in ``wanted``, cached
        per response and ARF (groups sharing a response share the work); all missing components of
        the source are folded in one sparse × dense product."""
        resp, arf, rkey = self._response(g, source)
        missing = [w for w in wanted if (rkey, w) not in self._templates]
        if missing:
            mt, edges = self._matrix(g, source)
            flux = np.stack([self._flux(ctype, shape, edges) for ctype, shape in missing], axis=1)
            if arf is not None:
                flux *= arf[:, None]
            folded = mt @ flux
            for j, w in enumerate(missing):
                col = np.ascontiguousarray(folded[:, j])
                col.setflags(write=False)
                self._templates[(rkey, w)] = col
        return [self._templates[(rkey, w)] for w in wanted]

    def folded_templates(self, g):
        """Unit-norm folded templates of group ``g`` at the current shape values:
        ``{source: [((ctype, shape), counts/s per channel), ...]}`` (see :meth:`add_templates`)."""
        out = {}
        for source in RESPONSE_OF_SOURCE:
            if source in self.state.sources:
                wanted = [(ctype, shape) for _n, ctype, shape, _i in self._component_params(source, g)]
                out[source] = list(zip(wanted, self._fold(g, source, wanted)))
        return out

    def add_templates(self, g, source, entries):
        """Put templates folded earlier for group ``g`` and ``source`` (``[((ctype, shape), array)]``,
        as :meth:`folded_templates` gives them, for the same responses and ARFs) in the cache."""
        _resp, _arf, rkey = self._response(g, source)
        for w, tpl in entries:
            tpl = np.array(tpl, dtype=float)
            tpl.setflags(write=False)
            self._templates[(rkey, (w[0], tuple(w[1])))] = tpl

    def components(self, g):
        """List of (source, component, template (counts per channel, norm 1), norm global index) of group ``g``."""
        out = []
        exposure = self.groups[g - 1].exposure
        for source in RESPONSE_OF_SOURCE:
            if source not in self.state.sources:
                continue
            params = self._component_params(source, g)
            folded = self._fold(g, source, [(ctype, shape) for _n, ctype, shape, _i in params])
            for (cname, _t, _s, inorm), tpl in zip(params, folded):
                out.append((source, cname, tpl * exposure, inorm))
        return out

    # -- evaluation ------------------------------------------------------------------------------

    def source_counts(self, g):
        """Model counts per channel of each source for data group ``g`` (dict source -> array)."""
        out = {}
        for source, _c, tpl, inorm in self.components(g):
            norm = self.state.value(source, inorm)
            out[source] = out.get(source, 0.0) + norm * tpl
        return out

    def model_counts(self, g):
        """Total model counts per channel of data group ``g``."""
        return sum(self.source_counts(g).values())

    def binned_data(self, g):
        return self.binning[g - 1].bin(self.groups[g - 1].counts)

    def binned_model(self, g):
        return self.binning[g - 1].bin(self.model_counts(g))

    # -- the linear problem ---------------------------------------------------------------------

    def free(self):
        """Free parameters (source, global index)."""
        return self.state.free_parameters()

    @property
    def is_linear(self):
        """True when every free parameter is a norm and no shape depends on a free parameter."""
        free = set(self.free())
        if any(self.state[s][k].name != "norm" for s, k in free):
            return False
        return True

    def linear_problem(self):
        """Design matrices of the norms-only fit: ``model_g = X_g θ + b_g`` on the noticed bins.

        Returns
        -------
        (data, design, offset, free) : lists per group and the free-parameter keys of θ.
        """
        free = self.free()
        column = {key: j for j, key in enumerate(free)}
        data, design, offset = [], [], []
        for g in range(1, len(self.groups) + 1):
            b = self.binning[g - 1]
            X = np.zeros((b.n_noticed, len(free)))
            off = np.zeros(b.n_noticed)
            for source, _c, tpl, inorm in self.components(g):
                factor, rsrc, ridx = self.state.root(source, inorm)
                binned = b.bin(tpl)
                if (rsrc, ridx) in column:
                    X[:, column[(rsrc, ridx)]] += factor * binned
                else:
                    off += factor * self.state[rsrc][ridx].value * binned
            data.append(self.binned_data(g))
            design.append(X)
            offset.append(off)
        return data, design, offset, free

    def set_free_values(self, free, theta):
        for (source, index), value in zip(free, theta):
            self.state[source][index].value = float(value)
        self.refresh_links()

    def refresh_links(self):
        """Store the resolved value in every linked parameter of the state."""
        self.state.refresh_links()

    def share_cache(self, other):
        """Reuse the folded responses and templates of ``other`` (a FoldedModel on the same
        response objects): both then fill and read one cache."""
        self._matrices = other._matrices
        self._templates = other._templates

    def invalidate(self):
        """Drop cached responses and templates (after a response or ARF changed in place)."""
        self._templates.clear()
        self._matrices.clear()

