"""The aperture (stray-light CXB) map in DET1 coordinates, spec §2.6(a).

``ap`` is the expected 10–15 keV aperture background per DET1 pixel per 10⁵ s for the nominal
CXB: the template ``det{A,B}_det1.img`` (576×576, units of 1/3.1865e-5 deg² of open sky seen
through the aperture stop) is shifted by the registration offsets of ``nomapbgdparams.dat``
(periodic bilinear, :func:`~nuskybgd_engine.maps.shift.bilinear_shift`), scaled by
3.1865e-5 · norm · 0.12096² and a floor of 0.00495 · 0.7 is added; the centre 360×360 is DET1.
"""

from __future__ import annotations

import numpy as np

from ..constants import DET1_NPIX, DET1_PIXEL_MM
from ..errors import BadConfigError, BadFileError
from ..io.fitsutil import read_fits
from ._auxil import _auxil_data
from .shift import bilinear_shift

__all__ = [
    "aperture_map_det1",
    "read_aperture_params",
    "read_aperture_template",
    "APERTURE_SOLID_ANGLE_DEG2",
    "APERTURE_FLOOR",
    "TEMPLATE_SIZE",
    "TEMPLATE_CROP",
]

#: Solid angle (deg²) of open sky per template unit (ABC guide, spec §2.6a [I]).
APERTURE_SOLID_ANGLE_DEG2 = 3.1865e-5
#: Constant floor added to every DET1 pixel (0.00495 · 0.7, counts per pixel per 10⁵ s).
APERTURE_FLOOR = 0.00495 * 0.7
#: Size of the template image and the offset of the DET1 crop inside it.
TEMPLATE_SIZE = 576
TEMPLATE_CROP = 108

#: Index of (norm, x shift mm, y shift mm, rotation) in nomapbgdparams.dat, per module.
_PARAM_INDEX = {"A": (0, 4, 5, 6), "B": (1, 7, 8, 9)}


def module_letter(module):
    """'A' or 'B' from a module name ('A', 'fpmb', ...); a :class:`BadConfigError` for anything else."""
    mod = str(module).strip().upper()
    if mod.startswith("FPM"):
        mod = mod[3:]
    if mod not in ("A", "B"):
        raise BadConfigError(f"module must be A or B, got {module!r}", field="mod")
    return mod


def read_aperture_params(path):
    """Read ``nomapbgdparams.dat``: 10 numbers, one per line, text after ``#`` ignored.

    Returns
    -------
    ndarray, shape (10,)
    """
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            lines = fh.read().splitlines()
    except OSError as exc:
        raise BadFileError(f"cannot read aperture parameters: {exc.strerror or exc}", path=path) from None
    values = []
    for num, line in enumerate(lines, start=1):
        text = line.split("#")[0].strip()
        if not text:
            continue
        try:
            values.append(float(text))
        except ValueError:
            raise BadFileError(f"line {num} is not a number: {text!r}", path=path) from None
    if len(values) < 10:
        raise BadFileError(f"expected 10 aperture parameters, found {len(values)}", path=path)
    out = np.array(values[:10], dtype=float)
    if not np.all(np.isfinite(out)):
        raise BadFileError("non-finite aperture parameter", path=path)
    return out


def read_aperture_template(path):
    """Read the 576×576 aperture template image ``det{A,B}_det1.img[.gz]`` (primary HDU)."""
    hdul = read_fits(path, what="aperture template image")
    data = hdul[0].data
    if data is None or data.ndim != 2 or data.shape != (TEMPLATE_SIZE, TEMPLATE_SIZE):
        shape = None if data is None else data.shape
        raise BadFileError(f"aperture template must be a {TEMPLATE_SIZE}x{TEMPLATE_SIZE} primary image, got {shape}",
                           path=path, extension=0)
    data = np.asarray(data, dtype=np.float64)
    if not np.all(np.isfinite(data)):
        raise BadFileError("aperture template has non-finite pixels", path=path, extension=0)
    return data


def aperture_map_det1(module, *, template=None, params=None, auxil_dir=None, template_path=None,
                      params_path=None):
    """The aperture map of one module in DET1, float64 360×360, ``ap[y, x]``.

    Units: expected 10–15 keV aperture (stray-light CXB) counts per DET1 pixel per 10⁵ s for the
    nominal CXB (spec §2.6a).

    Parameters
    ----------
    module : {'A', 'B'}
    template : ndarray (576, 576), optional
        The template image; read from ``det<module>_det1.img.gz`` when not given.
    params : sequence of 10 floats, optional
        ``nomapbgdparams.dat`` values; read from the auxil file when not given.
    auxil_dir, template_path, params_path : path-like, optional
        Where to find the two files (see :func:`~nuskybgd_engine.maps._auxil._auxil_path`).

    Returns
    -------
    ndarray, shape (360, 360), float64
    """
    mod = module_letter(module)
    if template is None:
        template = _auxil_data(f"det{mod}_det1.img.gz", read_aperture_template, template_path,
                               auxil_dir=auxil_dir, module=mod)
    template = np.asarray(template, dtype=np.float64)
    if template.shape != (TEMPLATE_SIZE, TEMPLATE_SIZE):
        raise BadConfigError(f"aperture template must be {TEMPLATE_SIZE}x{TEMPLATE_SIZE}, got {template.shape}",
                             field="template")
    if params is None:
        params = _auxil_data("nomapbgdparams.dat", read_aperture_params, params_path, auxil_dir=auxil_dir,
                             module=mod)
    params = np.asarray(params, dtype=float)
    if params.shape != (10,):
        raise BadConfigError(f"expected 10 aperture parameters, got {params.shape}", field="params")
    i_norm, i_x, i_y, i_rot = _PARAM_INDEX[mod]
    if params[i_rot] != 0:
        # The shipped files have no rotation; the reference's rotation convention is untested.
        raise BadConfigError(f"aperture-map rotation {params[i_rot]:g} is not supported (only 0)",
                             field="nomapbgdparams.dat")
    shift_x = params[i_x] / DET1_PIXEL_MM
    shift_y = params[i_y] / DET1_PIXEL_MM
    scale = APERTURE_SOLID_ANGLE_DEG2 * params[i_norm] * DET1_PIXEL_MM**2
    ap = scale * bilinear_shift(template, shift_x, shift_y) + APERTURE_FLOOR
    c = TEMPLATE_CROP
    return np.ascontiguousarray(ap[c:c + DET1_NPIX, c:c + DET1_NPIX])
