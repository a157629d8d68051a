"""Several observations in one model: which background norms their spectra share (issue 15 item 4).

:func:`~.background.build_background_model` over the spectra of several observations links every
data group of a module to that module's first group with geometric factors: one apbgd, intbgd
and intn per module for all observations. :func:`unshare_observations` frees, per observation,
the sources that are not shared (each observation's first group of the module becomes its own
reference); :func:`link_fcxb_across` ties the focused CXB of one sky region across observations
(the same surface brightness: the norm scales with the region's detector area, which changes with
the roll). :class:`ObservationLinks` bundles both for an analysis (``bgdinfo.json``'s
``observations`` form) and ``batch --joint`` uses :func:`unshare_observations` directly.

Physics of the choices: the aperture stray light (apbgd) is the CXB seen through the aperture
stop, the same sky for every visit of a field; the internal background (intbgd, intn) is a
property of the detectors that drifts slowly over the mission (shared across close epochs, free
across years); the focused CXB is the sky in the region, shared by any visit that sees it.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import BadConfigError, BadRegionError
from .background import module_references
from .parameters import Link

__all__ = ["JOINT_SHARES", "INTERNAL_MODES", "FCXB_MODES", "ObservationLinks", "unshare_observations",
           "link_fcxb_across", "observation_references"]

#: What observations of a joint fit may share. ``fcxb`` is shared per sky region by :func:`link_fcxb_across`.
JOINT_SHARES = {
    "apbgd": "aperture (stray-light CXB) norm per unit aperture weight",
    "intbgd": "every internal-background component (lines and the soft apec) per unit detector area",
    "intbgd_lines": "the internal lines per unit detector area (the soft apec stays per observation)",
    "intn": "the internal continuum per unit detector area",
}

#: ``internal`` switch of a several-observation bgdinfo.json: what the internal background does across observations.
INTERNAL_MODES = {
    "shared": "intbgd and intn: one reference norm per module for all observations (geometric factors per region)",
    "per_observation": "intbgd and intn: free per observation and module (the internal background drifts)",
}
#: ``fcxb`` switch: the focused CXB of a region listed in several observations.
FCXB_MODES = {
    "per_region": "one surface brightness per sky region and module (same region file in several observations)",
    "free": "every spectrum's fcxb norm free (as nuskybgd)",
}


def observation_references(group_obs, modules):
    """``{(observation, module): first data group}`` (1-based): each observation's reference per module."""
    firsts = {}
    for g, (o, m) in enumerate(zip(group_obs, modules), start=1):
        firsts.setdefault((o, m), g)
    return firsts


def unshare_observations(state, group_obs, share):
    """Give each observation its own free norms for the sources not in ``share``.

    The model built over all groups links every group of a module to that module's first group
    (geometric factors). For every later observation ``o`` its first group ``g_o`` of the module
    is made free (at its current, geometrically scaled value) and ``o``'s other groups are
    re-pointed to ``g_o`` with factor ``f_s / f_go``, so only the shared components stay linked
    across observations.

    Parameters
    ----------
    state : ModelState
        Built by :func:`~.background.build_background_model` over all observations' groups.
    group_obs : sequence
        Observation key of each data group.
    share : set of str
        Keys of :data:`JOINT_SHARES`.
    """
    def unshared(source, component):
        if source == "intbgd":
            if "intbgd" in share:
                return False
            return component == "apec" or "intbgd_lines" not in share
        return source in ("apbgd", "intn") and source not in share

    modules = state.modules
    firsts = observation_references(group_obs, modules)
    refs = module_references(modules)
    for name in ("apbgd", "intbgd", "intn"):
        src = state[name]
        for k in range(1, src.n_par + 1):
            p0 = src.params[k - 1]
            if p0.name != "norm" or not unshared(name, p0.component):
                continue
            for (o, m), g_o in firsts.items():
                if g_o == refs[m]:
                    continue
                r_idx = src.index(refs[m], k)
                p = src[src.index(g_o, k)]
                if p.link is None or (p.link.source, p.link.index) != (name, r_idx):
                    continue
                f_go = p.link.factor
                if f_go == 0:
                    raise BadRegionError(f"observation {o}: zero geometric factor for {name} {p0.component}",
                                         field="joint")
                p.value = state.value(name, src.index(g_o, k))
                p.link = _within(src, src[r_idx].link, refs[m], g_o)
                p.frozen = src[r_idx].frozen
                for s in range(1, len(modules) + 1):
                    if s == g_o or group_obs[s - 1] != o or modules[s - 1] != m:
                        continue
                    q = src[src.index(s, k)]
                    if q.link is not None and (q.link.source, q.link.index) == (name, r_idx):
                        q.link = Link(q.link.factor / f_go, name, src.index(g_o, k))


def _within(src, link, r, g_o):
    """The reference's own link (fixed line ratios: a line follows the 19.6 keV line of its group)
    re-pointed to group ``g_o``; None when the reference's parameter is free."""
    if link is None or link.source != src.name or (link.index - 1) // src.n_par + 1 != r:
        return None
    return Link(link.factor, src.name, src.index(g_o, (link.index - 1) % src.n_par + 1))


def link_fcxb_across(state, group_obs, region_keys):
    """Link the fcxb norm of a region seen again in a later observation to its first sighting.

    Group ``j`` (observation ``o_j``) whose ``region_keys[j]`` and module equal those of an earlier
    group ``i`` of another observation gets ``fcxb norm_j = (ΣA_j / ΣA_i) · norm_i``: one surface
    brightness per region and module (the norm per detector pixel is what the sky fixes; the area
    of the region on the detectors changes with the roll). Groups already linked (the file's
    ``fcxb_config`` links) are left alone.

    Returns
    -------
    list of (int, int)
        The ``(i, j)`` pairs linked (1-based data groups).
    """
    src = state["fcxb"]
    modules, weights = state.modules, state.weights
    first, pairs = {}, []
    for j, (o, m, key) in enumerate(zip(group_obs, modules, region_keys), start=1):
        if key is None:
            continue
        i = first.setdefault((key, m), j)
        if i == j or group_obs[i - 1] == o or src[src.index(j, 3)].link is not None:
            continue
        a_i, a_j = weights[i - 1].total_area, weights[j - 1].total_area
        if not a_i > 0:
            raise BadRegionError(f"data group {i}: region has no detector area for fcxb", field="fcxb")
        state.link("fcxb", src.index(j, 3), "fcxb", src.index(i, 3), a_j / a_i)
        pairs.append((i, j))
    return pairs


@dataclass(frozen=True)
class ObservationLinks:
    """How the data groups of several observations share the background norms.

    Attributes
    ----------
    observations : tuple
        Observation key of each data group (data-group order).
    internal : {'shared', 'per_observation'}
        See :data:`INTERNAL_MODES`.
    fcxb : {'per_region', 'free'}
        See :data:`FCXB_MODES`.
    regions : tuple
        A key per data group naming its sky region (e.g. the resolved region file); groups of
        different observations with the same key and module share their fcxb surface brightness.
    """

    observations: tuple
    internal: str = "shared"
    fcxb: str = "per_region"
    regions: tuple = ()

    def __post_init__(self):
        if self.internal not in INTERNAL_MODES:
            raise BadConfigError(f"must be one of {', '.join(INTERNAL_MODES)}, got {self.internal!r}",
                                 field="internal")
        if self.fcxb not in FCXB_MODES:
            raise BadConfigError(f"must be one of {', '.join(FCXB_MODES)}, got {self.fcxb!r}", field="fcxb")
        if self.regions and len(self.regions) != len(self.observations):
            raise BadConfigError("one region key per data group", field="regions")

    @property
    def keys(self):
        """Observation keys in their order of first appearance."""
        return tuple(dict.fromkeys(self.observations))

    @property
    def share(self):
        """:data:`JOINT_SHARES` keys shared across observations."""
        return {"apbgd"} | ({"intbgd", "intn"} if self.internal == "shared" else set())

    def apply(self, state):
        """Unshare what is per observation and tie fcxb per region; the links are then refreshed."""
        if len(self.observations) != state["apbgd"].n_groups:
            raise BadConfigError(f"{len(self.observations)} observation keys for {state['apbgd'].n_groups} "
                                 "data groups", field="observations")
        unshare_observations(state, list(self.observations), self.share)
        if self.fcxb == "per_region" and self.regions:
            link_fcxb_across(state, list(self.observations), list(self.regions))
        state.refresh_links()
        return state

    def references(self, modules):
        """``{(observation, module): reference data group}`` for predictions in one observation."""
        return observation_references(self.observations, modules)

    def groups_of(self, key):
        """Data groups (1-based) of observation ``key``."""
        if key not in self.keys:
            raise BadConfigError(f"no observation {key!r} (have {', '.join(map(str, self.keys))})", field="obs")
        return [g for g, o in enumerate(self.observations, start=1) if o == key]
