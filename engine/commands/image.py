"""``nuskybgd image``: model background images per component for a band."""

from __future__ import annotations

from pathlib import Path

from ._argtypes import add_obs_option, use_obs


def register(subparsers):
    p = subparsers.add_parser(
        "image", help="background model images (apbgd, intbgd, intn, fcxb, total) of a fit in a band",
        description="From a fit (NAME.json of `nuskybgd fit --run`) write bgd_<component>_<m>.fits for each module: "
                    "counts per sky pixel in EMIN-EMAX keV for the exposure of the module's reference spectrum "
                    "(stated in the header). The fcxb image is per module (nuskybgd-py pooled A and B).")
    p.add_argument("items", nargs="+", metavar="ARG",
                   help="NAME.json EMIN EMAX, or as nuskybgd-py bgdinfo.json FIT.xcm EMIN EMAX (the two files in "
                        "either order, told apart by content)")
    p.add_argument("--bgdinfo", default=None, help="bgdinfo.json, when FIT is an .xcm")
    p.add_argument("--countsimg", default=None, metavar="IMAGE",
                   help="IDL nuskybgd_image: for this counts image (e.g. imA3to20keV.fits of `nuskybgd mkimgs`) also "
                        "write bgd<IMAGE> (the total background at the image's LIVETIME) and <IMAGE stem>bsub.fits "
                        "(counts minus background) next to it")
    p.add_argument("--nobsub", action="store_true",
                   help="IDL /nobsub: with --countsimg, write only the background image, not the subtracted one")
    p.add_argument("--prefix", default="", help="prefix of the output names (directory allowed)")
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    add_obs_option(p, "to draw")
    p.set_defaults(func=run)


def parse_items(items, bgdinfo=None):
    """(fit file, bgdinfo or None, emin, emax) from ``FIT EMIN EMAX`` or ``bgdinfo.json FIT.xcm EMIN EMAX``."""
    from ..errors import BadConfigError
    from ._forms import sort_inputs

    if len(items) not in (3, 4):
        raise BadConfigError("expected NAME.json EMIN EMAX or bgdinfo.json FIT.xcm EMIN EMAX", field="arguments")
    try:
        emin, emax = float(items[-2]), float(items[-1])
    except ValueError:
        raise BadConfigError(f"EMIN EMAX must be numbers, got {items[-2]!r} {items[-1]!r}", field="band") from None
    if not emin < emax:
        raise BadConfigError(f"EMIN {emin:g} must be below EMAX {emax:g}", field="band")
    files = list(items[:-2]) + ([bgdinfo] if bgdinfo else [])
    given = sort_inputs(files, {"fit", "xcm", "bgdinfo"})
    if "fit" in given:
        if len(given) > 1:
            raise BadConfigError("a fit NAME.json already names its bgdinfo.json; give it alone", field="arguments")
        return given["fit"], None, emin, emax
    if "xcm" not in given or "bgdinfo" not in given:
        raise BadConfigError("an .xcm needs the bgdinfo.json it was made from (and the reverse)", field="arguments")
    return given["xcm"], given["bgdinfo"], emin, emax


def run(args):
    from astropy.io import fits

    from ..constants import band_to_channels, channels_to_band
    from ..io.fitsutil import check_writable, write_fits
    from ..workflow import background_images, load_fit

    fit, bgdinfo, args.emin, args.emax = parse_items(args.items, args.bgdinfo)
    if args.nobsub and not args.countsimg:
        from ..errors import BadConfigError

        raise BadConfigError("--nobsub needs --countsimg (the counts image to subtract from)", field="nobsub")
    analysis = use_obs(load_fit(fit, bgdinfo), args.obs)
    images = background_images(analysis, (args.emin, args.emax))
    lo, hi = band_to_channels(args.emin, args.emax)
    e0, e1 = channels_to_band(lo, hi)
    targets = []
    extra = []
    if args.countsimg:
        from ..idl import image_background, image_output_names

        _m, chdr, data, bgd = image_background(analysis, images, args.countsimg, (args.emin, args.emax))
        bgd_path, bsub_path = image_output_names(args.countsimg)
        extra.append((bgd_path, chdr, bgd, "model background (nuskybgd image, IDL bgd<image>)"))
        if not args.nobsub:
            extra.append((bsub_path, chdr, data - bgd, "counts minus model background (IDL <image>bsub)"))
    for m, per in images.items():
        for comp, img in per.items():
            targets.append((Path(f"{args.prefix}bgd_{comp}_{m}.fits"), m, comp, img))
    for path, *_ in targets + extra:
        check_writable(path, overwrite=args.overwrite)
    for path, chdr, img, what in extra:
        hdr = chdr.copy()
        hdr["HISTORY"] = what
        write_fits(fits.HDUList([fits.PrimaryHDU(img, header=hdr)]), path, overwrite=args.overwrite)
        print(f"wrote {path}")
    for path, m, comp, img in targets:
        hdr = analysis.maps[m].header.copy()
        r = analysis.reference_group(m)
        hdr["BUNIT"] = ("count", "background counts per pixel in the band")
        hdr["NSB_COMP"] = (comp, "background component")
        hdr["EMIN"], hdr["EMAX"] = (e0, "[keV] band low edge (exact channels)"), (e1, "[keV] band high edge")
        hdr["PILOW"], hdr["PIHIGH"] = lo, hi
        hdr["EXPOSURE"] = (analysis.groups[r - 1].exposure, "[s] exposure of the reference spectrum")
        write_fits(fits.HDUList([fits.PrimaryHDU(img, header=hdr)]), path, overwrite=args.overwrite)
        print(f"wrote {path}")
    return 0
