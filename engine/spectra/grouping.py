"""Channel grouping of PHA spectra: grppha's ``group min N``, IDL nuskybgd's ``grpabovebgd`` and
applying OGIP GROUPING.

OGIP GROUPING flags (OGIP/92-007): ``1`` starts a group, ``-1`` continues the current group,
``0`` means no grouping information (treated here as the start of a one-channel group).
QUALITY: ``0`` good, ``2`` bad as set by software, ``5`` bad as set by the user.
"""

from __future__ import annotations

import numpy as np

from ..errors import BadConfigError, positive_number

__all__ = ["group_min_counts", "group_above_background", "background_scale", "apply_grouping",
           "grouped_channel_ranges", "group_starts"]


def _counts_array(counts):
    c = np.asarray(counts)
    if c.ndim != 1 or c.size == 0:
        raise BadConfigError(f"counts must be a non-empty 1-D array, got shape {c.shape}", field="counts")
    if c.dtype.kind not in "iuf":
        raise BadConfigError(f"counts must be numbers, got dtype {c.dtype}", field="counts")
    c = c.astype(np.float64)
    if not np.all(np.isfinite(c)):
        raise BadConfigError("counts contain non-finite values", field="counts")
    if np.any(c < 0):
        raise BadConfigError("counts must not be negative", field="counts")
    return c


def _quality_array(quality, n):
    if quality is None:
        return np.zeros(n, dtype=np.int16)
    q = np.asarray(quality)
    if q.shape != (n,) or q.dtype.kind not in "iu":
        raise BadConfigError(f"quality must be {n} integers, got {q.shape} {q.dtype}", field="quality")
    return q.astype(np.int16)


def group_min_counts(counts, minimum, *, quality=None):
    """Grouping and quality of ``grppha 'group min N'``.

    Reproduces HEASoft grppha 3.0.1 (``GRPM_COM`` in ``ftools/heasarc/src/grppha/grppha.f``;
    help text: "Channels that are defined as BAD are not included. Any spare channels at the
    end of the data are defined BAD by software (QUALITY=2)"). The rule, channel by channel:

    * a bad channel (QUALITY != 0) met where a group would start is a group of its own (GROUPING 1);
    * a good channel starts a group; following channels are added (bad ones join the group
      with GROUPING -1 but their counts are not summed) until the summed counts reach N;
    * if the end of the spectrum is reached first, the "spare" channels from that start
      to the end are left ungrouped (GROUPING 1 each) and those that were good get QUALITY 2.

    Parameters
    ----------
    counts : array_like, shape (n,)
        Counts per channel (non-negative; rates must be multiplied by the exposure first,
        as grppha does).
    minimum : int or float
        Minimum counts per group (grppha's RCNTS), > 0.
    quality : array_like of int, optional
        Input QUALITY (default all good). Not modified.

    Returns
    -------
    grouping : ndarray of int16, shape (n,)
    quality : ndarray of int16, shape (n,)
        Input quality with the spare tail channels set to 2.
    """
    c = _counts_array(counts)
    try:
        thold = float(minimum)
    except (TypeError, ValueError):
        raise BadConfigError(f"minimum counts must be a number, got {minimum!r}", field="minimum") from None
    if not np.isfinite(thold) or thold <= 0:
        raise BadConfigError(f"minimum counts must be positive, got {minimum!r}", field="minimum")
    n = c.size
    q_in = _quality_array(quality, n)
    q = q_in.copy()
    grouping = np.ones(n, dtype=np.int16)
    good = q_in == 0
    # cs[j] = sum of good counts in channels < j: a group starting at i closes at the first j
    # with cs[j + 1] - cs[i] >= N, found by binary search instead of a channel loop.
    cs = np.concatenate([[0.0], np.cumsum(np.where(good, c, 0.0))])
    i = 0
    while i < n:
        if not good[i]:
            i += 1  # bad channel: its own group (GROUPING already 1)
            continue
        m = int(np.searchsorted(cs, cs[i] + thold, side="left"))  # first m with cs[m] >= cs[i] + N
        if m > n:
            # Spare channels at the end: ungrouped, good ones flagged bad by software.
            q[i:][q_in[i:] == 0] = 2
            break
        end = max(m - 1, i)  # channel closing the group
        grouping[i + 1: end + 1] = -1
        i = end + 1
    return grouping, q


def background_scale(src_exposure, src_backscal, bkg_exposure, bkg_backscal):
    """Factor that turns background counts into counts expected in the source spectrum:
    ``(BACKSCAL_src EXPOSURE_src) / (BACKSCAL_bkg EXPOSURE_bkg)`` (IDL grpabovebgd, XSPEC)."""
    vals = [float(np.mean(v)) for v in (src_exposure, src_backscal, bkg_exposure, bkg_backscal)]
    if not all(np.isfinite(v) and v > 0 for v in vals):
        raise BadConfigError(f"EXPOSURE and BACKSCAL must be > 0 (source {vals[0]:g}, {vals[1]:g}; background "
                             f"{vals[2]:g}, {vals[3]:g})", field="BACKSCAL")
    return vals[1] * vals[0] / (vals[3] * vals[2])


def group_above_background(counts, background, minimum, *, chan=0):
    """Grouping of IDL nuskybgd's ``grpabovebgd``: each group's source counts exceed the (scaled)
    background counts by at least ``minimum``.

    Transcribes ``pro/grpabovebgd.pro``: channels are walked in order, summing source counts
    ``cts`` and background counts ``bcts`` (already scaled to the source: see
    :func:`background_scale`); a group closes at the channel where ``cts - bcts >= minimum`` (or at
    channel index ``chan - 1`` when ``chan`` > 0), and the next channel starts a new group. The
    channels after the last closed group form one last group that does not meet the criterion
    (IDL leaves it so; its quality is not changed).

    Returns
    -------
    ndarray of int16
        OGIP GROUPING (1 starts a group, -1 continues it).
    """
    c = _counts_array(counts)
    b = np.asarray(background, dtype=np.float64)
    if b.shape != c.shape or not np.all(np.isfinite(b)):
        raise BadConfigError(f"background must be {c.size} finite numbers, got shape {b.shape}", field="background")
    minimum = positive_number(minimum, field="ncts", what="minimum counts")
    grouping = np.empty(c.size, dtype=np.int16)
    cts = bcts = 0.0
    first = True
    for i in range(c.size):
        cts += c[i]
        bcts += b[i]
        grouping[i] = 1 if first else -1
        if cts - bcts >= minimum or i == int(chan) - 1:
            cts = bcts = 0.0
            first = True
        else:
            first = False
    return grouping


def group_starts(grouping):
    """Indices of the first channel of each group (GROUPING 1 or 0; a leading -1 also starts one)."""
    g = np.asarray(grouping)
    if g.ndim != 1 or g.size == 0:
        raise BadConfigError(f"grouping must be a non-empty 1-D array, got shape {g.shape}", field="grouping")
    if not np.all(np.isin(g, (-1, 0, 1))):
        raise BadConfigError("grouping values must be 1, -1 or 0", field="grouping")
    start = g != -1
    start[0] = True
    return np.flatnonzero(start)


def grouped_channel_ranges(grouping, channel=None):
    """First and last channel (inclusive) of each group.

    Parameters
    ----------
    grouping : array_like of int
    channel : array_like of int, optional
        Channel numbers (default: indices 0..n-1).

    Returns
    -------
    first, last : ndarray of int
    """
    g = np.asarray(grouping)
    starts = group_starts(g)
    ends = np.append(starts[1:], g.size) - 1
    if channel is None:
        return starts, ends
    ch = np.asarray(channel)
    if ch.shape != g.shape:
        raise BadConfigError("channel and grouping must have the same length", field="channel")
    return ch[starts], ch[ends]


def apply_grouping(counts, grouping, *, quality=None):
    """Sum counts within groups.

    Parameters
    ----------
    counts : array_like, shape (n,)
    grouping : array_like of int, shape (n,)
    quality : array_like of int, optional
        If given, bad channels (QUALITY != 0) are left out of the sums, as XSPEC ignores
        them, and groups without any good channel are dropped.

    Returns
    -------
    grouped_counts : ndarray
        Sum per group.
    group_start_indices : ndarray of int
        Index of each group's first channel.
    """
    c = np.asarray(counts)
    g = np.asarray(grouping)
    if c.shape != g.shape:
        raise BadConfigError(f"counts ({c.shape}) and grouping ({g.shape}) differ in length", field="grouping")
    starts = group_starts(g)
    if quality is None:
        return np.add.reduceat(c, starts), starts
    q = _quality_array(quality, c.size)
    good = q == 0
    sums = np.add.reduceat(np.where(good, c, 0), starts)
    n_good = np.add.reduceat(good.astype(np.int64), starts)
    keep = n_good > 0
    return sums[keep], starts[keep]
