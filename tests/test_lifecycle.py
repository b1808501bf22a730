"""End-to-end lifecycle: dev -> acceptance -> prod, a rejected candidate, a rollback."""

from __future__ import annotations

import json
import shutil

import pytest
from mlflow.tracking import MlflowClient

from tests.conftest import copy_project, files_under, run_kedro

pytestmark = pytest.mark.slow

MODEL_NAME = "modelops-bike-demand"


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """One project copy the whole lifecycle runs in, step by step."""
    project = copy_project(tmp_path_factory.mktemp("lifecycle"))
    run_kedro(
        project, "simulate", "--start", "2025-03-01", "--days", "24", "--stations", "6"
    )
    return project


def _aliases(project) -> dict[str, int]:
    uri = f"sqlite:///{project / 'mlruns' / 'mlflow.db'}"
    client = MlflowClient(uri, registry_uri=uri)
    model = client.get_registered_model(MODEL_NAME)
    return {alias: int(version) for alias, version in model.aliases.items()}


def _new_files(project, before: set[str]) -> set[str]:
    return files_under(project / "data") - before


def _history(project) -> list[dict]:
    output = run_kedro(project, "models", "history", "--env", "prod", "--json").stdout
    return json.loads(output)  # one JSON array; logs go to stderr


def test_lifecycle(project):
    before = files_under(project / "data")
    run_kedro(project, "run")  # dev
    assert {f.split("/")[0] for f in _new_files(project, before)} == {"dev"}
    assert _aliases(project) == {"dev": 1}

    before = files_under(project / "data")
    run_kedro(
        project, "run", "--env", "acceptance", "--params", "model.kwargs.max_iter=20"
    )
    assert {f.split("/")[0] for f in _new_files(project, before)} == {"acceptance"}
    assert _aliases(project) == {"dev": 1, "challenger": 2}

    before = files_under(project / "data")
    promoted = run_kedro(project, "run", "--env", "prod")
    assert "Running the env's default job: promotion_reuse" in promoted.stdout
    assert {f.split("/")[0] for f in _new_files(project, before)} == {"prod"}
    assert not any(
        "06_models" in f for f in _new_files(project, before)
    )  # reuse: no training
    assert _aliases(project) == {"dev": 1, "challenger": 2, "champion": 2}

    # a better candidate goes through acceptance and prod
    run_kedro(project, "run", "--env", "acceptance")
    assert _aliases(project)["challenger"] == 3
    run_kedro(project, "run", "--env", "prod")
    assert _aliases(project)["champion"] == 3

    # a deliberately worse candidate is stopped in acceptance and never reaches prod
    worse = run_kedro(
        project,
        "run",
        "--env",
        "acceptance",
        "--params",
        "model.kwargs.max_iter=2",
        check=False,
    )
    assert worse.returncode != 0
    assert "compared with champion version 3" in worse.stdout + worse.stderr
    assert _aliases(project) == {"dev": 1, "challenger": 3, "champion": 3}
    unchanged = run_kedro(project, "run", "--env", "prod")
    assert "Deployment gate unchanged" in unchanged.stdout + unchanged.stderr
    assert _aliases(project)["champion"] == 3

    # rollback: champion goes back to the previous champion, and the history says so
    rolled = run_kedro(project, "rollback", "--env", "prod")
    assert "champion: 3 -> 2" in rolled.stdout
    assert _aliases(project)["champion"] == 2
    refused = run_kedro(
        project, "rollback", "--env", "prod", "--to-version", "1", check=False
    )
    assert refused.returncode != 0
    assert "Version 1 of 'modelops-bike-demand' was never approved" in refused.stderr
    moves = [
        (m["alias"], m["from_version"], m["to_version"], m["env"], m["kind"])
        for m in _history(project)
    ]
    assert moves == [
        ("dev", None, "1", "dev", "promotion"),
        ("challenger", None, "2", "acceptance", "promotion"),
        ("champion", None, "2", "prod", "promotion"),
        ("challenger", "2", "3", "acceptance", "promotion"),
        ("champion", "2", "3", "prod", "promotion"),
        ("champion", "3", "2", "prod", "rollback"),
    ]

    # lineage of any version, not only the newest
    output = run_kedro(project, "lineage", "--env", "prod", "--version", "2", "--json")
    chain = json.loads(output.stdout)
    assert chain["version"] == "2" and chain["env"] == "acceptance"
    assert chain["model_config"]["kwargs"]["max_iter"] == 20
    assert len(chain["train_set"]["sha256"]) == 64
    assert chain["source"]["first_partition"] == "2025-03-01"


def test_retrain_strategy_checks_reproduction(project, tmp_path):
    copy = copy_project(tmp_path / "retrain")
    shutil.copytree(project / "data" / "source", copy / "data" / "source")
    run_kedro(copy, "run", "--env", "acceptance")
    globals_file = copy / "conf" / "prod" / "globals.yml"
    globals_file.write_text(
        globals_file.read_text().replace(
            "promotion_strategy: reuse", "promotion_strategy: retrain"
        )
    )
    result = run_kedro(copy, "run", "--env", "prod")
    assert "promotion_retrain" in result.stdout
    assert _aliases(copy)["champion"] == 1
    drifted = run_kedro(
        copy,
        "run",
        "--env",
        "prod",
        "--params",
        "model.kwargs.max_iter=50",
        check=False,
    )
    assert drifted.returncode != 0
    assert "differs from challenger version 1" in drifted.stderr
