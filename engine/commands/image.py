"""``nuskybgd image``: model background images per component for a band."""

from __future__ import annotations

from pathlib import Path


def register(subparsers):
    p = subparsers.add_parser(
        "image", help="background model images (apbgd, intbgd, intn, fcxb, total) of a fit in a band",
        description="From a fit (NAME.json of `nuskybgd fit --run`) write bgd_<component>_<m>.fits for each module: "
                    "counts per sky pixel in EMIN-EMAX keV for the exposure of the module's reference spectrum "
                    "(stated in the header). The fcxb image is per module (nuskybgd-py pooled A and B).")
    p.add_argument("fit", help="NAME.json (or an .xcm with --bgdinfo)")
    p.add_argument("--bgdinfo", default=None, help="bgdinfo.json, when FIT is an .xcm")
    p.add_argument("emin", type=float, help="lower edge of the band (keV)")
    p.add_argument("emax", type=float, help="upper edge of the band (keV)")
    p.add_argument("--prefix", default="", help="prefix of the output names (directory allowed)")
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    p.set_defaults(func=run)


def run(args):
    from astropy.io import fits

    from ..constants import band_to_channels, channels_to_band
    from ..io.fitsutil import check_writable, write_fits
    from ..workflow import background_images, load_fit

    analysis = load_fit(args.fit, args.bgdinfo)
    images = background_images(analysis, (args.emin, args.emax))
    lo, hi = band_to_channels(args.emin, args.emax)
    e0, e1 = channels_to_band(lo, hi)
    targets = []
    for m, per in images.items():
        for comp, img in per.items():
            targets.append((Path(f"{args.prefix}bgd_{comp}_{m}.fits"), m, comp, img))
    for path, *_ in targets:
        check_writable(path, overwrite=args.overwrite)
    for path, m, comp, img in targets:
        hdr = analysis.maps[m].header.copy()
        r = analysis.state.modules.index(m) + 1
        hdr["BUNIT"] = ("count", "background counts per pixel in the band")
        hdr["NSB_COMP"] = (comp, "background component")
        hdr["EMIN"], hdr["EMAX"] = (e0, "[keV] band low edge (exact channels)"), (e1, "[keV] band high edge")
        hdr["PILOW"], hdr["PIHIGH"] = lo, hi
        hdr["EXPOSURE"] = (analysis.groups[r - 1].exposure, "[s] exposure of the reference spectrum")
        write_fits(fits.HDUList([fits.PrimaryHDU(img, header=hdr)]), path, overwrite=args.overwrite)
        print(f"wrote {path}")
    return 0
