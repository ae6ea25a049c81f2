"""Command line: ``hierbayes fit models/clark_ar1.toml [--out fit.nc]``."""

from __future__ import annotations

import argparse
import sys

from hierbayes.io import modelfile


def _fit(args) -> int:
    mf = modelfile.read(args.file)
    model = mf.model()
    kwargs = dict(mf.fit_kwargs)
    for key in ("draws", "tune", "chains", "seed"):
        if getattr(args, key) is not None:
            kwargs[key] = getattr(args, key)
    fit = model.fit(sampler=mf.sampler, progressbar=not args.quiet, **kwargs)
    print(fit.summary())
    if getattr(args, "out", None):
        fit.save(args.out)
        print(f"\nFit written to {args.out} (hb.load reads it back; arviz.from_netcdf reads the draws)")
    report_dir = getattr(args, "report", None) or getattr(args, "out_dir", None)
    if report_dir:
        path = fit.report(report_dir)
        print(f"\nReport written to {path}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``hierbayes`` console script."""
    parser = argparse.ArgumentParser(prog="hierbayes", description="Bayesian mixed-effects models.")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("fit", help="fit the model described in a TOML model file and print its summary")
    p.add_argument("file", help="model file, e.g. models/clark_ar1.toml")
    p.add_argument("--out", help="save the fit (InferenceData, spec, data) to this netCDF file")
    p.add_argument("--draws", type=int)
    p.add_argument("--tune", type=int)
    p.add_argument("--chains", type=int)
    p.add_argument("--seed", type=int)
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--report", help="also write the HTML report (and PNG figures) into this folder")
    r = sub.add_parser("report", help="fit a model file and write its HTML report with figures")
    r.add_argument("file", help="model file, e.g. models/clark_ar1.toml")
    r.add_argument("--out", dest="out_dir", required=True, help="output folder")
    for q in (p, r):
        if q is r:
            for key in ("draws", "tune", "chains", "seed"):
                q.add_argument(f"--{key}", type=int)
            q.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    try:
        return _fit(args)
    except (ValueError, KeyError, FileNotFoundError, TypeError) as exc:
        print(f"hierbayes: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
