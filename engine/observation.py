"""One observation's maps in memory: counts images, instrument maps, aspect histograms, projections.

:func:`prepare_observation` runs the seed's steps 2.1 and 3.1–3.3 (``mkimgs``, ``mkinstrmap``,
``aspecthist``, ``projbgd``) for both modules of a pipeline directory (``<obsid>/event_cl``) and
keeps everything in memory; the CLI steps write the same products to files.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from .errors import BadConfigError, BadFileError
from .io.aspect import read_aspect
from .io.events import read_events
from .io.gti import apply_gti, read_gti
from .maps import aspect_from_events, aspect_histogram, make_counts_image, make_instrument_map, project_maps
from .productcache import load_products, product_key, store_products

__all__ = ["ModuleProducts", "ObservationProducts", "find_observation_files", "prepare_observation"]


@dataclass
class ModuleProducts:
    """Everything the method needs of one module."""

    module: str
    events: object  # EventList
    image: object  # CountsImage (sky, band)
    instrument_map: object  # InstrumentMap
    aspect: object  # AspectHistogram
    maps: object  # ProjectedMaps
    files: dict = field(default_factory=dict)

    @property
    def grid(self):
        return self.image.grid

    def __repr__(self):
        return f"ModuleProducts(FPM{self.module}, {len(self.events)} events, {self.maps!r})"


@dataclass
class ObservationProducts:
    """Both modules of one observation."""

    obsid: str
    root: Path
    band: tuple
    modules: dict

    @property
    def grid(self):
        return next(iter(self.modules.values())).grid

    def __getitem__(self, module):
        try:
            return self.modules[module]
        except KeyError:
            raise BadConfigError(f"module {module!r} not loaded (have {', '.join(self.modules)})",
                                 field="module") from None

    def __repr__(self):
        return f"ObservationProducts({self.obsid}, {self.band[0]:g}-{self.band[1]:g} keV, modules {list(self.modules)})"


def find_observation_files(obsdir, obsid=None, modules=("A", "B")):
    """Locate cleaned events, aspect and GTI files of each module under ``obsdir``.

    Accepts the pipeline layout ``<obsdir>/event_cl/nu<obsid><m>01_cl.evt`` (and ``.gz``), with
    ``nu<obsid><m>_det1.fits`` and ``nu<obsid><m>01_gti.fits`` next to it or in ``../auxil``. Solar
    pointings: ``nu<obsid><m>06_cl_sunpos.evt`` (solar X/Y) or ``nu<obsid><m>06_cl.evt`` with
    ``nu<obsid><m>06_gti.fits``. Without a det1 file ``det1`` is None: the aspect is then measured
    from the events (:func:`~nuskybgd_engine.maps.eventaspect.aspect_from_events`).
    """
    obsdir = Path(obsdir)
    if not obsdir.is_dir():
        raise BadFileError("observation directory not found", path=obsdir)
    evdir = obsdir / "event_cl" if (obsdir / "event_cl").is_dir() else obsdir
    obsid = obsid or obsdir.name
    out = {}
    for m in modules:
        def find(*names):
            for d in (evdir, obsdir / "auxil", obsdir):
                for n in names:
                    for suffix in ("", ".gz"):
                        p = d / (n + suffix)
                        if p.is_file():
                            return p
            return None

        evt = find(f"nu{obsid}{m}01_cl.evt", f"nu{obsid}{m}06_cl_sunpos.evt", f"nu{obsid}{m}06_cl.evt")
        if evt is None:
            raise BadFileError(f"no cleaned event file nu{obsid}{m}01_cl.evt (or 06_cl_sunpos.evt, 06_cl.evt) "
                               f"for FPM{m}", path=evdir)
        det1 = find(f"nu{obsid}{m}_det1.fits")
        gti = find(f"nu{obsid}{m}01_gti.fits", f"nu{obsid}{m}06_gti.fits")
        out[m] = {"events": evt, "det1": det1, "gti": gti}
    return obsid, out


def prepare_observation(obsdir, *, obsid=None, band=(3.0, 20.0), modules=("A", "B"), progress=None, gti=None,
                        drop_invalid=False):
    """Counts images, instrument maps, aspect histograms and projected maps of an observation.

    Parameters
    ----------
    obsdir : path-like
        ``<obsid>`` directory of the pipeline (or a directory holding the files).
    band : (float, float)
        Energy band of the counts images (keV).
    modules : sequence of {'A', 'B'}
    progress : callable(str), optional
    gti : Gti, GTI file name(s) or a list of these, optional
        User GTIs (nuproducts ``usrgtifile``), intersected with each module's GTI for the events
        (images, spectra, EXPOSURE scaled by LIVETIME/ONTIME) and the aspect histogram.
    drop_invalid : bool
        Leave out events with values outside their columns' TLMIN..TLMAX (reported through
        ``progress``) instead of refusing the file (see :func:`~nuskybgd_engine.io.events.read_events`).

    Returns
    -------
    ObservationProducts
    """
    say = progress or (lambda msg: None)
    obsid, files = find_observation_files(obsdir, obsid, modules)
    products = {}
    for m, f in files.items():
        say(f"FPM{m}: reading events")
        ev = read_events(f["events"], module=m, drop_invalid=drop_invalid)
        if ev.dropped:
            say(ev.dropped_note())
        if gti is not None:
            ev = apply_gti(ev, gti)
        good = read_gti(f["gti"]) if f["gti"] is not None else ev.gti
        if good is None:
            raise BadFileError("no GTI file and no GTI extension in the event file", path=f["events"])
        if gti is not None:
            good = good.intersect(ev.gti)  # ev.gti is already the event GTI x the user GTIs
        key = product_key(f, module=m, band=band, gtis=[good] + ([ev.gti] if ev.gti is not None else []),
                          drop_invalid=drop_invalid)
        made = load_products(*key)
        if made is not None:
            say(f"FPM{m}: maps from the product cache")
        else:
            made = _module_maps(m, f, ev, good, band, drop_invalid, say)
            store_products(*key, made)
        products[m] = ModuleProducts(m, ev, made["image"], made["instrument_map"], made["aspect"], made["maps"],
                                     files=dict(f))
    return ObservationProducts(obsid=obsid, root=Path(obsdir), band=tuple(float(b) for b in band), modules=products)


def _module_maps(m, f, ev, good, band, drop_invalid, say):
    """Counts image, instrument map, aspect histogram and projected maps of one module (not cached)."""
    say(f"FPM{m}: counts image {band[0]:g}-{band[1]:g} keV")
    image = make_counts_image(ev, *band)
    say(f"FPM{m}: instrument map")
    imap = make_instrument_map(ev)
    say(f"FPM{m}: aspect histogram")
    if f["det1"] is None or not ev.frame.celestial:
        # No det1 file, or solar X/Y events (the det1 file tracks RA/Dec pixels): measure it.
        say(f"FPM{m}: aspect and roll measured from the events")
        track = aspect_from_events(read_events(f["events"], module=m, columns=("TIME", "X", "Y", "DET1X", "DET1Y"),
                                               drop_invalid=drop_invalid), good).track
    else:
        track = read_aspect(f["det1"], module=m)
    hist = aspect_histogram(track, good)
    say(f"FPM{m}: projecting aperture and detector maps")
    maps = project_maps(image.header, imap, hist, module=m, ref_shape=image.image.shape)
    return {"image": image, "instrument_map": imap, "aspect": hist, "maps": maps}
