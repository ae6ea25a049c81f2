"""Run many independent fits through a ``concurrent.futures.Executor``.

Prior sweeps and simulation-based calibration refit a model many times. Each fit is a
:class:`FitTask` -- plain, picklable data (formula, data frame, options, priors, seed),
never a compiled model -- run by a module-level function in whatever executor is given:

- ``None``: a local :class:`~concurrent.futures.ProcessPoolExecutor` (``spawn`` start
  method: JAX is multithreaded and must not be forked), one worker per core at most;
- any :class:`concurrent.futures.Executor` (a thread pool, a pool you configured);
- a ``dask.distributed.Client``: its ``get_executor()`` is used, so the same code runs
  on a cluster.

A task that raises does not stop the others: its result carries the error message.
In scripts, call from under ``if __name__ == "__main__":`` (the ``spawn`` start method
re-imports the main module in each worker).
"""

from __future__ import annotations

import multiprocessing
import os
import traceback
from collections.abc import Callable, Sequence
from concurrent.futures import Executor, ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class FitTask:
    """Everything a worker needs to build and fit one model.

    Attributes
    ----------
    inputs : dict
        ``Model`` arguments except priors (``formula``, ``data``, ``correlation``,
        ``family``, ``backend``, ``na_action``), as in ``Model.inputs``.
    priors : dict of str to Prior
        Prior overrides by parameter name.
    fit_kwargs : dict
        Arguments of ``Model.fit`` (draws, tune, chains, ...), without ``seed``.
    seed : int
    tag : Any
        Carried through to the result (a setting label, a simulation index).
    """

    inputs: dict
    priors: dict
    fit_kwargs: dict
    seed: int
    tag: Any = None
    extra: dict = field(default_factory=dict)

    def build(self):
        from hierbayes.model import Model

        return Model(priors=self.priors, **self.inputs)

    def fit(self):
        kw = {"progressbar": False, **self.fit_kwargs}
        return self.build().fit(seed=self.seed, **kw)


def task_seeds(seed: int | None, n: int) -> list[int]:
    """``n`` independent integer seeds derived from ``seed`` (numpy SeedSequence.spawn)."""
    import numpy as np

    return [int(s.generate_state(1)[0]) for s in np.random.SeedSequence(seed).spawn(n)]


def default_executor(n_tasks: int, max_workers: int | None = None) -> Executor:
    """A local process pool (``spawn``), at most one worker per core and per task."""
    workers = max_workers or max(1, min(n_tasks, os.cpu_count() or 1))
    return ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"))


def as_executor(executor) -> tuple[Executor, bool]:
    """``(executor, owned)``: a dask Client becomes its ``get_executor()``; ``None`` is
    left to :func:`run_all` (a pool it owns and shuts down)."""
    if executor is None:
        return None, True
    if hasattr(executor, "get_executor") and not isinstance(executor, Executor):
        return executor.get_executor(), False
    if not hasattr(executor, "submit"):
        raise TypeError(
            "executor must be a concurrent.futures.Executor or a dask.distributed.Client, "
            f"got {type(executor).__name__}."
        )
    return executor, False


def guarded(fn: Callable, task) -> dict:
    """Run ``fn(task)`` and return ``{"ok": True, "value": ...}`` or ``{"ok": False,
    "error": "..."}``: an exception becomes a message, so one failure loses nothing else."""
    try:
        return {"ok": True, "value": fn(task)}
    except Exception as exc:  # noqa: BLE001 -- reported in the result, not lost
        tb = traceback.format_exception_only(type(exc), exc)
        return {"ok": False, "error": "".join(tb).strip()}


def run_all(
    fn: Callable,
    tasks: Sequence,
    executor=None,
    max_workers: int | None = None,
    on_done: Callable[[int, dict], None] | None = None,
) -> list[dict]:
    """Run ``fn`` on every task through ``executor``; results in task order.

    Parameters
    ----------
    fn : callable
        A module-level (picklable) function of one task.
    tasks : sequence
    executor : Executor or dask.distributed.Client, optional
        Default: a local process pool, shut down afterwards.
    max_workers : int, optional
        Workers of the default pool.
    on_done : callable, optional
        Called as ``on_done(index, result)`` as each task finishes (progress reports).

    Returns
    -------
    list of dict
        ``{"ok": True, "value": fn(task)}`` or ``{"ok": False, "error": message}`` per
        task (a worker that died is reported the same way).

    Examples
    --------
    >>> from concurrent.futures import ThreadPoolExecutor
    >>> from hierbayes.studies.parallel import run_all
    >>> with ThreadPoolExecutor(2) as ex:
    ...     out = run_all(abs, [-1, 2], executor=ex)
    >>> [r["value"] for r in out]
    [1, 2]
    """
    ex, owned = as_executor(executor)
    if ex is None:
        ex = default_executor(len(tasks), max_workers)
    try:
        futures = {ex.submit(guarded, fn, t): i for i, t in enumerate(tasks)}
        out: list[dict] = [{}] * len(tasks)
        for f in as_completed(futures):
            i = futures[f]
            try:
                out[i] = f.result()
            except Exception as exc:  # noqa: BLE001 -- a worker crashed or was lost
                out[i] = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
            if on_done is not None:
                on_done(i, out[i])
        return out
    finally:
        if owned:
            ex.shutdown(wait=True)
