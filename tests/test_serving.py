"""The REST service: strict input handling, the compiled predictor, following the alias.

Fast tests serve a model fitted here (no registry) on a real loopback server; the
slow ones run against a project copy whose registry holds real versions (dev 1,
challenger and champion 2) and move the champion alias while clients send requests.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import http.client
import json
import os
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

from modelops import serving
from modelops.contracts import parse_contract
from modelops.modeling import build_model, model_inputs
from modelops.serving import (
    CompiledPipeline,
    ModelInfo,
    RefreshOutcome,
    RequestValidator,
    ServingConfig,
    create_server,
    make_predictor,
    verify_compiled,
)
from tests.conftest import copy_project, run_kedro

MODEL_NAME = "modelops-bike-demand"
TOKEN = "s3cret-token-for-tests"  # noqa: S105 (a test value)
ERROR_KEYS = {"error", "column", "rule", "request_id"}


# --- helpers --------------------------------------------------------------------------


def json_value(value: Any) -> Any:
    """A frame cell as the JSON a client sends (timestamps as ISO 8601, exact floats)."""
    if isinstance(value, pd.Timestamp | dt.datetime):
        return value.isoformat()
    return value.item() if hasattr(value, "item") else value


def split_payload(frame: pd.DataFrame) -> dict[str, Any]:
    rows = [[json_value(v) for v in row] for row in frame.itertuples(index=False)]
    return {"dataframe_split": {"columns": list(frame.columns), "data": rows}}


def records_payload(frame: pd.DataFrame) -> dict[str, Any]:
    columns = list(frame.columns)
    return {
        "dataframe_records": [
            dict(zip(columns, [json_value(v) for v in row], strict=True))
            for row in frame.itertuples(index=False)
        ]
    }


@dataclasses.dataclass
class Reply:
    status: int
    headers: dict[str, str]
    text: str

    @property
    def body(self) -> Any:
        return json.loads(self.text)


class Client:
    """One keep-alive connection to a server."""

    def __init__(self, server: serving.ServingServer, token: str | None = None) -> None:
        host, port = server.server_address[:2]
        self.conn = http.client.HTTPConnection(host, port, timeout=30)
        self.token = token

    def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        content_type: str = "application/json",
        headers: dict[str, str] | None = None,
    ) -> Reply:
        sent = dict(headers or {})
        if body is not None:
            sent.setdefault("Content-Type", content_type)
            if not isinstance(body, bytes | str):
                body = json.dumps(body)
        if self.token:
            sent.setdefault("Authorization", f"Bearer {self.token}")
        self.conn.request(method, path, body=body, headers=sent)
        response = self.conn.getresponse()
        text = response.read().decode()
        return Reply(response.status, dict(response.getheaders()), text)

    def close(self) -> None:
        self.conn.close()


def model_info(version: int) -> ModelInfo:
    return ModelInfo(
        name=MODEL_NAME,
        version=version,
        alias="champion",
        run_id=f"run-{version}",
        git_commit="0123abc",
        git_dirty="False",
        loaded_since="2025-03-01T00:00:00+00:00",
        model_uri=f"models:/{MODEL_NAME}/{version}",
    )


def install(server: serving.ServingServer, model: Any, version: int) -> None:
    """Serve ``model`` as ``version`` (what a registry load ends with)."""
    holder = server.holder
    holder.swap(holder.prepare(model, model_info(version)))


@contextlib.contextmanager
def running(config: ServingConfig, model: Any = None, version: int = 7) -> Iterator:
    server = create_server(config, "127.0.0.1", 0)
    if model is not None:
        install(server, model, version)
    server.start()
    try:
        yield server
    finally:
        server.close()


def assert_clean_error(reply: Reply, *forbidden: str) -> dict[str, Any]:
    """A short JSON error with the request id; no payload value, no stack trace."""
    body = reply.body
    assert ERROR_KEYS <= set(body)
    assert body["request_id"] == reply.headers["X-Request-Id"]
    version = reply.headers.get("X-Model-Version")
    assert body["model_version"] == (int(version) if version else None)
    assert "Traceback" not in reply.text
    assert 'File "' not in reply.text
    for value in forbidden:
        assert value not in reply.text
    assert len(body["error"]) < 300
    return body


# --- fixtures -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def contract(data_processing_params):
    spec = data_processing_params["source"]["contract"]
    return parse_contract(spec).without([data_processing_params["features"]["target"]])


@pytest.fixture(scope="module")
def rows(model_input_table, contract) -> pd.DataFrame:
    """Contract-valid rows (the newest 300 of the simulated model input table)."""
    return model_input_table[contract.column_names].tail(300).reset_index(drop=True)


def fit(table: pd.DataFrame, params: dict, model_conf: dict) -> Any:
    features = params["features"]
    model = build_model(features, model_conf)
    return model.fit(model_inputs(table, features), table[features["target"]])


@pytest.fixture(scope="module")
def fit_model(model_input_table, data_processing_params):
    """Fit a model config (conf/base/parameters_training.yml's ``model``) on the table."""
    return lambda model_conf: fit(model_input_table, data_processing_params, model_conf)


@pytest.fixture(scope="module")
def fitted(fit_model, training_params):
    """The configured model (HistGradientBoosting) fitted on the simulated table."""
    return fit_model(training_params["model"])


@pytest.fixture(scope="module")
def config(contract) -> ServingConfig:
    return ServingConfig(
        model_name=MODEL_NAME,
        alias="champion",
        contract=contract,
        tracking_uri="sqlite:///never-used-by-fast-tests.db",
        max_rows=50,
        max_body_bytes=64 * 1024,
    )


@pytest.fixture(scope="module")
def server(config, fitted):
    """One server for the tests that only send requests (each opens a connection)."""
    with running(config, fitted) as server:
        yield server


@pytest.fixture
def client(server):
    client = Client(server)
    yield client
    client.close()


# --- scoring --------------------------------------------------------------------------


def test_scores_split_and_records_like_model_predict(client, fitted, rows):
    expected = fitted.predict(rows.head(20))
    for payload in (split_payload(rows.head(20)), records_payload(rows.head(20))):
        reply = client.call("POST", "/invocations", payload)
        assert reply.status == 200, reply.text
        assert reply.body["predictions"] == expected.tolist()
        assert reply.body["model_version"] == 7
        assert reply.body["model_name"] == MODEL_NAME
        assert reply.headers["X-Model-Version"] == "7"
    single = client.call("POST", "/invocations", split_payload(rows.tail(1)))
    assert single.body["predictions"] == fitted.predict(rows.tail(1)).tolist()


def test_health_and_model_name_the_version(client):
    health = client.call("GET", "/health")
    assert health.status == 200
    assert health.body == {
        "status": "ready",
        "model_name": MODEL_NAME,
        "alias": "champion",
        "model_version": 7,
    }
    model = client.call("GET", "/model")
    assert model.status == 200
    assert model.headers["X-Model-Version"] == "7"
    assert model.body["version"] == model.body["model_version"] == 7
    assert model.body["run_id"] == "run-7"
    assert model.body["git_commit"] == "0123abc"
    assert model.body["alias"] == "champion"
    assert model.body["predictor"] == "compiled+trees"
    dt.datetime.fromisoformat(model.body["loaded_since"])


def test_not_ready_before_a_model_is_loaded(config, rows):
    with running(config) as server:
        client = Client(server)
        health = client.call("GET", "/health")
        assert health.status == 503
        assert health.body["status"] == "loading"
        assert "X-Model-Version" not in health.headers
        assert client.call("GET", "/model").status == 503
        scored = client.call("POST", "/invocations", split_payload(rows.head(1)))
        assert scored.status == 503
        assert_clean_error(scored)
        client.close()


def _valid_record(rows: pd.DataFrame) -> dict[str, Any]:
    return records_payload(rows.head(1))["dataframe_records"][0]


def _with(rows: pd.DataFrame, **changes: Any) -> dict[str, Any]:
    record = {**_valid_record(rows), **changes}
    return {"dataframe_records": [{k: v for k, v in record.items() if v != "DROP"}]}


# (name, payload maker, status, column, rule, values that must not be echoed)
BAD_INPUTS = [
    (
        "missing column",
        lambda r: _with(r, humidity_pct="DROP"),
        422,
        "humidity_pct",
        "required column",
        (),
    ),
    (
        "extra column",
        lambda r: _with(r, secret_extra=12345.678),
        422,
        "secret_extra",
        "no extra columns",
        ("12345.678",),
    ),
    (
        "wrong type",
        lambda r: _with(r, temperature_c="warm-98765"),
        422,
        "temperature_c",
        "dtype float",
        ("warm-98765",),
    ),
    (
        "integral column given a fraction",
        lambda r: _with(r, station_capacity=12.75),
        422,
        "station_capacity",
        "dtype int",
        ("12.75",),
    ),
    (
        "bool as a string",
        lambda r: _with(r, is_holiday="yes-maybe"),
        422,
        "is_holiday",
        "dtype bool",
        ("yes-maybe",),
    ),
    (
        "null",
        lambda r: _with(r, wind_speed_kmh=None),
        422,
        "wind_speed_kmh",
        "not null",
        (),
    ),
    (
        "out of range",
        lambda r: _with(r, humidity_pct=123.456),
        422,
        "humidity_pct",
        "max 100.0",
        ("123.456",),
    ),
    (
        "below range",
        lambda r: _with(r, station_capacity=-77),
        422,
        "station_capacity",
        "min 1",
        ("-77",),
    ),
    (
        "unseen category",
        lambda r: _with(r, weather="hail-storm-x"),
        422,
        "weather",
        "allowed values ['clear', 'cloudy', 'rain', 'snow', 'fog']",
        ("hail-storm-x",),
    ),
    (
        "pattern",
        lambda r: _with(r, station_id="X99999"),
        422,
        "station_id",
        "pattern ^S\\d{4}$",
        ("X99999",),
    ),
    (
        "not a timestamp",
        lambda r: _with(r, timestamp="yesterday-at-noon"),
        422,
        "timestamp",
        "dtype datetime",
        ("yesterday-at-noon",),
    ),
    (
        "timestamp with a time zone",
        lambda r: _with(r, timestamp="2025-03-03T10:00:00+05:00"),
        422,
        "timestamp",
        "dtype datetime",
        ("+05:00",),
    ),
    (
        "empty",
        lambda r: {"dataframe_split": {"columns": list(r.columns), "data": []}},
        422,
        None,
        "min_rows 1",
        (),
    ),
    (
        "too many rows",
        lambda r: split_payload(r.head(51)),
        413,
        None,
        "max_rows 50",
        (),
    ),
    (
        "unsupported format",
        lambda r: {"instances": [_valid_record(r)]},
        400,
        None,
        "format",
        (),
    ),
    (
        "two formats",
        lambda r: {**split_payload(r.head(1)), **records_payload(r.head(1))},
        400,
        None,
        "format",
        (),
    ),
    (
        "rows of the wrong width",
        lambda r: {
            "dataframe_split": {"columns": list(r.columns), "data": [["S0001", 3]]}
        },
        400,
        None,
        "format",
        (),
    ),
]


@pytest.mark.parametrize("case", BAD_INPUTS, ids=[case[0] for case in BAD_INPUTS])
def test_bad_input_is_rejected_cleanly(client, rows, case):
    _, payload, status, column, rule, forbidden = case
    reply = client.call("POST", "/invocations", payload(rows))
    assert reply.status == status, reply.text
    body = assert_clean_error(reply, *forbidden)
    assert body["column"] == column
    assert body["rule"] == rule
    if column:
        assert f"'{column}'" in body["error"]
    # The connection stays in step: the next request on it is answered normally.
    assert (
        client.call("POST", "/invocations", split_payload(rows.head(1))).status == 200
    )


def test_a_record_missing_a_column_names_the_record(client, rows):
    records = records_payload(rows.head(3))
    del records["dataframe_records"][1]["weather"]
    reply = client.call("POST", "/invocations", records)
    assert reply.status == 422
    body = assert_clean_error(reply)
    assert (body["column"], body["rule"], body["row"]) == (
        "weather",
        "required column",
        1,
    )


def test_value_errors_name_the_row(client, rows):
    payload = split_payload(rows.head(5))
    payload["dataframe_split"]["data"][3][4] = 999.0  # temperature_c, 5th column
    reply = client.call("POST", "/invocations", payload)
    body = assert_clean_error(reply, "999")
    assert (body["column"], body["rule"], body["row"]) == (
        "temperature_c",
        "max 55.0",
        3,
    )


# (name, body, content type, status, rule)
UNPARSEABLE = [
    ("empty body", b"", "application/json", 400, "json"),
    (
        "malformed",
        b'{"dataframe_split": {"columns": [',
        "application/json",
        400,
        "json",
    ),
    (
        "NaN",
        b'{"dataframe_records": [{"temperature_c": NaN}]}',
        "application/json",
        400,
        "json",
    ),
    ("not utf-8", b"\xff\xfe not utf-8", "application/json", 400, "json"),
    ("not an object", b"[1, 2, 3]", "application/json", 400, "format"),
    (
        "csv",
        b"timestamp,station_id\n2025-03-03,S0001\n",
        "text/csv",
        415,
        "content-type",
    ),
    (
        "charset",
        b'{"dataframe_records": []}',
        "application/json; charset=latin-1",
        415,
        "content-type",
    ),
]


@pytest.mark.parametrize("case", UNPARSEABLE, ids=[case[0] for case in UNPARSEABLE])
def test_unparseable_requests_are_rejected_cleanly(client, rows, case):
    _, body, content_type, status, rule = case
    reply = client.call("POST", "/invocations", body, content_type=content_type)
    assert reply.status == status, reply.text
    error = assert_clean_error(reply, "S0001")
    assert error["rule"] == rule
    next_one = client.call("POST", "/invocations", split_payload(rows.head(1)))
    assert next_one.status == 200


def test_oversized_body_is_refused_before_parsing(server, rows):
    client = Client(server)
    payload = json.dumps(split_payload(rows.head(40))).encode()
    padding = b" " * (server.config.max_body_bytes + 1 - len(payload))
    reply = client.call("POST", "/invocations", payload + padding)
    assert reply.status == 413
    assert reply.headers.get("Connection") == "close"
    body = assert_clean_error(reply, "S00")
    assert body["rule"] == f"max_body_bytes {server.config.max_body_bytes}"
    client.close()


def test_unknown_paths_and_methods_are_json_errors(client):
    assert_clean_error(missing := client.call("GET", "/admin"))
    assert missing.status == 404
    wrong = client.call("GET", "/invocations")
    assert wrong.status == 405
    assert wrong.headers["Allow"] == "POST"
    assert_clean_error(wrong)
    odd = client.call("DELETE", "/model")
    assert odd.status == 405
    assert_clean_error(odd)


def test_a_failing_model_is_a_500_with_a_request_id(config, rows, caplog):
    class Exploding:
        def predict(self, frame):
            raise ValueError(f"cannot score {frame.iloc[0]['station_id']} 4242")

    with running(config, Exploding(), version=3) as server:
        client = Client(server)
        with caplog.at_level("ERROR", logger="modelops.serving"):
            reply = client.call(
                "POST",
                "/invocations",
                split_payload(rows.head(1)),
                headers={"X-Request-Id": "req-42"},
            )
        assert reply.status == 500
        body = assert_clean_error(reply, "4242", "S000", "ValueError")
        assert body["request_id"] == "req-42"
        assert reply.headers["X-Model-Version"] == "3"
        logged = [r for r in caplog.records if "req-42" in r.getMessage()]
        assert logged
        assert logged[0].exc_info is not None  # the trace is in the server log
        client.close()


def test_access_log_has_id_status_version_latency_not_the_payload(client, rows, caplog):
    payload = split_payload(rows.head(1))
    station = payload["dataframe_split"]["data"][0][1]
    with caplog.at_level("INFO", logger="modelops.serving.access"):
        client.call("POST", "/invocations", payload, headers={"X-Request-Id": "abc-1"})
        client.call("POST", "/invocations", _with(rows, humidity_pct=555.5))
    lines = [r.getMessage() for r in caplog.records if r.name.endswith(".access")]
    assert len(lines) == 2
    assert lines[0].startswith(
        "request_id=abc-1 method=POST path=/invocations status=200"
    )
    assert "version=7" in lines[0]
    assert "rows=1" in lines[0]
    assert "latency_ms=" in lines[0]
    assert "status=422" in lines[1]
    assert not any(station in line or "555.5" in line for line in lines)


# --- token ----------------------------------------------------------------------------


def test_token_protects_scoring_and_reload(config, fitted, rows, monkeypatch):
    config = dataclasses.replace(config, token=TOKEN)
    with running(config, fitted) as server:
        anonymous, wrong, right = (
            Client(server),
            Client(server, "not-the-token"),
            Client(server, TOKEN),
        )
        payload = split_payload(rows.head(1))
        for client in (anonymous, wrong):
            denied = client.call("POST", "/invocations", payload)
            assert denied.status == 401
            assert denied.headers["WWW-Authenticate"].startswith("Bearer")
            assert_clean_error(denied, TOKEN)
            assert client.call("POST", "/reload").status == 401
        assert right.call("POST", "/invocations", payload).status == 200
        assert anonymous.call("GET", "/health").status == 200  # probes stay open

        monkeypatch.setattr(
            server.holder, "refresh", lambda timeout: RefreshOutcome(True, 7, 8)
        )
        reloaded = right.call("POST", "/reload")
        assert reloaded.status == 200
        assert reloaded.body["reloaded"] is True
        assert reloaded.body["previous_version"] == 7
        assert reloaded.body["model_version"] == 8
        for client in (anonymous, wrong, right):
            client.close()


def test_reload_is_refused_without_a_configured_token(client):
    reply = client.call("POST", "/reload", headers={"Authorization": "Bearer x"})
    assert reply.status == 403
    body = assert_clean_error(reply)
    assert "MODELOPS_SERVING_TOKEN" in body["error"]


def test_config_reads_conf_and_token_from_the_environment(data_processing_params):
    params = {
        **data_processing_params,
        "serving_api": {"poll_seconds": 3, "max_rows": 10, "token_env": "MY_TOKEN"},
    }
    globals_ = {"registered_model_name": MODEL_NAME, "alias": "challenger"}
    config = ServingConfig.from_conf(
        params, globals_, "sqlite:///x.db", {"MY_TOKEN": "t"}
    )
    assert (config.alias, config.poll_seconds, config.max_rows) == ("challenger", 3, 10)
    assert config.token == "t"  # noqa: S105 (a test value)
    assert "rentals" not in config.contract.column_names
    assert "token='" not in repr(config)  # the token never shows in logs or reprs
    no_token = ServingConfig.from_conf(params, globals_, "sqlite:///x.db", {})
    assert no_token.token is None
    with pytest.raises(serving.ConfigError, match="poll_seconds"):
        ServingConfig.from_conf(
            {**params, "serving_api": {"poll_seconds": -1}}, globals_, "u", {}
        )
    with pytest.raises(serving.ConfigError, match="alias"):
        ServingConfig.from_conf(params, {**globals_, "alias": "none"}, "u", {})


# --- atomic swap ----------------------------------------------------------------------


class ConstantModel:
    """Predicts one number per row, slowly enough for requests to overlap a swap."""

    def __init__(self, value: float) -> None:
        self.value = value

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        time.sleep(0.002)
        return np.full(len(frame), self.value)


def hammer(
    server: serving.ServingServer,
    payload: dict,
    stop: threading.Event,
    seen: list,
    *,
    pause: float = 0.0,
) -> None:
    """Send requests until told to stop (bounded), recording status and versions."""
    client = Client(server, server.config.token)
    deadline = time.monotonic() + 120
    for _ in range(20_000):
        if stop.is_set() or time.monotonic() > deadline:
            break
        time.sleep(pause)
        try:
            reply = client.call("POST", "/invocations", payload)
            body = reply.body
            seen.append(
                (
                    reply.status,
                    reply.headers.get("X-Model-Version"),
                    body.get("model_version"),
                    (body.get("predictions") or [None])[0],
                )
            )
        except (OSError, http.client.HTTPException) as err:
            seen.append((type(err).__name__, None, None, None))
    client.close()


def test_swap_is_atomic_for_requests_in_flight(config, rows):
    with running(config, ConstantModel(1.0), version=1) as server:
        stop, seen = threading.Event(), []
        payload = split_payload(rows.head(1))
        threads = [
            threading.Thread(target=hammer, args=(server, payload, stop, seen))
            for _ in range(4)
        ]
        for thread in threads:
            thread.start()
        for version, value in ((2, 2.0), (1, 1.0), (2, 2.0)):
            time.sleep(0.3)
            install(server, ConstantModel(value), version)
        time.sleep(0.3)
        stop.set()
        for thread in threads:
            thread.join(30)
    assert len(seen) > 50
    assert all(status == 200 for status, *_ in seen), {s for s, *_ in seen}
    assert all(header == str(body) for _, header, body, _ in seen)
    assert all(value == float(body) for _, _, body, value in seen)
    assert {body for _, _, body, _ in seen} == {1, 2}


# --- the compiled predictor -----------------------------------------------------------


MODEL_CONFIGS = {
    "hist_gradient_boosting": None,  # the configured default
    "ridge_onehot": {"class": "sklearn.linear_model.Ridge", "kwargs": {"alpha": 1.0}},
    "random_forest_ordinal": {
        "class": "sklearn.ensemble.RandomForestRegressor",
        "kwargs": {"n_estimators": 5, "max_depth": 6},
        "seed": 0,
    },
}


@pytest.mark.parametrize("name", MODEL_CONFIGS)
def test_compiled_predictions_equal_model_predict(
    name, fit_model, training_params, contract, rows
):
    model = fit_model(MODEL_CONFIGS[name] or training_params["model"])
    validator = RequestValidator(contract, max_rows=1000)
    predict, kind = make_predictor(model, validator)
    assert kind.startswith("compiled"), kind
    assert kind.endswith("+trees") == (name == "hist_gradient_boosting")
    unseen = rows.copy()
    unseen.loc[::7, "station_id"] = "S9999"  # passes the contract, unknown to the model
    for frame in (rows, unseen):
        batch = validator.validate(split_payload(frame))
        assert predict(batch) == model.predict(frame).tolist()
        for i in range(0, len(frame), 37):  # single rows take the row-wise path
            one = validator.validate(split_payload(frame.iloc[[i]]))
            assert predict(one) == model.predict(frame.iloc[[i]]).tolist()


def test_compiled_path_that_differs_is_not_used(fitted, contract, rows, monkeypatch):
    validator = RequestValidator(contract, max_rows=1000)
    compiled = CompiledPipeline(fitted)
    assert verify_compiled(compiled, fitted, validator) is None
    exact = compiled._walk
    compiled._walk = lambda row: exact(row) + 1e-12
    assert "differs" in verify_compiled(compiled, fitted, validator)

    original = serving._tree_walker

    def off_by_a_bit(estimator):
        walk = original(estimator)
        return lambda row: walk(row) * (1 + 1e-15)

    monkeypatch.setattr(serving, "_tree_walker", off_by_a_bit)
    predict, kind = make_predictor(fitted, validator)
    assert kind == "pipeline"
    batch = validator.validate(split_payload(rows.head(3)))
    assert predict(batch) == fitted.predict(rows.head(3)).tolist()


def test_unrecognised_pipelines_are_served_by_model_predict(
    model_input_table, data_processing_params, contract, rows
):
    from sklearn.compose import ColumnTransformer  # noqa: PLC0415
    from sklearn.linear_model import Ridge  # noqa: PLC0415
    from sklearn.pipeline import Pipeline  # noqa: PLC0415
    from sklearn.preprocessing import StandardScaler  # noqa: PLC0415

    numeric = ["temperature_c", "humidity_pct", "station_capacity"]
    model = Pipeline(
        [
            ("prepare", ColumnTransformer([("scale", StandardScaler(), numeric)])),
            ("model", Ridge()),
        ]
    ).fit(model_input_table[numeric], model_input_table["rentals"])
    validator = RequestValidator(contract, max_rows=1000)
    predict, kind = make_predictor(model, validator)
    assert kind == "pipeline"
    batch = validator.validate(split_payload(rows.head(10)))
    assert predict(batch) == model.predict(rows.head(10)).tolist()
    off, kind_off = make_predictor(model, validator, compile_model=False)
    assert kind_off == "pipeline"
    assert off(batch) == predict(batch)


def test_validated_frame_has_training_dtypes(contract, rows, model_input_table):
    validator = RequestValidator(contract, max_rows=1000)
    frame = validator.validate(split_payload(rows.head(4))).frame()
    assert list(frame.columns) == contract.column_names
    assert str(frame["timestamp"].dtype) == "datetime64[us]"
    assert frame["station_capacity"].dtype == np.int64
    assert frame["temperature_c"].dtype == np.float64
    assert frame["is_holiday"].dtype == bool
    assert frame["station_id"].dtype == model_input_table["station_id"].dtype
    pd.testing.assert_frame_equal(
        frame.drop(columns="timestamp"),
        rows.head(4).drop(columns="timestamp").reset_index(drop=True),
    )


def test_requests_are_checked_by_the_contract_data_processing_uses(rows):
    """Every rule of the one Contract reaches REST; frame-level promises do not."""
    spec = {
        "min_rows": 100,  # per source partition, not per request
        "unique_key": ["station_id"],  # what a run reads, not one request
        "columns": {
            "station_id": {"dtype": "string"},
            "station_capacity": {"dtype": "int", "allowed": [10, 11, 12]},
            "temperature_c": {"dtype": "float", "allowed": [1.5, 2.5]},
        },
    }
    validator = RequestValidator(parse_contract(spec), max_rows=10)
    record = {"station_id": "S0001", "station_capacity": 11, "temperature_c": 2.5}
    twice = validator.validate({"dataframe_records": [record, record]})
    assert twice.rows == 2
    with pytest.raises(serving.RequestRejected) as info:
        validator.validate(
            {"dataframe_records": [record, {**record, "temperature_c": 3.5}]}
        )
    assert info.value.status == 422
    assert (info.value.column, info.value.rule, info.value.row) == (
        "temperature_c",
        "allowed values [1.5, 2.5]",
        1,
    )
    assert "3.5" not in info.value.message
    with pytest.raises(serving.RequestRejected, match="'station_capacity' breaks"):
        validator.validate({"dataframe_records": [{**record, "station_capacity": 13}]})


def test_the_service_refuses_features_the_contract_lacks(data_processing_params):
    parameters = {
        **data_processing_params,
        "features": {
            **data_processing_params["features"],
            "numeric": ["station_capacity", "gusts_kmh"],
        },
    }
    with pytest.raises(
        serving.ConfigError,
        match=r"\['gusts_kmh'\](.|\n)*use_case\.contract\.columns in "
        r"conf/base/use_case\.yml",
    ):
        ServingConfig.from_conf(
            parameters,
            {"registered_model_name": MODEL_NAME, "alias": "champion"},
            "sqlite:///unused.db",
        )


# --- against a real registry (slow) ---------------------------------------------------


class AnyAlias:
    """A policy that lets the test move any alias (the env policies are tested elsewhere)."""

    env = "test"

    def check_alias(self, alias: str) -> None:
        return None


def _uri(project: Path) -> str:
    return f"sqlite:///{project / 'mlruns' / 'mlflow.db'}"


@pytest.fixture(scope="module")
def registered(tmp_path_factory):
    """A copy whose registry has version 1 (dev) and 2 (challenger, champion).

    Also holds the batch pipeline's predictions of the newest day by the champion.
    """
    project = copy_project(tmp_path_factory.mktemp("serving-api"))
    run_kedro(
        project, "simulate", "--start", "2025-03-01", "--days", "24", "--stations", "6"
    )
    run_kedro(project, "run")
    run_kedro(project, "run", "--env", "acceptance")
    run_kedro(project, "run", "--env", "prod")
    run_kedro(project, "run", "--env", "prod", "--pipelines", "serving")
    return project


@pytest.fixture
def prod_config(registered, monkeypatch) -> ServingConfig:
    """The prod env's serving settings, tracking into the copy (never the project's)."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", _uri(registered))
    monkeypatch.delenv("MODELOPS_SERVING_TOKEN", raising=False)
    config = serving.load_serving_config(registered, "prod")
    assert config.tracking_uri == _uri(registered)
    return config


@pytest.fixture
def registry_client(registered):
    from mlflow.tracking import MlflowClient  # noqa: PLC0415

    client = MlflowClient(_uri(registered), _uri(registered))
    yield client
    # Leave the champion where the fixture put it, whatever a test did.
    if str(client.get_model_version_by_alias(MODEL_NAME, "champion").version) != "2":
        serving_set_alias(client, "2", "test cleanup")


def serving_set_alias(client: Any, version: str, reason: str) -> None:
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


def wait_for_version(server: serving.ServingServer, version: int, seconds: float = 60):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        current = server.holder.current
        if current is not None and current.info.version == version:
            return
        time.sleep(0.1)
    raise AssertionError(
        f"still serving {server.holder.current.info.version if server.holder.current else None}"
        f", wanted {version}: {server.holder.last_error}"
    )


def registered_model(project: Path, alias: str = "champion") -> Any:
    import mlflow.sklearn  # noqa: PLC0415
    from mlflow.tracking import MlflowClient  # noqa: PLC0415

    client = MlflowClient(_uri(project), _uri(project))
    source = client.get_model_version_download_uri(
        MODEL_NAME, client.get_model_version_by_alias(MODEL_NAME, alias).version
    )
    return mlflow.sklearn.load_model(source)


@pytest.mark.slow
@pytest.mark.parametrize("compile_model", [True, False], ids=["compiled", "pipeline"])
def test_serves_the_champion_like_model_predict_and_batch(
    registered, prod_config, registry_client, compile_model
):
    config = dataclasses.replace(prod_config, compile_model=compile_model)
    champion = registry_client.get_model_version_by_alias(MODEL_NAME, "champion")
    model = registered_model(registered)
    contract_columns = config.contract.column_names
    test_sets = sorted(
        (registered / "data/prod/05_model_input/test_sets").glob("*.parquet")
    )
    rows = pd.read_parquet(test_sets[-1])[contract_columns].head(300)
    with running(config) as server:
        server.holder.load_first(attempts=3, interval=1)
        client = Client(server)
        info = client.call("GET", "/model").body
        assert info["version"] == int(champion.version) == 2
        assert info["alias"] == "champion"
        assert info["run_id"] == champion.run_id
        assert info["git_commit"] == champion.tags["modelops.git_commit"]
        assert info["predictor"] == ("compiled+trees" if compile_model else "pipeline")
        assert client.call("GET", "/health").status == 200

        scored = client.call("POST", "/invocations", split_payload(rows.head(200)))
        assert scored.body["predictions"] == model.predict(rows.head(200)).tolist()
        records = client.call("POST", "/invocations", records_payload(rows.tail(50)))
        assert records.body["predictions"] == model.predict(rows.tail(50)).tolist()
        for i in range(0, 300, 29):
            one = client.call("POST", "/invocations", split_payload(rows.iloc[[i]]))
            assert one.body["predictions"] == model.predict(rows.iloc[[i]]).tolist()

        # The batch pipeline (`kedro run --env prod --pipelines serving`) scored the
        # newest source day with the same champion: the service agrees exactly.
        batch_root = registered / "data/prod/07_model_output/batch_predictions"
        batch_file = next(iter(sorted(batch_root.glob("*/*.parquet"))))
        batch = pd.read_parquet(batch_file)
        source = pd.read_parquet(
            registered / "data/source/bike_rentals" / batch_file.name
        )
        keys = ["timestamp", "station_id"]
        source = source.merge(batch[[*keys, "prediction", "model_version"]], on=keys)
        assert (source["model_version"] == 2).all()
        online = client.call(
            "POST", "/invocations", split_payload(source[contract_columns])
        )
        assert online.body["predictions"] == source["prediction"].tolist()
        client.close()


@pytest.mark.slow
def test_follows_promotion_and_rollback_without_failing_requests(
    registered, prod_config, registry_client
):
    config = dataclasses.replace(prod_config, poll_seconds=0.25)
    rows = pd.read_parquet(
        sorted((registered / "data/source/bike_rentals").glob("*.parquet"))[-1]
    )[config.contract.column_names]
    with running(config) as server:
        server.holder.load_first(attempts=3, interval=1)
        server.holder.start_polling(config.poll_seconds)
        stop, seen = threading.Event(), []
        payloads = [split_payload(rows.iloc[[i]]) for i in range(4)]
        threads = [
            threading.Thread(
                target=hammer,
                args=(server, payload, stop, seen),
                kwargs={"pause": 0.003},
            )
            for payload in payloads
        ]
        for thread in threads:
            thread.start()
        try:
            time.sleep(0.5)
            serving_set_alias(registry_client, "1", "test: promote version 1")
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
    statuses = {status for status, *_ in seen}
    assert statuses == {200}, statuses
    assert all(header == str(body) for _, header, body, _ in seen)
    versions = [body for _, _, body, _ in seen]
    assert {1, 2} <= set(versions)
    # Every client saw 2, then 1, then 2 again: no request failed during the swaps.
    changes = [v for i, v in enumerate(versions) if i == 0 or v != versions[i - 1]]
    assert changes[0] == 2
    assert 1 in changes[1:]
    assert changes[-1] == 2


@pytest.mark.slow
def test_reload_endpoint_swaps_at_once(registered, prod_config, registry_client):
    config = dataclasses.replace(prod_config, token=TOKEN, poll_seconds=3600)
    with running(config) as server:
        server.holder.load_first(attempts=3, interval=1)
        client = Client(server, TOKEN)
        same = client.call("POST", "/reload")
        assert same.status == 200
        assert same.body["reloaded"] is False
        serving_set_alias(registry_client, "1", "test: promote version 1")
        assert client.call("GET", "/model").body["version"] == 2  # not polling
        moved = client.call("POST", "/reload")
        assert moved.status == 200, moved.text
        assert (moved.body["reloaded"], moved.body["previous_version"]) == (True, 2)
        assert moved.body["model_version"] == 1
        assert moved.headers["X-Model-Version"] == "1"
        assert client.call("GET", "/model").body["version"] == 1
        client.close()


@pytest.mark.slow
def test_serve_runs_until_sigterm(registered):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {
        **os.environ,
        "KEDRO_DISABLE_TELEMETRY": "true",
        "DO_NOT_TRACK": "1",
        "MODELOPS_SERVING_TOKEN": TOKEN,
    }
    env.pop("MLFLOW_TRACKING_URI", None)  # serve() tracks into the project's mlruns/
    env.pop("OMP_NUM_THREADS", None)  # serve() sets it
    code = (
        "import sys; from pathlib import Path; from modelops.serving import serve; "
        "serve(Path.cwd(), 'prod', '127.0.0.1', int(sys.argv[1]))"
    )
    process = subprocess.Popen(
        [sys.executable, "-c", code, str(port)],
        cwd=registered,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
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
        conn.request(
            "POST",
            "/invocations",
            body=json.dumps({"dataframe_records": [{"station_id": "S0042"}]}),
            headers={
                "Content-Type": "application/json",
                "Authorization": f"Bearer {TOKEN}",
            },
        )
        assert conn.getresponse().status == 422
        conn.close()
    finally:
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=30)
    assert process.returncode == 0, output
    assert "access request_id=" in output
    assert "status=422" in output
    assert "S0042" not in output
    assert TOKEN not in output
