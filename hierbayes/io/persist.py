"""Save a fit to one file and load it back: ``fit.save(path)`` / ``hb.load(path)``.

The file is a netCDF4 (HDF5) file, readable by ArviZ and xarray:

- every InferenceData group (``posterior``, ``sample_stats``, ``observed_data``) at the root,
  as :meth:`arviz.InferenceData.to_netcdf` writes them;
- a group ``hierbayes_data`` with the used columns of the user's data (every input row, in
  the user's order): the design, its categorical encodings (formulae's term information),
  group levels and the map back to the user's rows are rebuilt from them on load, by the same
  code that built them at fit time, so a loaded fit summarises, shrinks and predicts exactly
  as the original did;
- a root attribute ``hierbayes`` holding JSON metadata: file format, package version, the
  spec (formula, family, correlation, user priors), the resolved priors, backend, layout,
  sampler options, timing, and a fingerprint of the design (fixed names, group levels and
  terms) that the rebuilt design must match.

Storing the data rather than the design arrays keeps the file small for the usual shapes
(the used columns, not X and the Z blocks) and keeps one code path for building designs; its
cost is that the data travel with the fit (a fit of 1e6 rows x 4 columns carries ~32 MB).

Writes are atomic: the file is written to a temporary file in the target directory, flushed
to disk, then moved over ``path`` with :func:`os.replace`; a failure mid-write leaves any
previous file at ``path`` untouched.
"""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile
import warnings
from pathlib import Path

import arviz as az
import numpy as np
import pandas as pd
import xarray as xr

from hierbayes.spec.correlation import from_dict as correlation_from_dict
from hierbayes.design.build import Design, build_design
from hierbayes.spec.priors import Prior
from hierbayes.spec.formula import parse
from hierbayes.sampling.nuts import SamplerOptions
from hierbayes.version import __version__

FORMAT = "hierbayes-fit"
FORMAT_VERSION = 1
#: the file attribute holding the fit's metadata (JSON)
META = "hierbayes"
_DATA_GROUP = "hierbayes_data"
_ENGINE = "h5netcdf"


class VersionMismatchError(RuntimeError):
    """A saved fit was written by another version of hierbayes."""


# --------------------------------------------------------------------------- data columns


def _encode_column(name: str, s: pd.Series) -> tuple[dict[str, xr.DataArray], dict]:
    """One data column as netCDF-storable arrays plus how to decode them."""
    info: dict = {"dtype": str(s.dtype)}
    missing = s.isna().to_numpy()
    if isinstance(s.dtype, pd.CategoricalDtype):
        info.update(
            kind="category",
            ordered=bool(s.cat.ordered),
            categories=[c.item() if hasattr(c, "item") else c for c in s.cat.categories],
        )
        return {"codes": xr.DataArray(s.cat.codes.to_numpy(dtype=np.int64), dims=["row"])}, info
    inferred = pd.api.types.infer_dtype(s, skipna=True)
    if pd.api.types.is_bool_dtype(s.dtype) and not missing.any():
        info["kind"] = "bool"
        values = s.to_numpy(dtype=bool)
    elif pd.api.types.is_numeric_dtype(s.dtype) or inferred in ("integer", "floating", "mixed-integer-float"):
        # nullable integer / float columns come back through their pandas dtype
        info["kind"] = "numeric"
        values = s.to_numpy(dtype=float) if missing.any() else s.to_numpy()
        if values.dtype == object:
            values = values.astype(float)
    elif inferred in ("string", "empty"):
        info["kind"] = "string"
        values = np.where(missing, "", s.astype(object).where(~missing, "")).astype(object)
    elif inferred == "boolean":
        info["kind"] = "bool-object"
        values = np.where(missing, False, s.to_numpy(dtype=object)).astype(bool)
    else:
        raise TypeError(
            f"data column {name!r} holds values of mixed or unsupported types ({inferred}); "
            f"convert it before fitting (e.g. data[{name!r}].astype(str)) so the fit can be saved."
        )
    out = {"values": xr.DataArray(values, dims=["row"])}
    if missing.any():
        out["missing"] = xr.DataArray(missing, dims=["row"])
    return out, info


def _decode_column(ds: xr.Dataset, key: str, info: dict) -> pd.Series:
    kind = info["kind"]
    if kind == "category":
        codes = ds[f"{key}__codes"].values
        dtype = pd.CategoricalDtype(info["categories"], ordered=info["ordered"])
        return pd.Series(pd.Categorical.from_codes(codes, dtype=dtype))
    values = ds[f"{key}__values"].values
    missing = ds[f"{key}__missing"].values.astype(bool) if f"{key}__missing" in ds else None
    if kind == "string":
        out = pd.Series(values.astype(object))
        if missing is not None:
            out[missing] = np.nan
    elif kind == "bool-object":
        out = pd.Series(values.astype(object))
        if missing is not None:
            out[missing] = np.nan
    else:
        out = pd.Series(values)
        if missing is not None:
            out = out.astype(float)
            out[missing] = np.nan
    try:
        return out.astype(info["dtype"])
    except (TypeError, ValueError):
        return out


def data_dataset(source: pd.DataFrame) -> tuple[xr.Dataset, list[dict]]:
    """The user's data frame as a netCDF-ready Dataset (one variable per column, categories
    and dtypes kept) and the column descriptions :func:`data_frame` reads it back with."""
    arrays: dict[str, xr.DataArray] = {}
    columns = []
    for i, name in enumerate(source.columns):
        key = f"c{i}"
        parts, info = _encode_column(str(name), source[name])
        for part, da in parts.items():
            arrays[f"{key}__{part}"] = da
        columns.append({"name": name, "key": key, **info})
    return xr.Dataset(arrays), columns


def data_frame(ds: xr.Dataset, columns: list[dict], n_rows: int) -> pd.DataFrame:
    """The data frame stored by :func:`data_dataset` (same columns, dtypes and order)."""
    frame = pd.DataFrame({c["name"]: _decode_column(ds, c["key"], c) for c in columns})
    if len(frame) != n_rows:
        raise ValueError(f"stored data have {len(frame)} rows, the saved fit expects {n_rows}.")
    return frame


# --------------------------------------------------------------------------- metadata


def _json_default(obj):
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Prior):
        return obj.to_dict()
    return repr(obj)


def _fingerprint(design: Design) -> dict:
    return {
        "fixed_names": list(design.fixed_names),
        "groups": [
            {"name": g.name, "levels": list(g.levels), "terms": list(g.terms)} for g in design.groups
        ],
        "cluster_levels": list(design.cluster_levels),
        "n": int(design.n),
        "n_input_rows": int(design.n_input_rows),
        "n_dropped": int(design.n_dropped),
    }


def _metadata(fit, columns: list[dict]) -> dict:

    spec = fit.design.spec
    corr = spec.correlation
    options = fit.options
    opts = dataclasses.asdict(options) if dataclasses.is_dataclass(options) else dict(options or {})
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "hierbayes_version": __version__,
        "spec": {
            "formula": spec.formula,
            "family": spec.family.name,
            "family_fields": (
                dataclasses.asdict(spec.family) if dataclasses.is_dataclass(spec.family) else {}
            ),
            "family_repr": repr(spec.family),
            "correlation": None if corr is None else corr.to_dict(),
            "priors": {k: p.to_dict() for k, p in spec.priors.items()},
            "dpars": dict(spec.dpars),  # parameter formulas ({"sigma": "Sex"}), by keyword
            # the censoring columns (from the formula or censored=; parse takes both)
            "censored": None if spec.censored is None else [spec.censored, spec.censored_upper],
        },
        "priors": {k: p.to_dict() for k, p in fit.priors.items()},
        "backend": fit.backend,
        "layout": fit.layout,
        "options": opts,
        "timing": dict(fit.timing),
        "design": _fingerprint(fit.design),
        "columns": columns,
    }


# --------------------------------------------------------------------------- writing


def _write(path: str, idata: az.InferenceData, data: xr.Dataset, meta_json: str,
           compress: bool = True) -> None:
    """Write the whole file at ``path`` (a fresh temporary file)."""
    out = az.InferenceData(
        attrs={**idata.attrs, META: meta_json},
        **{g: idata[g] for g in idata.groups()},
    )
    out.to_netcdf(path, engine=_ENGINE, compress=compress)
    data.to_netcdf(path, mode="a", group=_DATA_GROUP, engine=_ENGINE)


def save(fit, path, *, compress: bool = True) -> Path:
    """Save a :class:`~hierbayes.fit.Fit` to one netCDF file, atomically.

    Parameters
    ----------
    fit : Fit
    path : str or Path
        Target file (``.nc`` by convention). An existing file is replaced only once the new
        one is completely written.
    compress : bool, default True
        zlib-compress the draws (ArviZ's default). Draws compress little (their low bits
        are noise) and compressing costs time: ``False`` saves several times faster.

    Returns
    -------
    Path
        The path written.

    Examples
    --------
    >>> fit.save("clark_ar1_fit.nc")           # doctest: +SKIP
    >>> again = hb.load("clark_ar1_fit.nc")    # doctest: +SKIP
    >>> print(again.summary())                 # doctest: +SKIP
    """
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"{str(path)!r} is a directory; give a file name such as 'fit.nc'.")
    source = fit.design.source
    if source is None:
        raise ValueError(
            "this fit's design holds no data (it was not built by build_design), so it cannot "
            "be saved in a form that can be rebuilt; refit it with hb.Model(...)."
        )
    data, columns = data_dataset(source)
    meta_json = json.dumps(_metadata(fit, columns), default=_json_default)
    directory = path.parent if str(path.parent) else Path(".")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=directory)
    os.close(fd)
    try:
        _write(tmp, fit.idata, data, meta_json, compress)
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.chmod(tmp, _file_mode(path))  # mkstemp makes 0600 files; give the usual mode
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    _fsync_directory(directory)
    return path


def _file_mode(path: Path) -> int:
    """The mode of the file being replaced, or what the user's umask gives a new file."""
    if path.exists():
        return path.stat().st_mode & 0o777
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def _fsync_directory(directory: Path) -> None:
    """Make the rename itself durable (POSIX); a no-op where directories cannot be opened."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


# --------------------------------------------------------------------------- reading


def _read_groups(path: str) -> tuple[dict[str, xr.Dataset], dict]:
    """Every group of the file, loaded into memory (the file is closed afterwards), and the
    root attributes."""
    import h5netcdf

    with h5netcdf.File(path, mode="r") as fh:
        names = list(fh.groups)
    groups = {}
    for name in names:
        with xr.open_dataset(path, group=name, engine=_ENGINE) as ds:
            groups[name] = ds.load()
    with xr.open_dataset(path, engine=_ENGINE) as root:
        attrs = dict(root.attrs)
    return groups, attrs


def read_metadata(path) -> dict:
    """The JSON metadata of a saved fit (version, spec, priors, options), without loading it.

    Examples
    --------
    >>> path = fit.save("fit.nc")
    >>> read_metadata(path)["hierbayes_version"]
    '0.1.0'
    """
    import h5netcdf

    path = str(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"no saved fit at {path!r}.")
    try:
        with h5netcdf.File(path, mode="r") as fh:
            raw = fh.attrs.get(META)
    except OSError as err:
        raise ValueError(f"{path!r} is not a hierbayes fit file (not netCDF4/HDF5: {err}).") from err
    if raw is None:
        raise ValueError(
            f"{path!r} is a netCDF file but not a saved hierbayes fit (no {META!r} metadata); "
            "an InferenceData written by Fit.to_netcdf loads with arviz.from_netcdf."
        )
    if isinstance(raw, bytes):
        raw = raw.decode()
    meta = json.loads(raw)
    if meta.get("format") != FORMAT:
        raise ValueError(f"{path!r} has metadata of format {meta.get('format')!r}, not {FORMAT!r}.")
    return meta


def _check_version(meta: dict, path: str, allow_version_mismatch: bool) -> None:

    fv = meta.get("format_version")
    if fv != FORMAT_VERSION:
        raise VersionMismatchError(
            f"{path!r} uses file format {fv} (hierbayes {meta.get('hierbayes_version')}); this "
            f"hierbayes {__version__} reads format {FORMAT_VERSION} only: install hierbayes "
            f"{meta.get('hierbayes_version')} to read it."
        )
    written = meta.get("hierbayes_version")
    if written != __version__:
        msg = (
            f"{path!r} was written by hierbayes {written}, this is hierbayes {__version__}: "
            "designs, priors or summaries may differ between versions. Install hierbayes "
            f"{written} to load it exactly, or pass allow_version_mismatch=True to load it anyway "
            "(the design is rebuilt and checked against the stored one)."
        )
        if not allow_version_mismatch:
            raise VersionMismatchError(msg)
        warnings.warn(msg, stacklevel=3)


def _check_design(design: Design, meta: dict, path: str, groups: dict) -> None:
    obs = groups.get("observed_data")
    if obs is not None and "y" in obs:
        order = np.argsort(design.rows)
        same = np.array_equal(obs["obs"].values, design.rows[order]) and np.array_equal(
            obs["y"].values, design.y[order]
        )
        if not same:
            raise ValueError(
                f"the data stored in {path!r} do not reproduce the fit's observed response; "
                "the file was changed after it was written."
            )
    stored = meta["design"]
    rebuilt = _fingerprint(design)
    for key in stored:
        if stored[key] != rebuilt[key]:
            raise ValueError(
                f"the data stored in {path!r} rebuild a design whose {key} differs from the "
                f"saved fit's (stored {str(stored[key])[:200]}, rebuilt {str(rebuilt[key])[:200]}); "
                "the file was changed or written by an incompatible version."
            )


def _family(s: dict, path: str):
    """The family object of the saved spec (its name plus any settings such as a link)."""
    from hierbayes.spec import families

    fam = families.get(s["family"])
    fields = s.get("family_fields") or {}
    if dataclasses.is_dataclass(fam) and fields:
        known = {f.name for f in dataclasses.fields(fam) if f.init}
        fam = dataclasses.replace(fam, **{k: v for k, v in fields.items() if k in known})
    if s.get("family_repr") not in (None, repr(fam)):
        raise ValueError(
            f"{path!r} holds the family {s['family_repr']}, which this hierbayes rebuilds as "
            f"{fam!r}; load it with the hierbayes version that wrote it."
        )
    return fam


def read(path, *, allow_version_mismatch: bool = False) -> dict:
    """The pieces of a fit saved with :meth:`Fit.save <hierbayes.fit.Fit.save>`, checked:
    the keyword arguments of :class:`~hierbayes.fit.Fit` (``idata``, ``design``, ``priors``,
    ``backend``, ``layout``, ``options``, ``timing``); :func:`hierbayes.load` builds the Fit.

    The design is rebuilt from the stored data and checked against the stored fingerprint.
    A file written by another hierbayes version raises :class:`VersionMismatchError` unless
    ``allow_version_mismatch`` (then it warns).
    """

    path = str(path)
    meta = read_metadata(path)
    _check_version(meta, path, allow_version_mismatch)
    groups, attrs = _read_groups(path)
    if _DATA_GROUP not in groups:
        raise ValueError(f"{path!r} lacks its {_DATA_GROUP!r} group (the data to rebuild the design).")
    data_ds = groups.pop(_DATA_GROUP)
    frame = data_frame(data_ds, meta["columns"], meta["design"]["n_input_rows"])
    s = meta["spec"]
    spec = parse(
        s["formula"],
        family=_family(s, path),
        correlation=correlation_from_dict(s["correlation"]),
        priors={k: Prior.from_dict(v) for k, v in s["priors"].items()},
        **dict(s.get("dpars") or {}),  # sigma="Sex": the keyword of parse() per parameter
        censored=None if not s.get("censored") else tuple(s["censored"]),
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the missing-value count was reported at fit time
        design = build_design(spec, frame, na_action="drop")
    _check_design(design, meta, path, groups)
    attrs.pop(META, None)
    idata = az.InferenceData(attrs=attrs, **groups)
    fields = {f.name for f in dataclasses.fields(SamplerOptions)}
    options = SamplerOptions(**{k: v for k, v in meta["options"].items() if k in fields})
    priors = {k: Prior.from_dict(v) for k, v in meta["priors"].items()}
    return dict(idata=idata, design=design, priors=priors, backend=meta["backend"],
                layout=meta["layout"], options=options, timing=dict(meta["timing"]))
