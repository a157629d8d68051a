"""``nuskybgd projbgd refimg= out= mod= det= chipmap= aspect=``: projected aperture map and detector masks.

Spec §1.5, §2.6. Writes ``out`` (e.g. ``bgdapA.fits``) and ``det{0..3}<mod>im.fits`` **in the
directory of out** (nuskybgd-py writes the det images to the current directory).
"""

from __future__ import annotations

from ..errors import BadConfigError

__all__ = ["register", "run"]


def register(subparsers):
    p = subparsers.add_parser(
        "projbgd", aliases=["projinitbgds"], help="aspect-projected aperture map bgdap{A,B}.fits and detector images det{n}{A,B}im.fits",
        description="Project the DET1 aperture map and the detector masks of the instrument map onto the "
                    "sky grid of the reference image (1000x1000 RA/Dec, or the solar X/Y grid of a sunpos file), "
                    "averaged over the aspect histogram (roll PA+1 deg with PA from --pa-pnt, else the roll the "
                    "aspect histogram measured from the events (PA_EVT), else PA_PNT; nudge (2.7, 0.8) px, DET1 "
                    "reference pixel (350, 350)). "
                    "The detector images det{0..3}<mod>im.fits are written NEXT TO out= (nuskybgd-py writes "
                    "them to the current directory).")
    p.add_argument("--refimg", required=True, help="sky counts image from mkimgs with PA_PNT and WCS (e.g. imA3to20keV.fits)")
    p.add_argument("--out", required=True, help="output aperture image (e.g. bgdapA.fits)")
    p.add_argument("--mod", required=True, help="module A or B")
    p.add_argument("--det", default="1234", help="detectors as characters 1-4 (n+1 = DETn; default 1234)")
    p.add_argument("--chipmap", required=True, help="instrument map from mkinstrmap (newinstrmap<mod>.fits)")
    p.add_argument("--aspect", required=True, help="aspect histogram from aspecthist (aspecthist<mod>.fits)")
    p.add_argument("--auxil-dir", help="auxil directory (default: $NUSKYBGD_AUXIL / cache)")
    p.add_argument("--pa-pnt", type=float, help="roll angle (degrees) overriding PA_EVT of the aspect histogram and PA_PNT of the image")
    p.add_argument("--grxe", metavar="MAP", help="GRXE sky map (IDL modelrxte_*.fits: image with a galactic or RA/Dec "
                   "WCS); also writes bgdgrxe<mod>.fits next to out= (the optional Galactic-ridge source)")
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    p.set_defaults(func=run)


def run(args):
    from ..io.fitsutil import check_writable
    from ..maps.aspecthist import read_aspect_histogram
    from ..maps.grxe import (
        grxe_output_path,
        project_grxe,
        read_grxe_map,
        write_projected_grxe,
    )
    from ..maps.instrmap import read_instrument_map
    from ..maps.projection import (
        parse_detectors,
        project_maps,
        projected_paths,
        read_reference_image,
        write_projected_maps,
    )

    mod = str(args.mod).strip().upper()
    if mod not in ("A", "B"):
        raise BadConfigError(f"mod must be A or B, got {args.mod!r}", field="mod")
    dets = parse_detectors(args.det)
    out, det_paths = projected_paths(args.out, mod, dets)
    grxe_out = grxe_output_path(out, mod) if args.grxe else None
    for path in [out, *det_paths.values(), *([grxe_out] if grxe_out else [])]:
        check_writable(path, overwrite=args.overwrite)
    header, shape = read_reference_image(args.refimg)
    imap = read_instrument_map(args.chipmap, module=mod)
    hist = read_aspect_histogram(args.aspect)
    maps = project_maps(header, imap, hist, module=mod, detectors=dets, auxil_dir=args.auxil_dir,
                        pa_pnt=args.pa_pnt, ref_shape=shape, ref_path=str(args.refimg), aspect_path=str(args.aspect))
    grxe_sky = None
    if args.grxe:  # computed before anything is written, so a bad map leaves no partial outputs
        grxe_sky = project_grxe(header, imap, hist, read_grxe_map(args.grxe), module=mod, auxil_dir=args.auxil_dir,
                                pa_pnt=args.pa_pnt)
    for path in write_projected_maps(maps, out, overwrite=args.overwrite):
        print(f"wrote {path}")
    if grxe_sky is not None:
        print(f"wrote {write_projected_grxe(grxe_sky, maps.header, grxe_out, overwrite=args.overwrite, source=args.grxe)}")
    return 0
