"""``nuskybgd grpabovebgd``: group a source spectrum so that each group stands above its background.

IDL nuskybgd ``grpabovebgd, inspec, bgdspec, outspec, ncts[, chan=]`` with the same arguments in the
same order: the background counts are scaled to the source by ``(BACKSCAL EXPOSURE)_src /
(BACKSCAL EXPOSURE)_bgd`` and a group closes where the source counts exceed the scaled background
by ``NCTS`` (see :func:`~nuskybgd_engine.spectra.grouping.group_above_background`). IDL's
``backcor`` keyword is not offered (it used an undefined variable in IDL).
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["register", "run"]


def register(subparsers):
    p = subparsers.add_parser(
        "grpabovebgd", help="group a source spectrum so each group has NCTS counts above its background (IDL)",
        description="IDL nuskybgd's grpabovebgd: write OUTSPEC, a copy of INSPEC whose GROUPING closes a group "
                    "where the source counts exceed the background counts (BGDSPEC scaled by the ratio of "
                    "BACKSCAL x EXPOSURE) by at least NCTS. With chan=N a group also ends at channel index N-1 "
                    "(IDL's chan keyword). Use it with BGDSPEC from `nuskybgd bgdspec`.")
    p.add_argument("inspec", help="source spectrum (PHA)")
    p.add_argument("bgdspec", help="background spectrum (PHA), e.g. from `nuskybgd bgdspec`")
    p.add_argument("outspec", help="grouped output spectrum")
    p.add_argument("ncts", type=float, help="counts above the background per group")
    p.add_argument("--chan", type=int, default=0, help="also end a group at channel index CHAN-1 (IDL chan=)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output")
    p.set_defaults(func=run)


def run(args):
    from dataclasses import replace

    from ..errors import BadFileError
    from ..io.ogip import read_pha, write_pha
    from ..spectra.grouping import background_scale, group_above_background

    src, bgd = read_pha(args.inspec), read_pha(args.bgdspec)
    if src.counts.size != bgd.counts.size:
        raise BadFileError(f"{bgd.counts.size} channels, the source spectrum has {src.counts.size}",
                           path=args.bgdspec, field="CHANNEL")
    scale = background_scale(src.exposure, src.backscal, bgd.exposure, bgd.backscal)
    grouping = group_above_background(src.counts, bgd.counts * scale, args.ncts, chan=args.chan)
    header = dict(src.header)
    header["GRPCMD"] = f"nuskybgd grpabovebgd {Path(args.bgdspec).name} {args.ncts:g}"[:68]
    out = replace(src, grouping=grouping, quality=src.quality, header=header)
    write_pha(out, args.outspec, overwrite=args.overwrite)
    print(f"wrote {args.outspec}: {int((grouping == 1).sum())} groups of {src.counts.size} channels "
          f"(background counts x {scale:.4g})")
    return 0
