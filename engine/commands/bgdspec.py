"""``nuskybgd bgdspec``: the fitted background of a source region as an OGIP background spectrum."""

from __future__ import annotations

from ._argtypes import add_obs_option, use_obs


def register(subparsers):
    p = subparsers.add_parser(
        "bgdspec", help="write the fitted background of a source region as a PHA background spectrum",
        description="From a fit (NAME.json of `nuskybgd fit --run`), write the background expected in the source "
                    "region as an OGIP background spectrum on the source spectrum's channel grid and exposure: "
                    "model COUNTS, STAT_ERR from the fit covariance, SYS_ERR = the systematic floor (fractional), "
                    "POISSERR = F, BACKSCAL = the source's (so the background scaling is 1). Use it as BACKFILE in "
                    "XSPEC (statistic pgstat or chi), Sherpa or jaxspec. --draws N also writes N Poisson "
                    "realisations <out stem>_draw<k>.pha.")
    p.add_argument("fit", help="NAME.json written by `nuskybgd fit --run`")
    p.add_argument("region", help="ds9 region file of the source")
    p.add_argument("spectrum", help="source spectrum (PHA); its RESPFILE gives the channel grid")
    p.add_argument("--out", default=None, help="output file (default <spectrum stem>_bgd.pha next to it)")
    p.add_argument("--draws", type=int, default=0, help="number of Poisson realisations to write (default 0)")
    p.add_argument("--seed", type=int, default=None, help="random seed of the draws")
    p.add_argument("--systematic", type=float, default=None,
                   help="fractional systematic error per channel (default 0.04/1.645 = 0.0243, Wik et al. 2014)")
    p.add_argument("--expfactor", type=float, default=None,
                   help="IDL nuskybgd_spec: write the background faked for EXPFACTOR x the source exposure (EXPOSURE "
                        "set so; IDL's default 100), Poisson counts unless --perfect, instead of the model with errors")
    p.add_argument("--perfect", action="store_true",
                   help="IDL /perfect: the faked background without shot noise (model counts x EXPFACTOR)")
    p.add_argument("--avgfcxb", action="store_true",
                   help="IDL /avgfcxb: the focused CXB at its nominal value for the region (0.002353 x solid angle) "
                        "instead of the fitted one")
    p.add_argument("--update-source", action="store_true",
                   help="set BACKFILE of the source spectrum to the written file (atomic rewrite)")
    p.add_argument("--overwrite", action="store_true", help="replace existing output files")
    add_obs_option(p, "the source spectrum belongs to")
    p.set_defaults(func=run)


def run(args):
    from ..bgdspec import background_spectrum, default_output, set_backfile, write_background_spectrum, write_draws
    from ..io.fitsutil import check_writable
    from ..io.regions import RegionSet
    from ..uncertainty import combine
    from ..workflow import load_fit_json

    out = args.out or default_output(args.spectrum)
    check_writable(out, overwrite=args.overwrite)  # fail before the (slower) model evaluation
    analysis = use_obs(load_fit_json(args.fit), args.obs)
    rs = RegionSet.read_ds9(args.region)
    bspec = background_spectrum(analysis, rs, args.spectrum, systematic=args.systematic)
    if args.avgfcxb:
        from ..idl import average_fcxb

        bspec, fitted, nominal = average_fcxb(bspec, analysis, rs)
        print(f"fcxb norm in the region: nominal {nominal:.4g} (fitted {fitted:.4g})")
    if args.expfactor is not None or args.perfect:
        from ..idl import IDL_EXPFACTOR, fake_background
        from ..io.ogip import write_pha

        factor = IDL_EXPFACTOR if args.expfactor is None else args.expfactor
        fake = fake_background(bspec, expfactor=factor, perfect=args.perfect, seed=args.seed)
        written = [write_pha(fake, out, overwrite=args.overwrite)]
        print(f"faked for {factor:g} x {bspec.exposure:.0f} s ({'noise-free' if args.perfect else 'Poisson'}): "
              f"{float(fake.counts.sum()):.1f} counts")
    else:
        written = [write_background_spectrum(bspec, out, fit_path=args.fit, overwrite=args.overwrite)]
    if args.draws:
        written += write_draws(bspec, out, args.draws, seed=args.seed, fit_path=args.fit, overwrite=args.overwrite)
    for lo, hi in ((3.0, 20.0), (20.0, 50.0)):
        total, stat, sys = bspec.band((lo, hi))
        print(f"FPM{bspec.module} {lo:g}-{hi:g} keV, {bspec.exposure:.0f} s: {total:.2f} background counts "
              f"± {stat:.2f} (stat) ± {sys:.2f} (sys, {100 * bspec.systematic:.2f} % floor); "
              f"stat (+) sys {combine(stat, sys):.2f}")
    for path in written:
        print(f"wrote {path}")
    if args.update_source:
        value = set_backfile(args.spectrum, out)
        print(f"set BACKFILE = {value} in {args.spectrum}")
    return 0
