"""Drift detection rates of the monitoring defaults over 20 simulated worlds.

Per seed, its own world (``modelops.simulator``, seed = world seed, start date spread
over the year so every season and the fixed holidays come up): ``--days`` days of
``--stations`` stations, split, trained and evaluated with the project's own nodes and
conf (data_processing ``clean_source``/``build_model_input``, training
``split_model_input``/``train_model`` with conf/base/parameters_training.yml's model,
evaluation ``predict_test_set``), profiled by the evaluation pipeline's
``profile_reference``. Then for each drift kind (none, covariate, new_category,
concept) the next 7 days are simulated with that drift, scored by the trained model,
and monitored with the same code the monitoring pipeline runs
(``modelops.drift.WindowAccumulator`` fed day by day, labels from the same partitions,
``modelops.drift.evaluate_window``) and conf/base/parameters_monitoring.yml.

Counted:
- false alarm (``none``): retraining recommended, or any column flagged;
- covariate detected: temperature_c or humidity_pct flagged and retraining recommended;
- new_category detected: station_id flagged and retraining recommended;
- concept detected: performance degraded and retraining recommended.

Writes benchmarks/results/drift_detection_rates.json. Usage:
``OMP_NUM_THREADS=1 python benchmarks/drift_detection_rates.py [--seeds 20]``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from kedro.config import OmegaConfigLoader  # noqa: E402

from modelops import drift  # noqa: E402
from modelops.pipelines.data_processing.nodes import (  # noqa: E402
    build_model_input,
    clean_source,
)
from modelops.pipelines.evaluation.nodes import predict_test_set  # noqa: E402
from modelops.pipelines.monitoring.nodes import profile_reference  # noqa: E402
from modelops.pipelines.training.nodes import (  # noqa: E402
    split_model_input,
    train_model,
)
from modelops.settings import CONFIG_LOADER_ARGS  # noqa: E402
from modelops.simulator import DRIFT_KINDS, simulate_days  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "drift_detection_rates.json"
WINDOW_DAYS = 7
FIRST_START = dt.date(2024, 1, 1)
START_STEP_DAYS = 18  # seed k starts k * 18 days later: 20 seeds span the year


def base_parameters() -> dict[str, Any]:
    """The base parameters as a run receives them."""
    loader = OmegaConfigLoader(
        conf_source=str(ROOT / "conf"), env="base", **CONFIG_LOADER_ARGS
    )
    return dict(loader["parameters"])


def simulate(start: dt.date, days: int, seed: int, stations: int, kind: str):
    """The simulated source days as one frame."""
    frames = simulate_days(start, days, seed=seed, n_stations=stations, drift=kind)
    return pd.concat([frame for _, frame in frames], ignore_index=True)


def world(seed: int, args: argparse.Namespace, params: dict[str, Any]) -> dict:
    """Train on one world and monitor each drift kind's window; the verdicts."""
    features, monitoring = params["features"], params["monitoring"]
    start = FIRST_START + dt.timedelta(days=seed * START_STEP_DAYS)
    source = simulate(start, args.days, seed, args.stations, "none")
    table = build_model_input(clean_source(source, features), features)
    train, test, manifest = split_model_input(table, params["split"], features)
    model = train_model(train, features, params["model"])
    predictions = predict_test_set(model, test, features)
    profile = profile_reference(
        train, test, predictions, manifest, features, monitoring
    )
    window_start = start + dt.timedelta(days=args.days)
    outcome: dict[str, Any] = {"seed": seed, "start": str(start)}
    for kind in DRIFT_KINDS:
        acc = drift.WindowAccumulator(
            profile, monitoring["prediction_column"], features["key_columns"]
        )
        days = simulate_days(
            window_start, WINDOW_DAYS, seed=seed, n_stations=args.stations, drift=kind
        )
        for _, frame in days:  # one day = one chunk, as a daily batch log file
            scored = frame.assign(
                **{monitoring["prediction_column"]: model.predict(frame)}
            )
            codes, uniques = drift.day_labels(scored[features["time_column"]])
            acc.add(scored, codes, uniques)
            acc.add_errors(
                codes,
                uniques,
                scored[features["target"]].to_numpy(dtype=np.float64),
                scored[monitoring["prediction_column"]].to_numpy(),
            )
        blocks = drift.evaluate_window(profile, acc, monitoring)
        verdict = blocks["verdict"]
        flagged = list(verdict["drifted_columns"])
        outcome[kind] = {
            "flagged": flagged,
            "prediction_drift": verdict["prediction_drift"],
            "performance_degraded": verdict["performance_degraded"],
            "degradation": blocks["performance"]["degradation"],
            "median_daily_degradation": blocks["performance"][
                "median_daily_degradation"
            ],
            "retrain_recommended": verdict["retrain_recommended"],
            "wasserstein_norm": {
                entry["column"]: entry["statistics"].get("wasserstein_norm")
                for entry in [*blocks["features"], blocks["prediction"]]
                if entry["kind"] == drift.NUMERIC
            },
            "jensen_shannon": {
                entry["column"]: entry["statistics"]["jensen_shannon"]
                for entry in blocks["features"]
                if entry["kind"] == drift.CATEGORICAL
            },
        }
    return outcome


def detected(kind: str, outcome: dict[str, Any]) -> bool:
    """Whether the verdict of a drift kind's window is what that drift should give."""
    flagged = set(outcome["flagged"])
    if kind == "none":
        return bool(flagged) or outcome["retrain_recommended"]  # a false alarm
    expected = {
        "covariate": bool(flagged & {"temperature_c", "humidity_pct"}),
        "new_category": "station_id" in flagged,
        "concept": outcome["performance_degraded"],
    }[kind]
    return expected and outcome["retrain_recommended"]


def main() -> None:
    """Run the worlds, print and save the rates."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument(
        "--first-seed", type=int, default=0, help="held-out check: e.g. 20"
    )
    parser.add_argument("--stations", type=int, default=10)
    parser.add_argument("--days", type=int, default=60)
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args()
    params = base_parameters()
    began = time.perf_counter()
    worlds = []
    for seed in range(args.first_seed, args.first_seed + args.seeds):
        outcome = world(seed, args, params)
        worlds.append(outcome)
        marks = {kind: detected(kind, outcome[kind]) for kind in DRIFT_KINDS}
        print(
            f"seed {seed:2d} start {outcome['start']}: "
            + ", ".join(f"{kind}={'Y' if hit else '-'}" for kind, hit in marks.items())
            + f"  none flagged={outcome['none']['flagged']}"
            f" deg={outcome['none']['degradation']:.3f}"
            f" concept deg={outcome['concept']['degradation']:.3f}",
            flush=True,
        )
    rates = {
        kind: sum(detected(kind, outcome[kind]) for outcome in worlds) / len(worlds)
        for kind in DRIFT_KINDS
    }
    summary = {
        "seeds": args.seeds,
        "first_seed": args.first_seed,
        "stations": args.stations,
        "train_test_days": args.days,
        "window_days": WINDOW_DAYS,
        "false_alarm_rate_none": rates["none"],
        "detection_rate": {kind: rates[kind] for kind in DRIFT_KINDS if kind != "none"},
        "thresholds": {
            key: params["monitoring"][key]
            for key in ("reference", "report_only", "numeric", "categorical")
        }
        | {
            key: params["monitoring"][key]
            for key in ("prediction", "performance", "verdict")
        },
        "seconds": round(time.perf_counter() - began, 1),
        "worlds": worlds,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(summary, indent=2, default=str) + "\n")
    print(
        f"\nno-drift false alarms: {rates['none']:.0%} of {args.seeds} worlds; "
        + ", ".join(
            f"{kind} detected {rates[kind]:.0%}"
            for kind in DRIFT_KINDS
            if kind != "none"
        )
        + f" ({summary['seconds']} s) -> {args.output}"
    )


if __name__ == "__main__":
    main()
