"""The registration claim: one registrant per candidate, on a real MLflow SQLite store."""

from __future__ import annotations

import itertools
import subprocess
import sys
import textwrap
import threading
import time

import mlflow
import pytest
from mlflow.tracking import MlflowClient

from modelops.registry import (
    Claim,
    acquire_claim,
    claim_holder,
    claim_name,
    registration_claim,
    release_claim,
    try_claim,
    versions_with_fingerprint,
)
from tests.conftest import PROJECT_ROOT, new_mlflow_store

MODEL = "modelops-bike-demand"
FINGERPRINT = "0123456789abcdef" * 4
NAME = claim_name(MODEL, FINGERPRINT)


@pytest.fixture
def store(tmp_path, monkeypatch):
    """A migrated SQLite store (created once, before any concurrent use)."""
    monkeypatch.chdir(tmp_path)
    uri = new_mlflow_store(tmp_path)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    client = MlflowClient(uri, registry_uri=uri)
    client.search_registered_models()  # runs the migrations now, in one process
    return uri


def _names(client: MlflowClient) -> list[str]:
    return sorted(model.name for model in client.search_registered_models())


def test_claim_names_are_valid_registered_model_names(store):
    assert NAME == f"{MODEL}.claim.{FINGERPRINT[:32]}"
    client = MlflowClient(store, registry_uri=store)
    claim = try_claim(client, NAME, {"modelops.claim.run_id": "r1"})
    assert claim is not None and claim.name == NAME
    assert claim_holder(client, NAME)[1]["modelops.claim.run_id"] == "r1"
    assert try_claim(client, NAME) is None  # held: nobody else gets it
    release_claim(client, claim)
    assert _names(client) == []


CLAIMER = textwrap.dedent(
    """
    import sys, time
    from mlflow.tracking import MlflowClient
    from modelops.registry import try_claim

    uri, name, start_at = sys.argv[1], sys.argv[2], float(sys.argv[3])
    client = MlflowClient(uri, registry_uri=uri)
    while time.time() < start_at:
        time.sleep(0.001)
    print("WON" if try_claim(client, name) else "LOST")
    """
)


@pytest.mark.slow  # three fresh interpreters import mlflow
def test_of_concurrent_claimers_in_separate_processes_exactly_one_wins(store):
    start_at = time.time() + 8  # all three have imported mlflow by then
    env = {"PYTHONPATH": str(PROJECT_ROOT / "src"), "PATH": "/usr/bin:/bin"}
    claimers = [
        subprocess.Popen(
            [sys.executable, "-c", CLAIMER, store, NAME, str(start_at)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for _ in range(3)
    ]
    results = [claimer.communicate(timeout=120) for claimer in claimers]
    verdicts = sorted(out.strip() for out, _ in results)
    assert verdicts == ["LOST", "LOST", "WON"], results


def test_waiting_claimers_hold_the_claim_one_after_the_other(store):
    held: list[tuple[float, float]] = []
    errors: list[BaseException] = []

    def register() -> None:
        client = MlflowClient(store, registry_uri=store)
        try:
            with registration_claim(
                client,
                MODEL,
                FINGERPRINT,
                run_id="r",
                env="acceptance",
                poll_seconds=0.02,
            ):
                entered = time.monotonic()
                time.sleep(0.3)
                held.append((entered, time.monotonic()))
        except BaseException as err:  # re-raised in the test thread
            errors.append(err)

    threads = [threading.Thread(target=register) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors, errors
    assert len(held) == 3
    spans = sorted(held)
    assert all(before[1] <= after[0] for before, after in itertools.pairwise(spans))
    assert _names(MlflowClient(store, registry_uri=store)) == []


def test_a_claim_left_by_a_dead_run_is_taken_over_after_the_timeout(store):
    client = MlflowClient(store, registry_uri=store)
    dead = try_claim(client, NAME, {"modelops.claim.run_id": "killed"})
    assert dead is not None  # its holder never releases it
    started = time.monotonic()
    claim = acquire_claim(
        client,
        NAME,
        tags={"modelops.claim.run_id": "retry"},
        timeout_seconds=0.5,
        poll_seconds=0.05,
    )
    assert time.monotonic() - started >= 0.5  # it waited the timeout first
    assert claim.created_ms >= dead.created_ms
    assert claim_holder(client, NAME)[1]["modelops.claim.run_id"] == "retry"
    assert _names(client) == [NAME]  # the takeover marker is gone
    release_claim(client, claim)
    assert _names(client) == []


def test_a_live_claim_is_waited_for_not_taken_over(store):
    client = MlflowClient(store, registry_uri=store)
    holder = try_claim(client, NAME, {"modelops.claim.run_id": "alive"})
    sleeps: list[float] = []

    def release_after_three_polls(seconds: float) -> None:
        sleeps.append(seconds)
        if len(sleeps) == 3:
            release_claim(client, holder)

    claim = acquire_claim(
        client,
        NAME,
        timeout_seconds=900,
        poll_seconds=1.0,
        sleep=release_after_three_polls,
    )
    assert sleeps == [1.0, 1.0, 1.0]
    assert claim_holder(client, NAME)[0] == claim.created_ms
    release_claim(client, claim)


def test_the_claim_is_released_when_registration_fails(store):
    client = MlflowClient(store, registry_uri=store)
    with (
        pytest.raises(RuntimeError, match="upload failed"),
        registration_claim(client, MODEL, FINGERPRINT, run_id="r", env="dev"),
    ):
        assert claim_holder(client, NAME) is not None
        raise RuntimeError("upload failed")
    assert _names(client) == []


def test_releasing_a_claim_taken_over_leaves_the_new_holders_claim(store):
    client = MlflowClient(store, registry_uri=store)
    old = Claim(name=NAME, created_ms=1)  # ours, long since taken over
    new = try_claim(client, NAME, {"modelops.claim.run_id": "new"})
    release_claim(client, old)
    assert claim_holder(client, NAME)[0] == new.created_ms


def test_versions_are_found_by_their_fingerprint_tag(store):
    client = MlflowClient(store, registry_uri=store)
    client.create_registered_model(MODEL)
    run = client.create_run(client.create_experiment("claims"))
    for fingerprint in (FINGERPRINT, "f" * 64, FINGERPRINT):
        client.create_model_version(
            MODEL,
            source=f"runs:/{run.info.run_id}/model",
            run_id=run.info.run_id,
            tags={"modelops.fingerprint": fingerprint},
        )
    found = versions_with_fingerprint(client, MODEL, FINGERPRINT)
    assert [str(v.version) for v in found] == ["1", "3"]
    assert versions_with_fingerprint(client, MODEL, "a" * 64) == []
    assert versions_with_fingerprint(client, "no-such-model", FINGERPRINT) == []
