"""Import time of hierbayes against pymc (issue 19: ``import hierbayes`` no slower than
``import pymc``), each import in a fresh interpreter, alternated, median of ``--repeat`` runs.

    python benchmarks/bench_import.py --repeat 7

Also prints the ten slowest modules of one ``python -X importtime -c "import hierbayes"``.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys

TIMER = "import time; t = time.perf_counter(); import {mod}; print(time.perf_counter() - t)"


def once(module: str) -> float:
    out = subprocess.run([sys.executable, "-c", TIMER.format(mod=module)],
                         capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def slowest(module: str, n: int = 10) -> list[tuple[float, str]]:
    err = subprocess.run([sys.executable, "-X", "importtime", "-c", f"import {module}"],
                         capture_output=True, text=True, check=True).stderr
    rows = []
    for line in err.splitlines():
        if not line.startswith("import time:") or "cumulative" in line:
            continue
        self_us, _cumulative_us, name = line[len("import time:"):].split("|")
        rows.append((int(self_us) / 1e6, name.strip()))
    return sorted(rows, reverse=True)[:n]


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--modules", nargs="+", default=["pymc", "arviz", "hierbayes"])
    args = ap.parse_args(argv)
    once("numpy")  # warm the file cache for the shared dependencies
    times = {m: [] for m in args.modules}
    for _ in range(args.repeat):
        for m in args.modules:
            times[m].append(once(m))
    print(f"| module | median s | min s | max s | runs |\n|---|---|---|---|---|")
    for m, ts in times.items():
        print(f"| {m} | {statistics.median(ts):.2f} | {min(ts):.2f} | {max(ts):.2f} | {len(ts)} |")
    ratio = statistics.median(times["hierbayes"]) / statistics.median(times["pymc"])
    print(f"\nimport hierbayes / import pymc (medians): {ratio:.2f}")
    print("\nslowest modules by own time (one -X importtime run of hierbayes):")
    for sec, name in slowest("hierbayes"):
        print(f"  {sec:6.3f} s  {name}")


if __name__ == "__main__":
    main()
