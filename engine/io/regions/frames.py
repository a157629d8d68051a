"""Sky grids of either frame (:mod:`nuskybgd_engine.io.skyframe`) and the rule that a heliocentric grid takes
only image/physical regions."""

from __future__ import annotations

from astropy.io import fits
from astropy.wcs import WCS

from ..fitsutil import find_hdu, hdu_name, read_fits
from ..skyframe import frame_from_columns, frame_from_header
from .grid import SkyGrid, grid_is_celestial, require_celestial
from .regionset import as_regionset

__all__ = ["grid_of_frame", "grid_from_event_header", "grid_from_image_header", "grid_from_fits",
           "grid_is_celestial", "require_pixel_regions"]


def grid_of_frame(frame):
    """The :class:`SkyGrid` of a helioprojective :class:`~nuskybgd_engine.io.skyframe.SkyFrame`.

    Celestial frames are built by :class:`SkyGrid`'s own constructors (:func:`grid_from_event_header`,
    :func:`grid_from_image_header`).
    """
    w = WCS(naxis=2)
    w.wcs.ctype = list(frame.ctype)
    w.wcs.cunit = [frame.unit, frame.unit]
    w.wcs.crpix = list(frame.crpix)
    w.wcs.crval = list(frame.crval)
    w.wcs.cdelt = list(frame.cdelt)
    w.pixel_shape = (frame.shape[1], frame.shape[0])
    w.wcs.set()
    return SkyGrid(w, frame.shape, origin=frame.origin, path=frame.path)


def grid_from_event_header(header, path=None, *, extension="EVENTS"):
    """SkyGrid of an event table's X/Y columns, celestial or heliocentric."""
    frame = frame_from_columns(header, path, extension=extension)
    if frame.celestial:
        return SkyGrid.from_event_columns(header, path=path, extension=extension)
    return grid_of_frame(frame)


def grid_from_image_header(header, path=None, *, extension=None, shape=None):
    """SkyGrid of a 2-D sky image header, celestial or heliocentric."""
    frame = frame_from_header(header, path, extension=extension, shape=shape)
    if frame.celestial:
        return SkyGrid.from_header(header, path=path, extension=extension, shape=shape)
    return grid_of_frame(frame)


def grid_from_fits(path):
    """SkyGrid of a FITS file: its first 2-D image HDU, else the X/Y columns of EVENTS."""
    hdul = read_fits(path, what="sky image or event file")
    for hdu in hdul:
        if isinstance(hdu, (fits.PrimaryHDU, fits.ImageHDU, fits.CompImageHDU)) and hdu.header.get("NAXIS") == 2:
            return grid_from_image_header(hdu.header, path, extension=hdu_name(hdul, hdu))
    events = find_hdu(hdul, path, extnames=("EVENTS",), table=True, what="2-D sky image or EVENTS table")
    return grid_from_event_header(events.header, path)


def require_pixel_regions(regions, grid):
    """Refuse sky (fk5/icrs/galactic) shapes on a non-celestial grid with one clear line.

    Parameters
    ----------
    regions : RegionSet or region object(s)
    grid : SkyGrid
    """
    if grid_is_celestial(grid):
        return
    rs = as_regionset(regions)
    if any(e.is_sky for e in rs):
        require_celestial(grid, rs.source)
