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
from modelops.model_artifacts import (
    ARTIFACT_SHA_PREFIX,
    FORM_TAG,
    ONNX_FILE,
    ONNX_TAG_PREFIX,
    SKLEARN_FILE,
)
from modelops.modeling import input_columns, model_inputs
from modelops.prediction_log import LOG_COLUMNS, log_frame
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
def simulated(tmp_path_factory):
    """A project copy with 24 simulated days of 6 stations, nothing run yet."""
    project = copy_project(tmp_path_factory.mktemp("serving"))
    run_kedro(
        project, "simulate", "--start", "2025-03-01", "--days", "24", "--stations", "6"
    )
    return project


@pytest.fixture(scope="module")
def served(simulated, tmp_path_factory):
    """A copy that tried serving before any model, registered one, then served twice.

    Runs, in order: serving with no `dev` model (must refuse), the deployment job
    (registers version 1 as `dev`, with its ONNX form), serving the default window
    (the newest day), then serving a three-day window one partition per chunk.
    """
    project = tmp_path_factory.mktemp("onnx") / "project"
    shutil.copytree(simulated, project)
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
    assert dev.tags[FORM_TAG] == "onnx"  # registration kept the verified ONNX form
    versions = _versions(project / OUTPUT / "batch_predictions")
    folder = project / OUTPUT / "batch_predictions" / versions[0]
    assert [p.name for p in folder.iterdir()] == [f"{NEWEST_DAY}.parquet"]
    predictions = pd.read_parquet(folder / f"{NEWEST_DAY}.parquet")
    assert len(predictions) > 0
    assert (predictions["model_name"] == MODEL_NAME).all()
    assert (predictions["model_version"] == int(dev.version)).all()
    assert (predictions["run_id"] == dev.run_id).all()
    assert (predictions["request_id"] == f"batch-{versions[0]}").all()
    assert predictions["scored_at"].nunique() == 1
    assert (predictions["timestamp"].dt.strftime("%Y-%m-%d") == NEWEST_DAY).all()

    # The same rows scored by hand with the registry's dev model (its sklearn form):
    # equal within the ONNX tolerance recorded on the version.
    source = pd.read_parquet(
        project / "data/source/bike_rentals" / f"{NEWEST_DAY}.parquet"
    )
    rows = source.merge(predictions[KEYS], on=KEYS, how="inner")
    assert len(rows) == len(predictions)
    merged = predictions.merge(
        rows[KEYS].assign(expected=_sklearn_predict(project, "dev", rows)), on=KEYS
    )
    tolerance = float(dev.tags[f"{ONNX_TAG_PREFIX}tolerance"])
    np.testing.assert_allclose(
        merged["prediction"], merged["expected"], rtol=tolerance, atol=tolerance
    )


@pytest.mark.usefixtures("served")
def test_the_summary_says_onnx_scored_and_names_the_artifact(registry):
    client, dev = registry
    run = _serving_run(client, partitions=1)
    tags = run.data.tags
    assert tags["modelops.serving.form"] == "onnx"
    assert (
        tags["modelops.serving.artifact_sha256"]
        == dev.tags[f"{ARTIFACT_SHA_PREFIX}{ONNX_FILE}"]
    )
    assert tags["modelops.serving.request_id"].startswith("batch-")


def test_prediction_log_has_the_rest_log_schema(served, registry):
    """Same columns and dtypes as modelops.prediction_log gives a REST request."""
    project, _ = served
    _, dev = registry
    log_root = project / OUTPUT / "prediction_log"
    version = _versions(log_root)[0]
    log = pd.read_parquet(log_root / version / f"{NEWEST_DAY}.parquet")
    features = _features(project)
    inputs = list(dict.fromkeys([*features["key_columns"], *input_columns(features)]))
    assert list(log.columns) == [*inputs, "rentals", "prediction", *LOG_COLUMNS]
    rest = log_frame(
        log[inputs],
        log["prediction"].to_numpy(),
        "prediction",
        {"model_name": MODEL_NAME, "model_version": dev.version, "run_id": dev.run_id},
        "a-request-id",
        log["scored_at"].iloc[0],
    )
    pd.testing.assert_series_equal(
        log.drop(columns="rentals").dtypes, rest.dtypes, check_names=False
    )
    assert (log["request_id"] == f"batch-{version}").all()
    assert (log["source_partition"] == NEWEST_DAY).all()
    assert (log["model_version"] == int(dev.version)).all()


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
    run = _serving_run(client, partitions=3)
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


@pytest.fixture(scope="module")
def sklearn_served(simulated, tmp_path_factory):
    """Another copy whose version is registered without ONNX, then served."""
    project = tmp_path_factory.mktemp("sklearn") / "project"
    shutil.copytree(simulated, project)
    run_kedro(project, "run", "--params", "model_artifacts.onnx=false")
    run_kedro(project, "run", "--pipelines", "serving")
    return project


def test_a_version_served_in_its_sklearn_form_also_scores(sklearn_served):
    project = sklearn_served
    client = MlflowClient(tracking_uri=_uri(project), registry_uri=_uri(project))
    dev = client.get_model_version_by_alias(MODEL_NAME, "dev")
    assert dev.tags[FORM_TAG] == "sklearn"
    tags = _serving_run(client, partitions=1).data.tags
    assert tags["modelops.serving.form"] == "sklearn"
    assert (
        tags["modelops.serving.artifact_sha256"]
        == dev.tags[f"{ARTIFACT_SHA_PREFIX}{SKLEARN_FILE}"]
    )
    folder = project / OUTPUT / "batch_predictions"
    predictions = pd.read_parquet(
        folder / _versions(folder)[0] / f"{NEWEST_DAY}.parquet"
    )
    source = pd.read_parquet(
        project / "data/source/bike_rentals" / f"{NEWEST_DAY}.parquet"
    )
    rows = source.merge(predictions[KEYS], on=KEYS, how="inner")
    merged = predictions.merge(
        rows[KEYS].assign(expected=_sklearn_predict(project, "dev", rows)), on=KEYS
    )
    np.testing.assert_array_equal(merged["prediction"], merged["expected"])


def _sklearn_predict(project, alias: str, rows: pd.DataFrame) -> np.ndarray:
    """What MLflow's own sklearn loader predicts for ``rows`` with the alias's model."""
    mlflow.set_tracking_uri(_uri(project))
    mlflow.set_registry_uri(_uri(project))
    model = mlflow.sklearn.load_model(f"models:/{MODEL_NAME}@{alias}")
    return model.predict(model_inputs(rows, _features(project)))


def _serving_run(client: MlflowClient, partitions: int):
    """The serving run of the dev experiment that scored ``partitions`` partitions."""
    (experiment,) = [e for e in client.search_experiments() if e.name == "modelops-dev"]
    (run,) = client.search_runs(
        [experiment.experiment_id],
        filter_string=f"tags.`modelops.serving.partitions` = '{partitions}'",
    )
    return run


def _features(project) -> dict:
    path = project / "conf" / "base" / "use_case.yml"
    return yaml.safe_load(path.read_text())["use_case"]["features"]
