"""Region sets: ordered include/exclude shapes with names, read from and written to ds9 files."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from regions import Region

from ...errors import BadRegionError
from ..fitsutil import atomic_output
from .ds9 import HEADER, parse_ds9, shape_to_ds9
from .shapes import PandaPixelRegion, PhysicalRegion, check_shape, is_sky, shape_name, to_pixel

__all__ = ["RegionEntry", "RegionSet", "as_regionset"]


@dataclass(frozen=True)
class RegionEntry:
    """One shape of a :class:`RegionSet` (see :mod:`.shapes`), include flag and optional name."""

    shape: Region
    include: bool = True
    name: str | None = None

    @property
    def kind(self):
        """ds9 name of the shape (``circle``, ``ellipse``, ``box``, ``polygon``, ``annulus``, ``panda`` ...)."""
        return shape_name(self.shape)

    @property
    def is_sky(self):
        return is_sky(self.shape)

    @property
    def is_physical(self):
        """Whether the shape is in ds9 ``physical`` coordinates (placed with the grid's LTM/LTV)."""
        return isinstance(self.shape, PhysicalRegion)


def _check_name(name, source=None):
    if name is None:
        return None
    if not isinstance(name, str):
        raise BadRegionError(f"region name must be a string, got {name!r}", path=source, field="text")
    if any(c in name for c in "{}\n\r"):
        raise BadRegionError(f"region name {name!r} may not contain braces or newlines", path=source, field="text")
    return name


class RegionSet:
    """An ordered list of shapes, each include or exclude, optionally named.

    The order is kept for display and for writing files; it does not affect the mask
    (see :mod:`.masks` for the rule).

    Parameters
    ----------
    entries : iterable of RegionEntry, optional
    source : str or os.PathLike, optional
        File the regions came from, used in error messages.
    """

    def __init__(self, entries=(), *, source=None):
        self.source = os.fspath(source) if source is not None else None
        self.notes = []  # what a parsed file had that selects no area (skipped shapes)
        self._entries = []
        for e in entries:
            if not isinstance(e, RegionEntry):
                raise BadRegionError(f"expected a RegionEntry, got {type(e).__name__}", path=self.source)
            self.add(e.shape, include=e.include, name=e.name)

    # -- construction -------------------------------------------------------------------

    @classmethod
    def from_string(cls, text, *, source=None):
        """Parse ds9 region text (see :mod:`.ds9` for what is read).

        Lines starting with ``-`` (or with ``include=0``) are excludes; ``# text={name}`` names a
        shape. Shapes that enclose no area (point, text, ruler …) are skipped and listed in
        :attr:`notes`; anything else that cannot be read is an error naming the line.
        """
        where = os.fspath(source) if source is not None else None
        if not isinstance(text, str):
            raise BadRegionError(f"region text must be a string, got {type(text).__name__}", path=where)
        try:
            parsed, notes = parse_ds9(text)
        except BadRegionError as exc:
            raise BadRegionError(exc.reason, path=where, field=exc.field) from None
        if not parsed:
            extra = f" ({'; '.join(notes)})" if notes else ""
            raise BadRegionError(f"no region shapes found (empty region file?){extra}", path=where)
        out = cls(source=where)
        out.notes = list(notes)
        for shape, include, name, line in parsed:
            try:
                out.add(shape, include=include, name=name)
            except BadRegionError as exc:
                raise BadRegionError(exc.reason, path=where, field=f"line {line}") from None
        return out

    @classmethod
    def read_ds9(cls, path):
        """Read a ds9 region file; see :meth:`from_string`."""
        p = Path(path)
        if not p.exists():
            raise BadRegionError("region file not found", path=p)
        if p.is_dir():
            raise BadRegionError("expected a region file, found a directory", path=p)
        try:
            text = p.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            raise BadRegionError("region file is not text (not UTF-8)", path=p) from None
        except OSError as exc:
            raise BadRegionError(f"cannot read region file: {exc.strerror or exc}", path=p) from None
        return cls.from_string(text, source=p)

    def add(self, shape, include=True, name=None):
        """Append a shape (sky, pixel or physical; see :mod:`.shapes`).

        Returns
        -------
        RegionEntry
        """
        check_shape(shape, self.source)
        entry = RegionEntry(shape, bool(include), _check_name(name, self.source))
        self._entries.append(entry)
        return entry

    def replace(self, index, shape=None, *, include=None, name=None):
        """Replace entry ``index`` (a live widget edit); unspecified fields are kept."""
        old = self._entries[index]
        shape = old.shape if shape is None else shape
        check_shape(shape, self.source)
        new = RegionEntry(
            shape,
            old.include if include is None else bool(include),
            old.name if name is None else _check_name(name, self.source),
        )
        self._entries[index] = new
        return new

    def remove(self, index):
        """Delete entry ``index``."""
        del self._entries[index]

    def copy(self):
        out = RegionSet(self._entries, source=self.source)
        out.notes = list(self.notes)
        return out

    # -- container ----------------------------------------------------------------------

    def __len__(self):
        return len(self._entries)

    def __iter__(self):
        return iter(self._entries)

    def __getitem__(self, index):
        return self._entries[index]

    @property
    def includes(self):
        return [e for e in self._entries if e.include]

    @property
    def excludes(self):
        return [e for e in self._entries if not e.include]

    def __repr__(self):
        items = ", ".join(
            ("+" if e.include else "-") + e.kind + (f" {e.name!r}" if e.name else "") + ("" if e.is_sky else (" [physical]" if e.is_physical else " [image]"))
            for e in self._entries
        )
        src = f" from {Path(self.source).name!r}" if self.source else ""
        return f"RegionSet({len(self)} region{'s' if len(self) != 1 else ''}{src}: {items})"

    # -- conversion ---------------------------------------------------------------------

    def to_pixel(self, grid):
        """Pixel-coordinate entries on ``grid`` (sky shapes converted with ``grid.wcs``)."""
        return [
            RegionEntry(to_pixel(e.shape, grid, self.source, i).copy(), e.include, e.name) for i, e in enumerate(self)
        ]

    def to_ds9_string(self, coord="fk5", grid=None):
        """ds9 region text.

        Parameters
        ----------
        coord : {'fk5', 'icrs', 'fk4', 'galactic', 'image', 'physical'}
            Coordinate system written. Sky shapes are written as degrees with sizes in arcsec;
            ``image`` writes 1-based ds9 pixel coordinates, ``physical`` goes through the
            grid's LTM/LTV.
        grid : SkyGrid, optional
            Needed to convert between pixel (or physical) and sky coordinates.
        """
        coord = str(coord).lower()
        lines = [HEADER, coord]
        for i, e in enumerate(self):
            line = ("" if e.include else "-") + shape_to_ds9(e.shape, coord, grid, index=i, source=self.source)
            if e.name:
                line += f" # text={{{e.name}}}"
            lines.append(line)
        return "\n".join(lines) + "\n"

    def write_ds9(self, path, *, coord="fk5", grid=None, overwrite=False):
        """Write a ds9 region file atomically (never replaces a file unless ``overwrite``)."""
        text = self.to_ds9_string(coord=coord, grid=grid)
        with atomic_output(path, overwrite=overwrite) as tmp:
            Path(tmp).write_text(text, encoding="utf-8")
        return Path(path)



def as_regionset(regions):
    """A RegionSet from a RegionSet, one region object, or a sequence of regions / RegionEntry."""
    if isinstance(regions, RegionSet):
        return regions
    if isinstance(regions, (Region, PandaPixelRegion, PhysicalRegion)) or is_sky(regions):
        out = RegionSet()
        out.add(regions, include=bool(int(regions.meta.get("include", 1))), name=regions.meta.get("text"))
        return out
    try:
        items = list(regions)
    except TypeError:
        raise BadRegionError(f"expected a RegionSet or region objects, got {type(regions).__name__}") from None
    out = RegionSet()
    for r in items:
        if isinstance(r, RegionEntry):
            out.add(r.shape, include=r.include, name=r.name)
        else:
            meta = getattr(r, "meta", {}) or {}
            out.add(r, include=bool(int(meta.get("include", 1))), name=meta.get("text"))
    return out
