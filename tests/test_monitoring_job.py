"""End to end: deploy, score a simulated week per drift kind, monitor it in prod."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from tests.conftest import copy_project, run_kedro

START = "2025-03-01"
DAYS = 60
WINDOW_START = "2025-04-30"  # the day after the simulated data (and May 1: a holiday)
STATIONS = "20"


def latest_result(project: Path) -> dict:
    root = project / "data" / "prod" / "08_reporting" / "monitoring_result.json"
    newest = sorted(p for p in root.iterdir() if p.is_dir())[-1]
    return json.loads((newest / "monitoring_result.json").read_text())


def monitor(project: Path, drift: str) -> dict:
    run_kedro(
        project,
        "simulate",
        "--start",
        WINDOW_START,
        "--days",
        "7",
        "--stations",
        STATIONS,
        "--drift",
        drift,
        "--overwrite",
    )
    serving = ("--pipelines", "serving", "--params", "serving.window.last_days=7")
    run_kedro(project, "run", "--env", "prod", *serving)
    window = ("--params", "monitoring.window.last_days=7")
    run_kedro(project, "run", "--env", "prod", "--pipelines", "monitoring", *window)
    return latest_result(project)


@pytest.mark.slow
def test_monitoring_flags_each_drift_kind_and_nothing_without_drift(tmp_path):
    project = copy_project(tmp_path / "project")
    run_kedro(
        project,
        "simulate",
        "--start",
        START,
        "--days",
        str(DAYS),
        "--stations",
        STATIONS,
    )
    for env in ("dev", "acceptance", "prod"):
        run_kedro(project, "run", "--env", env)

    # A window nobody scored yet: refused, naming the window and the fix. Every env
    # gets that far: its access policy allows monitoring in its own zone.
    for env in ("dev", "acceptance", "prod"):
        refused = run_kedro(
            project, "run", "--env", env, "--pipelines", "monitoring", check=False
        )
        assert refused.returncode != 0
        assert "AccessPolicyError" not in refused.stderr
        assert "No prediction-log day in the monitoring window" in refused.stderr
        assert "kedro run --env <env> --pipelines serving" in refused.stderr

    results = {kind: monitor(project, kind) for kind in ("none", "covariate")}
    results |= {kind: monitor(project, kind) for kind in ("new_category", "concept")}

    none = results["none"]
    assert none["model"]["alias"] == "champion"
    assert none["window"]["days"][0] == WINDOW_START
    assert len(none["window"]["days"]) == 7
    assert none["window"]["ignored_rows"]["rescored"] == 0
    assert none["verdict"]["drifted_columns"] == []
    assert none["verdict"]["retrain_recommended"] is False
    assert none["performance"]["available"] is True

    covariate = results["covariate"]["verdict"]
    assert {"temperature_c", "humidity_pct"} & set(covariate["drifted_columns"])
    assert covariate["retrain_recommended"] is True
    # Each kind re-scored the same 7 partitions: only the newest scoring counts.
    assert results["covariate"]["window"]["ignored_rows"]["rescored"] > 0
    assert results["covariate"]["window"]["rows"] == none["window"]["rows"]

    new_category = results["new_category"]["verdict"]
    assert "station_id" in new_category["drifted_columns"]
    assert new_category["new_categories"] is True
    assert new_category["retrain_recommended"] is True

    concept = results["concept"]
    assert concept["verdict"]["drifted_columns"] == []
    assert concept["performance"]["degraded"] is True
    assert concept["verdict"]["retrain_recommended"] is True
    assert "RMSE" in concept["verdict"]["reason"]

    # One MLflow run per monitoring job, with its metrics and the verdict tags.
    client = MlflowClient(tracking_uri=f"sqlite:///{project / 'mlruns' / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("modelops-prod")
    runs = client.search_runs(
        [experiment.experiment_id],
        filter_string="tags.`modelops.pipeline` = 'monitoring'",
    )
    finished = [run for run in runs if run.info.status == "FINISHED"]
    assert len(finished) == 4
    newest = max(finished, key=lambda run: run.info.start_time)
    assert newest.data.metrics["monitoring.performance.degradation"] > 0.5
    assert newest.data.tags["modelops.monitoring.retrain_recommended"] == "True"
    report = project / "data" / "prod" / "08_reporting" / "monitoring_report.html"
    assert len([p for p in report.iterdir() if p.is_dir()]) == 4
