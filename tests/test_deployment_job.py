"""End-to-end: the deployment job (`kedro run`) against a real MLflow registry."""

from __future__ import annotations

import shutil
import subprocess

import mlflow
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from modelops.model_artifacts import FORM_TAG, MANIFEST_SHA_TAG, load_served_model
from tests.conftest import copy_project, run_kedro

pytestmark = pytest.mark.slow

MODEL_NAME = "modelops-bike-demand"
LINEAGE_TAGS = (
    "modelops.run_id",
    "modelops.git_commit",
    "modelops.git_dirty",
    "modelops.env",
    "modelops.train_sha256",
    "modelops.test_sha256",
    "modelops.source_first_partition",
    "modelops.source_last_partition",
    "modelops.model_config",
    "modelops.metric.rmse",
    "modelops.saved.train_set",
    "modelops.saved.test_set",
)


@pytest.fixture(scope="module")
def source_days(tmp_path_factory):
    """24 simulated days for 6 stations, written once for the module."""
    project = copy_project(tmp_path_factory.mktemp("source"))
    run_kedro(
        project, "simulate", "--start", "2025-03-01", "--days", "24", "--stations", "6"
    )
    return project / "data" / "source"


@pytest.fixture
def job_project(tmp_path, source_days):
    """A project copy under git (so lineage has a commit) with the simulated source."""
    project = copy_project(tmp_path / "project")
    shutil.copytree(source_days, project / "data" / "source")
    (project / ".gitignore").write_text("data/\nmlruns/\n.viz/\n")
    for command in (
        ["git", "init", "-q"],
        ["git", "add", "-A"],
        ["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "x"],
    ):
        subprocess.run(command, cwd=project, check=True)
    return project


def _client(project) -> MlflowClient:
    uri = f"sqlite:///{project / 'mlruns' / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)  # not a registry another test left set
    return MlflowClient(uri, registry_uri=uri)


def _versions(client):
    return sorted(
        int(v.version) for v in client.search_model_versions(f"name='{MODEL_NAME}'")
    )


def test_model_lands_in_registry_with_lineage_and_reruns_reproduce(job_project):
    run_kedro(job_project, "run")
    client = _client(job_project)
    version = client.get_model_version_by_alias(MODEL_NAME, "dev")
    missing = [tag for tag in LINEAGE_TAGS if tag not in version.tags]
    assert not missing, missing
    head = subprocess.run(
        ["git", "rev-parse", "HEAD"],
        cwd=job_project,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert version.tags["modelops.git_commit"] == head, version.tags.get(
        "modelops.git_error"
    )
    assert version.tags["modelops.git_dirty"] == "false"
    assert version.tags["modelops.env"] == "dev"
    # the verified ONNX form and the sha256 of every stored file are on the version
    assert version.tags[FORM_TAG] == "onnx"
    assert version.tags["modelops.onnx.passed"] == "true"
    assert version.tags["modelops.onnx.exact"] == "true"  # default HGB: bit-exact
    assert MANIFEST_SHA_TAG in version.tags
    served = load_served_model(client, MODEL_NAME, version.version)
    assert served.form == "onnx"
    # the registered model loads and predicts from raw source rows
    model = mlflow.pyfunc.load_model(f"models:/{MODEL_NAME}@dev")
    source = pd.read_parquet(
        job_project / "data/source/bike_rentals/2025-03-24.parquet"
    )
    assert len(model.predict(source.drop(columns="rentals"))) == len(source)
    raw = source.drop(columns="rentals")[served.columns]
    assert (served.predict_frame(raw) == model.predict(raw)).all()

    result = run_kedro(job_project, "run")
    assert "Deployment gate unchanged" in result.stdout + result.stderr
    assert _versions(client) == [1]  # nothing new to register, not a failure
    zone = job_project / "data" / "dev" / "05_model_input"
    assert len(list((zone / "train_sets").glob("*.parquet"))) == 1  # stored once
    assert len(list((zone / "test_sets").glob("*.parquet"))) == 1
    predictions = sorted(
        (job_project / "data/dev/07_model_output").glob("*/*/*.parquet")
    )
    assert len(predictions) == 2
    pd.testing.assert_frame_equal(*(pd.read_parquet(p) for p in predictions))
    runs = mlflow.search_runs(experiment_names=["modelops-dev"], output_format="list")
    assert {r.data.tags["modelops.saved.train_set"] for r in runs} == {
        version.tags["modelops.saved.train_set"]
    }
    plots = {a.path for a in client.list_artifacts(version.run_id, "plots")}
    assert plots == {
        "plots/predicted_vs_actual.png",
        "plots/residuals.png",
        "plots/feature_importance.png",
    }


def test_worse_model_and_impossible_threshold_are_rejected(job_project):
    run_kedro(job_project, "run")
    client = _client(job_project)
    worse = run_kedro(
        job_project, "run", "--params", "model.kwargs.max_iter=2", check=False
    )
    output = worse.stdout + worse.stderr
    assert worse.returncode != 0
    assert "DeploymentRejected: Deployment gate rejected: candidate rmse" in output
    assert "compared with dev version 1 scoring" in output
    assert "Traceback" not in output
    assert _versions(client) == [1]
    assert client.get_model_version_by_alias(MODEL_NAME, "dev").version in (1, "1")
    strict = run_kedro(
        job_project,
        "run",
        "--params",
        "model.kwargs.max_iter=250,gate.business_threshold=0.01",
        check=False,
    )
    assert strict.returncode != 0
    assert "business threshold 0.01" in strict.stdout + strict.stderr
    assert _versions(client) == [1]
    runs = mlflow.search_runs(experiment_names=["modelops-dev"], output_format="list")
    rejected = [
        r for r in runs if r.data.tags.get("modelops.gate.outcome") == "rejected"
    ]
    assert len(rejected) == 2  # the decision is logged on each rejected run


def test_first_model_above_threshold_registers_nothing(job_project):
    result = run_kedro(
        job_project, "run", "--params", "gate.business_threshold=0.01", check=False
    )
    assert result.returncode != 0
    assert _versions(_client(job_project)) == []


def test_node_failure_mid_run_leaves_the_registry_as_it_was(job_project):
    run_kedro(job_project, "run")
    client = _client(job_project)
    failed = run_kedro(
        job_project,
        "run",
        "--params",
        "model.kwargs.max_iter=400,baseline.group_by=[no_such_column]",
        check=False,
    )
    assert failed.returncode != 0
    assert _versions(client) == [1]
    assert int(client.get_model_version_by_alias(MODEL_NAME, "dev").version) == 1


def test_swapping_the_model_class_in_conf_needs_no_code_change(job_project):
    training = job_project / "conf" / "base" / "parameters_training.yml"
    text = training.read_text()
    start = text.index("model:")
    training.write_text(
        text[:start]
        + "model:\n  class: sklearn.linear_model.Ridge\n  kwargs: {alpha: 1.0}\n  seed: 42\n"
        + "  categorical_encoding: auto\n"
    )
    run_kedro(job_project, "run", "--params", "gate.business_threshold=1000")
    version = _client(job_project).get_model_version_by_alias(MODEL_NAME, "dev")
    assert version.tags["modelops.model_class"] == "sklearn.linear_model.Ridge"
