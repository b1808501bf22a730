"""End-to-end: batch inference (`kedro run --pipelines serving`) with the dev alias."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
import yaml
from kedro.io import Version
from mlflow.tracking import MlflowClient

from modelops.batch_datasets import VersionedPartitionedDataset
from modelops.modeling import model_inputs
from tests.conftest import copy_project, run_kedro

pytestmark = pytest.mark.slow

MODEL_NAME = "modelops-bike-demand"
OUTPUT = "data/dev/07_model_output"
NEWEST_DAY = "2025-03-24"
KEYS = ["timestamp", "station_id"]


def _uri(project) -> str:
    return f"sqlite:///{project / 'mlruns' / 'mlflow.db'}"


def _versions(folder) -> list[str]:
    return sorted(entry.name for entry in folder.iterdir()) if folder.is_dir() else []


def _digests(folder) -> dict[str, str]:
    return {
        str(path.relative_to(folder)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(folder.rglob("*.parquet"))
    }


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """A copy that tried serving before any model, registered one, then served twice.

    Runs, in order: serving with no `dev` model (must refuse), the deployment job
    (registers version 1 as `dev`), serving the default window (the newest day), then
    serving a three-day window one partition per chunk.
    """
    project = copy_project(tmp_path_factory.mktemp("serving"))
    run_kedro(
        project, "simulate", "--start", "2025-03-01", "--days", "24", "--stations", "6"
    )
    runs: dict = {"no_model": run_kedro(project, "run", "-p", "serving", check=False)}
    run_kedro(project, "run")
    predictions = project / OUTPUT / "batch_predictions"
    runs["first"] = run_kedro(project, "run", "--pipelines", "serving")
    first_version = _versions(predictions)[-1]
    runs["first_digests"] = _digests(predictions / first_version)
    runs["window"] = run_kedro(
        project,
        "run",
        "--pipelines",
        "serving",
        "--params",
        "serving.window.last_days=3,serving.chunk_rows=1",
    )
    return project, runs


@pytest.fixture(scope="module")
def registry(served):
    project, _ = served
    client = MlflowClient(tracking_uri=_uri(project), registry_uri=_uri(project))
    return client, client.get_model_version_by_alias(MODEL_NAME, "dev")


def test_serving_refuses_without_a_model_for_the_alias(served):
    _, runs = served
    result = runs["no_model"]
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert f"No version of registered model '{MODEL_NAME}' has alias 'dev'" in output
    assert "Hint:" in output


def test_serving_scores_the_newest_day_with_the_dev_model(served, registry):
    project, _ = served
    _, dev = registry
    versions = _versions(project / OUTPUT / "batch_predictions")
    folder = project / OUTPUT / "batch_predictions" / versions[0]
    assert [p.name for p in folder.iterdir()] == [f"{NEWEST_DAY}.parquet"]
    predictions = pd.read_parquet(folder / f"{NEWEST_DAY}.parquet")
    assert len(predictions) > 0
    assert (predictions["model_name"] == MODEL_NAME).all()
    assert (predictions["model_version"] == int(dev.version)).all()
    assert (predictions["run_id"] == dev.run_id).all()
    assert predictions["scored_at"].nunique() == 1
    assert (predictions["timestamp"].dt.strftime("%Y-%m-%d") == NEWEST_DAY).all()

    # The same rows scored by hand with the registry's dev model: identical values.
    source = pd.read_parquet(
        project / "data/source/bike_rentals" / f"{NEWEST_DAY}.parquet"
    )
    rows = source.merge(predictions[KEYS], on=KEYS, how="inner")
    assert len(rows) == len(predictions)
    mlflow.set_tracking_uri(_uri(project))
    mlflow.set_registry_uri(_uri(project))
    model = mlflow.sklearn.load_model(f"models:/{MODEL_NAME}@dev")
    expected = model.predict(model_inputs(rows, _features(project)))
    merged = predictions.merge(rows[KEYS].assign(expected=expected), on=KEYS)
    np.testing.assert_array_equal(merged["prediction"], merged["expected"])


def test_prediction_log_keeps_inputs_label_and_identity(served, registry):
    project, _ = served
    _, dev = registry
    log_root = project / OUTPUT / "prediction_log"
    log = pd.read_parquet(log_root / _versions(log_root)[0] / f"{NEWEST_DAY}.parquet")
    for column in [
        *KEYS,
        "temperature_c",
        "weather",
        "rentals",
        "prediction",
        "model_name",
        "model_version",
        "run_id",
        "scored_at",
        "source_partition",
    ]:
        assert column in log.columns, column
    assert (log["model_version"] == int(dev.version)).all()
    assert (log["source_partition"] == NEWEST_DAY).all()


def test_every_run_writes_a_new_version_and_overwrites_nothing(served):
    project, runs = served
    for name in ("batch_predictions", "prediction_log"):
        assert len(_versions(project / OUTPUT / name)) == 2, name
    predictions = project / OUTPUT / "batch_predictions"
    first, second = _versions(predictions)
    assert _digests(predictions / first) == runs["first_digests"]
    assert f"{NEWEST_DAY}.parquet" in _digests(predictions / second)
    assert f"batch_predictions: {predictions / second}" in runs["window"].stdout


def test_a_window_is_scored_partition_by_partition(served, registry):
    project, _ = served
    client, dev = registry
    predictions = project / OUTPUT / "batch_predictions"
    last = predictions / _versions(predictions)[-1]
    assert sorted(p.name for p in last.iterdir()) == [
        "2025-03-22.parquet",
        "2025-03-23.parquet",
        "2025-03-24.parquet",
    ]
    (experiment,) = [e for e in client.search_experiments() if e.name == "modelops-dev"]
    (run,) = client.search_runs(
        [experiment.experiment_id],
        filter_string="tags.`modelops.serving.partitions` = '3'",
    )
    tags = run.data.tags
    assert tags["modelops.serving.model_version"] == str(dev.version)
    assert tags["modelops.serving.complete"] == "True"
    assert tags["modelops.saved.batch_predictions"] == str(last)
    rows = sum(len(pd.read_parquet(path)) for path in last.iterdir())
    assert tags["modelops.serving.rows_scored"] == str(rows)
    path = client.download_artifacts(run.info.run_id, "serving/batch_summary.json")
    summary = json.loads(Path(path).read_text())
    assert [chunk["partitions"] for chunk in summary["chunks"]] == [
        ["2025-03-22"],
        ["2025-03-23"],
        ["2025-03-24"],
    ]
    assert summary["output_version"] == last.name


def _entries(folder) -> list[str]:
    """Everything in an output folder, hidden staging folders included."""
    return sorted(entry.name for entry in folder.iterdir())


def test_a_failed_scoring_run_leaves_no_partial_version(served, tmp_path):
    """Chunks written before a bad partition vanish; the re-run writes all of them."""
    project = tmp_path / "copy"  # its own copy: the other tests count versions
    shutil.copytree(served[0], project)
    outputs = {
        name: project / OUTPUT / name
        for name in ("batch_predictions", "prediction_log")
    }
    before = {name: _entries(folder) for name, folder in outputs.items()}
    simulate = ["simulate", "--start", "2025-03-25", "--days", "1", "--stations", "6"]
    run_kedro(project, *simulate, "--corrupt", "nulls")
    window = "serving.window.last_days=3,serving.chunk_rows=1"  # 03-23, 03-24, 03-25

    failed = run_kedro(project, "run", "-p", "serving", "--params", window, check=False)
    assert failed.returncode != 0
    assert "Data contract violated in source partition '2025-03-25'" in failed.stderr
    assert "Scored chunk 2025-03-24" in failed.stderr  # two chunks had been written
    for name, folder in outputs.items():
        assert _entries(folder) == before[name], name  # no version, no staging
        reader = VersionedPartitionedDataset(
            path=str(folder),
            dataset="pandas.ParquetDataset",
            filename_suffix=".parquet",
            version=Version(None, "2099-01-01T00.00.00.000Z"),
        )
        assert sorted(reader.load()) == ["2025-03-22", "2025-03-23", NEWEST_DAY]

    run_kedro(project, *simulate, "--overwrite")  # the feed delivers the day again
    run_kedro(project, "run", "-p", "serving", "--params", window)
    for name, folder in outputs.items():
        (new,) = set(_entries(folder)) - set(before[name])
        assert not new.startswith("."), name
        assert _entries(folder / new) == [
            "2025-03-23.parquet",
            "2025-03-24.parquet",
            "2025-03-25.parquet",
        ]


def _features(project) -> dict:
    path = project / "conf" / "base" / "use_case.yml"
    return yaml.safe_load(path.read_text())["use_case"]["features"]
