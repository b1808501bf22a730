"""Benchmark write_source (chunked, one day at a time) against one whole-range write."""

from __future__ import annotations

import argparse
import datetime
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

N_STATIONS = 100
START = datetime.date(2024, 1, 1)
MODES = ("floor", "chunked", "whole")


def peak_rss_mb() -> float:
    """Return this process's peak resident set size in MiB."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10  # bytes vs KiB


def measure(mode: str, rows: int) -> dict[str, float]:
    """Run one mode in this process and return rows, seconds and peak RSS.

    Args:
        mode: "floor" (imports only), "chunked" (write_source) or "whole"
            (simulate the whole range into one DataFrame, then one to_parquet).
        rows: Wanted number of rows.

    Returns:
        The measurements.
    """
    import pandas as pd  # noqa: PLC0415 - imported here so "floor" measures it

    from modelops.simulator import days_for_rows, simulate_days, write_source  # noqa: PLC0415

    days = days_for_rows(rows, N_STATIONS)
    written, write_seconds = 0, 0.0
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        if mode == "chunked":
            written = write_source(tmp, START, days, n_stations=N_STATIONS).rows
        elif mode == "whole":
            frames = [
                frame for _, frame in simulate_days(START, days, n_stations=N_STATIONS)
            ]
            whole = pd.concat(frames, ignore_index=True)
            del frames
            written = len(whole)
            write_started = time.perf_counter()
            whole.to_parquet(Path(tmp) / "all.parquet", engine="pyarrow", index=False)
            write_seconds = time.perf_counter() - write_started
        seconds = time.perf_counter() - started
    return {
        "rows": written,
        "days": days,
        "seconds": seconds,
        "write_seconds": write_seconds,
        "peak_rss_mb": peak_rss_mb(),
    }


def run_child(mode: str, rows: int) -> dict[str, float]:
    """Measure one mode in a fresh interpreter, so peak RSS is that mode's alone.

    Args:
        mode: One of MODES.
        rows: Wanted number of rows.

    Returns:
        The child's measurements.
    """
    result = subprocess.run(
        [sys.executable, __file__, "--rows", str(rows), "--mode", mode],
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(result.stdout)


def main() -> None:
    """Run every mode in its own process and print the comparison."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows to write")
    parser.add_argument("--mode", choices=MODES, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.mode:  # child process: measure and report as JSON
        print(json.dumps(measure(args.mode, args.rows)))
        return

    results = {mode: run_child(mode, args.rows) for mode in MODES}
    chunked, whole = results["chunked"], results["whole"]
    print(
        f"rows={chunked['rows']:,} ({chunked['days']} days x {N_STATIONS} stations "
        f"x 24 h), python {sys.version.split()[0]}"
    )
    print(f"{'mode':<44}{'wall s':>9}{'rows/s':>12}{'peak RSS MiB':>14}")
    labels = {
        "floor": "imports only (python+pandas+pyarrow)",
        "chunked": "write_source: one file per day, streamed",
        "whole": "baseline: whole range in memory, 1 file",
    }
    for mode, result in results.items():
        rate = f"{result['rows'] / result['seconds']:,.0f}" if result["rows"] else "-"
        print(
            f"{labels[mode]:<44}{result['seconds']:>9.2f}{rate:>12}"
            f"{result['peak_rss_mb']:>14.0f}"
        )
    print(f"  (baseline's single to_parquet alone: {whole['write_seconds']:.2f} s)")
    print(
        f"chunked / baseline: wall time x{chunked['seconds'] / whole['seconds']:.2f}, "
        f"peak RSS x{chunked['peak_rss_mb'] / whole['peak_rss_mb']:.2f}; "
        f"above the import floor: {chunked['peak_rss_mb'] - results['floor']['peak_rss_mb']:.0f} "
        f"vs {whole['peak_rss_mb'] - results['floor']['peak_rss_mb']:.0f} MiB"
    )


if __name__ == "__main__":
    main()
