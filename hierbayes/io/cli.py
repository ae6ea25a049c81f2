"""Command line.

``hierbayes fit models/clark_ar1.toml [--out fit.nc] [--report DIR]`` fits a model file and
prints its summary; ``hierbayes summary FILE`` prints the summary of a saved fit (or fits a
model file first); ``hierbayes report FILE --out DIR`` writes the HTML report of a saved fit
or of a model file's fit. Every error is one ``hierbayes: error: ...`` line on stderr (exit
status 2); ``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from hierbayes.io import modelfile

#: the first bytes of a netCDF file (HDF5-based netCDF4; classic netCDF 1/2/5)
_NETCDF_MAGIC = (b"\x89HDF\r\n\x1a\n", b"CDF\x01", b"CDF\x02", b"CDF\x05")


def file_kind(path: str | Path) -> str:
    """``"fit"`` for a saved fit (netCDF, as ``fit.save`` writes), ``"model"`` for a model
    file (TOML); anything else is a ValueError that says which files are accepted.

    Examples
    --------
    >>> _ = open("m.toml", "w").write('formula = "y ~ time + (1 | id)"\\ndata = "clark_ar1"\\n')
    >>> file_kind("m.toml")
    'model'
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no file {str(path)!r}.")
    with open(path, "rb") as fh:
        head = fh.read(8)
    if head.startswith(_NETCDF_MAGIC):
        return "fit"
    try:
        path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ValueError(
            f"{str(path)!r} is neither a model file (TOML text, e.g. models/clark_ar1.toml) nor a "
            "saved fit (a netCDF file written by fit.save or `hierbayes fit --out`)."
        ) from None
    return "model"


def _fit_model_file(args):
    mf = modelfile.read(args.file)
    model = mf.model()
    kwargs = dict(mf.fit_kwargs)
    for key in ("draws", "tune", "chains", "seed"):
        if getattr(args, key, None) is not None:
            kwargs[key] = getattr(args, key)
    return model.fit(sampler=mf.sampler, progressbar=not args.quiet, **kwargs)


def _fit_or_load(args):
    if file_kind(args.file) == "fit":
        from hierbayes.fit import load

        passed = [k for k in ("draws", "tune", "chains", "seed") if getattr(args, k, None) is not None]
        if passed:
            raise ValueError(f"{args.file!r} is a saved fit: sampling options {passed} do not apply.")
        return load(args.file)
    return _fit_model_file(args)


def _fit(args) -> int:
    if file_kind(args.file) != "model":
        raise ValueError(f"{args.file!r} is a saved fit; `hierbayes fit` takes a model file "
                         "(use `hierbayes summary` or `hierbayes report` on a saved fit).")
    fit = _fit_model_file(args)
    print(fit.summary())
    if args.out:
        fit.save(args.out)
        print(f"\nFit written to {args.out} (hb.load reads it back; arviz.from_netcdf reads the draws)")
    if args.report:
        print(f"\nReport written to {fit.report(args.report)}")
    return 0


def _summary(args) -> int:
    print(_fit_or_load(args).summary())
    return 0


def _report(args) -> int:
    path = _fit_or_load(args).report(args.out_dir)
    print(f"Report written to {path}")
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hierbayes", description="Bayesian mixed-effects models.")
    parser.add_argument("--debug", action="store_true", help="show the traceback of an error")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("fit", help="fit the model described in a TOML model file and print its summary")
    p.add_argument("file", help="model file, e.g. models/clark_ar1.toml")
    p.add_argument("--out", help="save the fit (InferenceData, spec, data) to this netCDF file")
    p.add_argument("--report", help="also write the HTML report (and PNG figures) into this folder")
    s = sub.add_parser("summary", help="print the summary of a saved fit (or of a model file's fit)")
    s.add_argument("file", help="a saved fit (fit.nc) or a model file")
    r = sub.add_parser("report", help="write the HTML report of a saved fit (or of a model file's fit)")
    r.add_argument("file", help="a saved fit (fit.nc) or a model file, e.g. models/clark_ar1.toml")
    r.add_argument("--out", dest="out_dir", required=True, help="output folder")
    for q in (p, s, r):
        for key in ("draws", "tune", "chains", "seed"):
            q.add_argument(f"--{key}", type=int, help="overrides the model file's [sampler]")
        q.add_argument("--quiet", action="store_true", help="no progress bar")
        q.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                       help="show the traceback of an error")
    p.set_defaults(run=_fit)
    s.set_defaults(run=_summary)
    r.set_defaults(run=_report)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``hierbayes`` console script.

    Examples
    --------
    >>> main(["summary", "no-such-file.nc"])   # prints "hierbayes: error: no file ..."
    2
    """
    args = _parser().parse_args(argv)
    try:
        return args.run(args)
    except KeyboardInterrupt:
        raise
    except Exception as exc:  # one line for the user; the traceback with --debug
        if args.debug:
            raise
        msg = exc.args[0] if isinstance(exc, KeyError) and exc.args else str(exc)
        if not isinstance(exc, (ValueError, KeyError, TypeError, OSError)):
            msg = f"{type(exc).__name__}: {msg}"  # an unexpected kind: say which
        print(f"hierbayes: error: {msg}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
