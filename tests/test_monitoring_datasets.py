"""Tests of the monitoring catalog datasets against a real MLflow SQLite store."""

from __future__ import annotations

import json

import mlflow
import pandas as pd
import pytest
from kedro.io import DatasetError
from mlflow.tracking import MlflowClient

from modelops.drift import MonitoringError
from modelops.monitoring_datasets import (
    PROFILE_ARTIFACT,
    MonitoringHistoryDataset,
    PredictionLogsDataset,
    ReferenceProfileDataset,
)
from tests.conftest import new_mlflow_store

NAME = "monitored-model"


@pytest.fixture
def registry(tmp_path, monkeypatch):
    """Version 1 carries a profile of its train set; version 2 has none."""
    monkeypatch.chdir(tmp_path)
    uri = new_mlflow_store(tmp_path)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    mlflow.set_experiment("monitoring-test")
    client = MlflowClient(uri, registry_uri=uri)
    client.create_registered_model(NAME)
    with mlflow.start_run() as run:
        mlflow.log_dict({"train_sha256": "abc", "numeric": {}}, PROFILE_ARTIFACT)
    client.create_model_version(
        NAME,
        source=f"runs:/{run.info.run_id}/model",
        run_id=run.info.run_id,
        tags={"modelops.train_sha256": "abc", "modelops.serving_form": "onnx"},
    )
    with mlflow.start_run() as bare:
        mlflow.log_param("alpha", 1)
    client.create_model_version(
        NAME,
        source=f"runs:/{bare.info.run_id}/model",
        run_id=bare.info.run_id,
        tags={"modelops.train_sha256": "def"},
    )
    return client


def test_loads_the_profile_of_the_alias_version(registry):
    registry.set_registered_model_alias(NAME, "champion", "1")
    loaded = ReferenceProfileDataset(NAME, "champion").load()
    assert loaded["profile"]["train_sha256"] == "abc"
    assert loaded["model"]["version"] == "1"
    assert loaded["model"]["alias"] == "champion"
    assert loaded["model"]["serving_form"] == "onnx"


def test_a_version_without_a_profile_is_refused_with_the_fix(registry):
    registry.set_registered_model_alias(NAME, "champion", "2")
    with pytest.raises(DatasetError) as raised:
        ReferenceProfileDataset(NAME, "champion").load()
    error = raised.value.__cause__ or raised.value
    assert isinstance(error, MonitoringError)
    assert "'monitored-model@champion' (version 2, run" in str(error)
    assert f"no reference profile '{PROFILE_ARTIFACT}'" in str(error)
    assert "Hint: re-run the deployment job" in str(error)


def test_a_profile_of_another_train_set_is_refused(registry):
    registry.set_model_version_tag(NAME, "1", "modelops.train_sha256", "zzz")
    registry.set_registered_model_alias(NAME, "champion", "1")
    with pytest.raises(DatasetError, match=r"built from train set 'abc'.*'zzz'"):
        ReferenceProfileDataset(NAME, "champion").load()


def test_no_alias_is_refused(registry):
    with pytest.raises(DatasetError, match="has alias 'champion', the alias this env"):
        ReferenceProfileDataset(NAME, "champion").load()


def test_prediction_logs_are_lazy_loaders_of_both_layouts(tmp_path):
    batch, rest = tmp_path / "batch", tmp_path / "rest"
    (batch / "2025-05-02T03.00.00.000Z").mkdir(parents=True)
    (batch / ".2025-05-03T03.00.00.000Z.partial").mkdir()  # staging: never read
    (rest / "2025-05-02").mkdir(parents=True)
    frame = pd.DataFrame({"a": [1, 2], "b": ["x", "y"]})
    frame.to_parquet(batch / "2025-05-02T03.00.00.000Z" / "2025-05-01.parquet")
    frame.to_parquet(rest / "2025-05-02" / "120000-1-000001.parquet")
    (rest / "2025-05-02" / ".120001-1-000002.parquet.tmp").write_text("partial")
    logs = PredictionLogsDataset(str(batch), str(rest)).load()
    assert list(logs["batch"]) == ["2025-05-02T03.00.00.000Z"]
    assert list(logs["batch"]["2025-05-02T03.00.00.000Z"]) == ["2025-05-01"]
    assert list(logs["rest"]["2025-05-02"]) == ["120000-1-000001"]
    loader = logs["rest"]["2025-05-02"]["120000-1-000001"]
    assert list(loader(columns=["b", "missing"]).columns) == ["b"]
    pd.testing.assert_frame_equal(loader(), frame)


def test_history_is_the_newest_results_oldest_first(tmp_path):
    root = tmp_path / "monitoring_result.json"
    for index, version in enumerate(["2025-05-01T0", "2025-05-02T0", "2025-05-03T0"]):
        (root / version).mkdir(parents=True)
        (root / version / "monitoring_result.json").write_text(json.dumps({"i": index}))
    assert MonitoringHistoryDataset(str(root), max_runs=2).load() == [
        {"i": 1},
        {"i": 2},
    ]
    assert MonitoringHistoryDataset(str(tmp_path / "none.json")).load() == []
