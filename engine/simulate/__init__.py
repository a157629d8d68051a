"""Synthetic NuSTAR observations with known truth.

The simulator writes complete observations in the formats of the NuSTAR pipeline (cleaned event
files, ``*_det1.fits`` aspect files, GTI files) from the same model and geometry the engine fits:

* the background is generated **in DET1**, where its components live: the aperture component
  (``apbgd``) with the DET1 aperture map as its spatial template, the focused CXB (``fcxb``)
  flat over active pixels, the internal lines + soft component (``intbgd``) and continuum
  (``intn``) flat within each detector with the ``ratios.json`` per-detector strengths;
* every event gets a time uniformly inside the GTIs, and its DET1 position goes to the sky
  through the aspect track with the engine's own geometry
  (:func:`nuskybgd_engine.maps.projection.roll_angle`, ``nudge``: PA + 1°, mirror flip, nudge),
  so the expected sky distribution is the aspect-projected map the fit uses;
* sources (a point source with a NuSTAR-like PSF, a β-model cluster) are generated on the sky
  and go the other way, to DET1, losing the events that land off the active area;
* photon energies become PI channels by sampling the response matrix row of each photon's
  energy bin, DET1 positions become DET_ID/RAWX/RAWY through the detector and pixel maps.

The normalisation conventions of the truth are in :mod:`.truth`.

Modules: :mod:`.spec` (what to simulate), :mod:`.timeline` (GTIs, aspect track, DET1 ↔ sky),
:mod:`.events` (spectra and events of one module), :mod:`.sources` (point source, cluster),
:mod:`.truth` (regions, true norms, expected counts) and :mod:`.observation` (the files and
``truth.json``). Every name imports from ``nuskybgd_engine.simulate``.
"""

from .events import (
    COMPONENT_NAMES,
    Detector,
    ModuleEvents,
    component_photon_spectra,
    internal_area,
    simulate_module_events,
)
from .observation import (
    SimulatedObservation,
    simulate_observation,
    sky_frame,
    time_keywords,
)
from .spec import BANDS, SOURCE_KINDS, SimulationSpec, check_norms, default_norms
from .timeline import (
    aspect_centre_for,
    det1_to_sky,
    make_aspect_track,
    make_gti,
    sky_to_det1,
)
from .truth import expected_counts, source_fractions, suggested_regions, true_norms

__all__ = [
    "SimulationSpec",
    "default_norms",
    "check_norms",
    "simulate_observation",
    "SOURCE_KINDS",
    "BANDS",
    "SimulatedObservation",
    "internal_area",
    "true_norms",
    "COMPONENT_NAMES",
    "Detector",
    "ModuleEvents",
    "component_photon_spectra",
    "simulate_module_events",
    "sky_frame",
    "time_keywords",
    "aspect_centre_for",
    "det1_to_sky",
    "sky_to_det1",
    "make_aspect_track",
    "make_gti",
    "expected_counts",
    "source_fractions",
    "suggested_regions",
]
