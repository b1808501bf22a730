"""`kedro cleanup` end to end: several deployment runs and batch scorings, then cleanup."""

from __future__ import annotations

import hashlib
import json
import pickle
import sys
from pathlib import Path

import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from tests.conftest import copy_project, run_kedro

pytestmark = pytest.mark.slow

MODEL_NAME = "modelops-bike-demand"
ENV = "acceptance"
FAST = "importance.n_repeats=1,importance.max_rows=500,model_artifacts.verify_rows=500"
APPROVE = f"{FAST},gate.business_threshold=1000"


def tree(root: Path) -> dict[str, str]:
    """Every file below ``root`` and the sha256 of its bytes."""
    return {
        str(path.relative_to(root)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


def client(project: Path) -> MlflowClient:
    uri = f"sqlite:///{project / 'mlruns' / 'mlflow.db'}"
    return MlflowClient(uri, registry_uri=uri)


def cleanup(project: Path, *flags: str) -> dict:
    result = run_kedro(project, "cleanup", "--env", ENV, "--json", *flags)
    return json.loads(result.stdout)  # one JSON document; logs go to stderr


def under(path: str, folders: list[str]) -> bool:
    return any(path == f or path.startswith(f"{f}/") for f in folders)


@pytest.fixture(scope="module")
def deployed(tmp_path_factory) -> Path:
    """Three acceptance deployment runs (two approved, one rejected), two scorings."""
    project = copy_project(tmp_path_factory.mktemp("cleanup"))
    run_kedro(
        project, "simulate", "--start", "2025-03-01", "--days", "24", "--stations", "4"
    )
    # version 1 on an older data window, and a batch scoring by it
    run_kedro(
        project,
        "run",
        "--env",
        ENV,
        "--params",
        f"{APPROVE},source.window.end=2025-03-20",
    )
    run_kedro(project, "run", "--env", ENV, "--pipelines", "serving")
    # a rejected candidate on another window: its files serve nobody
    rejected = run_kedro(
        project,
        "run",
        "--env",
        ENV,
        "--params",
        f"{FAST},gate.business_threshold=0.001,source.window.end=2025-03-22",
        check=False,
    )
    assert rejected.returncode != 0
    assert "DeploymentRejected" in rejected.stderr + rejected.stdout
    # version 2 on the whole window becomes challenger, and scores
    run_kedro(project, "run", "--env", ENV, "--params", APPROVE)
    run_kedro(project, "run", "--env", ENV, "--pipelines", "serving")
    aliases = client(project).get_registered_model(MODEL_NAME).aliases
    assert {alias: str(v) for alias, v in aliases.items()} == {"challenger": "2"}
    return project


def test_cleanup_keeps_lineage_and_removes_the_rest(deployed):  # noqa: PLR0915
    project = deployed
    zone = project / "data"
    registry = client(project)

    # within the default retention window (30 days) everything is recent: kept
    before = tree(zone)
    plan = cleanup(project)
    assert plan["remove"] == [] and plan["bytes_freed"] == 0
    assert set(plan["kept_versions"]) == {"1", "2"}  # 1: challenger moved to it
    assert "challenger moved to it" in plan["kept_versions"]["1"]

    # retention 0: only what an alias needs now is kept
    params = project / "conf" / "base" / "parameters_cleanup.yml"
    params.write_text(
        params.read_text()
        .replace("retention_days: 30", "retention_days: 0")
        .replace("staging_max_age_hours: 24", "staging_max_age_hours: 0")
    )
    dry = cleanup(project)
    assert tree(zone) == before  # a dry run deletes nothing
    assert dry["dry_run"] is True and dry["removed"] == []
    assert set(dry["kept_versions"]) == {"2"}
    removed = [item["path"] for item in dry["remove"]]
    assert removed
    sizes = {
        item["path"]: sum(
            p.stat().st_size
            for p in [project / item["path"], *(project / item["path"]).rglob("*")]
            if p.is_file()
        )
        for item in dry["remove"]
    }
    assert {item["path"]: item["bytes"] for item in dry["remove"]} == sizes
    assert dry["bytes_freed"] == sum(sizes.values()) > 0
    sys.stdout.write(
        f"\ncleanup: {len(removed)} items, {dry['bytes_freed']} bytes freed\n"
    )

    # what it lists: version 1's and the rejected run's files; never version 2's
    v2 = registry.get_model_version(MODEL_NAME, "2").tags
    v1 = registry.get_model_version(MODEL_NAME, "1").tags
    v2_run = Path(v2["modelops.saved.trained_model"]).parent.name
    v1_run = Path(v1["modelops.saved.trained_model"]).parent.name
    kinds = {item["kind"] for item in dry["remove"]}
    assert {
        "train_set",
        "test_set",
        "model_input_table",
        "trained_model",
        "test_predictions",
        "batch_prediction_log",
        "batch_predictions",
    } <= kinds
    assert not any(v2_run in path for path in removed)
    assert any(f"trained_model.pkl/{v1_run}" in path for path in removed)
    assert any(v1["modelops.train_sha256"] in path for path in removed)
    assert not any(v2["modelops.train_sha256"] in path for path in removed)
    trained = sorted((zone / ENV / "06_models" / "trained_model.pkl").iterdir())
    assert len(trained) == 3  # v1, the rejected candidate, v2
    assert sum("trained_model.pkl/" in path for path in removed) == 2
    logs = sorted((zone / ENV / "07_model_output" / "prediction_log").iterdir())
    scored = {
        log.name: set(
            pd.read_parquet(next(log.glob("*.parquet")), columns=["model_version"])[
                "model_version"
            ]
        )
        for log in logs
    }
    assert sorted(scored.values(), key=min) == [{1}, {2}]
    for name, versions in scored.items():
        listed = any(f"prediction_log/{name}" in path for path in removed)
        assert listed == (versions == {1})
    for item in dry["keep"]:
        assert item["reason"]  # every kept item says why

    # --apply removes exactly what was listed
    applied = cleanup(project, "--apply")
    assert applied["dry_run"] is False
    assert sorted(applied["removed"]) == sorted(removed)
    after = tree(zone)
    gone = {p for p in before if under(f"data/{p}", removed)}
    assert gone and set(after) == set(before) - gone
    assert all(after[p] == before[p] for p in after)  # nothing else changed
    assert not (zone / ENV / ".cleanup-trash").exists()

    # every aliased version's lineage names files that exist and load
    for alias, version in registry.get_registered_model(MODEL_NAME).aliases.items():
        chain = json.loads(
            run_kedro(
                project, "lineage", "--env", ENV, "--version", str(version), "--json"
            ).stdout
        )
        assert chain["aliases"] == [alias]
        for part in ("train_set", "test_set"):
            frame = pd.read_parquet(chain[part]["path"])
            assert len(frame) > 0
            assert chain[part]["sha256"] in chain[part]["path"]
        assert json.loads(Path(chain["source"]["manifest"]).read_text())
        tags = registry.get_model_version(MODEL_NAME, str(version)).tags
        saved = {k: v for k, v in tags.items() if k.startswith("modelops.saved.")}
        assert "modelops.saved.trained_model" in saved
        for path in saved.values():
            assert Path(path).exists(), path
        with Path(saved["modelops.saved.trained_model"]).open("rb") as model:
            assert hasattr(pickle.load(model), "predict")  # noqa: S301 (our own file)
        pd.read_parquet(saved["modelops.saved.test_predictions"])
        pd.read_parquet(saved["modelops.saved.model_input_table"])

    # the version 2 scoring log stays, and it still loads
    for log in (zone / ENV / "07_model_output" / "prediction_log").iterdir():
        assert set(pd.read_parquet(log)["model_version"]) == {2}

    # a second run (a scheduler's retry) removes nothing
    again = cleanup(project, "--apply")
    assert again["remove"] == [] and again["bytes_freed"] == 0
    assert tree(zone) == after


def test_cleanup_needs_an_env_and_names_unknown_ones(deployed):
    missing = run_kedro(deployed, "cleanup", check=False)
    assert missing.returncode == 2
    assert "Missing option '--env'" in missing.stderr
    unknown = run_kedro(deployed, "cleanup", "--env", "staging", check=False)
    assert unknown.returncode == 1
    assert "ConfigError: Unknown env 'staging'" in unknown.stderr
    assert "Hint: run `kedro cleanup --env <one of" in unknown.stderr


def test_cleanup_runs_from_a_subfolder(deployed):
    result = run_kedro(deployed / "conf" / "base", "cleanup", "--env", ENV)
    assert "Dry run: nothing removed; add --apply." in result.stdout
