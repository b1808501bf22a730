"""Fixtures of the REST service tests: a model fitted here, served like a registry version.

Fast tests serve a model fitted in the test session (exported to ONNX as registration
does, or in its sklearn form) on a real uvicorn server on loopback; no registry.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import http.client
import json
from collections.abc import Iterator
from typing import Any

import numpy as np
import pandas as pd
import pytest

from modelops.contracts import parse_contract
from modelops.modeling import build_model, input_columns, model_inputs
from modelops.onnx_model import OnnxPredictor, export_onnx
from modelops.service.model_holder import ModelInfo
from modelops.service.prediction_log_writer import PredictionLogWriter
from modelops.service.server import ServerThread, build_service
from modelops.service.settings import ServingConfig, parse_settings

MODEL_NAME = "modelops-bike-demand"
TOKEN = "s3cret-token-for-tests"  # noqa: S105 (a test value)
ERROR_KEYS = {"error", "column", "rule", "request_id"}


# --- payloads and a client -------------------------------------------------------------


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

    def __init__(self, server: ServerThread, token: str | None = None) -> None:
        self.conn = http.client.HTTPConnection(server.host, server.port, timeout=30)
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


def assert_clean_error(reply: Reply, *forbidden: str) -> dict[str, Any]:
    """A short JSON error with the request id; no payload value, no stack trace."""
    body = reply.body
    assert ERROR_KEYS <= set(body)
    assert body["request_id"] == reply.headers["x-request-id"]
    version = reply.headers.get("x-model-version")
    assert body["model_version"] == (int(version) if version else None)
    assert "Traceback" not in reply.text
    assert 'File "' not in reply.text
    for value in forbidden:
        assert value not in reply.text
    assert len(body["error"]) < 300
    return body


# --- served models ---------------------------------------------------------------------


class FittedServed:
    """A ServedModel made from a model fitted here (what load_served_model returns)."""

    def __init__(
        self,
        model: Any,
        features: dict[str, Any],
        *,
        form: str = "onnx",
        version: int = 7,
        predictor: OnnxPredictor | None = None,
    ) -> None:
        self.sklearn_model = model
        self.form = form
        self.name = MODEL_NAME
        self.version = version
        self.run_id = f"run-{version}"
        self.tags = {"modelops.git_commit": "0123abc", "modelops.git_dirty": "False"}
        self.features = features
        if form == "onnx":
            self.predictor = predictor or OnnxPredictor(export_onnx(model, features))
            self.columns = list(self.predictor.columns)
            self.sha256 = self.predictor.sha256
        else:
            self.predictor = None
            self.columns = input_columns(features)
            self.sha256 = "f" * 64

    def as_version(self, version: int) -> FittedServed:
        return FittedServed(
            self.sklearn_model,
            self.features,
            form=self.form,
            version=version,
            predictor=self.predictor,
        )

    def predict_frame(self, frame: pd.DataFrame) -> np.ndarray:
        if self.predictor is not None:
            return self.predictor.predict(frame)
        return np.asarray(self.sklearn_model.predict(frame), dtype=np.float64)

    def predict_values(self, values: dict[str, list[Any]]) -> np.ndarray:
        assert self.predictor is not None
        return self.predictor.predict_values(values)


class ConstantServed:
    """Predicts one number per row (a version that is quick to swap in and out)."""

    def __init__(self, value: float, version: int, columns: list[str]) -> None:
        self.value, self.version, self.columns = value, version, columns
        self.form, self.name, self.run_id = "onnx", MODEL_NAME, f"run-{version}"
        self.tags: dict[str, str] = {}
        self.sha256 = "c" * 64

    def predict_values(self, values: dict[str, list[Any]]) -> np.ndarray:
        return np.full(len(values[self.columns[0]]), self.value)

    predict_frame = None  # ONNX form: never asked for a frame


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
        form="onnx",
    )


# --- fixtures -------------------------------------------------------------------------


@pytest.fixture(scope="session")
def contract(data_processing_params):
    spec = data_processing_params["source"]["contract"]
    return parse_contract(spec).without([data_processing_params["features"]["target"]])


@pytest.fixture(scope="session")
def features(data_processing_params) -> dict[str, Any]:
    return data_processing_params["features"]


@pytest.fixture(scope="session")
def rows(model_input_table, contract) -> pd.DataFrame:
    """Contract-valid rows (the newest 300 of the simulated model input table)."""
    return model_input_table[contract.column_names].tail(300).reset_index(drop=True)


@pytest.fixture(scope="session")
def fitted(model_input_table, features, training_params):
    """The configured model class (HistGradientBoosting), 40 trees (quick to fit)."""
    model_conf = training_params["model"]
    small = {**model_conf, "kwargs": {**model_conf["kwargs"], "max_iter": 40}}
    model = build_model(features, small)
    return model.fit(
        model_inputs(model_input_table, features), model_input_table[features["target"]]
    )


@pytest.fixture(scope="session")
def served(fitted, features) -> FittedServed:
    """The fitted model in its ONNX form, as version 7."""
    return FittedServed(fitted, features)


def make_config(contract, **settings: Any) -> ServingConfig:
    token = settings.pop("token", None)
    raw = {
        "model_name": MODEL_NAME,
        "alias": "champion",
        "max_rows": 50,
        "max_body_bytes": 64 * 1024,
        "prediction_log": {"enabled": False},
        **settings,
    }
    return ServingConfig(
        settings=parse_settings(raw),
        contract=contract,
        tracking_uri="sqlite:///never-used-by-fast-tests.db",
        token=token,
    )


@pytest.fixture(scope="session")
def config(contract) -> ServingConfig:
    return make_config(contract)


@contextlib.contextmanager
def running(
    config: ServingConfig,
    served: Any = None,
    *,
    log_writer: PredictionLogWriter | None = None,
    loader: Any = None,
) -> Iterator[ServerThread]:
    """A server on loopback serving ``served`` (or nothing yet), stopped on exit."""
    service = build_service(config, log_writer=log_writer, loader=loader)
    if served is not None:
        service.holder.install(served)
    thread = ServerThread(service).start()
    try:
        yield thread
    finally:
        thread.stop()


@pytest.fixture(scope="module")
def server(config, served):
    """One server for the tests that only send requests (each opens a connection)."""
    with running(config, served) as server:
        yield server


@pytest.fixture
def client(server):
    client = Client(server)
    yield client
    client.close()
