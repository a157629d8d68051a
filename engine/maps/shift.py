"""Periodic bilinear image shift (IDL ``fshift``), the one interpolation used by the method (spec §6.1 item 7)."""

from __future__ import annotations

import math

import numpy as np

__all__ = ["bilinear_shift", "split_shift"]


def split_shift(d):
    """Split a shift into its integer floor and fractional part in [0, 1)."""
    n = math.floor(d)
    f = float(d) - n
    if f >= 1.0:  # floating-point edge (d just below an integer)
        n, f = n + 1, 0.0
    return int(n), f


def bilinear_shift(image, dx, dy):
    """Shift an image by (dx, dy) pixels with bilinear interpolation and periodic wrap.

    ``out[y, x] = image[y - dy, x - dx]`` interpolated bilinearly, indices taken modulo the
    image size, i.e. an integer :func:`numpy.roll` plus weights (1−f)(1−g), f(1−g), (1−f)g, fg
    (the IDL ``fshift`` convention; equal to ``scipy.ndimage.shift(..., order=1,
    mode='grid-wrap', prefilter=False)``). The sum is preserved exactly (up to rounding).

    Parameters
    ----------
    image : ndarray, shape (..., ny, nx)
        Shifted along the last two axes; leading axes are a stack.
    dx, dy : float
        Shift in pixels along x (columns) and y (rows).

    Returns
    -------
    ndarray of float64, same shape.
    """
    img = np.asarray(image, dtype=np.float64)
    nx, fx = split_shift(dx)
    ny, fy = split_shift(dy)
    out = img
    if fx == 0.0:
        out = np.roll(out, nx, axis=-1)
    else:
        out = (1.0 - fx) * np.roll(out, nx, axis=-1) + fx * np.roll(out, nx + 1, axis=-1)
    if fy == 0.0:
        out = np.roll(out, ny, axis=-2)
    else:
        out = (1.0 - fy) * np.roll(out, ny, axis=-2) + fy * np.roll(out, ny + 1, axis=-2)
    return out
