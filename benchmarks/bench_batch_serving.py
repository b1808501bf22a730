"""Benchmark batch scoring: the serving pipeline against a bare ``model.predict``.

Setup, once and not timed, in a temporary project copy (pyproject.toml, conf/ without
local, src/, as the tests copy it):

1. ``kedro simulate --start 2024-01-01 --days 417 --stations 100`` (1,000,800 rows);
2. ``kedro run --env acceptance --params source.window.last_days=N`` trains on the
   newest N days (``--train-days``, default 60: the model's size, hence the cost of a
   prediction, does not depend on how many rows it was trained on) and registers it
   as ``challenger``, with its ONNX form verified at registration (or in its sklearn
   form, if the export was refused: the benchmark says which form scored).

The copy's ``src`` is byte-compiled once (``compileall``), as a user's project is
after its first run: both sides run with ``PYTHONDONTWRITEBYTECODE=1``, which would
otherwise make the pipeline side alone recompile every ``modelops`` module each run.
A project reused with ``--project`` keeps its data and registered model but gets the
measured code (work tree or ``--ref``) copied in first.

Then, alternating which goes first, each side runs ``--repeats`` times as a
subprocess with the same environment:

- pipeline: ``kedro run --env acceptance --pipelines serving --params
  serving.window.last_days=417`` — loads ``challenger``'s served artifact through
  the catalog (hash-checked; ONNX on onnxruntime where the version has it), checks
  every partition against the contract, scores chunk by chunk and writes the
  versioned predictions and prediction log, logs the summary to MLflow;
- bare: this file's ``bare`` mode — imports pandas and MLflow only, loads the same
  ``challenger`` version's sklearn model with ``mlflow.sklearn.load_model``, reads
  the same 417 parquet files, concatenates them and calls ``model.predict`` once.
  It writes nothing but its predictions (for the comparison, after timing).

Throughput is rows / wall seconds of the whole process (startup included, as a user
waits for it); peak memory is the child's maximum RSS (``/usr/bin/time -v``, else
``os.wait4``). Both sides' predictions are compared row by row before any time is
reported: equal, or within the ONNX tolerance recorded on the version
(``modelops.onnx.tolerance``). The pipeline's wall time is also split, from its log,
into start-up (process start to the scoring node), the scoring node, and the rest.

The issue's targets: pipeline rows/s >= 2 x bare rows/s; pipeline peak memory <= 1 x
the bare side's.
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

# The process helpers (measure, copy_project, ...) of the deployment benchmark are
# imported by the harness only (they import modelops.lineage): the bare mode stays bare.
bench: Any = None

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
BIN = Path(sys.executable).parent
KEDRO = BIN / "kedro"
RESULTS = BENCH_DIR / "results" / "batch_serving.json"

STATIONS = 100
DAYS = 417  # x 100 stations x 24 h = 1,000,800 rows
START = "2024-01-01"
ROWS_PER_DAY = STATIONS * 24
ENV = "acceptance"
ALIAS = "challenger"
MODEL_NAME = "modelops-bike-demand"
TARGET = 2.0  # pipeline rows/s >= 2 x bare rows/s
MEMORY_TARGET = 1.0  # pipeline peak RSS <= 1 x bare peak RSS
ONNX_TOLERANCE_TAG = "modelops.onnx.tolerance"
# The model's input columns (features.time_column, numeric, categorical in
# conf/base/use_case.yml), spelled out: the bare side uses no conf.
MODEL_INPUTS = [
    "timestamp",
    "station_capacity",
    "temperature_c",
    "humidity_pct",
    "wind_speed_kmh",
    "precipitation_mm",
    "is_holiday",
    "station_id",
    "station_zone",
    "weather",
]
SOURCE = Path("data") / "source" / "bike_rentals"
PREDICTIONS = Path("data") / ENV / "07_model_output" / "batch_predictions"
LOG = Path("data") / ENV / "07_model_output" / "prediction_log"


def digest(values: Any) -> str:
    """sha256 of predictions as float64, in row order."""
    import numpy as np  # noqa: PLC0415  (the bare mode imports what it needs only)

    return hashlib.sha256(np.asarray(values, dtype="float64").tobytes()).hexdigest()


# --- the bare side ------------------------------------------------------------------


def bare(project: Path, days: int, output: Path | None) -> None:
    """Load the alias's model, read the newest ``days`` partitions, predict; print JSON.

    The predictions are saved to ``output`` (``.npy``) after the timed phases.
    """
    started = time.perf_counter()
    import mlflow  # noqa: PLC0415
    import mlflow.sklearn  # noqa: PLC0415
    import pandas as pd  # noqa: PLC0415

    imported = time.perf_counter()
    uri = f"sqlite:///{project / 'mlruns' / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    model = mlflow.sklearn.load_model(f"models:/{MODEL_NAME}@{ALIAS}")
    loaded = time.perf_counter()
    files = sorted((project / SOURCE).glob("*.parquet"))[-days:]
    data = pd.concat([pd.read_parquet(path) for path in files], ignore_index=True)
    read = time.perf_counter()
    predicted = model.predict(data[MODEL_INPUTS])
    done = time.perf_counter()
    if output is not None:
        import numpy as np  # noqa: PLC0415

        np.save(output, np.asarray(predicted, dtype="float64"))
    print(
        json.dumps(
            {
                "rows": len(data),
                "partitions": len(files),
                "import_s": imported - started,
                "model_load_s": loaded - imported,
                "read_s": read - loaded,
                "predict_s": done - read,
                "digest": digest(predicted),
            }
        )
    )


# --- the harness --------------------------------------------------------------------


def setup_project(workdir: Path, setup: Any, train_days: int | None) -> Path:
    """Project copy with the simulated source and a registered `challenger` (not timed)."""
    project = bench.copy_project(workdir / "project", setup.ref)
    steps = [
        (
            "kedro simulate",
            [
                str(KEDRO),
                "simulate",
                "--start",
                START,
                "--days",
                str(DAYS),
                "--stations",
                str(STATIONS),
            ],
        ),
        (
            "kedro run --env acceptance (registers challenger)",
            [
                str(KEDRO),
                "run",
                "--env",
                ENV,
                *(
                    ["--params", f"source.window.last_days={train_days}"]
                    if train_days
                    else []
                ),
            ],
        ),
    ]
    for what, command in steps:
        log = workdir / f"setup_{len(list(workdir.glob('setup_*')))}.log"
        started = time.perf_counter()
        bench.checked(bench.measure(command, project, setup.env, log), what, log)
        print(f"  {what}: {time.perf_counter() - started:.1f} s")
    return project


def compile_sources(project: Path) -> None:
    """Byte-compile the copy's ``src`` once, as a user's project has it after one run.

    Both sides run with ``PYTHONDONTWRITEBYTECODE=1`` (nothing written into the
    venv); without this the pipeline side alone would recompile every ``modelops``
    module on every run, which no user's second run does.
    """
    subprocess.run(
        [sys.executable, "-m", "compileall", "-q", str(project / "src")], check=True
    )


def refresh_code(project: Path, ref: str | None) -> None:
    """Put the code being measured (work tree or ``ref``) into a reused project.

    A project kept with ``--keep`` holds the code of the run that set it up; its
    data and registered model are reused, its ``src``, ``conf`` and pyproject.toml
    are replaced, so the results describe the code they name.
    """
    fresh = bench.copy_project(project.parent / "code-refresh", ref)
    try:
        for name in ("src", "conf", "pyproject.toml"):
            old = project / name
            if old.is_dir():
                shutil.rmtree(old)
            elif old.exists():
                old.unlink()
            shutil.move(fresh / name, old)
    finally:
        shutil.rmtree(fresh, ignore_errors=True)


LOG_TIME = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) ")


def _logged_at(text: str, marker: str) -> float | None:
    """Epoch seconds of the first log line containing ``marker``."""
    for line in text.splitlines():
        found = LOG_TIME.match(line)
        if found and marker in line:
            moment = datetime.datetime.strptime(found.group(1), "%Y-%m-%d %H:%M:%S,%f")
            return moment.timestamp()  # the log writes local time, as time.time()
    return None


def pipeline_phases(text: str, started: float, seconds: float) -> dict[str, Any]:
    """Where the pipeline's wall time went, from its log: start-up, scoring, rest."""
    node = _logged_at(text, "Running node: score_window_node")
    scored = _logged_at(text, "Completed node: score_window_node")
    if node is None or scored is None:
        return {}
    return {
        "startup_s": node - started,  # imports, session, hooks, MLflow run, loads
        "scoring_node_s": scored - node,  # read, check, score, write every chunk
        "rest_s": started + seconds - scored,  # summary, commit, MLflow, exit
    }


def run_pipeline(project: Path, workdir: Path, setup: Any, tag: str) -> dict[str, Any]:
    """One `kedro run --pipelines serving` over the whole source; outputs removed after."""
    log = workdir / f"pipeline_{tag}.log"
    command = [
        str(KEDRO),
        "run",
        "--env",
        ENV,
        "--pipelines",
        "serving",
        "--params",
        f"serving.window.last_days={DAYS}",
    ]
    started = time.time()
    result = bench.checked(
        bench.measure(command, project, setup.env, log), "serving pipeline", log
    )
    text = log.read_text(errors="replace")
    execution = re.search(r"successfully in ([\d.]+) sec", text)
    result["pipeline_execution_s"] = float(execution.group(1)) if execution else None
    result.update(pipeline_phases(text, started, result["seconds"]))
    form = re.search(r"in its (\w+) form \(sha256 (\w+)\)", text)
    result["form"], result["artifact_sha256"] = form.groups() if form else (None, None)
    import numpy as np  # noqa: PLC0415
    import pandas as pd  # noqa: PLC0415

    (version,) = sorted(p.name for p in (project / PREDICTIONS).iterdir())
    chunks = sorted((project / PREDICTIONS / version).glob("*.parquet"))
    frame = pd.concat([pd.read_parquet(path) for path in chunks], ignore_index=True)
    np.save(workdir / f"pipeline_{tag}.npy", frame["prediction"].to_numpy("float64"))
    keys = frame[["timestamp", "station_id"]]
    result.update(
        rows=len(frame),
        chunks=len(chunks),
        digest=digest(frame["prediction"]),
        keys_digest=digest(pd.util.hash_pandas_object(keys, index=False)),
    )
    for folder in (PREDICTIONS, LOG):  # the next run starts from the same state
        shutil.rmtree(project / folder)
    return result


def run_bare(project: Path, workdir: Path, setup: Any, tag: str) -> dict[str, Any]:
    """One bare run: this file in ``bare`` mode."""
    log = workdir / f"bare_{tag}.log"
    output = workdir / f"bare_{tag}.npy"
    command = [
        sys.executable,
        __file__,
        "bare",
        str(project),
        "--days",
        str(DAYS),
        "--output",
        str(output),
    ]
    result = bench.checked(bench.measure(command, workdir, setup.env, log), "bare", log)
    result.update(json.loads(log.read_text().strip().splitlines()[-1]))
    return result


def source_keys_digest(project: Path) -> str:
    """Digest of the source's keys in the bare side's row order (files sorted, concat)."""
    import pandas as pd  # noqa: PLC0415

    files = sorted((project / SOURCE).glob("*.parquet"))[-DAYS:]
    keys = pd.concat(
        [pd.read_parquet(path, columns=["timestamp", "station_id"]) for path in files],
        ignore_index=True,
    )
    return digest(pd.util.hash_pandas_object(keys, index=False))


def onnx_tolerance(project: Path) -> float | None:
    """The ONNX tolerance recorded on the `challenger` version (None without ONNX)."""
    from mlflow.tracking import MlflowClient  # noqa: PLC0415

    uri = f"sqlite:///{project / 'mlruns' / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    tags = client.get_model_version_by_alias(MODEL_NAME, ALIAS).tags
    value = tags.get(ONNX_TOLERANCE_TAG)
    return float(value) if value is not None else None


def compare_predictions(
    workdir: Path, runs: dict[str, list[dict[str, Any]]], tolerance: float | None
) -> dict[str, Any]:
    """Every run's predictions against the first bare run's, row by row."""
    import numpy as np  # noqa: PLC0415

    reference = np.load(workdir / "bare_0.npy")
    # The registration's criterion: |onnx - sklearn| <= tolerance * max(1, |sklearn|).
    allowed = (tolerance or 0.0) * np.maximum(1.0, np.abs(reference))
    worst, exact, within = 0.0, True, True
    for side, side_runs in runs.items():
        for index in range(len(side_runs)):
            values = np.load(workdir / f"{side}_{index}.npy")
            if values.shape != reference.shape:
                return {"same_predictions": False, "why": f"{side} run {index} shape"}
            diff = np.abs(values - reference)
            exact = exact and bool(np.array_equal(values, reference))
            within = within and bool(np.all(diff <= allowed))
            worst = max(worst, float(np.max(diff)))
    return {
        "same_predictions": within,
        "exact": exact,
        "max_abs_diff": worst,
        "onnx_tolerance": tolerance,
    }


def summarise(runs: list[dict[str, Any]]) -> dict[str, float]:
    """Medians over repeats, and rows per wall second."""
    medians = {
        key: statistics.median(run[key] for run in runs)
        for key in ("seconds", "peak_mib", "cpu_seconds")
    }
    return medians | {"rows_per_s": runs[0]["rows"] / medians["seconds"]}


def print_table(result: dict[str, Any]) -> None:
    """The side-by-side table and the verdict."""
    bare_side, pipeline = result["bare"], result["pipeline"]
    header = (
        f"{'side':>8} | {'rows':>9} | {'wall s':>6} | {'rows/s':>8} | "
        f"{'cpu s':>6} | {'peak MiB':>8}"
    )
    print()
    print(header)
    print("-" * len(header))
    for name, side in (("bare", bare_side), ("pipeline", pipeline)):
        print(
            f"{name:>8} | {result['rows']:>9,} | {side['seconds']:6.1f} | "
            f"{side['rows_per_s']:8,.0f} | {side['cpu_seconds']:6.1f} | "
            f"{side['peak_mib']:8.0f}"
        )
    print()
    check = result["predictions"]
    same = (
        "same predictions (exact)"
        if check.get("exact")
        else f"same predictions within the version's ONNX tolerance "
        f"{check.get('onnx_tolerance')} (max abs diff {check.get('max_abs_diff')})"
        if check["same_predictions"]
        else f"PREDICTIONS DIFFER ({check})"
    )
    print(
        f"throughput ratio pipeline/bare: {result['ratio']:.2f} (target >= {TARGET}): "
        f"{'met' if result['met'] else 'NOT met'}; peak memory "
        f"x{result['memory_ratio']:.2f} (target <= {MEMORY_TARGET}): "
        f"{'met' if result['memory_met'] else 'NOT met'}"
    )
    print(
        f"pipeline scored in its {result['form']} form (artifact sha256 "
        f"{result['artifact_sha256']}); {same}"
    )
    phases = result["pipeline_phases"]
    if phases:
        print(
            f"pipeline phases (medians): start-up to the scoring node "
            f"{phases['startup_s']:.1f} s, scoring node (read, check, score, write) "
            f"{phases['scoring_node_s']:.1f} s, rest (summary, commit, exit) "
            f"{phases['rest_s']:.1f} s"
        )
    bare_run = bare_side["runs"][0]
    print(
        f"bare phases (run 1): imports {bare_run['import_s']:.1f} s, model load "
        f"{bare_run['model_load_s']:.1f} s, read {bare_run['read_s']:.1f} s, predict "
        f"{bare_run['predict_s']:.1f} s"
    )
    print(
        f"without process startup (medians): bare model load + read + predict "
        f"{result['bare_scoring_s']:.1f} s vs kedro's pipeline execution (model load, "
        f"read, contract check, score, write {pipeline['runs'][0]['chunks']} chunks x "
        f"2 outputs, summary) {result['pipeline_execution_s']:.1f} s: ratio "
        f"{result['bare_scoring_s'] / result['pipeline_execution_s']:.2f}"
    )


def measure_all(args: argparse.Namespace, setup: Any, workdir: Path) -> dict[str, Any]:
    """Set up once, then run both sides ``repeats`` times, alternating."""
    if args.project is not None:  # a project this benchmark set up before (--keep)
        project = args.project
        refresh_code(project, setup.ref)
        print(f"  reusing the set-up project {project} (code refreshed)")
    else:
        project = setup_project(workdir, setup, args.train_days)
    compile_sources(project)
    runs: dict[str, list[dict[str, Any]]] = {"bare": [], "pipeline": []}
    sides = {"bare": run_bare, "pipeline": run_pipeline}
    for index in range(args.repeats):
        order = ("bare", "pipeline") if index % 2 == 0 else ("pipeline", "bare")
        for side in order:
            result = sides[side](project, workdir, setup, str(index))
            runs[side].append(result)
            print(
                f"  run {index + 1}/{args.repeats} {side:<8} {result['seconds']:6.1f} s"
                f"  {result['rows'] / result['seconds']:9,.0f} rows/s"
                f"  {result['peak_mib']:6.0f} MiB  cpu {result['cpu_seconds']:6.1f} s"
                f"  (load {result['load_before']:.1f})"
            )
    bare_side, pipeline = summarise(runs["bare"]), summarise(runs["pipeline"])
    ratio = pipeline["rows_per_s"] / bare_side["rows_per_s"]
    memory_ratio = pipeline["peak_mib"] / bare_side["peak_mib"]
    predictions = compare_predictions(workdir, runs, onnx_tolerance(project))
    keys = source_keys_digest(project)
    if any(run["keys_digest"] != keys for run in runs["pipeline"]):
        predictions = {**predictions, "same_predictions": False, "why": "row order"}
    if any(run["rows"] != runs["bare"][0]["rows"] for run in runs["pipeline"]):
        predictions = {**predictions, "same_predictions": False, "why": "row count"}
    phases = {
        key: statistics.median(run[key] for run in runs["pipeline"])
        for key in ("startup_s", "scoring_node_s", "rest_s")
        if all(key in run for run in runs["pipeline"])
    }
    return {
        "rows": runs["bare"][0]["rows"],
        "partitions": DAYS,
        "stations": STATIONS,
        "train_days": args.train_days,
        "repeats": args.repeats,
        "bare": bare_side | {"runs": runs["bare"]},
        "pipeline": pipeline | {"runs": runs["pipeline"]},
        "pipeline_execution_s": statistics.median(
            run["pipeline_execution_s"] or float("nan") for run in runs["pipeline"]
        ),
        "ratio": ratio,
        # Without process startup: Kedro's own "pipeline execution" time (model load,
        # read, check, score, write, summary) vs the bare model load + read + predict.
        "bare_scoring_s": statistics.median(
            run["model_load_s"] + run["read_s"] + run["predict_s"]
            for run in runs["bare"]
        ),
        "pipeline_phases": phases,
        "form": runs["pipeline"][0]["form"],
        "artifact_sha256": runs["pipeline"][0]["artifact_sha256"],
        "target": TARGET,
        "met": ratio >= TARGET,
        "memory_ratio": memory_ratio,
        "memory_target": MEMORY_TARGET,
        "memory_met": memory_ratio <= MEMORY_TARGET,
        "predictions": predictions,
        "same_predictions": predictions["same_predictions"],
    }


def main() -> None:
    """Parse flags; run the bare mode, or the whole benchmark."""
    if len(sys.argv) > 1 and sys.argv[1] == "bare":
        parser = argparse.ArgumentParser(description="bare batch scoring")
        parser.add_argument("mode")
        parser.add_argument("project", type=Path)
        parser.add_argument("--days", type=int, default=DAYS)
        parser.add_argument("--output", type=Path, help="save predictions (.npy)")
        args = parser.parse_args()
        bare(args.project, args.days, args.output)
        return
    global bench  # noqa: PLW0603  (the harness only: the bare mode stays bare)
    import bench_deployment_job as bench  # noqa: PLC0415

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=2, help="runs per side")
    parser.add_argument(
        "--train-days",
        type=lambda text: None if text == "all" else int(text),
        default=60,
        help="days the registered model is trained on ('all': the whole source)",
    )
    parser.add_argument(
        "--omp-threads",
        default=os.environ.get("OMP_NUM_THREADS", "1"),
        help="OMP_NUM_THREADS for both sides (default: inherited, else 1; "
        "'unset' leaves it unset)",
    )
    parser.add_argument("--ref", help="measure this git revision, not the work tree")
    parser.add_argument("--keep", type=Path, help="keep the work folder here")
    parser.add_argument(
        "--project",
        type=Path,
        help="reuse the project a previous run set up (<--keep folder>/project): "
        "skips simulate and training",
    )
    parser.add_argument("--output", type=Path, default=RESULTS, help="JSON results")
    args = parser.parse_args()
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")
    omp = None if args.omp_threads == "unset" else str(args.omp_threads)
    setup = bench.Setup(env=bench.child_env(omp), ref=args.ref)
    code = bench.code_version(args.ref)
    print(
        f"batch serving vs bare model.predict: {DAYS} days x {STATIONS} stations x 24 h"
        f" = {DAYS * ROWS_PER_DAY:,} rows; code {code['description']}, "
        f"repeats={args.repeats}, OMP_NUM_THREADS={omp or 'unset'}, "
        f"{os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}"
    )
    with tempfile.TemporaryDirectory(prefix="bench-serving-") as tmp:
        workdir = args.keep or Path(tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        result = measure_all(args, setup, workdir)
    print_table(result)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(
        json.dumps(
            {
                "benchmark": "serving pipeline (batch scoring) vs bare model.predict",
                "when": datetime.datetime.now(datetime.UTC).isoformat(
                    timespec="seconds"
                ),
                "machine": {
                    "cpus": os.cpu_count(),
                    "platform": platform.platform(),
                    "omp_num_threads": omp,
                },
                "code": code,
                "versions": bench.library_versions(),
                "result": result,
            },
            indent=2,
        )
        + "\n"
    )
    print(f"results written to {args.output}")


if __name__ == "__main__":
    main()
