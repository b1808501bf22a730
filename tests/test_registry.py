"""Tests of alias moves, their history and rollback on a real MLflow registry."""

from __future__ import annotations

import mlflow
import pytest
from mlflow.tracking import MlflowClient

from modelops.errors import AccessPolicyError
from modelops.registry import (
    RegistryError,
    alias_history,
    alias_version,
    rollback,
    set_alias,
    version_lineage,
)
from tests.conftest import new_mlflow_store

NAME = "demand"


class OnlyAliases:
    """A policy allowing some aliases, like conf/<env>/access.yml does."""

    def __init__(self, env: str, *aliases: str) -> None:
        self.env = env
        self.aliases = aliases

    def check_alias(self, alias: str) -> None:
        if alias not in self.aliases:
            raise AccessPolicyError(f"env '{self.env}' may not set alias '{alias}'")


@pytest.fixture
def client(tmp_path, monkeypatch):
    """A registry with three versions of one model (no real model files needed)."""
    monkeypatch.chdir(tmp_path)
    uri = new_mlflow_store(tmp_path)
    mlflow.set_tracking_uri(uri)
    mlflow.set_experiment("registry-test")
    mlflow.set_registry_uri(uri)
    client = MlflowClient(uri, registry_uri=uri)
    client.create_registered_model(NAME)
    for _ in range(3):
        with mlflow.start_run() as run:
            mlflow.log_param("alpha", 1)
        client.create_model_version(
            NAME,
            source=f"runs:/{run.info.run_id}/model",
            run_id=run.info.run_id,
            tags={"modelops.env": "acceptance", "modelops.train_sha256": "abc"},
        )
    return client


ACCEPTANCE = OnlyAliases("acceptance", "challenger")
PROD = OnlyAliases("prod", "champion")


def test_history_records_every_move_in_order(client):
    set_alias(
        client,
        NAME,
        "challenger",
        "1",
        policy=ACCEPTANCE,
        run_id="r1",
        reason="gate ok",
    )
    set_alias(
        client, NAME, "champion", "1", policy=PROD, run_id="r2", reason="promoted"
    )
    set_alias(
        client, NAME, "challenger", "2", policy=ACCEPTANCE, run_id="r3", reason="better"
    )
    history = alias_history(client, NAME)
    assert [(m.seq, m.alias, m.from_version, m.to_version, m.env) for m in history] == [
        (1, "challenger", None, "1", "acceptance"),
        (2, "champion", None, "1", "prod"),
        (3, "challenger", "1", "2", "acceptance"),
    ]
    assert history[2].reason == "better" and history[2].run_id == "r3"
    # the history survives the process: a new client reads it back
    fresh = MlflowClient(client._registry_uri)
    assert alias_history(fresh, NAME) == history


def test_policy_refuses_an_alias_the_env_may_not_set(client):
    with pytest.raises(AccessPolicyError, match="may not set alias 'champion'"):
        set_alias(
            client, NAME, "champion", "1", policy=ACCEPTANCE, run_id=None, reason="x"
        )
    assert alias_version(client, NAME, "champion") is None
    assert alias_history(client, NAME) == []


def test_rollback_goes_to_previous_champion_and_is_recorded(client):
    for version in ("1", "2"):
        set_alias(
            client,
            NAME,
            "challenger",
            version,
            policy=ACCEPTANCE,
            run_id=None,
            reason="ok",
        )
        set_alias(
            client, NAME, "champion", version, policy=PROD, run_id=None, reason="ok"
        )
    move = rollback(
        client,
        NAME,
        "champion",
        policy=PROD,
        approving_aliases=["challenger", "champion"],
    )
    assert (move.from_version, move.to_version, move.kind) == ("2", "1", "rollback")
    assert str(alias_version(client, NAME, "champion").version) == "1"
    assert alias_history(client, NAME)[-1] == move


def test_rollback_refuses_unapproved_versions_and_empty_history(client):
    set_alias(
        client, NAME, "challenger", "1", policy=ACCEPTANCE, run_id=None, reason="ok"
    )
    set_alias(client, NAME, "champion", "1", policy=PROD, run_id=None, reason="ok")
    with pytest.raises(RegistryError, match="no previous version to roll back to"):
        rollback(
            client,
            NAME,
            "champion",
            policy=PROD,
            approving_aliases=["challenger", "champion"],
        )
    with pytest.raises(RegistryError, match="Version 3 of 'demand' was never approved"):
        rollback(
            client,
            NAME,
            "champion",
            policy=PROD,
            approving_aliases=["challenger", "champion"],
            to_version="3",
        )
    assert str(alias_version(client, NAME, "champion").version) == "1"


def test_lineage_of_any_version(client):
    lineage = version_lineage(client, NAME, "2")
    assert lineage["version"] == "2"
    assert lineage["env"] == "acceptance"
    assert lineage["train_set"]["sha256"] == "abc"
    assert lineage["params"] == {"alpha": "1"}
    with pytest.raises(
        RegistryError, match="Version 9 of 'demand' is not in the registry"
    ):
        version_lineage(client, NAME, "9")
