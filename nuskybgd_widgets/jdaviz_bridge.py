"""Optional jdaviz viewer: show the counts image in Imviz and bring regions drawn there back.

jdaviz is heavy (~1 GB, several seconds to start), so it is an optional extra
(``pip install 'nuskybgd-widgets[jdaviz]'``) imported only when asked. Regions travel as astropy
``regions`` objects in both directions, the same objects the session uses:

>>> imviz = open_imviz(session, module="A")        # doctest: +SKIP
>>> imviz.show()                                     # draw circles in Imviz ...
>>> session_import_imviz_regions(session, imviz)    # ... they become background regions
"""

from __future__ import annotations

from astropy.io import fits
from nuskybgd_engine.errors import BadConfigError

__all__ = ["import_jdaviz", "open_imviz", "regions_from_imviz", "session_import_imviz_regions"]


def import_jdaviz():
    """The ``jdaviz.Imviz`` class, or a one-line error saying how to install it."""
    try:
        from jdaviz import Imviz  # lazy: jdaviz is an optional extra
    except Exception as exc:  # ImportError, or a broken install raising anything else
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise BadConfigError(f"jdaviz is not available ({reason}); install the extra: "
                             "pip install 'nuskybgd-widgets[jdaviz]'", field="jdaviz") from None
    return Imviz


def open_imviz(session, module="A", *, imviz=None):
    """An Imviz showing the session's counts image of ``module`` with its regions loaded.

    Parameters
    ----------
    session : Session
        With an observation loaded.
    module : {'A', 'B'}
    imviz : Imviz, optional
        An existing viewer to load into (default: a new one).
    """
    obs = session.need_observation()
    if module not in obs.modules:
        raise BadConfigError(f"module {module!r} is not loaded", field="module")
    if imviz is None:
        imviz = import_jdaviz()()
    image = obs[module].image
    header = image.header.copy()
    imviz.load_data(fits.ImageHDU(image.image, header=header, name="COUNTS"), data_label=f"FPM{module} counts")
    shapes = []
    for item in session.regions:
        for entry in item.regions:
            shape = entry.shape
            shape.meta = dict(getattr(shape, "meta", {}) or {}, label=item.name)
            shapes.append(shape)
    if shapes:
        imviz.load_regions(shapes)
    return imviz


def regions_from_imviz(imviz):
    """{label: astropy region} of the regions drawn in Imviz (pixel or sky regions)."""
    get = None
    plugins = getattr(imviz, "plugins", None)
    if plugins is not None:
        try:
            get = plugins["Subset Tools"].get_regions
        except Exception:  # noqa: BLE001 - older jdaviz: no such plugin method
            get = None
    if get is None:
        get = getattr(imviz, "get_interactive_regions", None)
    if get is None:
        raise BadConfigError("this jdaviz version offers no way to read its regions", field="jdaviz")
    regions = get()
    if not isinstance(regions, dict):
        raise BadConfigError(f"jdaviz returned {type(regions).__name__}, expected a dict of regions", field="jdaviz")
    return regions


def session_import_imviz_regions(session, imviz, role="background"):
    """Add every region drawn in Imviz to the session (new names; existing ones are moved).

    Returns the names of the regions added or moved.
    """
    names = []
    existing = set(session.region_names())
    for label, shape in regions_from_imviz(imviz).items():
        name = "".join(ch if ch.isalnum() or ch in "_-" else "_" for ch in str(label)) or "jdaviz"
        if name in existing:
            session.move_region(name, shape)
        else:
            session.add_region(shape, name=name, role=role)
            existing.add(name)
        names.append(name)
    return names
