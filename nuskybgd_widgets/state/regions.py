"""The named regions of a session: an observable, immutable tuple of :class:`RegionItem`.

:class:`RegionsState` validates names and roles and computes edited copies of the region list;
it never builds spectra. The session commits an edit (``items = ...``) only after the model
accepted the new regions, so observers of ``items`` see only regions that have spectra.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from traitlets import HasTraits, Tuple

from nuskybgd_engine.errors import BadConfigError, BadRegionError
from nuskybgd_engine.io.regions import Region, RegionSet
from nuskybgd_engine.io.regions.grid import require_celestial
from nuskybgd_engine.io.regions.shapes import is_sky, to_pixel

__all__ = ["RegionItem", "RegionsState", "ROLES", "as_regionset", "on_sky"]

ROLES = ("background", "source")


@dataclass(frozen=True, eq=False)
class RegionItem:
    """A named region: a :class:`~nuskybgd_engine.io.regions.RegionSet` (include/exclude shapes) and its role.

    Immutable: an edit makes a new item (so a changed ``RegionsState.items`` always notifies).
    """

    name: str
    role: str
    regions: RegionSet

    @property
    def shape(self):
        """The first shape (what the image panel drags)."""
        return self.regions[0].shape


def as_regionset(shape, name):
    """``shape`` (a ``regions`` shape or a RegionSet) as a new RegionSet named ``name``."""
    if isinstance(shape, RegionSet):
        if len(shape) == 0:
            raise BadRegionError(f"region {name!r} has no shapes", field="shape")
        return shape.copy()
    if isinstance(shape, Region):
        rs = RegionSet()
        rs.add(shape, include=True, name=name)
        return rs
    raise BadRegionError(f"region {name!r}: expected a regions shape or RegionSet, got {type(shape).__name__}",
                         field="shape")


def on_sky(item, grid):
    """``item`` with its pixel (and physical) shapes turned into sky shapes through ``grid``'s WCS.

    Several observations on different sky grids share regions as sky regions: a pixel shape means
    a place only on the grid it was drawn on. Items without pixel shapes come back unchanged.
    """
    if all(is_sky(e.shape) for e in item.regions):
        return item
    require_celestial(grid, what="regions of observations on different sky grids must be celestial "
                                 "(heliocentric grids cannot be matched)")
    rs = RegionSet(source=item.regions.source)
    for i, e in enumerate(item.regions):
        shape = e.shape if is_sky(e.shape) else to_pixel(e.shape, grid, item.regions.source, i).to_sky(grid.wcs)
        rs.add(shape, include=e.include, name=e.name)
    return RegionItem(item.name, item.role, rs)


class RegionsState(HasTraits):
    """The regions, in display order (``items``, observable); iterating the state iterates the items.

    Edits return ``(new item, new items)`` and leave ``items`` unchanged until the caller commits.
    """

    #: RegionItem, display order.
    items = Tuple()

    def __iter__(self):
        return iter(self.items)

    def __len__(self):
        return len(self.items)

    # -- queries ----------------------------------------------------------------------------------

    def region(self, name):
        """The :class:`RegionItem` called ``name``."""
        for item in self.items:
            if item.name == name:
                return item
        raise BadConfigError(f"no region named {name!r} (have {', '.join(self.names()) or 'none'})", field="region")

    def names(self, role=None):
        """Names of the regions (of one role), in order."""
        return [r.name for r in self.items if role is None or r.role == role]

    def new_name(self, role):
        """The first free default name of a new region: ``bgdN`` or ``srcN``."""
        stem = "bgd" if role == "background" else "src"
        n = 1
        while f"{stem}{n}" in self.names():
            n += 1
        return f"{stem}{n}"

    @staticmethod
    def check_role(role):
        """``role`` if it is one of :data:`ROLES`, else BadConfigError."""
        if role not in ROLES:
            raise BadConfigError(f"role must be one of {', '.join(ROLES)}, got {role!r}", field="role")
        return role

    def check_new_name(self, name):
        """``name`` if it is a free, valid region name (one word), else BadRegionError."""
        if not isinstance(name, str) or not name.strip() or any(c in name for c in "{}\n\r/\\ "):
            raise BadRegionError(f"region name {name!r} must be a non-empty word (no spaces, braces or slashes)",
                                 field="name")
        if name in self.names():
            raise BadRegionError(f"a region named {name!r} exists already", field="name")
        return name

    # -- edits (computed, not committed) ---------------------------------------------------------------

    def _replaced(self, old, new):
        return new, tuple(new if r is old else r for r in self.items)

    def added(self, shape, name=None, role="background"):
        """A new region ``name`` (default ``bgdN``/``srcN``) of ``role`` after the others."""
        self.check_role(role)
        name = self.check_new_name(name if name is not None else self.new_name(role))
        item = RegionItem(name, role, as_regionset(shape, name))
        return item, self.items + (item,)

    def with_shapes(self, name, edit, field="include"):
        """Region ``name`` with its shapes edited by ``edit(RegionSet copy)`` (which may raise)."""
        item = self.region(name)
        rs = item.regions.copy()
        edit(rs)
        if not rs.includes:
            raise BadRegionError(f"region {name!r} would have no include shape left", field=field)
        return self._replaced(item, RegionItem(item.name, item.role, rs))

    def moved(self, name, shape, index=0):
        """Region ``name`` with shape ``index`` replaced (a move or resize)."""
        n = len(self.region(name).regions)
        if not 0 <= index < n:
            raise BadConfigError(f"region {name!r} has shapes 0..{n - 1}, not {index}", field="index")
        return self.with_shapes(name, lambda rs: rs.replace(index, shape=shape))

    def removed(self, name):
        """The regions without ``name``."""
        item = self.region(name)
        return tuple(r for r in self.items if r is not item)

    def renamed(self, name, new_name):
        """Region ``name`` called ``new_name`` (same shapes and role)."""
        item = self.region(name)
        self.check_new_name(new_name)
        return self._replaced(item, RegionItem(new_name, item.role, item.regions))

    def with_role(self, name, role):
        """Region ``name`` with ``role``."""
        item = self.region(name)
        self.check_role(role)
        return self._replaced(item, RegionItem(item.name, role, item.regions))

    def read_ds9(self, path, name=None):
        """A ds9 file as a RegionSet and the name it gets (its first shape's text, else the file stem)."""
        rs = RegionSet.read_ds9(path)
        first = rs[0].name
        default = first if first and first not in self.names() and " " not in first else Path(path).stem
        return rs, name if name is not None else default

    def sources_regionset(self):
        """All shapes of the source regions as one RegionSet (None without source regions)."""
        shapes = [e for r in self.items if r.role == "source" for e in r.regions]
        return RegionSet(shapes) if shapes else None
