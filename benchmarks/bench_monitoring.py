"""Benchmark the monitoring computation against a bare numpy/scipy script, side by side.

Setup, once and not timed: ``kedro``-free simulation (``modelops.simulator``, 1000
stations) of a 14-day reference, profiled with the evaluation pipeline's
``profile_reference``, and of the current window, written as prediction-log parquet
files in the batch layout (``<version>/<first>_to_<last>.parquet``, ~100k rows per
file, as batch scoring writes them): 1M rows (42 days) and 10M rows (417 days), the
default features plus keys, prediction and identity columns.

Each side runs in its own subprocess (peak RSS of that child from ``os.wait4``),
alternating which goes first, ``--repeats`` times per size:

- pipeline: what ``monitor_window_node`` runs — ``PredictionLogsDataset`` loaders,
  file-by-file reading of the needed columns, ``WindowAccumulator`` (per-day
  histograms and category counts, bounded bottom-k sample), then
  ``drift.evaluate_window`` (scipy statistics, verdict). Kedro start-up is not part
  of it (see bench_batch_serving.py for that cost).
- bare: this file's ``bare`` mode — reads every file into one frame with pandas and
  computes the same statistics on the whole arrays in one go with numpy/scipy: the
  same histograms over the reference bins, the same per-day PSI, the same category
  counts, the same bottom-k sample (the rows with the smallest seeded key hash) for
  ``ks_2samp``/``wasserstein_distance``, ``chi2_contingency``, ``jensenshannon``,
  ``rel_entr`` PSI, and the same thresholds for the flags.

Labels are not joined on either side (performance needs the source partitions; the
same merge on both sides would only add the same cost). Before any time is reported
both sides' flags must be equal and every statistic within 1e-9 (relative) of the
other. Writes benchmarks/results/monitoring.json.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "monitoring.json"
STATIONS = 1000
FILE_ROWS = 100_000
SIZES = {"1M": 42, "10M": 417}  # days of 1000 stations x 24 hours
TOLERANCE = 1e-9
VERSION = 3
WINDOW_START = dt.date(2024, 1, 15)


def _params() -> dict:
    from kedro.config import OmegaConfigLoader  # noqa: PLC0415

    from modelops.settings import CONFIG_LOADER_ARGS  # noqa: PLC0415

    loader = OmegaConfigLoader(
        conf_source=str(ROOT / "conf"), env="base", **CONFIG_LOADER_ARGS
    )
    params = dict(loader["parameters"])
    monitoring = dict(params["monitoring"])
    monitoring["window"] = {"start": None, "end": None, "last_days": None}
    monitoring["env"] = "bench"
    return {
        "monitoring": monitoring,
        "features": params["features"],
        "source": params["source"],
    }


def setup(folder: Path) -> None:
    """Write the profile and the 1M / 10M prediction logs (not timed)."""
    import numpy as np  # noqa: PLC0415
    import pandas as pd  # noqa: PLC0415

    from modelops.pipelines.monitoring.nodes import profile_reference  # noqa: PLC0415
    from modelops.simulator import simulate_days  # noqa: PLC0415

    params = _params()
    start = WINDOW_START - dt.timedelta(days=14)
    reference = pd.concat(
        [f for _, f in simulate_days(start, 14, seed=1, n_stations=STATIONS)],
        ignore_index=True,
    )
    rng = np.random.default_rng(0)
    predictions = reference[["timestamp", "station_id"]].assign(
        actual=reference["rentals"],
        predicted=reference["rentals"] + rng.normal(0, 2, len(reference)),
    )
    profile = profile_reference(
        reference.iloc[:0],
        reference,
        predictions,
        {"train_sha256": "bench", "test_sha256": "bench"},
        params["features"],
        params["monitoring"],
    )
    (folder / "profile.json").write_text(json.dumps(profile))
    for size, days in SIZES.items():
        root = folder / size / "batch" / "2025-01-01T00.00.00.000Z"
        root.mkdir(parents=True)
        buffer: list = []
        rows = 0

        def flush(parts: list, root: Path = root) -> None:
            frame = pd.concat(parts, ignore_index=True)
            first = frame["timestamp"].iloc[0].date()
            last = frame["timestamp"].iloc[-1].date()
            frame.to_parquet(root / f"{first}_to_{last}.parquet", index=False)

        for day, frame in simulate_days(
            WINDOW_START, days, seed=1, n_stations=STATIONS
        ):
            logged = frame.drop(columns="rentals").assign(
                prediction=frame["rentals"] + rng.normal(0, 2, len(frame)),
                model_name="bench",
                model_version=np.int64(VERSION),
                run_id="bench",
                request_id="batch-bench",
                scored_at=pd.Timestamp("2025-01-01", tz="UTC"),
                source_partition=pd.array([str(day)] * len(frame), dtype="str"),
            )
            buffer.append(logged)
            rows += len(logged)
            if rows >= FILE_ROWS:
                flush(buffer)
                buffer, rows = [], 0
        if buffer:
            flush(buffer)


def run_pipeline(folder: Path, size: str) -> dict:
    """The monitoring node's computation (no Kedro session)."""
    from modelops.monitoring_datasets import PredictionLogsDataset  # noqa: PLC0415
    from modelops.pipelines.monitoring.nodes import monitor_window  # noqa: PLC0415

    params = _params()
    profile = json.loads((folder / "profile.json").read_text())
    began = time.perf_counter()
    logs = PredictionLogsDataset(
        str(folder / size / "batch"), str(folder / size / "rest")
    ).load()
    result = monitor_window(
        logs,
        {},
        {
            "model": {"name": "bench", "version": str(VERSION), "alias": "champion"},
            "profile": profile,
        },
        "2025-01-02T00.00.00.000Z",
        params["monitoring"],
        params["features"],
        params["source"],
    )
    seconds = time.perf_counter() - began
    stats = {
        entry["column"]: {"drifted": entry["drifted"], **entry["statistics"]}
        for entry in [*result["features"], result["prediction"]]
    }
    daily = {
        entry["column"]: [day["psi"] for day in entry["daily"]]
        for entry in [*result["features"], result["prediction"]]
    }
    return {
        "seconds": seconds,
        "rows": result["window"]["rows"],
        "stats": stats,
        "daily_psi": daily,
    }


def run_bare(folder: Path, size: str) -> dict:  # noqa: PLR0915
    """The same statistics with pandas/numpy/scipy on the whole arrays at once."""
    import numpy as np  # noqa: PLC0415
    import pandas as pd  # noqa: PLC0415
    from scipy.spatial.distance import jensenshannon  # noqa: PLC0415
    from scipy.special import rel_entr  # noqa: PLC0415
    from scipy.stats import chi2_contingency, ks_2samp, wasserstein_distance  # noqa: PLC0415

    params = _params()
    monitoring, features = params["monitoring"], params["features"]
    profile = json.loads((folder / "profile.json").read_text())
    began = time.perf_counter()
    numeric = list(features["numeric"])
    categorical = list(features["categorical"])
    keys = list(features["key_columns"])
    columns = list(
        dict.fromkeys([*keys, *numeric, *categorical, "prediction", "model_version"])
    )
    files = sorted((folder / size / "batch").rglob("*.parquet"))
    data = pd.concat(
        [pd.read_parquet(f, columns=columns) for f in files], ignore_index=True
    )
    data = data[data["model_version"] == VERSION]
    eps = float(monitoring["psi_epsilon"])

    def psi(ref, cur):
        ref = np.asarray(ref, float)
        cur = np.asarray(cur, float)
        ref = np.maximum(ref / ref.sum() if ref.sum() else ref, eps)
        cur = np.maximum(cur / cur.sum() if cur.sum() else cur, eps)
        ref, cur = ref / ref.sum(), cur / cur.sum()
        return float(np.sum(rel_entr(cur, ref) + rel_entr(ref, cur)))

    day = data["timestamp"].to_numpy().astype("datetime64[D]")
    day_codes, day_uniques = pd.factorize(day, sort=True)
    hash_key = f"modelops{int(profile['seed']):08d}"[-16:].rjust(16, "0")
    row_key = pd.util.hash_pandas_object(
        data[keys], index=False, hash_key=hash_key
    ).to_numpy(np.uint64)
    size_k = int(profile["sample_size"])
    chosen = np.argpartition(row_key, size_k - 1)[:size_k]
    overrides = monitoring.get("columns") or {}
    report_only = set(monitoring.get("report_only") or [])
    stats, daily = {}, {}
    for name in [*numeric, "prediction"]:
        ref = (
            profile["prediction"] if name == "prediction" else profile["numeric"][name]
        )
        limits = {
            **monitoring["prediction" if name == "prediction" else "numeric"],
            **(overrides.get(name) or {}),
        }
        values = pd.to_numeric(data[name]).to_numpy(np.float64)
        edges = np.asarray(ref["edges"])
        bins = np.searchsorted(edges, values)
        counts = np.bincount(bins, minlength=len(edges) + 1)
        per_day = np.bincount(
            day_codes * (len(edges) + 1) + bins,
            minlength=len(day_uniques) * (len(edges) + 1),
        ).reshape(len(day_uniques), -1)
        sample = values[chosen]
        ref_sample = np.asarray(ref["sample"])
        distance = wasserstein_distance(ref_sample, sample)
        ks = ks_2samp(ref_sample, sample)
        norm = distance / ref["std"] if ref["std"] else (0.0 if distance == 0 else 1e6)
        drifted = (
            norm > limits["wasserstein_norm"]
            and ks.pvalue < limits["ks_pvalue"]
            and name not in report_only
        )
        stats[name] = {
            "drifted": bool(drifted),
            "wasserstein": float(distance),
            "wasserstein_norm": float(norm),
            "ks_statistic": float(ks.statistic),
            "ks_pvalue": float(ks.pvalue),
            "psi": psi(ref["counts"], counts),
        }
        daily[name] = [round(psi(ref["counts"], row), 6) for row in per_day]
    for name in categorical:
        ref = profile["categorical"][name]
        limits = {**monitoring["categorical"], **(overrides.get(name) or {})}
        codes, cats = pd.factorize(data[name])
        cats = [str(x) for x in cats]
        per_day = np.bincount(
            day_codes * len(cats) + codes, minlength=len(day_uniques) * len(cats)
        ).reshape(len(day_uniques), len(cats))
        current = dict(zip(cats, per_day.sum(axis=0).tolist(), strict=True))
        labels = sorted(set(ref["counts"]) | set(current))
        rc = np.array([ref["counts"].get(x, 0) for x in labels], float)
        cc = np.array([current.get(x, 0) for x in labels], float)
        seen = set(ref["seen"])
        new = [x for x in labels if x not in seen]
        new_share = float(sum(current[x] for x in new)) / cc.sum()
        js = float(jensenshannon(rc / rc.sum(), cc / cc.sum(), base=2))
        used = (rc + cc) > 0
        p = (
            float(chi2_contingency(np.stack([rc[used], cc[used]]))[1])
            if used.sum() > 1
            else 1.0
        )
        drifted = (
            (js > limits["jensen_shannon"] and p < limits["chi2_pvalue"])
            or new_share > limits["new_category_share"]
        ) and name not in report_only
        stats[name] = {
            "drifted": bool(drifted),
            "jensen_shannon": js,
            "chi2_pvalue": p,
            "psi": psi(rc, cc),
            "new_categories": len(new),
            "new_category_share": new_share,
        }
        day_psi = []
        for row in per_day:
            counts = {cat: int(n) for cat, n in zip(cats, row, strict=True) if n > 0}
            labels_d = sorted(set(ref["counts"]) | set(counts))
            day_psi.append(
                round(
                    psi(
                        [ref["counts"].get(x, 0) for x in labels_d],
                        [counts.get(x, 0) for x in labels_d],
                    ),
                    6,
                )
            )
        daily[name] = day_psi
    seconds = time.perf_counter() - began
    return {"seconds": seconds, "rows": len(data), "stats": stats, "daily_psi": daily}


def child(mode: str, folder: Path, size: str, out: Path) -> None:
    """Run one side and write its outcome."""
    sys.path.insert(0, str(ROOT / "src"))
    outcome = (
        run_pipeline(folder, size) if mode == "pipeline" else run_bare(folder, size)
    )
    out.write_text(json.dumps(outcome))


def spawn(mode: str, folder: Path, size: str) -> dict:
    """One side in its own process: its outcome, wall seconds and peak RSS (MB)."""
    out = folder / f"{mode}-{size}.json"
    began = time.perf_counter()
    process = subprocess.Popen(
        [
            sys.executable,
            __file__,
            "--child",
            mode,
            "--folder",
            str(folder),
            "--size",
            size,
            "--out",
            str(out),
        ],
        env={**os.environ, "PYTHONPATH": str(ROOT / "src")},
    )
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - began
    if status != 0:
        raise SystemExit(f"{mode} {size} failed with status {status}")
    outcome = json.loads(out.read_text())
    outcome.update(wall=wall, peak_rss_mb=usage.ru_maxrss / 1024)
    return outcome


def agree(pipeline: dict, bare: dict) -> list[str]:
    """Differences between the two sides (flags exact, statistics within TOLERANCE)."""
    problems = []
    if pipeline["rows"] != bare["rows"]:
        problems.append(f"rows {pipeline['rows']} != {bare['rows']}")
    for column, stats in bare["stats"].items():
        mine = pipeline["stats"][column]
        if mine["drifted"] != stats["drifted"]:
            problems.append(
                f"{column}: drifted {mine['drifted']} != {stats['drifted']}"
            )
        for name, value in stats.items():
            if name == "drifted":
                continue
            other = mine[name]
            if abs(other - value) > TOLERANCE * max(1.0, abs(value)):
                problems.append(f"{column}.{name}: {other} != {value}")
        if pipeline["daily_psi"][column] != bare["daily_psi"][column]:
            problems.append(f"{column}: daily PSI differ")
    return problems


def main() -> None:
    """Set up once, run both sides alternately, check agreement, report."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--child")
    parser.add_argument("--folder", type=Path)
    parser.add_argument("--size")
    parser.add_argument("--out", type=Path)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument(
        "--smoke", action="store_true", help="2 and 4 days instead of 42 and 417"
    )
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args()
    if args.smoke:
        SIZES.update({"1M": 2, "10M": 4})
    if args.child == "setup":
        sys.path.insert(0, str(ROOT / "src"))
        setup(args.folder)
        return
    if args.child:
        child(args.child, args.folder, args.size, args.out)
        return
    with tempfile.TemporaryDirectory(prefix="bench-monitoring-") as tmp:
        folder = Path(tmp)
        began = time.perf_counter()
        # In a child: a forked child inherits its parent's peak RSS on Linux, so the
        # parent stays small (no pandas) for the children's peaks to be their own.
        subprocess.run(
            [sys.executable, __file__, "--child", "setup", "--folder", str(folder)]
            + (["--smoke"] if args.smoke else []),
            env={**os.environ, "PYTHONPATH": str(ROOT / "src")},
            check=True,
        )
        print(f"setup (not timed): {time.perf_counter() - began:.0f} s", flush=True)
        runs: dict[str, dict[str, list[dict]]] = {}
        for size in SIZES:
            runs[size] = {"pipeline": [], "bare": []}
            for repeat in range(args.repeats):
                order = (
                    ["pipeline", "bare"] if repeat % 2 == 0 else ["bare", "pipeline"]
                )
                for mode in order:
                    outcome = spawn(mode, folder, size)
                    runs[size][mode].append(outcome)
                    print(
                        f"{size} {mode}: {outcome['seconds']:.2f} s compute, "
                        f"{outcome['wall']:.2f} s process, {outcome['peak_rss_mb']:.0f} MB",
                        flush=True,
                    )
                problems = agree(runs[size]["pipeline"][-1], runs[size]["bare"][-1])
                if problems:
                    raise SystemExit("sides disagree:\n" + "\n".join(problems[:20]))

    def best(size: str, mode: str, key: str) -> float:
        return min(run[key] for run in runs[size][mode])

    summary = {
        "rows": {size: runs[size]["pipeline"][0]["rows"] for size in SIZES},
        "stations": STATIONS,
        "window_days": SIZES,
        "repeats": args.repeats,
        "agreement": f"flags equal, statistics within {TOLERANCE} relative, daily PSI equal",
        "seconds_compute": {
            size: {mode: best(size, mode, "seconds") for mode in ("pipeline", "bare")}
            for size in SIZES
        },
        "seconds_process": {
            size: {mode: best(size, mode, "wall") for mode in ("pipeline", "bare")}
            for size in SIZES
        },
        "peak_rss_mb": {
            size: {
                mode: max(r["peak_rss_mb"] for r in runs[size][mode])
                for mode in ("pipeline", "bare")
            }
            for size in SIZES
        },
    }
    compute = summary["seconds_compute"]
    summary["ratio_1M_pipeline_over_bare"] = (
        compute["1M"]["pipeline"] / compute["1M"]["bare"]
    )
    summary["scaling_10M_over_1M_pipeline"] = (
        compute["10M"]["pipeline"] / compute["1M"]["pipeline"]
    )
    summary["memory_10M_over_1M_pipeline"] = (
        summary["peak_rss_mb"]["10M"]["pipeline"]
        / summary["peak_rss_mb"]["1M"]["pipeline"]
    )
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
