"""Benchmark the deployment job (`kedro run --env acceptance`) against a bare script.

For each size the production source is simulated once (not timed) with
``kedro simulate --stations 100``; then, alternating which goes first, each side runs
``--repeats`` times as a subprocess in a fresh workspace:

- job: ``kedro run --env acceptance`` in a fresh temporary copy of the project
  (pyproject.toml, conf/ without local, src/), its source partitions copied in, a new
  SQLite MLflow store in the copy's mlruns/;
- bare: ``benchmarks/bare_deployment_script.py`` (pandas + scikit-learn + MLflow by
  hand, no Kedro, no modelops) on the same partitions, its own SQLite store.

Wall time is time.perf_counter around the subprocess; peak memory is the child's
maximum resident set size (``/usr/bin/time -v``, else ``os.wait4``). Medians are
reported with the issue's targets; everything is also written to
``benchmarks/results/deployment_job.json``. The import floors (``kedro --help`` in the
copy, and the bare script's imports) are measured too.
"""

from __future__ import annotations

import argparse
import datetime
import io
import json
import math
import os
import platform
import re
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from modelops.lineage import library_versions

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
KEDRO = BIN / "kedro"
BARE_SCRIPT = Path(__file__).resolve().parent / "bare_deployment_script.py"
RESULTS = Path(__file__).resolve().parent / "results" / "deployment_job.json"
GNU_TIME = Path("/usr/bin/time")

STATIONS = 100
START = "2024-01-01"
ROWS_PER_DAY = STATIONS * 24
SIZES = {"100k": 100_000, "1M": 1_000_000}
# The targets: job / bare wall time, and job / bare peak memory.
TIME_TARGETS = {"100k": 2.0, "1M": 1.15}
MEMORY_TARGET = 1.5
METRICS = ("rmse", "mae", "r2", "baseline_rmse")
BARE_IMPORTS = (
    "import matplotlib, mlflow, mlflow.sklearn, pandas, sklearn.ensemble, "
    "sklearn.inspection, sklearn.compose"
)


def parse_size(text: str) -> tuple[str, int]:
    """``100k`` / ``1M`` / ``250000`` -> (label, rows)."""
    match = re.fullmatch(r"(\d+(?:\.\d+)?)([kKmM]?)", text.strip())
    if not match:
        raise argparse.ArgumentTypeError(f"size {text!r}: expected e.g. 100k or 1M")
    scale = {"": 1, "k": 1_000, "m": 1_000_000}[match.group(2).lower()]
    return text.strip(), round(float(match.group(1)) * scale)


def time_target(label: str, rows: int) -> float:
    """The wall-time ratio target: the issue's for 100k and 1M, else by size."""
    return TIME_TARGETS.get(label, 1.15 if rows >= 1_000_000 else 2.0)


@dataclass(frozen=True)
class Setup:
    """What every measured command shares: its environment and the code measured."""

    env: dict[str, str]
    ref: str | None = None  # git revision copied; None: the working tree


def child_env(omp_threads: str | None) -> dict[str, str]:
    """The environment both sides run with (identical apart from nothing)."""
    env = {
        **os.environ,
        "KEDRO_DISABLE_TELEMETRY": "true",
        "DO_NOT_TRACK": "1",
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    env.pop("MLFLOW_TRACKING_URI", None)
    env.pop("MLFLOW_REGISTRY_URI", None)
    if omp_threads is None:
        env.pop("OMP_NUM_THREADS", None)
    else:
        env["OMP_NUM_THREADS"] = omp_threads
    return env


def copy_project(destination: Path, ref: str | None = None) -> Path:
    """What a Kedro run needs (pyproject, conf without local, src), as the tests do.

    Args:
        destination: New folder for the copy.
        ref: A git revision to copy instead of the working tree (so that edits in
            progress do not change what is measured).
    """
    destination.mkdir(parents=True)
    if ref is not None:
        archive = subprocess.run(
            ["git", "-C", str(ROOT), "archive", ref, "pyproject.toml", "conf", "src"],
            check=True,
            capture_output=True,
        ).stdout
        with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
            tar.extractall(destination, filter="data")
        shutil.rmtree(destination / "conf" / "local", ignore_errors=True)
        (destination / "conf" / "local").mkdir()
        (destination / "data").mkdir()
        return destination
    shutil.copy2(ROOT / "pyproject.toml", destination / "pyproject.toml")
    shutil.copytree(
        ROOT / "conf", destination / "conf", ignore=shutil.ignore_patterns("local")
    )
    shutil.copytree(
        ROOT / "src",
        destination / "src",
        ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"),
    )
    (destination / "conf" / "local").mkdir()
    (destination / "data").mkdir()
    return destination


def measure(
    command: list[str], cwd: Path, env: dict[str, str], log: Path
) -> dict[str, Any]:
    """Run ``command``; return wall seconds, peak RSS (MiB), CPU seconds, exit code.

    Output goes to ``log``. With GNU time the child is wrapped in ``/usr/bin/time
    -v``; without it the child is waited for with ``os.wait4``, whose rusage is that
    child's alone (ru_maxrss is its peak, in KiB on Linux).
    """
    with log.open("w") as out:
        if GNU_TIME.exists():
            report = log.with_suffix(".time")
            started = time.perf_counter()
            code = subprocess.run(
                [str(GNU_TIME), "-v", "-o", str(report), *command],
                cwd=cwd,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                check=False,
            ).returncode
            seconds = time.perf_counter() - started
            text = report.read_text()
            peak_kib = int(_field(text, "Maximum resident set size (kbytes)"))
            cpu = float(_field(text, "User time (seconds)")) + float(
                _field(text, "System time (seconds)")
            )
        else:
            started = time.perf_counter()
            child = subprocess.Popen(
                command, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT
            )
            _, status, usage = os.wait4(child.pid, 0)
            seconds = time.perf_counter() - started
            child.returncode = code = os.waitstatus_to_exitcode(status)
            peak_kib = usage.ru_maxrss
            cpu = usage.ru_utime + usage.ru_stime
    return {
        "seconds": seconds,
        "peak_mib": peak_kib / 1024,
        "cpu_seconds": cpu,
        "returncode": code,
        "load_before": os.getloadavg()[0],
    }


def _field(report: str, name: str) -> str:
    """A value of GNU time's ``-v`` report."""
    for line in report.splitlines():
        if line.strip().startswith(name):
            return line.rsplit(":", 1)[1].strip()
    raise ValueError(f"'{name}' not in /usr/bin/time output:\n{report}")


def checked(result: dict[str, Any], what: str, log: Path) -> dict[str, Any]:
    """``result`` if the command succeeded; else stop with the end of its log."""
    if result["returncode"] != 0:
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-40:])
        raise SystemExit(f"{what} exited {result['returncode']} (log {log}):\n{tail}")
    return result


def simulate_source(workdir: Path, days: int, setup: Setup) -> Path:
    """Write the production source once (not timed); return its partition folder."""
    project = copy_project(workdir / "source_project", setup.ref)
    log = workdir / "simulate.log"
    started = time.perf_counter()
    result = measure(
        [
            str(KEDRO),
            "simulate",
            "--start",
            START,
            "--days",
            str(days),
            "--stations",
            str(STATIONS),
        ],
        project,
        setup.env,
        log,
    )
    checked(result, "kedro simulate", log)
    print(f"  simulated {days} days in {time.perf_counter() - started:.1f} s")
    return project / "data" / "source" / "bike_rentals"


def run_job(workdir: Path, source: Path, setup: Setup, tag: str) -> dict[str, Any]:
    """One `kedro run --env acceptance` in a fresh project copy."""
    project = copy_project(workdir / f"job_{tag}", setup.ref)
    shutil.copytree(source, project / "data" / "source" / "bike_rentals")
    log = workdir / f"job_{tag}.log"
    result = checked(
        measure([str(KEDRO), "run", "--env", "acceptance"], project, setup.env, log),
        "kedro run --env acceptance",
        log,
    )
    result.update(job_outcome(project / "mlruns" / "mlflow.db"))
    shutil.rmtree(project)
    return result


def job_outcome(database: Path) -> dict[str, Any]:
    """The job's logged metrics and registered versions, read from its MLflow store."""
    with sqlite3.connect(database) as connection:
        metrics = dict(
            connection.execute("SELECT key, value FROM latest_metrics").fetchall()
        )
        versions = connection.execute("SELECT count(*) FROM model_versions").fetchone()
    return {
        "metrics": {name: metrics.get(name) for name in METRICS},
        "registered_versions": versions[0],
    }


def run_bare(workdir: Path, source: Path, setup: Setup, tag: str) -> dict[str, Any]:
    """One bare script run with a fresh output folder (and MLflow store)."""
    out = workdir / f"bare_{tag}"
    out.mkdir()
    log = workdir / f"bare_{tag}.log"
    command = [sys.executable, str(BARE_SCRIPT), str(source), "--out", str(out)]
    result = checked(measure(command, out, setup.env, log), "bare script", log)
    summary = json.loads(log.read_text().strip().splitlines()[-1])
    result["metrics"] = {name: summary["metrics"][name] for name in METRICS}
    result["registered_versions"] = 1
    shutil.rmtree(out)
    return result


def floors(workdir: Path, setup: Setup, repeats: int) -> dict[str, Any]:
    """Startup floors: `kedro --help` in a project copy, and the bare script imports."""
    project = copy_project(workdir / "floor_project", setup.ref)
    runs: dict[str, list[dict[str, Any]]] = {"kedro_help": [], "bare_imports": []}
    for index in range(repeats):
        log = workdir / f"floor_kedro_{index}.log"
        runs["kedro_help"].append(
            checked(
                measure([str(KEDRO), "--help"], project, setup.env, log), "kedro", log
            )
        )
        log = workdir / f"floor_bare_{index}.log"
        runs["bare_imports"].append(
            checked(
                measure([sys.executable, "-c", BARE_IMPORTS], workdir, setup.env, log),
                "bare imports",
                log,
            )
        )
    return {name: summarise(items) | {"runs": items} for name, items in runs.items()}


def summarise(runs: list[dict[str, Any]]) -> dict[str, float]:
    """Medians over repeats."""
    return {
        key: statistics.median(run[key] for run in runs)
        for key in ("seconds", "peak_mib", "cpu_seconds")
    }


def bench_size(
    label: str, rows: int, repeats: int, setup: Setup, keep: Path | None
) -> dict[str, Any]:
    """Simulate one size, run both sides ``repeats`` times (alternating), summarise."""
    days = math.ceil(rows / ROWS_PER_DAY)
    print(
        f"{label}: {days} days x {STATIONS} stations x 24 h = {days * ROWS_PER_DAY:,}"
    )
    with tempfile.TemporaryDirectory(prefix=f"bench-deploy-{label}-") as tmp:
        workdir = keep / label if keep else Path(tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        source = simulate_source(workdir, days, setup)
        runs: dict[str, list[dict[str, Any]]] = {"bare": [], "job": []}
        sides = {"bare": run_bare, "job": run_job}
        for index in range(repeats):
            order = ("bare", "job") if index % 2 == 0 else ("job", "bare")
            for side in order:
                result = sides[side](workdir, source, setup, str(index))
                runs[side].append(result)
                print(
                    f"  run {index + 1}/{repeats} {side:<4} {result['seconds']:7.1f} s"
                    f"  {result['peak_mib']:6.0f} MiB  cpu {result['cpu_seconds']:6.1f} s"
                    f"  rmse {result['metrics']['rmse']:.4f}"
                    f"  (load {result['load_before']:.1f})"
                )
    bare, job = summarise(runs["bare"]), summarise(runs["job"])
    time_ratio = job["seconds"] / bare["seconds"]
    memory_ratio = job["peak_mib"] / bare["peak_mib"]
    target = time_target(label, rows)
    same = all(
        math.isclose(a["metrics"]["rmse"], b["metrics"]["rmse"], rel_tol=1e-9)
        for a in runs["bare"]
        for b in runs["job"]
    )
    return {
        "size": label,
        "rows": days * ROWS_PER_DAY,
        "days": days,
        "stations": STATIONS,
        "repeats": repeats,
        "bare": bare | {"runs": runs["bare"]},
        "job": job | {"runs": runs["job"]},
        "time_ratio": time_ratio,
        "time_target": target,
        "time_met": time_ratio <= target,
        "memory_ratio": memory_ratio,
        "memory_target": MEMORY_TARGET,
        "memory_met": memory_ratio <= MEMORY_TARGET,
        "cpu_ratio": job["cpu_seconds"] / bare["cpu_seconds"],
        "extra_seconds": job["seconds"] - bare["seconds"],
        "same_rmse": same,
    }


def print_table(results: list[dict[str, Any]], floor: dict[str, Any]) -> None:
    """The side-by-side table and one verdict line per size."""
    header = (
        f"{'size':>6} | {'bare s':>7} | {'job s':>7} | {'ratio':>5} | {'target':>6} | "
        f"{'bare peak MiB':>13} | {'job peak MiB':>12} | {'mem ratio':>9} | {'target':>6}"
    )
    print()
    print(header)
    print("-" * len(header))
    for r in results:
        print(
            f"{r['size']:>6} | {r['bare']['seconds']:7.1f} | {r['job']['seconds']:7.1f}"
            f" | {r['time_ratio']:5.2f} | {'<=' + format(r['time_target'], '.2f'):>6}"
            f" | {r['bare']['peak_mib']:13.0f} | {r['job']['peak_mib']:12.0f}"
            f" | {r['memory_ratio']:9.2f} | {'<=' + format(r['memory_target'], '.2f'):>6}"
        )
    print()
    for r in results:
        verdict = [
            f"wall time {'met' if r['time_met'] else 'NOT met'} "
            f"(x{r['time_ratio']:.2f}, +{r['extra_seconds']:.1f} s)",
            f"peak memory {'met' if r['memory_met'] else 'NOT met'} "
            f"(x{r['memory_ratio']:.2f})",
            f"CPU time x{r['cpu_ratio']:.2f} "
            f"({r['bare']['cpu_seconds']:.1f} vs {r['job']['cpu_seconds']:.1f} s)",
            "same test RMSE" if r["same_rmse"] else "test RMSE DIFFERS",
        ]
        print(f"{r['size']} ({r['rows']:,} rows): " + "; ".join(verdict))
    print(
        f"import floors: `kedro --help` in the project {floor['kedro_help']['seconds']:.1f}"
        f" s / {floor['kedro_help']['peak_mib']:.0f} MiB; bare script imports "
        f"{floor['bare_imports']['seconds']:.1f} s / "
        f"{floor['bare_imports']['peak_mib']:.0f} MiB"
    )


def code_version(ref: str | None) -> dict[str, Any]:
    """The commit measured, and whether the working tree's src/ or conf/ differ."""

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", "-C", str(ROOT), *args], capture_output=True, text=True, check=False
        ).stdout.strip()

    commit = git("rev-parse", ref or "HEAD") or "unknown"
    dirty = None if ref else bool(git("status", "--porcelain", "--", "src", "conf"))
    where = f"{ref} = {commit[:10]}" if ref else f"working tree on {commit[:10]}"
    if dirty:
        where += " (src/ or conf/ modified)"
    return {"ref": ref, "commit": commit, "dirty": dirty, "description": where}


def main() -> None:
    """Parse flags, run every size, print the table and write the JSON results."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--sizes",
        type=lambda text: [parse_size(part) for part in text.split(",")],
        default=[(label, rows) for label, rows in SIZES.items()],
        help="comma-separated row counts, e.g. 100k,1M (default)",
    )
    parser.add_argument("--repeats", type=int, default=2, help="runs per side")
    parser.add_argument(
        "--omp-threads",
        default=os.environ.get("OMP_NUM_THREADS", "1"),
        help="OMP_NUM_THREADS for both sides (default: inherited, else 1; "
        "'unset' leaves it unset)",
    )
    parser.add_argument(
        "--keep", type=Path, help="keep the work folders and logs under this folder"
    )
    parser.add_argument(
        "--ref",
        help="measure this git revision (e.g. HEAD) instead of the working tree",
    )
    parser.add_argument("--output", type=Path, default=RESULTS, help="JSON results")
    args = parser.parse_args()
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")
    omp = None if args.omp_threads == "unset" else str(args.omp_threads)
    setup = Setup(env=child_env(omp), ref=args.ref)
    code = code_version(args.ref)
    print(
        f"deployment job vs bare script: code {code['description']}, "
        f"repeats={args.repeats}, "
        f"OMP_NUM_THREADS={omp or 'unset'}, {os.cpu_count()} CPUs, "
        f"load {os.getloadavg()[0]:.1f}, GNU time: {GNU_TIME.exists()}"
    )
    with tempfile.TemporaryDirectory(prefix="bench-deploy-floor-") as tmp:
        floor = floors(Path(tmp), setup, args.repeats)
    results = [
        bench_size(label, rows, args.repeats, setup, args.keep)
        for label, rows in args.sizes
    ]
    print_table(results, floor)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(
        json.dumps(
            {
                "benchmark": "deployment job (kedro run --env acceptance) vs bare script",
                "when": datetime.datetime.now(datetime.UTC).isoformat(
                    timespec="seconds"
                ),
                "machine": {
                    "cpus": os.cpu_count(),
                    "platform": platform.platform(),
                    "omp_num_threads": omp,
                    "peak_memory_from": "/usr/bin/time -v"
                    if GNU_TIME.exists()
                    else "os.wait4",
                },
                "code": code,
                "versions": library_versions(),
                "floors": floor,
                "sizes": results,
            },
            indent=2,
        )
        + "\n"
    )
    print(f"results written to {args.output}")


if __name__ == "__main__":
    main()
