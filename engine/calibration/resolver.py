"""Where each calibration file comes from: one resolver, one order, one error.

Two kinds of calibration files exist (spec §5):

* **auxil files** (``be.arf``, ``ratios.json``, ``detA_det1.img.gz`` ... see :data:`AUXIL_FILES`),
  shipped with nuskybgd. They are searched in this order:

  1. an explicit ``path`` argument;
  2. the directory named by ``$NUSKYBGD_AUXIL`` (nuskybgd-py's variable; an IDL auxil directory
     also works: its uncompressed ``det{A,B}_det1.img`` stand in for the ``.img.gz``);
  3. the user cache filled by ``nuskybgd auxil fetch`` (:func:`cache_dir`);
  4. the embedded nominal calibration, if one is registered for the name (:func:`register_nominal`)
     and ``allow_nominal`` is true.

  They are never looked up in CALDB: CALDB does not hold them.

* **CALDB products** (``INSTRMAP``, ``PIXPOS``, ``BADPIX``, ``DETABS``, ``BEABSPAR``, ``GRPRMF``,
  see :data:`CALDB_PRODUCTS`), searched in this order:

  1. an explicit ``path`` argument;
  2. ``$CALDB`` through its NuSTAR index (:func:`~nuskybgd_engine.calibration.caldb.caldb_lookup`,
     with module, detector and observation date);
  3. the embedded nominal calibration, if registered. (Substitutes for CALDB products built from
     auxil files, e.g. a detector layout from ``detnum{A,B}.fits`` instead of ``INSTRMAP``, are
     chosen by the code that needs them, not here.)

When nothing is found, :class:`~nuskybgd_engine.errors.CalibrationNotFoundError` lists, on one
line and in order, every place that was searched and how to get the file.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path

from ..errors import BadConfigError, CalibrationNotFoundError
from .caldb import CALDB_PRODUCTS, caldb_index_path, caldb_lookup, instrument_name

__all__ = [
    "AUXIL_FILES",
    "CALDB_PRODUCTS",
    "SOURCES",
    "NOMINAL_AVAILABLE",
    "Resolved",
    "resolve",
    "register_nominal",
    "cache_dir",
    "auxil_env_dir",
    "caldb_env_dir",
    "survey",
]

#: The auxiliary files of nuskybgd (spec §5), by the names used in its auxil directory.
AUXIL_FILES = (
    "be.arf", "template.arf", "fcxbA.arf", "fcxbB.arf", "diag.rmf", "detA_det1.img.gz", "detB_det1.img.gz",
    "nomapbgdparams.dat", "pixmapA.fits", "pixmapB.fits", "detnumA.fits", "detnumB.fits", "ratios.json",
    "ratiosA.dat", "ratiosB.dat", "bgdfitparamsA.dat", "bgdfitparamsB.dat", "polarmodel.fits",
)

#: Other names under which an auxil file may be found in a user's auxil directory (IDL layout).
ALTERNATIVE_NAMES = {"detA_det1.img.gz": ("detA_det1.img",), "detB_det1.img.gz": ("detB_det1.img",)}

#: Possible values of :attr:`Resolved.source`, in search order.
SOURCES = ("path", "auxil", "caldb", "cache", "nominal")

#: Names for which an embedded nominal calibration exists; filled by ``calibration.nominal``
#: through :func:`register_nominal`.
NOMINAL_AVAILABLE: set = set()

AUXIL_ENV = "NUSKYBGD_AUXIL"
CALDB_ENV = "CALDB"
CACHE_ENV = "NUSKYBGD_CACHE"

_nominal_loaded = False


@dataclass(frozen=True)
class Resolved:
    """A resolved calibration file.

    Attributes
    ----------
    name : str
        Auxil file name or CALDB product name.
    source : str
        One of :data:`SOURCES`.
    path : pathlib.Path or None
        The file; None for the embedded nominal calibration.
    extension : int or None
        FITS extension to read (CALDB ``CAL_XNO``), None for the whole file.
    detail : str
        Where it was found, in words (e.g. ``NUSKYBGD_AUXIL=/data/auxil``).
    """

    name: str
    source: str
    path: Path | None
    extension: int | None = None
    detail: str = ""

    def __str__(self):
        where = "embedded nominal calibration" if self.path is None else str(self.path)
        if self.extension is not None:
            where += f"[{self.extension}]"
        return f"{self.name}: {self.source} ({where})"


def register_nominal(name):
    """Declare that an embedded nominal calibration exists for ``name``.

    Called by the nominal-calibration module at import. ``name`` must be an auxil file name or a
    CALDB product name.
    """
    key = _canonical(name)
    NOMINAL_AVAILABLE.add(key)
    return key


def _load_nominal():
    """Import ``calibration.nominal`` once, if it exists, so that its registrations happen."""
    global _nominal_loaded
    if _nominal_loaded:
        return
    _nominal_loaded = True
    modname = f"{__package__}.nominal"
    if importlib.util.find_spec(modname) is not None:
        importlib.import_module(modname)


def _canonical(name):
    text = str(name).strip()
    if text in AUXIL_FILES:
        return text
    if text.upper() in CALDB_PRODUCTS:
        return text.upper()
    raise BadConfigError(
        f"unknown calibration file {name!r} (auxil files: {', '.join(AUXIL_FILES)}; CALDB products: "
        f"{', '.join(CALDB_PRODUCTS)})", field="name")


def _env(name):
    value = os.environ.get(name, "").strip()
    return value or None


def auxil_env_dir():
    """The directory named by ``$NUSKYBGD_AUXIL``, None if unset; an error if not a directory."""
    value = _env(AUXIL_ENV)
    if value is None:
        return None
    path = Path(value).expanduser()
    if not path.is_dir():
        what = "does not exist" if not path.exists() else "is not a directory"
        raise BadConfigError(f"{value} {what} (it must name the nuskybgd auxil directory)",
                             field=AUXIL_ENV)
    return path


def caldb_env_dir():
    """``$CALDB`` as a path, or None if unset. Not validated: a bad CALDB only matters for CALDB products."""
    value = _env(CALDB_ENV)
    return Path(value).expanduser() if value is not None else None


def cache_dir(override=None):
    """Directory of the auxil cache filled by ``nuskybgd auxil fetch``.

    ``override``, else ``$NUSKYBGD_CACHE``, else ``$XDG_CACHE_HOME/nuskybgd/auxil``, else
    ``~/.cache/nuskybgd/auxil``. The directory need not exist yet.
    """
    if override is not None:
        path, var = Path(override).expanduser(), None
    elif _env(CACHE_ENV) is not None:
        path, var = Path(_env(CACHE_ENV)).expanduser(), CACHE_ENV
    elif _env("XDG_CACHE_HOME") is not None:
        path, var = Path(_env("XDG_CACHE_HOME")).expanduser() / "nuskybgd" / "auxil", "XDG_CACHE_HOME"
    else:
        path, var = Path.home() / ".cache" / "nuskybgd" / "auxil", None
    if path.exists() and not path.is_dir():
        raise BadConfigError(f"auxil cache {path} is not a directory", field=var or "cache")
    return path


def _explicit(name, path):
    path = Path(path).expanduser()
    if path.is_file():
        return Resolved(name, "path", path, None, "given explicitly")
    what = "is a directory, not a file" if path.is_dir() else "does not exist"
    raise CalibrationNotFoundError(f"{name} file given explicitly {what}", path=path)


def _nominal(name, allow_nominal, tried):
    if not allow_nominal:
        tried.append("nominal calibration not allowed")
        return None
    _load_nominal()
    if name in NOMINAL_AVAILABLE:
        return Resolved(name, "nominal", None, None, "embedded nominal calibration")
    tried.append("no embedded nominal calibration")
    return None


def _resolve_auxil(name, allow_nominal, cache, tried):
    env = auxil_env_dir()
    if env is None:
        tried.append(f"{AUXIL_ENV} unset")
    else:
        for candidate in (name,) + ALTERNATIVE_NAMES.get(name, ()):
            if (env / candidate).is_file():
                return Resolved(name, "auxil", env / candidate, None, f"{AUXIL_ENV}={env}")
        tried.append(f"not in {AUXIL_ENV}={env}")
    cdir = cache_dir(cache)
    if (cdir / name).is_file():
        return Resolved(name, "cache", cdir / name, None, f"cache {cdir}")
    tried.append(f"not in cache {cdir}")
    found = _nominal(name, allow_nominal, tried)
    if found is not None:
        return found
    hint = f"run `nuskybgd auxil fetch` or set {AUXIL_ENV} to a nuskybgd auxil directory"
    raise CalibrationNotFoundError(f"not found: {'; '.join(tried)}; {hint}", field=name)


def _resolve_caldb(name, module, detector, date, allow_nominal, tried):
    root = caldb_env_dir()
    label = name
    instrume = instrument_name(module)
    if instrume:
        label = f"{name} ({instrume})"
    if root is None:
        tried.append(f"{CALDB_ENV} unset")
    elif not root.is_dir():
        tried.append(f"{CALDB_ENV}={root} is not a local directory")
    elif not caldb_index_path(root).is_file():
        tried.append(f"{CALDB_ENV}={root} has no NuSTAR index {caldb_index_path(root)}")
    else:
        try:
            match = caldb_lookup(root, name, module, detector=detector, date=date)
        except CalibrationNotFoundError as exc:
            tried.append(f"{CALDB_ENV}={root}: {exc.reason}")
        else:
            return Resolved(name, "caldb", match.path, match.extension, f"{CALDB_ENV}={root} ({match.relpath})")
    found = _nominal(name, allow_nominal, tried)
    if found is not None:
        return found
    hint = f"set {CALDB_ENV} to a HEASARC CALDB with the NuSTAR FPM files, or give the file explicitly"
    raise CalibrationNotFoundError(f"not found: {'; '.join(tried)}; {hint}", field=label)


def resolve(name, *, path=None, module=None, detector=None, date=None, allow_nominal=True, cache=None):
    """Find a calibration file, following the order of the module docstring.

    Parameters
    ----------
    name : str
        An auxil file name (:data:`AUXIL_FILES`, exact) or a CALDB product name
        (:data:`CALDB_PRODUCTS`, any case).
    path : str or os.PathLike, optional
        Explicit file; wins over everything and must exist.
    module : {'A', 'B'}, optional
        Focal-plane module (CALDB products only).
    detector : int or str, optional
        Detector 0..3 (CALDB products only; filters ``DETNAM``).
    date : str or datetime, optional
        Observation date ``DATE-OBS`` (CALDB products only; None = newest file).
    allow_nominal : bool
        Whether the embedded nominal calibration may serve the name.
    cache : str or os.PathLike, optional
        Auxil cache directory to use instead of :func:`cache_dir`'s default.

    Returns
    -------
    Resolved

    Raises
    ------
    CalibrationNotFoundError
        Nothing provides the file; the one-line message lists what was searched, in order.
    BadConfigError
        Unknown name, bad module/detector/date, or ``$NUSKYBGD_AUXIL`` set to something that is
        not a directory.
    """
    key = _canonical(name)
    if path is not None:
        return _explicit(key, path)
    tried = ["no path given"]
    if key in CALDB_PRODUCTS:
        return _resolve_caldb(key, module, detector, date, allow_nominal, tried)
    return _resolve_auxil(key, allow_nominal, cache, tried)


def survey(*, cache=None, date=None):
    """Resolve every auxil file and every CALDB product (for both modules) without raising.

    Returns
    -------
    list of (str, Resolved or None, str)
        ``(label, resolved, reason)``: ``resolved`` is None when nothing provides the file and
        ``reason`` is then the not-found message.
    """
    rows = []
    for name in AUXIL_FILES:
        try:
            rows.append((name, resolve(name, cache=cache), ""))
        except CalibrationNotFoundError as exc:
            rows.append((name, None, exc.reason))
    for name in CALDB_PRODUCTS:
        for module in ("A", "B"):
            label = f"{name} FPM{module}"
            try:
                rows.append((label, resolve(name, module=module, date=date), ""))
            except CalibrationNotFoundError as exc:
                rows.append((label, None, exc.reason))
    return rows
