"""Tests of the catalog datasets against a real MLflow SQLite store in a temp dir."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlparse

import mlflow
import numpy as np
import pandas as pd
import pytest
from kedro.io import DatasetError
from mlflow.tracking import MlflowClient

from modelops.datasets import (
    ContentAddressedParquetDataset,
    IncumbentModelDataset,
    MlflowJsonDataset,
    MlflowMetricsDataset,
    RegisteredModelDataset,
    ServedModelDataset,
)
from modelops.errors import AccessPolicyError
from modelops.lineage import content_hash
from modelops.model_artifacts import (
    FORM_TAG,
    MANIFEST_SHA_TAG,
    ONNX_FILE,
    SKLEARN_FILE,
    ArtifactIntegrityError,
    ServedModel,
    build_artifacts,
    file_hashes,
    hash_tags,
    manifest_sha256,
)
from modelops.modeling import model_inputs
from modelops.pipelines.training.nodes import train_model
from tests.conftest import new_mlflow_store

MODEL = {"class": "sklearn.linear_model.Ridge", "kwargs": {}, "seed": 0}
ARTIFACTS = {"onnx": True, "tolerance": 1e-9, "verify_rows": 1000, "trusted_types": []}


class AllowAll:
    """An access policy that lets the test env set any alias and register."""

    env = "dev"

    def check_alias(self, alias: str) -> None:
        """Allow everything."""

    def check_register(self, dataset_name: str | None = None) -> None:
        """Allow registering."""


class NoRegister(AllowAll):
    """Like conf/prod/access.yml: aliases yes, registering no."""

    env = "prod"

    def check_register(self, dataset_name: str | None = None) -> None:
        raise AccessPolicyError("env 'prod' may not register (rule access.register)")


def _registered(alias: str, policy: object | None = None) -> RegisteredModelDataset:
    dataset = RegisteredModelDataset(
        "demand", alias=alias, claim_timeout_seconds=5, claim_poll_seconds=0.05
    )
    dataset.bind_access_policy(policy or AllowAll())
    return dataset


@pytest.fixture
def tracking(tmp_path, monkeypatch):
    """A fresh MLflow store for one test."""
    monkeypatch.chdir(tmp_path)
    uri = new_mlflow_store(tmp_path)
    mlflow.set_tracking_uri(uri)
    mlflow.set_experiment("test")
    mlflow.set_registry_uri(uri)
    yield MlflowClient(uri, registry_uri=uri)
    if mlflow.active_run():
        mlflow.end_run()


def test_content_addressed_dataset_stores_same_data_once(tmp_path):
    frame = pd.DataFrame({"a": [1, 2, 3], "b": ["x", "y", "z"]})
    dataset = ContentAddressedParquetDataset(str(tmp_path / "sets"))
    dataset.save(frame)
    dataset.save(frame.copy())
    files = sorted((tmp_path / "sets").glob("*.parquet"))
    assert [f.stem for f in files] == [content_hash(frame)]
    fresh = ContentAddressedParquetDataset(str(tmp_path / "sets"))
    pd.testing.assert_frame_equal(fresh.load(), frame)
    dataset.save(frame.head(2))
    assert len(list((tmp_path / "sets").glob("*.parquet"))) == 2
    assert len(ContentAddressedParquetDataset(str(tmp_path / "sets")).load()) == 2


def test_content_addressed_dataset_says_when_empty(tmp_path):
    with pytest.raises(DatasetError, match="Nothing saved yet"):
        ContentAddressedParquetDataset(str(tmp_path / "none")).load()


def test_run_datasets_need_an_active_run(tracking):
    with pytest.raises(DatasetError, match="No active MLflow run"):
        MlflowMetricsDataset().save({"rmse": 1.0})


def test_metrics_and_json_land_on_the_run(tracking):
    with mlflow.start_run() as run:
        MlflowMetricsDataset(prefix="test_").save({"rmse": 1.5})
        decision = {"approved": False, "reason": "worse", "values": [1, 2]}
        dataset = MlflowJsonDataset("deployment/decision.json", tag_prefix="gate.")
        dataset.save(decision)
        assert dataset.load() == decision
    stored = tracking.get_run(run.info.run_id)
    assert stored.data.metrics["test_rmse"] == 1.5
    assert stored.data.tags["gate.approved"] == "False"
    assert "gate.values" not in stored.data.tags  # only scalars become tags


def _bundle(model_input_table, features):
    model = train_model(model_input_table, features, MODEL)
    example = model_inputs(model_input_table.head(100), features)
    held_out = model_inputs(model_input_table.tail(200), features)
    return {
        "model": model,
        "input_example": example,
        "tags": {"train_sha256": "abc"},
        "fingerprint": "f" * 64,
        "reason": "ok",
        "artifacts": build_artifacts(model, held_out, features, ARTIFACTS),
    }


def _stored(client, version) -> Path:
    """The version's model directory in the (local) artifact store."""
    return Path(urlparse(client.get_model_version_download_uri("demand", version)).path)


def _versions(client) -> list[int]:
    return sorted(int(v.version) for v in client.search_model_versions("name='demand'"))


def test_registered_model_lands_with_tags_and_alias(
    tracking, model_input_table, data_processing_params
):
    features = data_processing_params["features"]
    bundle = _bundle(model_input_table, features)
    with mlflow.start_run() as run:
        mlflow.set_tag("modelops.git_commit", "deadbeef")
        _registered("dev").save(bundle)
    version = tracking.get_model_version_by_alias("demand", "dev")
    assert int(version.version) == 1
    assert version.tags["modelops.train_sha256"] == "abc"
    assert version.tags["modelops.git_commit"] == "deadbeef"
    assert version.tags["modelops.run_id"] == run.info.run_id
    assert version.tags["modelops.fingerprint"] == "f" * 64
    # the serving form, the ONNX agreement and the hash of every stored file
    assert version.tags[FORM_TAG] == "onnx"
    assert version.tags["modelops.onnx.passed"] == "true"
    stored = file_hashes(_stored(tracking, version.version))
    assert {SKLEARN_FILE, ONNX_FILE, "MLmodel", "code/modelops/features.py"} <= set(
        stored
    )
    assert not [
        path for path in stored if "__pycache__" in path or path.endswith(".pkl")
    ]
    assert hash_tags(stored).items() <= version.tags.items()
    assert (
        "skops=="
        in (_stored(tracking, version.version) / "requirements.txt").read_text()
    )
    run_tags = tracking.get_run(run.info.run_id).data.tags
    assert run_tags["modelops.registration_outcome"] == "registered"
    assert run_tags["modelops.registered_version"] == "1"
    incumbent = IncumbentModelDataset("demand", ["champion", "dev"]).load()
    assert incumbent["alias"] == "dev" and incumbent["version"] == 1
    raw = model_inputs(model_input_table.head(20), features)
    np.testing.assert_allclose(
        incumbent["model"].predict(raw), bundle["model"].predict(raw)
    )
    assert IncumbentModelDataset("demand", ["champion"]).load() is None
    assert IncumbentModelDataset("other", ["champion"]).load() is None


def test_failed_alias_leaves_no_version_behind(
    tracking, model_input_table, data_processing_params
):
    bundle = _bundle(model_input_table, data_processing_params["features"])
    with mlflow.start_run(), pytest.raises(Exception, match="alias"):
        # MLflow reserves aliases like v1: setting it fails after registration.
        _registered("v1").save(bundle)
    assert tracking.search_model_versions("name='demand'") == []


def test_unchanged_bundle_registers_nothing(tracking):
    with mlflow.start_run() as run:
        _registered("dev").save(
            {"model": None, "input_example": None, "tags": {}, "reason": "same"}
        )
    assert tracking.search_model_versions("name='demand'") == []
    tags = tracking.get_run(run.info.run_id).data.tags
    assert tags["modelops.registered_version"] == "none"
    assert tags["modelops.registration_outcome"] == "unchanged"


def test_alias_moves_need_a_bound_policy(
    tracking, model_input_table, data_processing_params
):
    bundle = _bundle(model_input_table, data_processing_params["features"])
    with mlflow.start_run(), pytest.raises(DatasetError, match="no access policy"):
        RegisteredModelDataset("demand", alias="dev").save(bundle)


def test_registering_the_same_candidate_again_registers_nothing(
    tracking, model_input_table, data_processing_params
):
    bundle = _bundle(model_input_table, data_processing_params["features"])
    with mlflow.start_run():
        _registered("challenger").save(bundle)
    with mlflow.start_run() as retry:  # e.g. a scheduler retrying the task
        _registered("challenger").save(bundle)
    assert _versions(tracking) == [1]
    tags = tracking.get_run(retry.info.run_id).data.tags
    assert tags["modelops.registration_outcome"] == "unchanged"
    assert tags["modelops.registered_version"] == "1"
    assert not tracking.list_artifacts(retry.info.run_id)  # no model logged either
    # the claim was released: only the model itself is left
    assert [m.name for m in tracking.search_registered_models()] == ["demand"]


def test_an_identical_version_without_the_alias_is_reused(
    tracking, model_input_table, data_processing_params
):
    """A run killed between registering and aliasing left a version: reuse it."""
    bundle = _bundle(model_input_table, data_processing_params["features"])
    with mlflow.start_run():
        _registered("dev").save(bundle)  # version 1 under another alias
    with mlflow.start_run() as rerun:
        _registered("challenger").save(bundle)
    assert _versions(tracking) == [1]
    assert (
        str(tracking.get_model_version_by_alias("demand", "challenger").version) == "1"
    )
    tags = tracking.get_run(rerun.info.run_id).data.tags
    assert tags["modelops.registration_outcome"] == "reused"
    # the reused version keeps its serving-form and hash tags, and still loads
    reused = tracking.get_model_version("demand", "1").tags
    assert reused[FORM_TAG] == "onnx"
    assert reused[MANIFEST_SHA_TAG] == manifest_sha256(
        file_hashes(_stored(tracking, "1"))
    )
    assert ServedModelDataset("demand", ["challenger"]).load()["version"] == 1
    other = {**bundle, "fingerprint": "e" * 64}
    with mlflow.start_run():
        _registered("challenger").save(other)
    assert _versions(tracking) == [1, 2]
    assert (
        str(tracking.get_model_version_by_alias("demand", "challenger").version) == "2"
    )


def test_an_env_without_the_register_right_registers_nothing(
    tracking, model_input_table, data_processing_params
):
    bundle = _bundle(model_input_table, data_processing_params["features"])
    with (
        mlflow.start_run() as run,
        pytest.raises(DatasetError, match=r"rule access\.register"),
    ):
        _registered("champion", NoRegister()).save(bundle)
    assert tracking.search_registered_models() == []
    assert not tracking.list_artifacts(run.info.run_id)


def test_a_bundle_without_fingerprint_is_refused(
    tracking, model_input_table, data_processing_params
):
    bundle = _bundle(model_input_table, data_processing_params["features"])
    with mlflow.start_run(), pytest.raises(DatasetError, match="no candidate fingerp"):
        _registered("dev").save({**bundle, "fingerprint": None})
    assert tracking.search_registered_models() == []


def test_a_request_without_artifacts_registers_nothing(
    tracking, model_input_table, data_processing_params
):
    bundle = _bundle(model_input_table, data_processing_params["features"])
    with (
        mlflow.start_run() as run,
        pytest.raises(DatasetError, match=r"holds no model artifacts"),
    ):
        _registered("dev").save({**bundle, "artifacts": None})
    assert tracking.search_model_versions("name='demand'") == []
    assert not tracking.list_artifacts(run.info.run_id)


def test_served_model_dataset_loads_the_verified_form_by_alias(
    tracking, model_input_table, data_processing_params
):
    features = data_processing_params["features"]
    bundle = _bundle(model_input_table, features)
    with mlflow.start_run() as run:
        _registered("dev").save(bundle)

    served = ServedModelDataset("demand", ["champion", "dev"]).load()
    sklearn = ServedModelDataset("demand", ["dev"], prefer="sklearn").load()

    assert (served["alias"], served["version"]) == ("dev", 1)
    assert served["run_id"] == run.info.run_id
    assert isinstance(served["model"], ServedModel)
    assert served["model"].form == "onnx"
    assert sklearn["model"].form == "sklearn"
    raw = model_inputs(model_input_table.head(50), features)
    expected = bundle["model"].predict(raw)
    np.testing.assert_allclose(served["model"].predict_frame(raw), expected, rtol=1e-9)
    np.testing.assert_array_equal(sklearn["model"].predict_frame(raw), expected)
    assert ServedModelDataset("demand", ["champion"]).load() is None


@pytest.mark.parametrize("path", [SKLEARN_FILE, ONNX_FILE])
def test_a_tampered_artifact_is_refused_by_the_loading_datasets(
    tracking, model_input_table, data_processing_params, path
):
    bundle = _bundle(model_input_table, data_processing_params["features"])
    with mlflow.start_run():
        _registered("dev").save(bundle)
    target = _stored(tracking, "1") / path
    target.write_bytes(target.read_bytes()[::-1])

    for dataset in (
        IncumbentModelDataset("demand", ["dev"]),
        ServedModelDataset("demand", ["dev"]),
    ):
        with pytest.raises(
            DatasetError,
            match=rf"Model 'demand' version 1: file '{path}' does not match its "
            rf"recorded sha256",
        ) as raised:
            dataset.load()
        assert isinstance(raised.value.__cause__, ArtifactIntegrityError)
