"""The REST battery: scoring, strict input handling, clean errors, headers, token, swap.

Every test talks HTTP to a real uvicorn server on loopback serving a model fitted in
the test session (its ONNX form, as a registered version carries it).
"""

from __future__ import annotations

import datetime as dt
import http.client
import json
import socket
import threading
import time
from typing import Any

import numpy as np
import pandas as pd
import pytest

from modelops.service.model_holder import RefreshOutcome
from tests.service.conftest import (
    MODEL_NAME,
    TOKEN,
    Client,
    ConstantServed,
    FittedServed,
    assert_clean_error,
    make_config,
    records_payload,
    running,
    split_payload,
)

# --- scoring --------------------------------------------------------------------------


def test_scores_split_and_records_like_the_served_model(client, served, fitted, rows):
    expected = served.predict_frame(rows.head(20))
    np.testing.assert_allclose(expected, fitted.predict(rows.head(20)), rtol=1e-9)
    for payload in (split_payload(rows.head(20)), records_payload(rows.head(20))):
        reply = client.call("POST", "/invocations", payload)
        assert reply.status == 200, reply.text
        assert reply.body["predictions"] == expected.tolist()
        assert reply.body["model_version"] == 7
        assert reply.body["model_name"] == MODEL_NAME
        assert reply.headers["x-model-version"] == "7"
    single = client.call("POST", "/invocations", split_payload(rows.tail(1)))
    assert single.body["predictions"] == served.predict_frame(rows.tail(1)).tolist()


def test_sklearn_form_scores_a_frame_with_the_contract_dtypes(
    config, fitted, features, rows
):
    sklearn_form = FittedServed(fitted, features, form="sklearn", version=4)
    with running(config, sklearn_form) as server:
        client = Client(server)
        reply = client.call("POST", "/invocations", records_payload(rows.head(30)))
        assert reply.status == 200, reply.text
        assert reply.body["predictions"] == fitted.predict(rows.head(30)).tolist()
        assert client.call("GET", "/model").body["form"] == "sklearn"
        client.close()


def test_health_and_model_name_the_version(client, served):
    health = client.call("GET", "/health")
    assert health.status == 200
    assert health.body == {
        "status": "ready",
        "model_name": MODEL_NAME,
        "alias": "champion",
        "model_version": 7,
    }
    assert client.call("GET", "/ping").status == 200  # what MLflow's clients poll
    model = client.call("GET", "/model")
    assert model.status == 200
    assert model.headers["x-model-version"] == "7"
    assert model.body["version"] == model.body["model_version"] == 7
    assert model.body["run_id"] == "run-7"
    assert model.body["git_commit"] == "0123abc"
    assert model.body["alias"] == "champion"
    assert model.body["form"] == "onnx"
    assert model.body["sha256"] == served.sha256
    dt.datetime.fromisoformat(model.body["loaded_since"])


def test_not_ready_before_a_model_is_loaded(config, rows):
    with running(config) as server:
        client = Client(server)
        health = client.call("GET", "/health")
        assert health.status == 503
        assert health.body["status"] == "loading"
        assert "x-model-version" not in health.headers
        assert client.call("GET", "/model").status == 503
        scored = client.call("POST", "/invocations", split_payload(rows.head(1)))
        assert scored.status == 503
        assert_clean_error(scored)
        client.close()


def test_request_ids_are_kept_when_sane_and_made_otherwise(client, rows):
    payload = split_payload(rows.head(1))
    kept = client.call(
        "POST", "/invocations", payload, headers={"X-Request-Id": "a-1.b:c"}
    )
    assert kept.headers["x-request-id"] == "a-1.b:c"
    for insane in ("x" * 65, "has space", "<script>"):
        made = client.call(
            "POST", "/invocations", payload, headers={"X-Request-Id": insane}
        )
        assert made.status == 200
        assert len(made.headers["x-request-id"]) == 32
        assert insane not in made.text


# --- bad input ------------------------------------------------------------------------


def _valid_record(rows: pd.DataFrame) -> dict[str, Any]:
    return records_payload(rows.head(1))["dataframe_records"][0]


def _with(rows: pd.DataFrame, **changes: Any) -> dict[str, Any]:
    record = {**_valid_record(rows), **changes}
    return {"dataframe_records": [{k: v for k, v in record.items() if v != "DROP"}]}


# (name, payload maker, status, column, rule, values that must not be echoed)
BAD_INPUTS = [
    ("missing column", lambda r: _with(r, humidity_pct="DROP"), 422, "humidity_pct",
     "required column", ()),
    ("extra column", lambda r: _with(r, secret_extra=12345.678), 422, "secret_extra",
     "no extra columns", ("12345.678",)),
    ("wrong type", lambda r: _with(r, temperature_c="warm-98765"), 422, "temperature_c",
     "dtype float", ("warm-98765",)),
    ("integral column given a fraction", lambda r: _with(r, station_capacity=12.75), 422,
     "station_capacity", "dtype int", ("12.75",)),
    ("integer beyond 64 bits", lambda r: _with(r, station_capacity=2**70), 422,
     "station_capacity", "dtype int", (str(2**70),)),
    ("bool as a string", lambda r: _with(r, is_holiday="yes-maybe"), 422, "is_holiday",
     "dtype bool", ("yes-maybe",)),
    ("bool as a number", lambda r: _with(r, is_holiday=1), 422, "is_holiday",
     "dtype bool", ()),
    ("number as a bool", lambda r: _with(r, station_capacity=True), 422,
     "station_capacity", "dtype int", ()),
    ("null", lambda r: _with(r, wind_speed_kmh=None), 422, "wind_speed_kmh", "not null",
     ()),
    ("beyond float64", lambda r: _with(r, wind_speed_kmh=10**400), 422,
     "wind_speed_kmh", "finite", ()),
    ("out of range", lambda r: _with(r, humidity_pct=123.456), 422, "humidity_pct",
     "max 100.0", ("123.456",)),
    ("below range", lambda r: _with(r, station_capacity=-77), 422, "station_capacity",
     "min 1", ("-77",)),
    ("unseen category", lambda r: _with(r, weather="hail-storm-x"), 422, "weather",
     "allowed values ['clear', 'cloudy', 'rain', 'snow', 'fog']", ("hail-storm-x",)),
    ("category of the wrong type", lambda r: _with(r, weather=31337), 422, "weather",
     "dtype string", ("31337",)),
    ("pattern", lambda r: _with(r, station_id="X99999"), 422, "station_id",
     "pattern ^S\\d{4}$", ("X99999",)),
    ("not a timestamp", lambda r: _with(r, timestamp="yesterday-at-noon"), 422,
     "timestamp", "dtype datetime", ("yesterday-at-noon",)),
    ("timestamp as a number", lambda r: _with(r, timestamp=1741000000), 422,
     "timestamp", "dtype datetime", ("1741000000",)),
    ("timestamp with a time zone", lambda r: _with(r, timestamp="2025-03-03T10:00:00+05:00"),
     422, "timestamp", "dtype datetime", ("+05:00",)),
    ("empty", lambda r: {"dataframe_split": {"columns": list(r.columns), "data": []}},
     422, None, "min_rows 1", ()),
    ("too many rows", lambda r: split_payload(r.head(51)), 413, None, "max_rows 50", ()),
    ("unsupported format", lambda r: {"instances": [_valid_record(r)]}, 400, None,
     "format", ()),
    ("two formats", lambda r: {**split_payload(r.head(1)), **records_payload(r.head(1))},
     400, None, "format", ()),
    ("rows of the wrong width", lambda r: {"dataframe_split": {"columns": list(r.columns),
     "data": [["S0001", 3]]}}, 400, None, "format", ()),
    ("a column named twice", lambda r: {"dataframe_split": {"columns": ["a", "a"],
     "data": [[1, 2]]}}, 400, None, "unique columns", ()),
    ("column names that are not strings", lambda r: {"dataframe_split": {
     "columns": [["timestamp"], 3], "data": [[1, 2]]}}, 400, None, "format", ()),
]  # fmt: skip


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
        assert f"rule '{rule}' at row 0" in body["error"] or rule in {
            "required column",
            "no extra columns",
        }
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


def test_value_errors_name_the_first_column_then_the_first_row(client, rows):
    payload = split_payload(rows.head(5))
    data = payload["dataframe_split"]["data"]
    data[3][4] = 999.0  # temperature_c, 5th column
    data[4][4] = 998.0
    data[1][7] = 997.0  # precipitation_mm: a later contract column, an earlier row
    reply = client.call("POST", "/invocations", payload)
    body = assert_clean_error(reply, "999", "998", "997")
    assert (body["column"], body["rule"], body["row"]) == (
        "temperature_c",
        "max 55.0",
        3,
    )
    assert body["error"] == (
        "column 'temperature_c' breaks rule 'max 55.0' at row 3: expects <= 55.0"
    )


# (name, body, content type, status, rule)
UNPARSEABLE = [
    ("empty body", b"", "application/json", 400, "json"),
    ("malformed", b'{"dataframe_split": {"columns": [', "application/json", 400, "json"),
    ("NaN", b'{"dataframe_records": [{"temperature_c": NaN}]}', "application/json", 400,
     "json"),
    ("not utf-8", b"\xff\xfe not utf-8", "application/json", 400, "json"),
    ("not an object", b"[1, 2, 3]", "application/json", 400, "format"),
    ("csv", b"timestamp,station_id\n2025-03-03,S0001\n", "text/csv", 415,
     "content-type"),
    ("charset", b'{"dataframe_records": []}', "application/json; charset=latin-1", 415,
     "content-type"),
]  # fmt: skip


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
    limit = server.service.settings.max_body_bytes
    payload = json.dumps(split_payload(rows.head(40))).encode()
    padding = b" " * (limit + 1 - len(payload))
    reply = client.call("POST", "/invocations", payload + padding)
    assert reply.status == 413
    assert reply.headers.get("connection") == "close"
    body = assert_clean_error(reply, "S00")
    assert body["rule"] == f"max_body_bytes {limit}"
    client.close()


def _raw_request(server, data: bytes, wait: float = 10.0) -> bytes:
    with socket.create_connection((server.host, server.port), timeout=wait) as sock:
        sock.sendall(data)
        chunks = []
        while True:
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                break
            if not chunk:
                break
            chunks.append(chunk)
    return b"".join(chunks)


def test_a_body_that_never_arrives_is_a_408_and_the_connection_closes(contract, served):
    config = make_config(contract, body_timeout_seconds=0.3)
    with running(config, served) as server:
        started = time.monotonic()
        answer = _raw_request(
            server,
            b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Type: application/json"
            b'\r\nContent-Length: 500\r\n\r\n{"dataframe_split": ',
        )
        elapsed = time.monotonic() - started
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 408"), answer[:200]
    assert b"connection: close" in head.lower()
    assert json.loads(body)["rule"] == "body_timeout"
    assert 0.3 <= elapsed < 5  # answered after the timeout, then closed (recv got EOF)


def test_chunked_and_length_less_bodies_are_refused(server):
    chunked = _raw_request(
        server,
        b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n",
    )
    assert chunked.startswith(b"HTTP/1.1 411")
    assert b'"rule":"content-length"' in chunked


def test_unknown_paths_and_methods_are_json_errors(client):
    assert_clean_error(missing := client.call("GET", "/admin"))
    assert missing.status == 404
    wrong = client.call("GET", "/invocations")
    assert wrong.status == 405
    assert wrong.headers["allow"] == "POST"
    assert_clean_error(wrong)
    odd = client.call("DELETE", "/model")
    assert odd.status == 405
    assert_clean_error(odd)


class Exploding(ConstantServed):
    def predict_values(self, values):
        raise ValueError(f"cannot score {values['station_id'][0]} 4242")


def test_a_failing_model_is_a_500_with_a_request_id(config, contract, rows, caplog):
    with running(config, Exploding(0, 3, contract.column_names)) as server:
        client = Client(server)
        with caplog.at_level("ERROR", logger="modelops.service.app"):
            reply = client.call(
                "POST",
                "/invocations",
                split_payload(rows.head(1)),
                headers={"X-Request-Id": "req-42"},
            )
        assert reply.status == 500
        body = assert_clean_error(reply, "4242", "S000", "ValueError")
        assert body["request_id"] == "req-42"
        assert reply.headers["x-model-version"] == "3"
        logged = [r for r in caplog.records if "req-42" in r.getMessage()]
        assert logged
        assert logged[0].exc_info is not None  # the trace is in the server log
        client.close()


def _access_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name.endswith(".access")]


def test_access_log_has_id_status_version_latency_not_the_payload(client, rows, caplog):
    payload = split_payload(rows.head(1))
    station = payload["dataframe_split"]["data"][0][1]
    with caplog.at_level("INFO", logger="modelops.service.access"):
        client.call("POST", "/invocations", payload, headers={"X-Request-Id": "abc-1"})
        client.call("POST", "/invocations", _with(rows, humidity_pct=555.5))
        # The server logs a request after its response is sent, off the client's
        # path: wait (bounded) for the second line rather than race it.
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and len(_access_lines(caplog)) < 2:
            time.sleep(0.01)
    lines = _access_lines(caplog)
    assert len(lines) == 2
    assert lines[0].startswith(
        "request_id=abc-1 method=POST path=/invocations status=200"
    )
    assert "version=7" in lines[0]
    assert "rows=1" in lines[0]
    assert "latency_ms=" in lines[0]
    assert "status=422" in lines[1]
    assert not any(station in line or "555.5" in line for line in lines)


# --- metrics --------------------------------------------------------------------------


def _metric(text: str, name: str, **labels: str) -> float:
    wanted = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    prefix = f"{name}{{{wanted}}} " if labels else f"{name} "
    for line in text.splitlines():
        if line.startswith(prefix):
            return float(line.split()[-1])
    raise AssertionError(f"{prefix!r} not in metrics")


def test_metrics_count_requests_latency_rejections_and_the_version(
    config, served, rows
):
    with running(config, served) as server:
        client = Client(server)
        for _ in range(3):
            client.call("POST", "/invocations", split_payload(rows.head(2)))
        client.call("POST", "/invocations", _with(rows, humidity_pct=555.5))
        client.call("POST", "/invocations", _with(rows, secret_extra=1))
        client.call("GET", "/nowhere")
        reply = client.call("GET", "/metrics")
        client.close()
    assert reply.status == 200
    assert reply.headers["content-type"].startswith("text/plain")
    text = reply.text
    ok = {"endpoint": "/invocations", "status": "200"}
    assert _metric(text, "modelops_requests_total", **ok) == 3
    assert _metric(text, "modelops_request_duration_seconds_count", **ok) == 3
    assert _metric(text, "modelops_rows_scored_total") == 6
    assert _metric(text, "modelops_rejections_total", rule="max 100.0",
                   column="humidity_pct") == 1  # fmt: skip
    # A column the client made up is not a label value (bounded cardinality).
    assert _metric(text, "modelops_rejections_total", rule="no extra columns",
                   column="") == 1  # fmt: skip
    assert "secret_extra" not in text
    assert _metric(text, "modelops_requests_total", endpoint="other", status="404") == 1
    assert _metric(text, "modelops_model_version", model_name=MODEL_NAME,
                   alias="champion") == 7  # fmt: skip
    assert _metric(text, "modelops_model_form", form="onnx") == 1
    assert _metric(text, "modelops_model_load_failures_total", reason="integrity") == 0
    assert _metric(text, "modelops_prediction_log_rows_dropped_total",
                   reason="queue_full") == 0  # fmt: skip


def test_each_app_has_its_own_registry(config, served, rows):
    with running(config, served) as first, running(config, served) as second:
        Client(first).call("POST", "/invocations", split_payload(rows.head(1)))
        text = Client(second).call("GET", "/metrics").text
    assert 'modelops_requests_total{endpoint="/invocations",status="200"}' not in text


# --- token ----------------------------------------------------------------------------


def test_token_protects_scoring_and_reload(contract, served, rows, monkeypatch):
    config = make_config(contract, token=TOKEN)
    with running(config, served) as server:
        anonymous, wrong, right = (
            Client(server),
            Client(server, "not-the-token"),
            Client(server, TOKEN),
        )
        payload = split_payload(rows.head(1))
        for client in (anonymous, wrong):
            denied = client.call("POST", "/invocations", payload)
            assert denied.status == 401
            assert denied.headers["www-authenticate"].startswith("Bearer")
            assert_clean_error(denied, TOKEN)
            assert client.call("POST", "/reload").status == 401
        assert right.call("POST", "/invocations", payload).status == 200
        assert anonymous.call("GET", "/health").status == 200  # probes stay open
        assert anonymous.call("GET", "/metrics").status == 200

        monkeypatch.setattr(
            server.service.holder, "refresh", lambda timeout: RefreshOutcome(True, 7, 8)
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


# --- atomic swap ----------------------------------------------------------------------


def hammer(
    server, payload: dict, stop: threading.Event, seen: list, *, pause: float = 0.0
) -> None:
    """Send requests until told to stop (bounded), recording status and versions."""
    client = Client(server, server.service.config.token)
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
                    reply.headers.get("x-model-version"),
                    body.get("model_version"),
                    (body.get("predictions") or [None])[0],
                )
            )
        except (OSError, http.client.HTTPException) as err:
            seen.append((type(err).__name__, None, None, None))
    client.close()


def test_swap_is_atomic_for_requests_in_flight(config, contract, rows):
    columns = contract.column_names
    with running(config, ConstantServed(1.0, 1, columns)) as server:
        stop, seen = threading.Event(), []
        payload = split_payload(rows.head(1))
        threads = [
            threading.Thread(target=hammer, args=(server, payload, stop, seen))
            for _ in range(8)
        ]
        for thread in threads:
            thread.start()
        for version, value in ((2, 2.0), (1, 1.0), (2, 2.0)):
            time.sleep(0.3)
            server.service.holder.install(ConstantServed(value, version, columns))
        time.sleep(0.3)
        stop.set()
        for thread in threads:
            thread.join(30)
        swaps = Client(server).call("GET", "/metrics").text
    assert len(seen) > 50
    assert all(status == 200 for status, *_ in seen), {s for s, *_ in seen}
    assert all(header == str(body) for _, header, body, _ in seen)
    assert all(value == float(body) for _, _, body, value in seen)
    assert {body for _, _, body, _ in seen} == {1, 2}
    assert _metric(swaps, "modelops_alias_swaps_total") == 3


# --- MLflow's own client --------------------------------------------------------------


def test_mlflows_scoring_server_client_gets_the_same_predictions(server, served, rows):
    from mlflow.pyfunc.scoring_server.client import (  # noqa: PLC0415
        ScoringServerClient,
    )

    client = ScoringServerClient(server.host, server.port)
    client.wait_server_ready(timeout=10)
    frame = rows.head(25)
    answer = client.invoke(frame)
    assert answer.get_predictions().iloc[:, 0].tolist() == (
        served.predict_frame(frame).tolist()
    )


def test_beyond_limit_concurrency_requests_are_answered_503_at_once(contract, served):
    config = make_config(contract, limit_concurrency=3, body_timeout_seconds=30)
    with running(config, served) as server:
        held = []
        for _ in range(3):
            sock = socket.create_connection((server.host, server.port), timeout=10)
            sock.sendall(
                b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{"
            )
            held.append(sock)
        time.sleep(0.3)
        started = time.monotonic()
        refused = Client(server).call("GET", "/health")
        assert refused.status == 503
        assert time.monotonic() - started < 5
        for sock in held:
            sock.close()
        time.sleep(0.3)
        assert Client(server).call("GET", "/health").status == 200
