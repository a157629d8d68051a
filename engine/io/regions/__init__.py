"""ds9 regions on the sky grid: the grid, the shapes, ds9 files, region sets and their masks.

One concept per module:

* :mod:`.grid` — :class:`SkyGrid`, the pixel grid of a sky image or event file (WCS, ds9
  ``physical`` coordinates);
* :mod:`.frames` — grids of celestial and heliocentric frames; sky regions refused on the latter;
* :mod:`.shapes` — the accepted shapes (astropy ``regions`` objects and our sector shapes) and
  how a shape is placed on a grid;
* :mod:`.ds9` — reading and writing ds9 region text (every frame and shape ds9 saves);
* :mod:`.regionset` — :class:`RegionSet`, ordered include/exclude shapes with names;
* :mod:`.masks` — the pixels a region set selects (union of includes minus union of
  excludes, pixel-centre inclusion) and the events that fall in them.
"""

from .frames import (grid_from_event_header, grid_from_fits, grid_from_image_header, grid_is_celestial,
                     grid_of_frame, require_pixel_regions)
from .grid import SkyGrid
from .masks import Cutout, region_cutout, region_mask, select_events
from .regionset import RegionEntry, RegionSet, as_regionset
from .shapes import _PIXEL_CACHE, SUPPORTED_SHAPES, PandaPixelRegion, PandaSkyRegion, PhysicalRegion

# Re-exported for the callers that import the shape base class from here.
from regions import Region  # noqa: E402,I001

__all__ = [
    "SkyGrid",
    "grid_of_frame",
    "grid_from_event_header",
    "grid_from_image_header",
    "grid_from_fits",
    "grid_is_celestial",
    "require_pixel_regions",
    "RegionEntry",
    "RegionSet",
    "Cutout",
    "as_regionset",
    "region_mask",
    "region_cutout",
    "select_events",
    "SUPPORTED_SHAPES",
    "PandaPixelRegion",
    "PandaSkyRegion",
    "PhysicalRegion",
    "Region",
    "_PIXEL_CACHE",
]
