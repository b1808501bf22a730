"""Benchmark the ONNX form of the model against sklearn: one request, and 1M rows.

Setup, once and not timed, in this process: simulate 417 days x 100 stations x 24 h
(1,000,800 rows) with ``modelops.simulator`` (seed 42), build the model input table
(``conf/base/parameters_data_processing.yml``), train the configured model
(``conf/base/parameters_training.yml``; HistGradientBoostingRegressor by default) on
the newest ``--train-days`` days, export it with ``export_onnx`` and check it with
``verify_onnx`` (tolerance 1e-9): the run stops if verification fails.

Same predictions first: both sides score every row and the single-row sample, and the
largest difference is reported (0.0 when the ONNX form is bit-exact).

Then, side by side in one process:

- single row: ``--single-rows`` rows of the table; per round and per row, sklearn's
  ``model.predict`` on a prebuilt 1-row DataFrame once, and ``OnnxPredictor.
  predict_values`` on that row's JSON values (ISO timestamp string, text categories,
  numbers; building the onnxruntime inputs is timed) ``--onnx-calls`` times, each
  call timed alone. p50/p90/p99 per side; ratio = sklearn p50 / ONNX p50.
- batch: the 1M-row DataFrame, sklearn ``model.predict`` against
  ``OnnxPredictor.predict`` (calendar features, input matrices, onnxruntime),
  alternating which goes first, ``--repeats`` times; rows/s from the median wall
  time; ratio = ONNX rows/s / sklearn rows/s.

Both sides run with ``OMP_NUM_THREADS=1`` (the script re-executes itself with it unless
``--omp-threads`` says otherwise) and onnxruntime on the CPU provider with 1 intra-op
and 1 inter-op thread.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
RESULTS = BENCH_DIR / "results" / "onnx_predict.json"
START = datetime.date(2024, 1, 1)


def percentiles(samples: list[float]) -> dict[str, float]:
    """p50/p90/p99 of latencies in seconds, as microseconds."""
    ordered = sorted(samples)

    def at(share: float) -> float:
        return ordered[min(len(ordered) - 1, int(share * len(ordered)))] * 1e6

    return {"p50_us": at(0.50), "p90_us": at(0.90), "p99_us": at(0.99)}


def json_row(frame: Any, index: int) -> dict[str, list[Any]]:
    """One row as a request's JSON columns (ISO timestamps, plain Python values)."""
    row: dict[str, list[Any]] = {}
    for column in frame.columns:
        value = frame[column].iloc[index]
        if hasattr(value, "isoformat"):
            value = value.isoformat()
        elif hasattr(value, "item"):
            value = value.item()
        row[column] = [value]
    return row


def setup(args: argparse.Namespace) -> dict[str, Any]:
    """Simulate, train, export and verify (not timed)."""
    import numpy as np  # noqa: PLC0415 (after OMP_NUM_THREADS is set)
    import pandas as pd  # noqa: PLC0415
    import yaml  # noqa: PLC0415

    from modelops.modeling import model_inputs  # noqa: PLC0415
    from modelops.onnx_model import (  # noqa: PLC0415
        OnnxPredictor,
        export_onnx,
        verify_onnx,
    )
    from modelops.pipelines.data_processing.nodes import (  # noqa: PLC0415
        build_model_input,
    )
    from modelops.pipelines.training.nodes import train_model  # noqa: PLC0415
    from modelops.simulator import simulate_days  # noqa: PLC0415

    conf = ROOT / "conf" / "base"
    features = yaml.safe_load((conf / "parameters_data_processing.yml").read_text())[
        "features"
    ]
    model_conf = yaml.safe_load((conf / "parameters_training.yml").read_text())["model"]
    started = time.perf_counter()
    source = pd.concat(
        [
            frame
            for _, frame in simulate_days(
                START, args.days, seed=42, n_stations=args.stations
            )
        ],
        ignore_index=True,
    )
    table = build_model_input(source, features)
    del source
    newest = table[features["time_column"]].max().normalize()
    recent = table[
        table[features["time_column"]]
        >= newest - pd.Timedelta(days=args.train_days - 1)
    ]
    model = train_model(recent, features, model_conf)
    onnx_bytes = export_onnx(model, features)
    report = verify_onnx(model, onnx_bytes, table.tail(20_000), features, 1e-9)
    print(
        f"  setup {time.perf_counter() - started:.1f} s: {len(table):,} rows, trained "
        f"on {len(recent):,}, {model_conf['class'].rsplit('.', 1)[-1]}, ONNX "
        f"{len(onnx_bytes) / 1024:.0f} KiB; verify_onnx passed={report['passed']} "
        f"exact={report['exact']} max_abs_diff={report['max_abs_diff']:.3g} on "
        f"{report['rows_checked']:,} rows"
    )
    if not report["passed"]:
        raise SystemExit(f"verification failed: {report['reason']}")
    rows = model_inputs(table, features)
    rng = np.random.default_rng(0)
    picks = rng.choice(len(rows), size=args.single_rows, replace=False)
    return {
        "model": model,
        "predictor": OnnxPredictor(onnx_bytes),
        "rows": rows,
        "singles": [rows.iloc[[int(i)]] for i in picks],
        "requests": [json_row(rows, int(i)) for i in picks],
        "verification": report,
        "estimator": model_conf["class"],
        "train_rows": len(recent),
        "onnx_kib": len(onnx_bytes) / 1024,
    }


def same_predictions(state: dict[str, Any]) -> dict[str, Any]:
    """Both sides on every row and on the single-row sample: the largest difference."""
    import numpy as np  # noqa: PLC0415

    model, predictor = state["model"], state["predictor"]
    batch = np.abs(model.predict(state["rows"]) - predictor.predict(state["rows"]))
    single = np.array(
        [
            abs(model.predict(frame)[0] - predictor.predict_values(request)[0])
            for frame, request in zip(state["singles"], state["requests"], strict=True)
        ]
    )
    return {
        "batch_max_abs_diff": float(batch.max()),
        "batch_identical": bool((batch == 0).all()),
        "single_max_abs_diff": float(single.max()),
        "single_identical": bool((single == 0).all()),
    }


def single_row(state: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    """Per-call latencies, interleaved row by row over ``--rounds`` rounds."""
    model, predictor = state["model"], state["predictor"]
    clock = time.perf_counter
    sklearn_s: list[float] = []
    onnx_s: list[float] = []
    for _ in range(args.rounds):
        for frame, request in zip(state["singles"], state["requests"], strict=True):
            started = clock()
            model.predict(frame)
            sklearn_s.append(clock() - started)
            for _ in range(args.onnx_calls):
                started = clock()
                predictor.predict_values(request)
                onnx_s.append(clock() - started)
    sklearn, onnx = percentiles(sklearn_s), percentiles(onnx_s)
    return {
        "sklearn": sklearn | {"calls": len(sklearn_s)},
        "onnx": onnx | {"calls": len(onnx_s)},
        "ratio_p50": sklearn["p50_us"] / onnx["p50_us"],
    }


def batch(state: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    """1M rows, alternating which side goes first."""
    sides = {
        "sklearn": lambda: state["model"].predict(state["rows"]),
        "onnx": lambda: state["predictor"].predict(state["rows"]),
    }
    seconds: dict[str, list[float]] = {"sklearn": [], "onnx": []}
    for index in range(args.repeats):
        order = ("sklearn", "onnx") if index % 2 == 0 else ("onnx", "sklearn")
        for side in order:
            started = time.perf_counter()
            sides[side]()
            seconds[side].append(time.perf_counter() - started)
            print(
                f"  batch run {index + 1}/{args.repeats} {side:<7} {seconds[side][-1]:6.2f} s"
            )
    rows = len(state["rows"])
    result: dict[str, Any] = {"rows": rows}
    for side, runs in seconds.items():
        median = statistics.median(runs)
        result[side] = {"runs_s": runs, "median_s": median, "rows_per_s": rows / median}
    result["ratio"] = result["onnx"]["rows_per_s"] / result["sklearn"]["rows_per_s"]
    return result


def versions() -> dict[str, str]:
    """Versions of the libraries both sides depend on."""
    from importlib.metadata import version  # noqa: PLC0415

    names = ("scikit-learn", "numpy", "pandas", "onnx", "onnxruntime", "skl2onnx")
    return {"python": platform.python_version(), **{n: version(n) for n in names}}


def print_table(result: dict[str, Any]) -> None:
    """The side-by-side table and the ratios."""
    single, many = result["single_row"], result["batch"]
    header = (
        f"{'side':>8} | {'1-row p50 us':>12} | {'p90 us':>9} | {'p99 us':>9} | "
        f"{'batch s':>9} | {'rows/s':>10}"
    )
    print()
    print(header)
    print("-" * len(header))
    for side in ("sklearn", "onnx"):
        print(
            f"{side:>8} | {single[side]['p50_us']:12,.1f} | "
            f"{single[side]['p90_us']:9,.1f} | {single[side]['p99_us']:9,.1f} | "
            f"{many[side]['median_s']:9.2f} | {many[side]['rows_per_s']:10,.0f}"
        )
    same = result["same_predictions"]
    print()
    print(
        f"single row: ONNX from JSON values is {single['ratio_p50']:.0f}x faster than "
        f"sklearn predict on a 1-row DataFrame (p50)"
    )
    print(
        f"batch ({many['rows']:,} rows): ONNX {many['ratio']:.2f}x sklearn's rows/s; "
        f"predictions {'identical' if same['batch_identical'] else 'DIFFER'} "
        f"(max |diff| {same['batch_max_abs_diff']:.3g}, single rows "
        f"{same['single_max_abs_diff']:.3g})"
    )


def main() -> None:
    """Parse flags, pin OMP_NUM_THREADS (re-executing if needed), run, report."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=417)
    parser.add_argument("--stations", type=int, default=100)
    parser.add_argument("--train-days", type=int, default=60)
    parser.add_argument("--single-rows", type=int, default=200)
    parser.add_argument("--onnx-calls", type=int, default=20, help="per row and round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=3, help="batch runs per side")
    parser.add_argument(
        "--omp-threads",
        default="1",
        help="OMP_NUM_THREADS for both sides ('inherit' keeps the caller's)",
    )
    parser.add_argument("--output", type=Path, default=RESULTS, help="JSON results")
    args = parser.parse_args()
    omp = args.omp_threads
    if omp != "inherit" and os.environ.get("OMP_NUM_THREADS") != omp:
        os.environ["OMP_NUM_THREADS"] = omp  # before numpy/sklearn load OpenMP
        os.execv(sys.executable, [sys.executable, __file__, *sys.argv[1:]])  # noqa: S606
    sys.path.insert(0, str(ROOT / "src"))  # measure this checkout's modelops
    print(
        f"ONNX vs sklearn: {args.days} days x {args.stations} stations x 24 h = "
        f"{args.days * args.stations * 24:,} rows; OMP_NUM_THREADS="
        f"{os.environ.get('OMP_NUM_THREADS', 'unset')}, {os.cpu_count()} CPUs, load "
        f"{os.getloadavg()[0]:.1f}"
    )
    state = setup(args)
    same = same_predictions(state)
    print(f"  same predictions: {same}")
    single = single_row(state, args)
    many = batch(state, args)
    result = {
        "estimator": state["estimator"],
        "train_rows": state["train_rows"],
        "onnx_kib": state["onnx_kib"],
        "verification": {
            key: state["verification"][key]
            for key in ("passed", "exact", "max_abs_diff", "rows_checked", "tolerance")
        },
        "same_predictions": same,
        "single_row": single,
        "batch": many,
    }
    print_table(result)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(
        json.dumps(
            {
                "benchmark": "ONNX (onnxruntime) vs sklearn predict: one row, 1M rows",
                "when": datetime.datetime.now(datetime.UTC).isoformat(
                    timespec="seconds"
                ),
                "machine": {
                    "cpus": os.cpu_count(),
                    "platform": platform.platform(),
                    "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
                    "load_before": os.getloadavg()[0],
                },
                "versions": versions(),
                "settings": vars(args) | {"output": str(args.output)},
                "result": result,
            },
            indent=2,
        )
        + "\n"
    )
    print(f"results written to {args.output}")


if __name__ == "__main__":
    main()
