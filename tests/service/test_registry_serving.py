"""The service against a real registry (slow): versions registered by the deployment jobs.

A project copy whose registry holds version 1 (dev) and 2 (challenger, champion),
each with its ONNX and skops forms and the sha256 of every stored file. The tests
move the champion alias while clients send requests, tamper with a stored artifact,
and run `kedro serve` itself until SIGTERM.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from modelops.model_artifacts import (
    ARTIFACT_SHA_PREFIX,
    SKLEARN_FILE,
    load_served_model,
)
from modelops.service.server import ServerThread, build_service
from modelops.service.settings import ServingConfig, load_serving_config
from tests.conftest import CLEAN_ENVIRON, copy_project, run_kedro
from tests.service.conftest import (
    MODEL_NAME,
    TOKEN,
    Client,
    records_payload,
    split_payload,
)
from tests.service.test_app import _metric, hammer

pytestmark = pytest.mark.slow


class AnyAlias:
    """A policy that lets the test move any alias (the env policies are tested elsewhere)."""

    env = "test"

    def check_alias(self, alias: str) -> None:
        return None


def _uri(project: Path) -> str:
    return f"sqlite:///{project / 'mlruns' / 'mlflow.db'}"


@pytest.fixture(scope="module")
def registered(tmp_path_factory) -> Path:
    """A copy whose registry has version 1 (dev) and 2 (challenger, champion).

    MODELOPS_TEST_SERVING_PROJECT names such a copy to reuse (made by this fixture
    before; its champion must be version 2) instead of building one (minutes).
    """
    reuse = os.environ.get("MODELOPS_TEST_SERVING_PROJECT")
    if reuse:
        return Path(reuse)
    project = copy_project(tmp_path_factory.mktemp("serving-api"))
    run_kedro(
        project, "simulate", "--start", "2025-03-01", "--days", "24", "--stations", "6"
    )
    run_kedro(project, "run")
    run_kedro(project, "run", "--env", "acceptance")
    run_kedro(project, "run", "--env", "prod")
    return project


@pytest.fixture
def prod_config(registered, monkeypatch) -> ServingConfig:
    """The prod env's serving settings, tracking into the copy (never the project's)."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", _uri(registered))
    monkeypatch.delenv("MODELOPS_SERVING_TOKEN", raising=False)
    config = load_serving_config(registered, "prod")
    assert config.tracking_uri == _uri(registered)
    return config.replace(prediction_log={"enabled": False})


@pytest.fixture
def registry_client(registered):
    from mlflow.tracking import MlflowClient  # noqa: PLC0415

    client = MlflowClient(_uri(registered), _uri(registered))
    yield client
    # Leave the champion where the fixture put it, whatever a test did.
    if str(client.get_model_version_by_alias(MODEL_NAME, "champion").version) != "2":
        move_champion(client, "2", "test cleanup")


def move_champion(client: Any, version: str, reason: str) -> None:
    from modelops.registry import set_alias  # noqa: PLC0415

    set_alias(
        client,
        MODEL_NAME,
        "champion",
        version,
        policy=AnyAlias(),
        run_id=None,
        reason=reason,
    )


@contextlib.contextmanager
def serving(config: ServingConfig, *, poll: bool = False) -> Iterator[ServerThread]:
    service = build_service(config)
    service.holder.load_first(attempts=3, interval=1)
    if poll:
        service.holder.start_polling(config.settings.poll_seconds)
    thread = ServerThread(service).start()
    try:
        yield thread
    finally:
        thread.stop()


def wait_for_version(server: ServerThread, version: int, seconds: float = 60) -> None:
    holder = server.service.holder
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        current = holder.current
        if current is not None and current.info.version == version:
            return
        time.sleep(0.1)
    raise AssertionError(f"wanted version {version}: {holder.last_error}")


def sample_rows(registered: Path, columns: list[str]) -> pd.DataFrame:
    test_sets = sorted(
        (registered / "data/prod/05_model_input/test_sets").glob("*.parquet")
    )
    return pd.read_parquet(test_sets[-1])[columns].head(300)


@pytest.mark.parametrize("form", ["onnx", "sklearn"])
def test_serves_the_champion_in_the_form_asked_like_the_registered_model(
    registered, prod_config, registry_client, form
):
    config = prod_config.replace(form=form)
    champion = registry_client.get_model_version_by_alias(MODEL_NAME, "champion")
    reference = load_served_model(registry_client, MODEL_NAME, 2, prefer=form)
    sklearn_model = reference.sklearn_model
    rows = sample_rows(registered, config.contract.column_names)
    with serving(config) as server:
        client = Client(server)
        info = client.call("GET", "/model").body
        assert info["version"] == int(champion.version) == 2
        assert info["alias"] == "champion"
        assert info["run_id"] == champion.run_id
        assert info["git_commit"] == champion.tags["modelops.git_commit"]
        assert info["form"] == form == champion.tags["modelops.serving_form"] or (
            form == "sklearn"
        )
        assert info["sha256"] == reference.sha256
        assert client.call("GET", "/health").status == 200

        scored = client.call("POST", "/invocations", split_payload(rows.head(200)))
        expected = reference.predict_frame(rows.head(200))
        assert scored.body["predictions"] == expected.tolist()
        np.testing.assert_allclose(
            expected, sklearn_model.predict(rows.head(200)), rtol=1e-6, atol=1e-6
        )
        records = client.call("POST", "/invocations", records_payload(rows.tail(50)))
        assert records.body["predictions"] == (
            reference.predict_frame(rows.tail(50)).tolist()
        )
        for i in range(0, 300, 29):
            one = client.call("POST", "/invocations", split_payload(rows.iloc[[i]]))
            assert one.body["predictions"] == (
                reference.predict_frame(rows.iloc[[i]]).tolist()
            )
        client.close()


def test_follows_promotion_and_rollback_under_8_clients_without_failing_requests(
    registered, prod_config, registry_client
):
    config = prod_config.replace(poll_seconds=0.25)
    rows = sample_rows(registered, config.contract.column_names)
    with serving(config, poll=True) as server:
        stop, seen = threading.Event(), []
        threads = [
            threading.Thread(
                target=hammer,
                args=(server, split_payload(rows.iloc[[i]]), stop, seen),
                kwargs={"pause": 0.003},
            )
            for i in range(8)
        ]
        for thread in threads:
            thread.start()
        try:
            time.sleep(0.5)
            move_champion(registry_client, "1", "test: promote version 1")
            wait_for_version(server, 1)
            time.sleep(0.5)
            # `kedro rollback --env prod` moves champion back to its previous version.
            result = run_kedro(registered, "rollback", "--env", "prod")
            assert "champion: 1 -> 2" in result.stdout
            wait_for_version(server, 2)
            time.sleep(0.5)
        finally:
            stop.set()
            for thread in threads:
                thread.join(60)
        metrics = Client(server).call("GET", "/metrics").text
    statuses = {status for status, *_ in seen}
    assert statuses == {200}, statuses
    assert all(header == str(body) for _, header, body, _ in seen)
    versions = [body for _, _, body, _ in seen]
    assert {1, 2} <= set(versions)
    changes = [v for i, v in enumerate(versions) if i == 0 or v != versions[i - 1]]
    assert changes[0] == 2
    assert 1 in changes[1:]
    assert changes[-1] == 2
    assert _metric(metrics, "modelops_alias_swaps_total") == 2


def test_reload_endpoint_swaps_at_once(registered, prod_config, registry_client):
    config = prod_config.replace(token=TOKEN, poll_seconds=3600)
    with serving(config) as server:
        client = Client(server, TOKEN)
        same = client.call("POST", "/reload")
        assert same.status == 200
        assert same.body["reloaded"] is False
        move_champion(registry_client, "1", "test: promote version 1")
        assert client.call("GET", "/model").body["version"] == 2  # not polling
        moved = client.call("POST", "/reload")
        assert moved.status == 200, moved.text
        assert (moved.body["reloaded"], moved.body["previous_version"]) == (True, 2)
        assert moved.body["model_version"] == 1
        assert moved.headers["x-model-version"] == "1"
        assert client.call("GET", "/model").body["version"] == 1
        client.close()


def _stored_file(project: Path, sha256: str, name: str) -> Path:
    """The file in the copy's artifact store with this name and content hash."""
    for path in (project / "mlruns").rglob(name):
        if hashlib.sha256(path.read_bytes()).hexdigest() == sha256:
            return path
    raise AssertionError(f"no stored {name} with sha256 {sha256[:12]}")


def test_a_tampered_artifact_is_refused_and_the_old_version_keeps_serving(
    registered, prod_config, registry_client, caplog
):
    version_1 = registry_client.get_model_version(MODEL_NAME, "1")
    recorded = version_1.tags[f"{ARTIFACT_SHA_PREFIX}{SKLEARN_FILE}"]
    stored = _stored_file(registered, recorded, SKLEARN_FILE)
    original = stored.read_bytes()
    config = prod_config.replace(token=TOKEN, poll_seconds=3600)
    rows = sample_rows(registered, config.contract.column_names)
    try:
        stored.write_bytes(original[:-1] + bytes([original[-1] ^ 1]))
        with serving(config) as server:
            client = Client(server, TOKEN)
            move_champion(registry_client, "1", "test: promote tampered version 1")
            with caplog.at_level("WARNING", logger="modelops.service.app"):
                refused = client.call("POST", "/reload")
            assert refused.status == 502
            assert refused.body["error"].startswith(
                "reload failed; still serving version 2"
            )
            assert any(
                "sha256" in r.getMessage() and SKLEARN_FILE in r.getMessage()
                for r in caplog.records
            )
            scored = client.call("POST", "/invocations", split_payload(rows.head(3)))
            assert scored.status == 200
            assert scored.headers["x-model-version"] == "2"
            metrics = client.call("GET", "/metrics").text
            assert (
                _metric(
                    metrics, "modelops_model_load_failures_total", reason="integrity"
                )
                == 1
            )
            assert _metric(metrics, "modelops_model_version", model_name=MODEL_NAME,
                           alias="champion") == 2  # fmt: skip
            client.close()
    finally:
        stored.write_bytes(original)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_kedro_serve_runs_logs_predictions_and_stops_cleanly_on_sigterm(registered):
    port = _free_port()
    env = {
        **CLEAN_ENVIRON,
        "KEDRO_DISABLE_TELEMETRY": "true",
        "DO_NOT_TRACK": "1",
        "MODELOPS_SERVING_TOKEN": TOKEN,
    }
    env.pop("MLFLOW_TRACKING_URI", None)  # serve tracks into the project's mlruns/
    env.pop("OMP_NUM_THREADS", None)  # serve() sets it
    kedro = str(Path(sys.executable).parent / "kedro")
    process = subprocess.Popen(
        [kedro, "serve", "--env", "prod", "--port", str(port)],
        cwd=registered,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    rows = sample_rows(registered, load_serving_config_columns(registered))
    log_root = registered / "data/prod/07_model_output/rest_prediction_log"
    shutil.rmtree(log_root, ignore_errors=True)
    try:
        deadline, status = time.monotonic() + 120, None
        while time.monotonic() < deadline and process.poll() is None:
            with contextlib.suppress(OSError):
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
                conn.request("GET", "/health")
                status = conn.getresponse().status
                conn.close()
                if status == 200:
                    break
            time.sleep(0.25)
        assert status == 200, "the service did not become ready"
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        conn.request("GET", "/model")
        assert json.loads(conn.getresponse().read())["version"] == 2
        headers = {
            "Content-Type": "application/json",
            "Authorization": f"Bearer {TOKEN}",
        }
        conn.request(
            "POST",
            "/invocations",
            body=json.dumps({"dataframe_records": [{"station_id": "S0042"}]}),
            headers=headers,
        )
        refused = conn.getresponse()
        assert refused.status == 422
        refused.read()
        conn.request(
            "POST",
            "/invocations",
            body=json.dumps(split_payload(rows.head(5))),
            headers={**headers, "X-Request-Id": "sigterm-test-1"},
        )
        scored = conn.getresponse()
        assert scored.status == 200
        predictions = json.loads(scored.read())["predictions"]
        conn.request("GET", "/metrics")
        assert b"modelops_requests_total" in conn.getresponse().read()
        conn.close()
    finally:
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=60)
    assert process.returncode == 0, output
    assert "access request_id=" in output
    assert "status=422" in output
    assert "S0042" not in output
    assert TOKEN not in output
    logged = pd.concat(pd.read_parquet(p) for p in log_root.rglob("*.parquet"))
    assert logged["request_id"].tolist() == ["sigterm-test-1"] * 5
    assert logged["prediction"].tolist() == predictions
    assert (logged["model_version"] == 2).all()


def load_serving_config_columns(project: Path) -> list[str]:
    os.environ.setdefault("KEDRO_DISABLE_TELEMETRY", "true")
    return load_serving_config(project, "prod").contract.column_names
