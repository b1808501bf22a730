"""Cleanup: keep/remove on a fake zone with fixed registry facts, errors, and end to end."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import pickle
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner
from mlflow.tracking import MlflowClient

from modelops import cleanup, registry
from modelops.cleanup import RegistryFacts, plan_cleanup, registry_facts, run_cleanup
from modelops.errors import AccessPolicyError, ConfigError
from modelops.registry import RegistryError
from tests.conftest import copy_project, run_kedro

ENV = "acceptance"
NOW = dt.datetime(2025, 6, 1, tzinfo=dt.UTC)  # retention 30 days: cutoff 2025-05-02
OLD = dt.datetime(2025, 2, 1, tzinfo=dt.UTC)
SV_OLD = "2025-01-10T10.00.00.000Z"  # a rejected run
SV_KEPT = "2025-01-11T10.00.00.000Z"  # the run of kept version 3
SV_GROUP = "2025-01-12T10.00.00.000Z"  # the newest trained model's run
SV_LOG1 = "2025-01-13T10.00.00.000Z"  # a scoring by version 1
SV_LOG3 = "2025-01-14T10.00.00.000Z"  # a scoring by version 3
SV_STALE = "2025-01-15T10.00.00.000Z"  # a scoring that died half-way
SV_RECENT = "2025-05-20T10.00.00.000Z"  # within the retention window
SV_FRESH = "2025-05-31T23.00.00.000Z"  # a scoring in progress
SHA = {name: hashlib.sha256(name.encode()).hexdigest() for name in "ABCDE"}
FACTS = RegistryFacts(
    kept_versions={"3": "version 3 (alias champion)"},
    shas={
        SHA["A"]: "lineage of version 3 (alias champion)",
        SHA["D"]: "lineage of version 3 (alias champion)",
    },
    save_versions={SV_KEPT: "lineage of version 3 (alias champion)"},
)
ZONE = f"data/{ENV}"
MI = f"{ZONE}/05_model_input"
MO = f"{ZONE}/07_model_output"
REMOVED = {
    f"{MI}/train_sets/{SHA['B']}.parquet",
    f"{MI}/test_sets/{SHA['E']}.parquet",
    f"{MI}/model_input_table.parquet/{SV_OLD}",
    f"{ZONE}/06_models/trained_model.pkl/{SV_OLD}",
    f"{MO}/test_predictions.parquet/{SV_OLD}",
    f"{MO}/prediction_log/{SV_LOG1}",
    f"{MO}/batch_predictions/{SV_LOG1}",
    f"{MO}/prediction_log/.{SV_STALE}.partial",
    f"{MO}/rest_prediction_log/2025-01-01",
}


def _age(path: Path, when: dt.datetime) -> None:
    """Set the modification time of ``path`` and everything below it."""
    stamp = when.timestamp()
    for item in [path, *path.rglob("*")] if path.is_dir() else [path]:
        os.utime(item, (stamp, stamp))


def _parquet(path: Path, versions: list[int]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(
        {"prediction": [1.0] * len(versions), "model_version": versions}
    ).to_parquet(path)


def _versioned(root: Path, version: str, filename: str) -> None:
    path = root / version / filename
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x" * 100)


def build_zone(project: Path) -> Path:
    """A fake acceptance zone: what several deployment and scoring runs leave."""
    zone = project / ZONE
    # index.jsonl: newest last (C and D are what a bare load reads)
    for folder, names in (("train_sets", "BAC"), ("test_sets", "ED")):
        root = zone / "05_model_input" / folder
        root.mkdir(parents=True)
        for name in names:
            (root / f"{SHA[name]}.parquet").write_bytes(name.encode() * 50)
        (root / "index.jsonl").write_text(
            "".join(json.dumps({"sha256": SHA[n], "rows": 1}) + "\n" for n in names)
        )
    table = zone / "05_model_input" / "model_input_table.parquet"
    for version in (SV_OLD, SV_KEPT, SV_GROUP, SV_RECENT):
        _versioned(table, version, "model_input_table.parquet")
    model = zone / "06_models" / "trained_model.pkl"
    for version in (SV_OLD, SV_KEPT, SV_GROUP):
        _versioned(model, version, "trained_model.pkl")
    (model / "notes").mkdir()  # not a version folder: never touched
    predictions = zone / "07_model_output" / "test_predictions.parquet"
    for version in (SV_OLD, SV_KEPT):
        _versioned(predictions, version, "test_predictions.parquet")
    output = zone / "07_model_output"
    for dataset in ("prediction_log", "batch_predictions"):
        _parquet(output / dataset / SV_LOG1 / "2025-01-01.parquet", [1, 1])
        _parquet(output / dataset / SV_LOG3 / "2025-01-01.parquet", [3, 3])
    _parquet(output / "prediction_log" / f".{SV_STALE}.partial" / "a.parquet", [3])
    rest = output / "rest_prediction_log"
    _parquet(rest / "2025-01-01" / "a.parquet", [1])
    _parquet(rest / "2025-01-02" / "a.parquet", [1])  # a day spanning an alias move
    _parquet(rest / "2025-01-02" / "b.parquet", [3])
    (rest / "2025-01-03").mkdir()
    (rest / "2025-01-03" / "a.parquet").write_bytes(b"not parquet")
    _age(zone, OLD)
    _age(table / SV_RECENT, dt.datetime(2025, 5, 20, 10, tzinfo=dt.UTC))
    fresh = output / "prediction_log" / f".{SV_FRESH}.partial"
    _parquet(fresh / "a.parquet", [3])
    _age(fresh, dt.datetime(2025, 5, 31, 23, 30, tzinfo=dt.UTC))
    return zone


def tree(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.fixture
def project(tmp_path) -> Path:
    project = copy_project(tmp_path / "project")
    build_zone(project)
    return project


def decisions(project: Path, facts: RegistryFacts = FACTS) -> dict[str, tuple]:
    plan, _ = plan_cleanup(project, ENV, facts=facts, now=NOW)
    return {d.path: (d.action, d.kind, d.reason, d.bytes) for d in plan.decisions}


def test_only_what_no_kept_version_needs_is_removed(project):
    decided = decisions(project)
    assert {p for p, d in decided.items() if d[0] == "remove"} == REMOVED
    reasons = {p: d[2] for p, d in decided.items()}
    assert "lineage of version 3" in reasons[f"{MI}/train_sets/{SHA['A']}.parquet"]
    assert "newest train_set" in reasons[f"{MI}/train_sets/{SHA['C']}.parquet"]
    assert reasons[f"{MI}/model_input_table.parquet/{SV_KEPT}"].startswith(
        f"run {SV_KEPT}: lineage of version 3"
    )
    assert reasons[f"{MI}/model_input_table.parquet/{SV_GROUP}"] == (
        f"same run (save version {SV_GROUP}) as the kept 'trained_model' folder: "
        f"a run's folders are kept together"
    )
    assert (
        "within the retention window"
        in reasons[f"{MI}/model_input_table.parquet/{SV_RECENT}"]
    )
    assert reasons[f"{MO}/prediction_log/{SV_LOG3}"] == (
        "scored by version 3 (alias champion)"
    )
    assert "scored by version 3" in reasons[f"{MO}/rest_prediction_log/2025-01-02"]
    assert (
        "cannot tell which model scored it"
        in reasons[f"{MO}/rest_prediction_log/2025-01-03"]
    )
    assert (
        "may still be in progress"
        in reasons[f"{MO}/prediction_log/.{SV_FRESH}.partial"]
    )
    assert reasons[f"{MO}/prediction_log/{SV_LOG1}"].startswith(
        "scored only by version(s) 1, none of them kept (kept versions: 3)"
    )
    assert decided[f"{MO}/prediction_log/.{SV_STALE}.partial"][1] == "staging"
    assert decided[f"{ZONE}/06_models/trained_model.pkl/{SV_OLD}"][1:4:2] == (
        "trained_model",
        100,
    )
    assert not any("notes" in p for p in decided)
    assert not any("source" in p or "08_reporting" in p for p in decided)


def test_without_lineage_tags_every_data_file_is_kept(project):
    facts = RegistryFacts(kept_versions=FACTS.kept_versions, unknown_lineage=["3"])
    decided = decisions(project, facts)
    removed = {p for p, d in decided.items() if d[0] == "remove"}
    logs = ("prediction_log", "batch_predictions", "rest_prediction_log")
    assert removed == {p for p in REMOVED if any(f"/{name}/" in p for name in logs)}
    assert "carry no lineage tags" in decided[f"{MI}/train_sets/{SHA['B']}.parquet"][2]


def test_dry_run_touches_nothing_apply_removes_the_list_and_is_idempotent(project):
    zone = project / ZONE
    before = tree(zone)
    dry = run_cleanup(project, ENV, facts=FACTS, now=NOW)
    assert tree(zone) == before
    assert not dry.applied and dry.removed == []
    assert {d.path for d in dry.to_remove} == REMOVED
    assert dry.bytes_freed == sum(d.bytes for d in dry.to_remove) > 0

    applied = run_cleanup(project, ENV, apply=True, facts=FACTS, now=NOW)
    assert set(applied.removed) == REMOVED
    assert not any((project / path).exists() for path in REMOVED)
    after = tree(zone)
    kept = {
        p: v
        for p, v in before.items()
        if not any(f"{ZONE}/{p}".startswith(r) for r in REMOVED)
    }
    assert after == kept
    assert not (zone / ".cleanup-trash").exists()

    again = run_cleanup(project, ENV, apply=True, facts=FACTS, now=NOW)
    assert again.to_remove == [] and again.bytes_freed == 0
    assert tree(zone) == after


def test_a_failure_half_way_leaves_whole_folders_and_a_rerun_finishes(
    project, monkeypatch
):
    zone = project / ZONE
    before = tree(zone)
    calls = []
    real_rmtree = shutil.rmtree

    def failing_rmtree(path, *args, **kwargs):
        calls.append(path)
        if len(calls) == 2:
            raise OSError("disk went away")
        return real_rmtree(path, *args, **kwargs)

    monkeypatch.setattr(cleanup.shutil, "rmtree", failing_rmtree)
    with pytest.raises(OSError, match="disk went away"):
        run_cleanup(project, ENV, apply=True, facts=FACTS, now=NOW)
    # the folder being deleted is no longer where readers look: it is in the trash
    trash = list((zone / ".cleanup-trash").iterdir())
    assert len(trash) == 1 and Path(calls[1]) == trash[0]
    for path in REMOVED:  # every other folder is whole where it was, or gone whole
        if (project / path).exists():
            prefix = path.removeprefix(f"{ZONE}/")
            assert {p: v for p, v in tree(zone).items() if p.startswith(prefix)} == {
                p: v for p, v in before.items() if p.startswith(prefix)
            }
    monkeypatch.setattr(cleanup.shutil, "rmtree", real_rmtree)

    rerun = run_cleanup(project, ENV, apply=True, facts=FACTS, now=NOW)
    assert any(d.kind == "trash" for d in rerun.to_remove)
    assert not (zone / ".cleanup-trash").exists()
    assert not any((project / path).exists() for path in REMOVED)
    assert run_cleanup(project, ENV, facts=FACTS, now=NOW).to_remove == []


def test_unknown_env_is_refused(project):
    with pytest.raises(
        ConfigError,
        match=r"Unknown env 'staging': cleanup runs in one of the project's envs "
        r"\['acceptance', 'dev', 'prod'\].*\nHint: run `kedro cleanup --env",
    ):
        plan_cleanup(project, "staging", facts=FACTS, now=NOW)


def test_a_catalog_path_outside_the_env_zone_is_refused(project):
    catalog = project / "conf" / "base" / "catalog.yml"
    catalog.write_text(
        catalog.read_text().replace(
            "filepath: ${globals:zone_root}/06_models/trained_model.pkl",
            "filepath: data/prod/06_models/trained_model.pkl",
        )
    )
    with pytest.raises(
        AccessPolicyError,
        match=r"Access policy of env 'acceptance' forbids writing dataset "
        r"'trained_model' at '.*data/prod/06_models/trained_model.pkl': it lies in "
        r"zone 'prod'.*\nHint: point the catalog entry of 'trained_model'",
    ):
        plan_cleanup(project, ENV, facts=FACTS, now=NOW)


def test_bad_cleanup_settings_name_the_key(project):
    params = project / "conf" / "base" / "parameters_cleanup.yml"
    params.write_text(
        params.read_text().replace("retention_days: 30", "retention_days: -1")
    )
    with pytest.raises(
        ConfigError,
        match=r"cleanup.retention_days in conf/base/parameters_cleanup.yml must be a "
        r"number >= 0, got -1",
    ):
        plan_cleanup(project, ENV, facts=FACTS, now=NOW)


# --- what the registry says (a real MLflow store) ----------------------------------


@dataclass
class AnyAlias:
    env: str = "test"

    def check_alias(self, alias: str) -> None:
        """Every alias allowed."""


def _version(client, experiment, sha, save_version, **run_tags):
    run = client.create_run(experiment, tags=run_tags)
    version = client.create_model_version(
        "m",
        source=f"runs:/{run.info.run_id}/model",
        run_id=run.info.run_id,
        tags={
            "modelops.train_sha256": f"train-{sha}",
            "modelops.test_sha256": f"test-{sha}",
            "modelops.saved.trained_model": (
                f"/zone/06_models/trained_model.pkl/{save_version}/trained_model.pkl"
            ),
        },
    )
    client.set_terminated(run.info.run_id)
    return str(version.version)


@pytest.fixture
def store(mlflow_store_uri):
    """Version 1 champion, version 2 challenger once then replaced, 3 challenger."""
    client = MlflowClient(mlflow_store_uri, registry_uri=mlflow_store_uri)
    experiment = client.create_experiment("e")
    client.create_registered_model("m")
    _version(client, experiment, "1", SV_OLD)
    _version(client, experiment, "2", SV_KEPT)
    _version(client, experiment, "3", SV_GROUP)
    mover = client.create_run(
        experiment,
        tags={"modelops.saved.train_set": f"/zone/train_sets/{SHA['E']}.parquet"},
    )
    client.set_terminated(mover.info.run_id)
    policy = AnyAlias()
    for alias, version, run_id in (
        ("champion", "1", None),
        ("challenger", "2", None),
        ("challenger", "3", mover.info.run_id),
    ):
        registry.set_alias(
            client, "m", alias, version, policy=policy, run_id=run_id, reason="test"
        )
    return client


def test_registry_facts_keep_aliased_and_recently_approved_versions(store):
    later = dt.datetime.now(dt.UTC) + dt.timedelta(days=60)
    facts = registry_facts(store, "m", retention_days=30, now=later)
    assert facts.kept_versions == {
        "1": "version 1 (alias champion)",
        "3": "version 3 (alias challenger)",
    }
    assert set(facts.shas) == {"train-1", "test-1", "train-3", "test-3", SHA["E"]}
    assert "saved by run" in facts.shas[SHA["E"]]  # the run that moved the alias
    assert set(facts.save_versions) == {SV_OLD, SV_GROUP}
    assert facts.unknown_lineage == []

    now = dt.datetime.now(dt.UTC)
    recent = registry_facts(store, "m", retention_days=30, now=now)
    assert set(recent.kept_versions) == {"1", "2", "3"}
    assert "challenger moved to it" in recent.kept_versions["2"]
    assert SV_KEPT in recent.save_versions
    none_back = registry_facts(store, "m", retention_days=0, now=now)
    assert set(none_back.kept_versions) == {"1", "3"}


def test_a_registry_without_the_model_removes_nothing(mlflow_store_uri):
    client = MlflowClient(mlflow_store_uri, registry_uri=mlflow_store_uri)
    with pytest.raises(
        RegistryError,
        match=r"The registry at 'sqlite:///.*' holds no model named 'nope', so "
        r"cleanup cannot tell .* removes nothing\.\nHint: check MLFLOW_TRACKING_URI",
    ):
        registry_facts(client, "nope", retention_days=30, now=NOW)


def test_an_unreachable_registry_is_named(monkeypatch):
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "2")
    client = MlflowClient("http://127.0.0.1:9", registry_uri="http://127.0.0.1:9")
    with pytest.raises(
        RegistryError,
        match=r"Cannot read the model registry at 'http://127.0.0.1:9' .* so cleanup "
        r"removes nothing\.\nHint: start the tracking server",
    ):
        registry_facts(client, "m", retention_days=30, now=NOW)


# --- the command -------------------------------------------------------------------


def test_the_command_lists_as_json_from_a_subfolder_and_removes_nothing(
    project, monkeypatch
):
    from modelops.cli import cli  # noqa: PLC0415

    monkeypatch.setattr(cleanup, "registry_facts", lambda *a, **k: FACTS)
    monkeypatch.chdir(project / "conf" / "base")
    before = tree(project / ZONE)
    result = CliRunner().invoke(cli, ["cleanup", "--env", ENV, "--json"])
    assert result.exit_code == 0, result.output
    plan = json.loads(result.stdout)
    assert plan["dry_run"] is True and plan["removed"] == []
    listed = {item["path"] for item in plan["remove"]}
    assert listed >= REMOVED  # today, the in-progress staging is stale too
    assert plan["bytes_freed"] == sum(item["bytes"] for item in plan["remove"])
    assert all(item["reason"] for item in plan["keep"])
    assert tree(project / ZONE) == before

    text = CliRunner().invoke(cli, ["cleanup", "--env", ENV])
    assert f"Would remove {len(listed)} item(s), {plan['bytes_freed']} bytes" in (
        text.stdout
    )
    assert "Dry run: nothing removed; add --apply." in text.stdout
    missing = CliRunner().invoke(cli, ["cleanup"])
    assert missing.exit_code == 2 and "Missing option '--env'" in missing.output


def test_a_path_another_cleanup_removed_meanwhile_is_skipped(project, monkeypatch):
    plan, policy = plan_cleanup(project, ENV, facts=FACTS, now=NOW)
    folder = f"{MO}/prediction_log/{SV_LOG1}"
    assert folder in {d.path for d in plan.to_remove}
    shutil.rmtree(project / folder)  # a concurrent cleanup got there first
    monkeypatch.setattr(cleanup, "plan_cleanup", lambda *a, **k: (plan, policy))
    applied = run_cleanup(project, ENV, apply=True, facts=FACTS, now=NOW)
    assert set(applied.removed) == REMOVED - {folder}
    assert not any((project / path).exists() for path in REMOVED)


# --- end to end: real deployment runs and scorings, then `kedro cleanup` ---------

MODEL_NAME = "modelops-bike-demand"
FAST = "importance.n_repeats=1,importance.max_rows=500,model_artifacts.verify_rows=500"
APPROVE = f"{FAST},gate.business_threshold=1000"


def hashed_tree(root: Path) -> dict[str, str]:
    """Every file below ``root`` and the sha256 of its bytes."""
    return {
        str(path.relative_to(root)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


def registry_client(project: Path) -> MlflowClient:
    uri = f"sqlite:///{project / 'mlruns' / 'mlflow.db'}"
    return MlflowClient(uri, registry_uri=uri)


def kedro_cleanup(project: Path, *flags: str) -> dict:
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
    aliases = registry_client(project).get_registered_model(MODEL_NAME).aliases
    assert {alias: str(v) for alias, v in aliases.items()} == {"challenger": "2"}
    return project


@pytest.mark.slow
def test_cleanup_keeps_lineage_and_removes_the_rest(deployed):  # noqa: PLR0915
    project = deployed
    zone = project / "data"
    mlflow_registry = registry_client(project)

    # within the default retention window (30 days) everything is recent: kept
    before = hashed_tree(zone)
    plan = kedro_cleanup(project)
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
    dry = kedro_cleanup(project)
    assert hashed_tree(zone) == before  # a dry run deletes nothing
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
    v2 = mlflow_registry.get_model_version(MODEL_NAME, "2").tags
    v1 = mlflow_registry.get_model_version(MODEL_NAME, "1").tags
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
    applied = kedro_cleanup(project, "--apply")
    assert applied["dry_run"] is False
    assert sorted(applied["removed"]) == sorted(removed)
    after = hashed_tree(zone)
    gone = {p for p in before if under(f"data/{p}", removed)}
    assert gone and set(after) == set(before) - gone
    assert all(after[p] == before[p] for p in after)  # nothing else changed
    assert not (zone / ENV / ".cleanup-trash").exists()

    # every aliased version's lineage names files that exist and load
    for alias, version in mlflow_registry.get_registered_model(
        MODEL_NAME
    ).aliases.items():
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
        tags = mlflow_registry.get_model_version(MODEL_NAME, str(version)).tags
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
    again = kedro_cleanup(project, "--apply")
    assert again["remove"] == [] and again["bytes_freed"] == 0
    assert hashed_tree(zone) == after


@pytest.mark.slow
def test_cleanup_needs_an_env_and_names_unknown_ones(deployed):
    missing = run_kedro(deployed, "cleanup", check=False)
    assert missing.returncode == 2
    assert "Missing option '--env'" in missing.stderr
    unknown = run_kedro(deployed, "cleanup", "--env", "staging", check=False)
    assert unknown.returncode == 1
    assert "ConfigError: Unknown env 'staging'" in unknown.stderr
    assert "Hint: run `kedro cleanup --env <one of" in unknown.stderr


@pytest.mark.slow
def test_cleanup_runs_from_a_subfolder(deployed):
    result = run_kedro(deployed / "conf" / "base", "cleanup", "--env", ENV)
    assert "Dry run: nothing removed; add --apply." in result.stdout
