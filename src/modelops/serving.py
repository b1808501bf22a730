"""The REST service: score rows with the model a registry alias points to, and follow it.

`kedro serve --env prod` runs :func:`serve`. The service is the standard library's
threading HTTP server (HTTP/1.1 keep-alive) around three pieces tests can use alone:

- :class:`ModelHolder` keeps the served model and what it is (name, version, alias, run
  id, git commit, when it was loaded) as one immutable :class:`LoadedModel`. A daemon
  thread asks the registry every ``poll_seconds`` where the alias points; when it moved
  (promotion or rollback) the new version is loaded and warmed up off the request path,
  then swapped in with one reference assignment. A request reads the reference once, so
  requests in flight finish on the model they started with and none fails.
- :class:`RequestValidator` reads the payload's shape (MLflow's ``dataframe_split`` /
  ``dataframe_records``, a row limit) and hands the values, column by column, to the
  data contract training data passes (:class:`modelops.contracts.Contract`,
  ``use_case.contract`` minus the target): the same object that builds data
  processing's pandera schema checks required columns, no extra column, dtypes,
  nulls, ranges, allowed categories and patterns on the JSON values in plain Python
  (pandera per request would cost more than the prediction). Only then is the
  DataFrame the model reads built.
- :func:`make_predictor` picks what a request calls. ``model.predict`` on a one-row
  DataFrame spends most of its time in pandas and per-tree native calls; for the
  pipelines modelops builds (calendar features, ColumnTransformer of encoders and
  passthrough, estimator) :class:`CompiledPipeline` does the same arithmetic on the
  checked values. It serves only after reproducing ``model.predict`` bit for bit at
  load (``compile_model: false`` in conf turns it off); otherwise model.predict serves.
- :func:`create_server` wires them into an HTTP server (port 0 for tests).

Endpoints: ``POST /invocations`` (MLflow's ``dataframe_split`` / ``dataframe_records``
JSON, answered as ``{"predictions": [...], ...}``), ``GET /health`` (503 until a model
is loaded), ``GET /model``, ``POST /reload`` (bearer token). Every response carries
``X-Request-Id`` and, once a model is loaded, ``X-Model-Version``. Rejections are short
JSON messages naming the column and the rule; they never contain the request's values
or a stack trace. A failure inside the model is a 500 with the request id, logged with
its traceback server-side only.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hmac
import json
import logging
import logging.handlers
import math
import os
import queue
import re
import signal
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

from modelops.contracts import (
    Contract,
    ValueRejected,
    column_array,
    parse_contract,
    use_case_key,
)
from modelops.errors import ConfigError, ModelopsError
from modelops.features import CALENDAR_FEATURES
from modelops.modeling import check_inputs_in_contract

logger = logging.getLogger(__name__)
access_logger = logging.getLogger(f"{__name__}.access")

SERVING_CONF = "conf/base/parameters_serving_api.yml"
CONF_KEY = "serving_api"
JSON_TYPE = "application/json"
INPUT_FORMATS = ("dataframe_split", "dataframe_records")
DRAIN_FACTOR = 8  # a body up to this many times max_body_bytes is read before a 413
_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")


class ServingError(ModelopsError):
    """The service cannot do what was asked (no model for the alias, a load failed)."""


# --- configuration -------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class ServingConfig:
    """What the service needs, read once from an env's conf (see ``SERVING_CONF``)."""

    model_name: str
    alias: str
    contract: Contract
    tracking_uri: str
    poll_seconds: float = 10.0
    startup_attempts: int = 30
    startup_interval_seconds: float = 2.0
    max_rows: int = 1000
    max_body_bytes: int = 1_048_576
    idle_timeout_seconds: float = 60.0
    token_env: str = "MODELOPS_SERVING_TOKEN"  # noqa: S105 (a variable name)
    compile_model: bool = True
    token: str | None = dataclasses.field(default=None, repr=False)

    @classmethod
    def from_conf(
        cls,
        parameters: Mapping[str, Any],
        globals_: Mapping[str, Any],
        tracking_uri: str,
        environ: Mapping[str, str] | None = None,
    ) -> ServingConfig:
        """Build from an env's parameters and globals; the token from the environment.

        Raises:
            ConfigError: a setting is missing or out of range.
        """
        environ = os.environ if environ is None else environ
        conf = dict(parameters.get(CONF_KEY) or {})
        try:
            contract_spec = parameters["source"]["contract"]
            target = parameters["features"]["target"]
        except (KeyError, TypeError) as err:
            raise ConfigError(
                "The service validates requests against the data contract minus "
                "the target, and one of them is missing.\nHint: see "
                f"{use_case_key('contract')} and "
                f"{use_case_key('features.target')}."
            ) from err
        contract = parse_contract(contract_spec)
        if target:
            contract = contract.without([target])
        check_inputs_in_contract(parameters["features"], contract.column_names)
        model_name = conf.get("model_name") or globals_.get("registered_model_name")
        alias = conf.get("alias") or globals_.get("alias")
        if not model_name or not alias or alias == "none":
            raise ConfigError(
                f"The service needs a registered model name and an alias to follow; "
                f"got {model_name!r} and {alias!r}.\nHint: serve an env that sets "
                f"globals `alias` (dev, acceptance, prod), or set {CONF_KEY}.model_name "
                f"and {CONF_KEY}.alias in {SERVING_CONF}."
            )
        token_env = str(conf.get("token_env") or cls.token_env)
        config = cls(
            model_name=str(model_name),
            alias=str(alias),
            contract=contract,
            tracking_uri=tracking_uri,
            poll_seconds=_number(conf, "poll_seconds", cls.poll_seconds, 0.1),
            startup_attempts=int(
                _number(conf, "startup_attempts", cls.startup_attempts, 1)
            ),
            startup_interval_seconds=_number(
                conf, "startup_interval_seconds", cls.startup_interval_seconds, 0
            ),
            max_rows=int(_number(conf, "max_rows", cls.max_rows, 1)),
            max_body_bytes=int(_number(conf, "max_body_bytes", cls.max_body_bytes, 2)),
            idle_timeout_seconds=_number(
                conf, "idle_timeout_seconds", cls.idle_timeout_seconds, 0.1
            ),
            token_env=token_env,
            token=environ.get(token_env) or None,
            compile_model=_flag(conf, "compile_model", cls.compile_model),
        )
        return config


def _flag(conf: Mapping[str, Any], key: str, default: bool) -> bool:
    value = conf.get(key, default)
    if not isinstance(value, bool):
        raise ConfigError(
            f"{CONF_KEY}.{key} is {value!r}; expected true or false.\nHint: fix "
            f"{SERVING_CONF}."
        )
    return value


def _number(conf: Mapping[str, Any], key: str, default: float, minimum: float) -> float:
    value = conf.get(key, default)
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or value < minimum
        or not math.isfinite(value)
    ):
        raise ConfigError(
            f"{CONF_KEY}.{key} is {value!r}; expected a number >= {minimum}.\n"
            f"Hint: fix {SERVING_CONF}."
        )
    return float(value)


def load_serving_config(
    project_path: Path, env: str, overrides: Mapping[str, Any] | None = None
) -> ServingConfig:
    """The service's settings as ``env`` sees them, tracking where the project tracks.

    ``overrides`` replaces keys of ``serving_api`` (e.g. ``{"compile_model": False}``).
    """
    from modelops.cli import load_config  # noqa: PLC0415 (cli imports click and kedro)
    from modelops.tracking import tracking_uri  # noqa: PLC0415

    parameters = load_config(project_path, env, "parameters")
    if overrides:
        parameters[CONF_KEY] = {**(parameters.get(CONF_KEY) or {}), **overrides}
    globals_ = load_config(project_path, env, "globals")
    return ServingConfig.from_conf(parameters, globals_, tracking_uri())


# --- request validation --------------------------------------------------------------


class RequestRejected(Exception):
    """A request the service refuses: HTTP status, a short message, column and rule."""

    def __init__(  # noqa: PLR0913
        self,
        status: int,
        message: str,
        *,
        column: str | None = None,
        rule: str | None = None,
        row: int | None = None,
        close: bool = False,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.column = column
        self.rule = rule
        self.row = row
        self.close = close


class ValidatedBatch:
    """Rows that passed the contract: Python values per column, the frame on demand."""

    __slots__ = ("_dtypes", "_frame", "rows", "values")

    def __init__(
        self, values: dict[str, list[Any]], dtypes: dict[str, str], rows: int
    ) -> None:
        self.values = values
        self.rows = rows
        self._dtypes = dtypes
        self._frame: pd.DataFrame | None = None

    def frame(self) -> pd.DataFrame:
        """The DataFrame the model reads: contract column order, training dtypes."""
        if self._frame is None:
            self._frame = pd.DataFrame(
                {
                    name: column_array(dtype, self.values[name])
                    for name, dtype in self._dtypes.items()
                },
                copy=False,
            )
        return self._frame

    def row(self, index: int) -> ValidatedBatch:
        """One row of this batch, as its own batch."""
        values = {name: [column[index]] for name, column in self.values.items()}
        return ValidatedBatch(values, self._dtypes, 1)


class RequestValidator:
    """Checks a parsed MLflow scoring payload against a contract.

    The payload's structure (format, row limit) is checked here; the columns and
    values by the contract itself (:meth:`Contract.check_names`,
    :meth:`Contract.check_values`), compiled once per contract column.
    :meth:`validate` raises :class:`RequestRejected` naming the first column and rule
    a request breaks.
    """

    def __init__(self, contract: Contract, max_rows: int) -> None:
        self.contract = contract
        self.columns = contract.column_names
        self.max_rows = max_rows
        self.dtypes = contract.dtypes
        self._column_set = frozenset(self.columns)

    def validate(self, payload: Any) -> ValidatedBatch:
        """The checked rows of ``payload``, the parsed JSON body.

        Args:
            payload: ``{"dataframe_split": {"columns": [...], "data": [[...]]}}`` or
                ``{"dataframe_records": [{column: value}, ...]}``.
        """
        columns, rows = self.column_values(payload)
        try:
            values = self.contract.check_values(columns)
        except ValueRejected as err:
            raise _contract_rejected(err) from None
        return ValidatedBatch(values, self.dtypes, rows)

    def batch(self, values: dict[str, list[Any]]) -> ValidatedBatch:
        """A batch from values already of the contract's types (not checked)."""
        rows = len(next(iter(values.values())))
        return ValidatedBatch(
            {name: list(values[name]) for name in self.columns}, self.dtypes, rows
        )

    def column_values(self, payload: Any) -> tuple[dict[str, Sequence[Any]], int]:
        """Each contract column's raw values and the row count, structure checked."""
        if not isinstance(payload, dict):
            raise _format_rejected("the body must be a JSON object")
        keys = [key for key in payload if key in INPUT_FORMATS]
        if len(keys) != 1 or len(payload) != 1:
            raise _format_rejected(
                "the body must hold exactly one of 'dataframe_split' or "
                "'dataframe_records' and nothing else"
            )
        if keys[0] == "dataframe_split":
            return self._split_columns(payload["dataframe_split"])
        return self._records_columns(payload["dataframe_records"])

    def _check_rows(self, rows: Any, what: str) -> None:
        if not isinstance(rows, list):
            raise _format_rejected(f"{what} must be a JSON array")
        if len(rows) > self.max_rows:
            raise RequestRejected(
                HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                f"the request has {len(rows)} rows; at most {self.max_rows} are "
                f"accepted per request",
                rule=f"max_rows {self.max_rows}",
            )
        if not rows:  # the contract's min_rows is per source partition, not request
            raise RequestRejected(
                HTTPStatus.UNPROCESSABLE_ENTITY,
                "the request has 0 rows; at least 1 needed",
                rule="min_rows 1",
            )

    def _contract(self, check: Callable[..., None], *args: Any) -> None:
        try:
            check(*args)
        except ValueRejected as err:
            raise _contract_rejected(err) from None

    def _split_columns(self, split: Any) -> tuple[dict[str, Sequence[Any]], int]:
        if not isinstance(split, dict) or not {"columns", "data"} <= split.keys():
            raise _format_rejected(
                "'dataframe_split' must be an object with 'columns' and 'data'"
            )
        if not split.keys() <= {"columns", "data", "index"}:
            raise _format_rejected(
                "'dataframe_split' may hold only 'columns', 'data' and 'index'"
            )
        names, rows = split["columns"], split["data"]
        if not isinstance(names, list) or not all(type(n) is str for n in names):
            raise _format_rejected("'columns' must be an array of column names")
        if len(set(names)) != len(names):
            raise _format_rejected(
                "'columns' names a column twice", rule="unique columns"
            )
        self._check_rows(rows, "'data'")
        self._contract(self.contract.check_names, names)
        width = len(names)
        for row, values in enumerate(rows):
            if type(values) is not list or len(values) != width:
                raise _format_rejected(
                    f"row {row} of 'data' must be an array of {width} values, one per "
                    f"column"
                )
        return dict(zip(names, zip(*rows, strict=True), strict=True)), len(rows)

    def _records_columns(self, records: Any) -> tuple[dict[str, Sequence[Any]], int]:
        self._check_rows(records, "'dataframe_records'")
        expected = self._column_set
        for row, record in enumerate(records):
            if type(record) is not dict:
                raise _format_rejected(f"record {row} must be a JSON object")
            if record.keys() != expected:
                self._contract(self.contract.check_names, list(record), row)
        columns = {name: [record[name] for record in records] for name in self.columns}
        return columns, len(records)


def _contract_rejected(err: ValueRejected) -> RequestRejected:
    """The contract's refusal as an HTTP 422 (its message holds no request value)."""
    return RequestRejected(
        HTTPStatus.UNPROCESSABLE_ENTITY,
        err.message,
        column=err.column,
        rule=err.rule,
        row=err.row,
    )


def _format_rejected(message: str, rule: str = "format") -> RequestRejected:
    return RequestRejected(HTTPStatus.BAD_REQUEST, message, rule=rule)


# --- compiled prediction -------------------------------------------------------------
#
# model.predict on a one-row DataFrame spends most of its time in pandas (the calendar
# step copies the frame, the ColumnTransformer indexes it per transformer) and, for
# HistGradientBoosting, in one native call per tree. For the pipelines modelops builds
# (calendar features -> ColumnTransformer of ordinal/one-hot encoders and passthrough
# -> estimator) the same arithmetic can run on the checked Python values directly.
# It is only used after it reproduced model.predict bit for bit at load (see
# `verify_compiled`); anything it does not recognise is served by model.predict.


class NotCompilable(Exception):
    """The fitted pipeline has a step the compiled path does not reproduce."""


class _Fallback(Exception):
    """The compiled path met an input it does not handle: use model.predict."""


ROW_WISE_MAX_ROWS = 16  # up to this many rows the trees are walked in Python
Columns = list[list[float]]


def _as_float(value: Any) -> float:
    kind = type(value)
    if kind is float or kind is int or kind is bool:
        return float(value)
    if value is None:
        return math.nan
    raise _Fallback  # a timestamp or string passed through: model.predict decides


def _passthrough(names: list[str]) -> Callable[[dict[str, list[Any]]], Columns]:
    def transform(values: dict[str, list[Any]]) -> Columns:
        return [[_as_float(v) for v in values[name]] for name in names]

    return transform


def _category_index(categories: Any) -> dict[Any, int]:
    index: dict[Any, int] = {}
    for position, category in enumerate(np.asarray(categories).tolist()):
        if category is None or (isinstance(category, float) and math.isnan(category)):
            raise NotCompilable("an encoder has a missing-value category")
        index[category] = position
    return index


def _ordinal(
    encoder: Any, names: list[str]
) -> Callable[[dict[str, list[Any]]], Columns]:
    from sklearn.preprocessing import OrdinalEncoder  # noqa: PLC0415

    if type(encoder) is not OrdinalEncoder or encoder.dtype not in (float, np.float64):
        raise NotCompilable(f"encoder {type(encoder).__name__}")
    if getattr(encoder, "_infrequent_enabled", False) or getattr(
        encoder, "_missing_indices", None
    ):
        raise NotCompilable("an ordinal encoder with infrequent or missing categories")
    unknown = (
        float(encoder.unknown_value)
        if encoder.handle_unknown == "use_encoded_value"
        else None
    )
    maps = [
        {key: float(code) for key, code in _category_index(categories).items()}
        for categories in encoder.categories_
    ]

    def encode(column: list[Any], mapping: dict[Any, float]) -> list[float]:
        codes = []
        for value in column:
            code = mapping.get(value)
            if code is None:
                if unknown is None:
                    raise _Fallback  # the encoder raises: let model.predict say so
                code = unknown
            codes.append(code)
        return codes

    def transform(values: dict[str, list[Any]]) -> Columns:
        return [
            encode(values[name], mapping)
            for name, mapping in zip(names, maps, strict=True)
        ]

    return transform


def _onehot(
    encoder: Any, names: list[str]
) -> Callable[[dict[str, list[Any]]], Columns]:
    from sklearn.preprocessing import OneHotEncoder  # noqa: PLC0415

    if (
        type(encoder) is not OneHotEncoder
        or encoder.dtype not in (float, np.float64)
        or encoder.drop_idx_ is not None
        or encoder.sparse_output
        or getattr(encoder, "_infrequent_enabled", False)
    ):
        raise NotCompilable("a one-hot encoder with drop, sparse or infrequent output")
    ignore = encoder.handle_unknown in {"ignore", "infrequent_if_exist"}
    indexes = [_category_index(categories) for categories in encoder.categories_]

    def transform(values: dict[str, list[Any]]) -> Columns:
        columns: Columns = []
        for name, index in zip(names, indexes, strict=True):
            column = values[name]
            block = [[0.0] * len(column) for _ in index]
            for row, value in enumerate(column):
                position = index.get(value)
                if position is None:
                    if not ignore:
                        raise _Fallback
                    continue
                block[position][row] = 1.0
            columns.extend(block)
        return columns

    return transform


def _transformer_part(
    transformer: Any, names: list[str]
) -> Callable[[dict[str, list[Any]]], Columns]:
    from sklearn.preprocessing import FunctionTransformer  # noqa: PLC0415

    if (isinstance(transformer, str) and transformer == "passthrough") or (
        type(transformer) is FunctionTransformer
        and transformer.func is None
        and transformer.inverse_func is None
    ):
        return _passthrough(names)
    if type(transformer).__name__ == "OrdinalEncoder":
        return _ordinal(transformer, names)
    if type(transformer).__name__ == "OneHotEncoder":
        return _onehot(transformer, names)
    raise NotCompilable(f"transformer {type(transformer).__name__}")


def _column_transformer(
    prepare: Any,
) -> tuple[list[Callable[[dict[str, list[Any]]], Columns]], dict[str, list[Any]]]:
    """One part per fitted transformer, in output order; the encoders' categories."""
    from sklearn.compose import ColumnTransformer  # noqa: PLC0415

    if type(prepare) is not ColumnTransformer:
        raise NotCompilable(f"step {type(prepare).__name__} is not a ColumnTransformer")
    if prepare.sparse_output_ or prepare.transformer_weights:
        raise NotCompilable("a sparse or weighted ColumnTransformer")
    output = (getattr(prepare, "_sklearn_output_config", None) or {}).get("transform")
    if output not in {None, "default"}:
        raise NotCompilable("a ColumnTransformer with DataFrame output")
    parts, categories = [], {}
    for _, transformer, selected in prepare.transformers_:
        names = [selected] if isinstance(selected, str) else list(selected)
        if (isinstance(transformer, str) and transformer == "drop") or not names:
            continue
        if not all(isinstance(name, str) for name in names):
            raise NotCompilable("columns selected by position")
        parts.append(_transformer_part(transformer, names))
        for name, found in zip(
            names, getattr(transformer, "categories_", ()), strict=False
        ):
            categories[name] = np.asarray(found).tolist()
    return parts, categories


def _tree_walker(estimator: Any) -> Callable[[tuple[float, ...]], float] | None:
    """Walk a HistGradientBoostingRegressor's trees in Python, summing as sklearn does.

    Per tree sklearn makes one native call with its own setup; for a row or a few that
    dominates. Same traversal (NaN follows missing_go_to_left, else value <= threshold
    goes left) and the same float64 additions in the same order: baseline, then each
    tree's leaf value. None when the model is not one this reproduces.
    """
    if type(estimator).__name__ != "HistGradientBoostingRegressor":
        return None
    link = type(getattr(getattr(estimator, "_loss", None), "link", None)).__name__
    if (
        link != "IdentityLink"
        or estimator.n_trees_per_iteration_ != 1
        or getattr(estimator, "_preprocessor", None) is not None
        or (
            estimator.is_categorical_ is not None
            and bool(estimator.is_categorical_.any())
        )
    ):
        return None
    trees = []
    for (predictor,) in estimator._predictors:
        nodes = predictor.nodes
        if nodes["is_categorical"].any():
            return None
        trees.append(
            [
                (-1, float(node["value"]), False, 0, 0)
                if node["is_leaf"]
                else (
                    int(node["feature_idx"]),
                    float(node["num_threshold"]),
                    bool(node["missing_go_to_left"]),
                    int(node["left"]),
                    int(node["right"]),
                )
                for node in nodes
            ]
        )
    baseline = float(np.asarray(estimator._baseline_prediction).ravel()[0])

    def predict_row(row: tuple[float, ...]) -> float:
        total = 0.0
        total += baseline
        for nodes in trees:
            feature, threshold, missing_left, left, right = nodes[0]
            while feature >= 0:
                value = row[feature]
                if value <= threshold:
                    node = left
                elif value > threshold:
                    node = right
                else:  # NaN
                    node = left if missing_left else right
                feature, threshold, missing_left, left, right = nodes[node]
            total += threshold  # a leaf keeps its value in this slot
        return total

    return predict_row


class CompiledPipeline:
    """A fitted modelops Pipeline evaluated on checked Python values, no pandas.

    Raises:
        NotCompilable: the pipeline has a step this does not reproduce.
    """

    def __init__(self, model: Any) -> None:
        steps = list(getattr(model, "steps", None) or [])
        if type(model).__name__ != "Pipeline" or len(steps) < 2:  # noqa: PLR2004
            raise NotCompilable("the model is not an sklearn Pipeline")
        self._calendar: tuple[str, list[tuple[str, Callable[[Any], int]]]] | None = None
        first = steps[0][1]
        if type(first).__name__ == "CalendarFeatures":
            unknown = [name for name in first.features if name not in CALENDAR_FEATURES]
            if unknown:
                raise NotCompilable(f"calendar features {unknown}")
            self._calendar = (
                first.time_column,
                [(name, CALENDAR_FEATURES[name]) for name in first.features],
            )
            steps = steps[1:]
        if len(steps) != 2:  # noqa: PLR2004 (prepare, estimator)
            raise NotCompilable("expected [calendar,] ColumnTransformer, estimator")
        self._parts, self.categories = _column_transformer(steps[0][1])
        self._estimator = steps[1][1]
        if hasattr(self._estimator, "feature_names_in_"):
            raise NotCompilable("the estimator was fitted on a DataFrame")
        self._walk = _tree_walker(self._estimator)
        self.kind = "compiled" + ("+trees" if self._walk else "")

    def rows(self, values: dict[str, list[Any]]) -> list[tuple[float, ...]]:
        """The estimator's input rows (what the ColumnTransformer would output)."""
        if self._calendar is not None:
            time_column, derive = self._calendar
            stamps = values[time_column]
            if None in stamps:
                raise _Fallback
            values = {**values, **{name: [f(s) for s in stamps] for name, f in derive}}
        columns: Columns = []
        for part in self._parts:
            columns.extend(part(values))
        return list(zip(*columns, strict=True))

    def predict_matrix(self, rows: list[tuple[float, ...]]) -> list[float]:
        """The estimator's own predict on the rows as one float64 matrix."""
        matrix = np.array(rows, dtype=np.float64)
        return np.asarray(self._estimator.predict(matrix), dtype=np.float64).tolist()

    def predict_walk(self, rows: list[tuple[float, ...]]) -> list[float]:
        """The Python tree walk (HistGradientBoostingRegressor only)."""
        if self._walk is None:
            raise _Fallback
        walk = self._walk
        return [walk(row) for row in rows]

    def predict(self, values: dict[str, list[Any]], count: int) -> list[float]:
        """Predictions for ``count`` rows of checked values."""
        rows = self.rows(values)
        if self._walk is not None and count <= ROW_WISE_MAX_ROWS:
            return self.predict_walk(rows)
        return self.predict_matrix(rows)


def _synthetic_values(
    validator: RequestValidator,
    categories: Mapping[str, list[Any]],
    *,
    unseen: bool = True,
    count: int = 64,
) -> dict[str, list[Any]]:
    """Deterministic rows spanning the contract and every category the model knows.

    They need not pass the contract (unseen categories are included on purpose): they
    are compared between the compiled path and model.predict, nothing else.
    """
    count = max(count, *(len(found) + 8 for found in categories.values()), 8)
    base = dt.datetime(2024, 12, 30)
    values: dict[str, list[Any]] = {}
    for rule in validator.contract.columns:
        spread = [((i * 0.6180339887498949) % 1.0) for i in range(count)]
        if rule.dtype == "datetime":
            column: list[Any] = [
                base + dt.timedelta(hours=37 * i, minutes=(11 * i) % 60)
                for i in range(count)
            ]
        elif rule.dtype in {"int", "float"}:
            low = rule.min if rule.min is not None else -100
            high = rule.max if rule.max is not None else 100
            column = [low + (high - low) * s for s in spread]
            column[0], column[1] = low, high
            if rule.dtype == "int":
                column = [round(v) for v in column]
            else:
                column = [float(v) for v in column]
        elif rule.dtype == "bool":
            column = [i % 3 == 0 for i in range(count)]
        else:
            known = list(categories.get(rule.name) or rule.allowed or ["a", "b", "c"])
            column = [known[i % len(known)] for i in range(count)]
            if unseen and rule.name in categories:
                column[-1] = "__unseen__"
        if rule.nullable:
            column[2] = None
        values[rule.name] = column
    return values


def verify_compiled(
    compiled: CompiledPipeline,
    model: Any,
    validator: RequestValidator,
    extra: Sequence[ValidatedBatch] = (),
) -> str | None:
    """Why the compiled path differs from model.predict, or None if it matches exactly.

    Compares, bit for bit, on synthetic rows spanning the contract and the model's
    categories (as one batch, and row by row for a few) and on ``extra`` batches (the
    last request served): the matrix path, the tree walk and what a request uses.
    """
    synthetic = None
    # With unseen categories first; without them if the encoders refuse them.
    for unseen in (True, False):
        candidate = validator.batch(
            _synthetic_values(validator, compiled.categories, unseen=unseen)
        )
        try:
            model.predict(candidate.frame())
        except Exception:  # noqa: S112 (try the next set of check rows)
            continue
        synthetic = candidate
        break
    if synthetic is None:
        return "model.predict failed on the check rows"
    batches = [synthetic, *(synthetic.row(i) for i in range(8)), *extra]
    for batch in batches:
        try:
            expected = np.asarray(model.predict(batch.frame()), dtype=np.float64)
        except Exception:  # noqa: S112 (a request the model refused)
            continue
        candidates = {"predict": lambda b=batch: compiled.predict(b.values, b.rows)}
        candidates["matrix"] = lambda b=batch: compiled.predict_matrix(
            compiled.rows(b.values)
        )
        if compiled.kind.endswith("+trees"):
            candidates["trees"] = lambda b=batch: compiled.predict_walk(
                compiled.rows(b.values)
            )
        for name, candidate in candidates.items():
            try:
                got = np.asarray(candidate(), dtype=np.float64)
            except _Fallback:
                continue
            except Exception as err:
                return f"the compiled {name} path failed ({type(err).__name__})"
            if got.shape != expected.shape or not np.array_equal(
                got, expected, equal_nan=True
            ):
                return f"the compiled {name} path differs from model.predict"
    return None


# --- the served model ----------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class ModelInfo:
    """What a loaded model is: /model shows this, every response names the version."""

    name: str
    version: int
    alias: str
    run_id: str | None
    git_commit: str | None
    git_dirty: str | None
    loaded_since: str
    model_uri: str
    predictor: str = "pipeline"  # or "compiled..." when verified identical at load

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready fields."""
        return dataclasses.asdict(self)


class LoadedModel(NamedTuple):
    """The model and what it is, swapped as one reference (never half-updated)."""

    model: Any
    info: ModelInfo
    predict: Callable[[ValidatedBatch], list[float]]
    threadpools: Any  # a threadpoolctl controller over the native libraries loaded
    version_header: str


def _threadpool_controller() -> Any:
    """A controller of the loaded native thread pools (OpenMP, BLAS), or None."""
    try:
        from threadpoolctl import ThreadpoolController  # noqa: PLC0415

        return ThreadpoolController()
    except Exception:
        logger.warning("threadpoolctl unavailable: native thread pools not limited")
        return None


def limit_native_threads(controller: Any) -> None:
    """Limit OpenMP/BLAS to one thread in the calling thread.

    OpenMP's thread count is per thread: request threads do not inherit a limit set
    elsewhere, and single-row HistGradientBoosting predict with a thread pool per call
    is an order of magnitude slower. Setting OMP_NUM_THREADS=1 before the library loads
    does the same for every thread; this covers processes where it loaded earlier.
    """
    if controller is not None:
        controller.limit(limits=1)


def make_predictor(
    model: Any,
    validator: RequestValidator,
    *,
    compile_model: bool = True,
    extra: Sequence[ValidatedBatch] = (),
) -> tuple[Callable[[ValidatedBatch], list[float]], str]:
    """The function requests call, and its kind (``pipeline`` or ``compiled...``).

    ``pipeline`` is ``model.predict`` on the batch's DataFrame. The compiled path is
    used only when :func:`verify_compiled` finds it identical to that; an input it
    does not handle (a null timestamp, an encoder that raises on unseen values) goes
    to ``model.predict`` too, so a request gets what model.predict gives it.
    """

    def pipeline(batch: ValidatedBatch) -> list[float]:
        return np.asarray(model.predict(batch.frame()), dtype=np.float64).tolist()

    if not compile_model:
        return pipeline, "pipeline"
    try:
        compiled = CompiledPipeline(model)
    except NotCompilable as err:
        logger.info("Serving with model.predict: %s", err)
        return pipeline, "pipeline"
    problem = verify_compiled(compiled, model, validator, extra)
    if problem is not None:
        logger.warning("Serving with model.predict: %s", problem)
        return pipeline, "pipeline"

    def fast(batch: ValidatedBatch) -> list[float]:
        try:
            return compiled.predict(batch.values, batch.rows)
        except _Fallback:
            return pipeline(batch)

    return fast, compiled.kind


class RefreshOutcome(NamedTuple):
    """What a registry check did."""

    changed: bool
    previous_version: int | None
    version: int | None


class ModelHolder:
    """The model ``models:/<name>@<alias>`` points to, kept current.

    ``current`` is one immutable :class:`LoadedModel` (or None before the first load);
    readers take the reference once. ``refresh`` asks the registry where the alias
    points and, when it moved, loads that version (by number, so a move during the
    load cannot mix two versions), prepares and warms it up, then swaps it in under
    the lock. Requests in flight finish on the model they read.
    """

    def __init__(
        self,
        model_name: str,
        alias: str,
        tracking_uri: str,
        validator: RequestValidator,
        *,
        compile_model: bool = True,
    ) -> None:
        self.model_name = model_name
        self.alias = alias
        self.tracking_uri = tracking_uri
        self.validator = validator
        self.compile_model = compile_model
        self._current: LoadedModel | None = None
        self._swap_lock = threading.Lock()
        self._load_lock = threading.Lock()
        self._stop = threading.Event()
        self._poller: threading.Thread | None = None
        self._client: Any = None
        self.last_batch: ValidatedBatch | None = None  # last scored input (not logged)
        self.last_error: str | None = None

    @property
    def current(self) -> LoadedModel | None:
        """The model serving now (read it once per request)."""
        return self._current

    def prepare(self, model: Any, info: ModelInfo) -> LoadedModel:
        """Wrap a loaded model for serving: predictor, thread pools, warm-up.

        Raises:
            ServingError: the model fails on the last request served (kept out).
        """
        extra = [self.last_batch] if self.last_batch is not None else []
        controller = _threadpool_controller()
        limit_native_threads(controller)
        predict, kind = make_predictor(
            model, self.validator, compile_model=self.compile_model, extra=extra
        )
        for batch in extra:  # score real input once before any request does
            try:
                predict(batch)
            except Exception as err:
                raise ServingError(
                    f"Version {info.version} failed on the last request's rows "
                    f"({type(err).__name__}); it is not served."
                ) from err
        info = dataclasses.replace(info, predictor=kind)
        return LoadedModel(model, info, predict, controller, str(info.version))

    def swap(self, loaded: LoadedModel) -> LoadedModel | None:
        """Serve ``loaded`` from the next request on; returns what served before."""
        with self._swap_lock:
            previous, self._current = self._current, loaded
        return previous

    def _registry(self) -> Any:
        from mlflow.tracking import MlflowClient  # noqa: PLC0415 (loaded when needed)

        if self._client is None:
            self._client = MlflowClient(self.tracking_uri, self.tracking_uri)
        return self._client

    def _load(self, client: Any, version: int) -> Any:
        """``models:/<name>/<version>`` through this holder's store (no global URI)."""
        import mlflow.artifacts  # noqa: PLC0415
        import mlflow.sklearn  # noqa: PLC0415

        source = client.get_model_version_download_uri(self.model_name, str(version))
        local = mlflow.artifacts.download_artifacts(
            artifact_uri=source, tracking_uri=self.tracking_uri
        )
        return mlflow.sklearn.load_model(local)

    def refresh(self, timeout: float = 300.0) -> RefreshOutcome:
        """Load the version the alias points to now, if it is not the one served.

        Raises:
            ServingError: no version has the alias, another load holds the lock
                longer than ``timeout``, or the new version fails to load or to
                score the last request's rows (the old model keeps serving).
        """
        if not self._load_lock.acquire(timeout=timeout):
            raise ServingError(
                f"Another model load is still running after {timeout} s."
            )
        try:
            return self._refresh()
        finally:
            self._load_lock.release()

    def _refresh(self) -> RefreshOutcome:
        from modelops.registry import alias_version  # noqa: PLC0415 (imports mlflow)

        client = self._registry()
        found = alias_version(client, self.model_name, self.alias)
        current = self._current
        previous = current.info.version if current else None
        if found is None:
            raise ServingError(
                f"No version of registered model '{self.model_name}' has the alias "
                f"'{self.alias}'.\nHint: promote one (`kedro run --env ...`) or check "
                f"MLFLOW_TRACKING_URI."
            )
        version = int(found.version)
        if version == previous:
            return RefreshOutcome(False, previous, version)
        started = time.perf_counter()
        uri = f"models:/{self.model_name}/{version}"
        try:
            model = self._load(client, version)
        except Exception as err:
            raise ServingError(f"Loading {uri} failed: {type(err).__name__}") from err
        tags = dict(found.tags or {})
        info = ModelInfo(
            name=self.model_name,
            version=version,
            alias=self.alias,
            run_id=found.run_id,
            git_commit=tags.get("modelops.git_commit"),
            git_dirty=tags.get("modelops.git_dirty"),
            loaded_since=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            model_uri=uri,
        )
        self.swap(self.prepare(model, info))
        self.last_error = None
        logger.info(
            "Serving %s@%s: version %s -> %s (run %s, %s, ready in %.1f s)",
            self.model_name,
            self.alias,
            previous,
            version,
            found.run_id,
            self._current.info.predictor if self._current else "-",
            time.perf_counter() - started,
        )
        return RefreshOutcome(True, previous, version)

    def load_first(self, attempts: int, interval: float) -> LoadedModel:
        """Load the first model: ``attempts`` tries, ``interval`` seconds apart.

        Raises:
            ServingError: every attempt failed (the last error says why).
        """
        for attempt in range(1, attempts + 1):
            try:
                self.refresh()
            except ServingError as err:
                self.last_error = str(err)
                logger.warning("Load attempt %d/%d: %s", attempt, attempts, err)
                if attempt < attempts and self._stop.wait(interval):
                    break
            else:
                break
        current = self._current
        if current is None:
            raise ServingError(
                f"No model to serve after {attempts} attempt(s): {self.last_error}"
            )
        return current

    def start_polling(self, interval: float) -> None:
        """Check the alias every ``interval`` seconds in a daemon thread."""
        if self._poller is not None:
            return
        self._stop.clear()
        self._poller = threading.Thread(
            target=self._poll,
            args=(interval,),
            name="modelops-alias-poller",
            daemon=True,
        )
        self._poller.start()

    def _poll(self, interval: float) -> None:
        while not self._stop.wait(interval):
            try:
                self.refresh(timeout=interval)
            except ServingError as err:
                self.last_error = str(err)
                logger.warning("Alias check failed, serving what was loaded: %s", err)
            except Exception as err:
                self.last_error = type(err).__name__
                logger.exception("Alias check failed: %s", type(err).__name__)

    def stop(self, timeout: float = 5.0) -> None:
        """Stop polling (waits for a check in progress up to ``timeout``)."""
        self._stop.set()
        if self._poller is not None:
            self._poller.join(timeout)
            self._poller = None


# --- HTTP ----------------------------------------------------------------------------


class _Response(NamedTuple):
    status: int
    body: dict[str, Any]
    version: str | None = None
    rows: int = 0
    close: bool = False
    headers: tuple[tuple[str, str], ...] = ()


def _error(  # noqa: PLR0913
    status: int,
    message: str,
    request_id: str,
    *,
    column: str | None = None,
    rule: str | None = None,
    row: int | None = None,
    version: str | None = None,
    close: bool = False,
    headers: tuple[tuple[str, str], ...] = (),
) -> _Response:
    body: dict[str, Any] = {
        "error": message,
        "column": column,
        "rule": rule,
        "request_id": request_id,
    }
    if row is not None:
        body["row"] = row
    return _Response(status, body, version, close=close, headers=headers)


class _Handler(BaseHTTPRequestHandler):
    """One connection (keep-alive): parse, check, score, answer; never echo input."""

    protocol_version = "HTTP/1.1"
    server_version = "modelops-serving"
    sys_version = ""
    wbufsize = -1  # buffered: headers and body leave in one send
    disable_nagle_algorithm = True
    server: ServingServer

    def setup(self) -> None:
        self.timeout = self.server.config.idle_timeout_seconds
        super().setup()
        self._limited_pools: Any = None
        self._request_id = ""

    def log_message(self, format: str, *args: Any) -> None:
        """Silence http.server's stderr line: the access log below replaces it."""

    def send_error(
        self, code: int, message: str | None = None, explain: str | None = None
    ) -> None:
        """Errors http.server raises itself (bad request line, unknown method): JSON."""
        request_id = self._request_id or uuid.uuid4().hex
        status = HTTPStatus(code)
        self.close_connection = True  # the rest of the stream cannot be trusted
        if code == HTTPStatus.NOT_IMPLEMENTED:
            status = HTTPStatus.METHOD_NOT_ALLOWED
        response = _error(
            status, status.phrase.lower(), request_id, rule="http", close=True
        )
        self._write(response, request_id)
        access_logger.info(
            "request_id=%s method=- path=- status=%d version=- rows=0 latency_ms=0",
            request_id,
            response.status,
        )

    def do_GET(self) -> None:
        self._serve("GET")

    def do_POST(self) -> None:
        self._serve("POST")

    def _serve(self, method: str) -> None:
        started = time.perf_counter()
        request_id = self.headers.get("X-Request-Id", "")
        if not _REQUEST_ID.fullmatch(request_id):
            request_id = uuid.uuid4().hex
        self._request_id = request_id
        path = self.path.split("?", 1)[0]
        try:
            response = self._route(method, path, request_id)
        except Exception as err:
            logger.exception("Request %s failed: %s", request_id, type(err).__name__)
            response = _error(
                HTTPStatus.INTERNAL_SERVER_ERROR,
                "internal error; see the server log for this request id",
                request_id,
                close=True,
            )
        self._write(response, request_id)
        access_logger.info(
            "request_id=%s method=%s path=%s status=%d version=%s rows=%d "
            "latency_ms=%.2f",
            request_id,
            method,
            path if path in _ROUTES else "-",
            response.status,
            response.version or "-",
            response.rows,
            (time.perf_counter() - started) * 1000,
        )
        self._request_id = ""

    def _write(self, response: _Response, request_id: str) -> None:
        version = response.version
        if version is None:
            current = self.server.holder.current
            version = current.version_header if current else None
        if "model_version" not in response.body:  # every body names the version too
            response.body["model_version"] = int(version) if version else None
        body = json.dumps(response.body, separators=(",", ":")).encode()
        self.send_response_only(response.status)
        self.send_header("Date", self.date_time_string())
        self.send_header("Content-Type", JSON_TYPE)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-Request-Id", request_id)
        if version is not None:
            self.send_header("X-Model-Version", version)
        for name, value in response.headers:
            self.send_header(name, value)
        if response.close or self.close_connection:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        self.wfile.write(body)

    def _route(self, method: str, path: str, request_id: str) -> _Response:
        route = _ROUTES.get(path)
        if route is None:
            self._discard_body()
            return _error(HTTPStatus.NOT_FOUND, "no such endpoint", request_id)
        allowed, handler = route
        if method != allowed:
            self._discard_body()
            return _error(
                HTTPStatus.METHOD_NOT_ALLOWED,
                f"use {allowed} for {path}",
                request_id,
                headers=(("Allow", allowed),),
            )
        return handler(self, request_id)

    # -- body and auth --

    def _content_length(self) -> int:
        if self.headers.get("Transfer-Encoding"):
            raise RequestRejected(
                HTTPStatus.LENGTH_REQUIRED,
                "send the body with a Content-Length (chunked bodies are not accepted)",
                rule="content-length",
                close=True,
            )
        raw = self.headers.get("Content-Length")
        if raw is None:
            return -1
        if not raw.isdigit():
            raise RequestRejected(
                HTTPStatus.BAD_REQUEST,
                "Content-Length is not a number",
                rule="content-length",
                close=True,
            )
        return int(raw)

    def _read_body(self) -> bytes:
        """The request body, at most max_body_bytes (else 413 and the connection closes)."""
        length = self._content_length()
        if length < 0:
            raise RequestRejected(
                HTTPStatus.LENGTH_REQUIRED,
                "send the body with a Content-Length header",
                rule="content-length",
                close=True,
            )
        limit = self.server.config.max_body_bytes
        if length > limit:
            # Drain a body a few times too large, so the client reads the 413 instead
            # of a reset connection; beyond that, just close.
            if length <= DRAIN_FACTOR * limit:
                self._drain(length)
            raise RequestRejected(
                HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                f"the body has {length} bytes; at most {limit} are accepted",
                rule=f"max_body_bytes {limit}",
                close=True,
            )
        body = self.rfile.read(length) if length else b""
        if len(body) != length:
            raise RequestRejected(
                HTTPStatus.BAD_REQUEST,
                "the body ended before Content-Length bytes",
                rule="content-length",
                close=True,
            )
        return body

    def _drain(self, length: int) -> None:
        remaining = length
        while remaining > 0:
            chunk = self.rfile.read(min(remaining, 65536))
            if not chunk:
                break
            remaining -= len(chunk)

    def _discard_body(self) -> None:
        """Read and drop a body nobody will look at, so keep-alive stays in step."""
        try:
            length = self._content_length()
        except RequestRejected:
            self.close_connection = True
            return
        if length > self.server.config.max_body_bytes:
            self.close_connection = True
        elif length > 0:
            self.rfile.read(length)

    def _authorized(self) -> bool:
        token = self.server.config.token
        if token is None:
            return True
        header = self.headers.get("Authorization", "")
        scheme, _, given = header.partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(
            given.strip().encode(), token.encode()
        )

    def _unauthorized(self, request_id: str) -> _Response:
        return _error(
            HTTPStatus.UNAUTHORIZED,
            "missing or wrong bearer token",
            request_id,
            rule="authorization",
            headers=(("WWW-Authenticate", 'Bearer realm="modelops"'),),
        )

    # -- endpoints --

    def invocations(self, request_id: str) -> _Response:
        try:
            body = self._read_body()
            if not self._authorized():
                return self._unauthorized(request_id)
            self._check_content_type()
            payload = _parse_json(body)
            current = self.server.holder.current
            if current is None:
                return _error(
                    HTTPStatus.SERVICE_UNAVAILABLE,
                    "no model is loaded yet; retry shortly",
                    request_id,
                    rule="ready",
                    headers=(("Retry-After", "1"),),
                )
            batch = self.server.validator.validate(payload)
        except RequestRejected as err:
            return _error(
                err.status,
                err.message,
                request_id,
                column=err.column,
                rule=err.rule,
                row=err.row,
                close=err.close,
            )
        if self._limited_pools is not current.threadpools:
            limit_native_threads(current.threadpools)
            self._limited_pools = current.threadpools
        try:
            values = current.predict(batch)
        except Exception as err:
            logger.exception(
                "Request %s: model version %s failed (%s)",
                request_id,
                current.version_header,
                type(err).__name__,
            )
            return _error(
                HTTPStatus.INTERNAL_SERVER_ERROR,
                "the model failed on this request; see the server log for this "
                "request id",
                request_id,
                rule="model",
                version=current.version_header,
            )
        self.server.holder.last_batch = batch
        info = current.info
        body = {
            "predictions": values,
            "model_name": info.name,
            "model_version": info.version,
        }
        return _Response(HTTPStatus.OK, body, current.version_header, rows=len(values))

    def _check_content_type(self) -> None:
        content_type = self.headers.get("Content-Type", "")
        mime, _, parameters = content_type.partition(";")
        charset = parameters.strip().lower().removeprefix("charset=").strip('"')
        if mime.strip().lower() != JSON_TYPE or charset not in {"", "utf-8"}:
            raise RequestRejected(
                HTTPStatus.UNSUPPORTED_MEDIA_TYPE,
                "send Content-Type: application/json (UTF-8)",
                rule="content-type",
            )

    def health(self, request_id: str) -> _Response:
        self._discard_body()
        holder = self.server.holder
        current = holder.current
        if current is None:
            return _Response(
                HTTPStatus.SERVICE_UNAVAILABLE,
                {
                    "status": "loading",
                    "model_name": holder.model_name,
                    "alias": holder.alias,
                    "model_version": None,
                    "request_id": request_id,
                },
                headers=(("Retry-After", "1"),),
            )
        return _Response(
            HTTPStatus.OK,
            {
                "status": "ready",
                "model_name": current.info.name,
                "alias": current.info.alias,
                "model_version": current.info.version,
            },
            current.version_header,
        )

    def model(self, request_id: str) -> _Response:
        self._discard_body()
        current = self.server.holder.current
        if current is None:
            return _error(
                HTTPStatus.SERVICE_UNAVAILABLE,
                "no model is loaded yet",
                request_id,
                rule="ready",
            )
        return _Response(
            HTTPStatus.OK,
            {**current.info.as_dict(), "model_version": current.info.version},
            current.version_header,
        )

    def reload(self, request_id: str) -> _Response:
        self._discard_body()
        config = self.server.config
        if config.token is None:
            return _error(
                HTTPStatus.FORBIDDEN,
                f"reload is disabled: no token is configured (set the environment "
                f"variable {config.token_env})",
                request_id,
                rule="authorization",
            )
        if not self._authorized():
            return self._unauthorized(request_id)
        holder = self.server.holder
        try:
            outcome = holder.refresh(timeout=config.idle_timeout_seconds)
        except ServingError as err:
            logger.warning("Reload %s failed: %s", request_id, err)
            current = holder.current
            return _error(
                HTTPStatus.BAD_GATEWAY,
                "reload failed; still serving "
                + (f"version {current.info.version}" if current else "no model")
                + "; see the server log for this request id",
                request_id,
                rule="reload",
            )
        return _Response(
            HTTPStatus.OK,
            {
                "reloaded": outcome.changed,
                "previous_version": outcome.previous_version,
                "model_version": outcome.version,
                "request_id": request_id,
            },
            str(outcome.version),
        )


def _reject_constant(name: str) -> Any:
    raise RequestRejected(
        HTTPStatus.BAD_REQUEST,
        "malformed JSON: NaN and Infinity are not JSON",
        rule="json",
    )


def _parse_json(body: bytes) -> Any:
    if not body:
        raise RequestRejected(HTTPStatus.BAD_REQUEST, "the body is empty", rule="json")
    try:
        return json.loads(body.decode("utf-8"), parse_constant=_reject_constant)
    except UnicodeDecodeError:
        raise RequestRejected(
            HTTPStatus.BAD_REQUEST, "the body is not UTF-8", rule="json"
        ) from None
    except json.JSONDecodeError as err:
        raise RequestRejected(
            HTTPStatus.BAD_REQUEST,
            f"malformed JSON at line {err.lineno} column {err.colno}",
            rule="json",
        ) from None
    except RecursionError:
        raise RequestRejected(
            HTTPStatus.BAD_REQUEST, "malformed JSON: nested too deeply", rule="json"
        ) from None


_ROUTES: dict[str, tuple[str, Callable[[_Handler, str], _Response]]] = {
    "/invocations": ("POST", _Handler.invocations),
    "/health": ("GET", _Handler.health),
    "/ping": ("GET", _Handler.health),  # what MLflow's scoring server answers on
    "/model": ("GET", _Handler.model),
    "/reload": ("POST", _Handler.reload),
}


class ServingServer(ThreadingHTTPServer):
    """The HTTP server: one thread per connection, the holder and validator shared."""

    daemon_threads = True
    request_queue_size = 128

    def __init__(
        self,
        address: tuple[str, int],
        config: ServingConfig,
        holder: ModelHolder,
        validator: RequestValidator,
    ) -> None:
        self.config = config
        self.holder = holder
        self.validator = validator
        self._thread: threading.Thread | None = None
        super().__init__(address, _Handler)

    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:8000``."""
        host, port = self.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> ServingServer:
        """Serve in a daemon thread (tests; `serve` blocks instead)."""
        self._thread = threading.Thread(
            target=self.serve_forever,
            kwargs={"poll_interval": 0.2},
            name="modelops-serving",
            daemon=True,
        )
        self._thread.start()
        return self

    def close(self) -> None:
        """Stop polling and serving, close the socket."""
        self.holder.stop()
        if self._thread is not None:
            self.shutdown()
            self._thread.join(10)
            self._thread = None
        self.server_close()


def create_server(
    config: ServingConfig,
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    holder: ModelHolder | None = None,
) -> ServingServer:
    """A bound, not yet started server (port 0: a free port; see ``server.url``).

    Nothing is loaded here: call ``server.holder.refresh()`` or ``load_first`` (until
    then /health answers 503) and ``holder.start_polling`` to follow the alias.
    """
    validator = RequestValidator(config.contract, config.max_rows)
    holder = holder or ModelHolder(
        config.model_name,
        config.alias,
        config.tracking_uri,
        validator,
        compile_model=config.compile_model,
    )
    return ServingServer((host, port), config, holder, holder.validator)


def _access_log_to_stderr() -> logging.handlers.QueueListener:
    """Access lines go through a queue to stderr: no console rendering per request."""
    records: queue.Queue[logging.LogRecord] = queue.Queue(10_000)
    stream = logging.StreamHandler()
    stream.setFormatter(logging.Formatter("%(asctime)s access %(message)s"))
    listener = logging.handlers.QueueListener(records, stream)
    access_logger.handlers = [logging.handlers.QueueHandler(records)]
    access_logger.setLevel(logging.INFO)
    access_logger.propagate = False
    listener.start()
    return listener


def serve(
    project_path: Path,
    env: str,
    host: str,
    port: int,
    *,
    overrides: Mapping[str, Any] | None = None,
) -> None:
    """Run the REST service for ``env`` until interrupted (`kedro serve`).

    Binds first (so /health answers 503 while loading), loads the alias's model with
    bounded retries, then follows the alias by polling. Returns on SIGINT/SIGTERM.

    Raises:
        ServingError: the address is taken, or no model could be loaded within the
            startup attempts.
        ConfigError: the serving settings are wrong.
    """
    # Native thread pools read this when they load (before the model's first import).
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    config = load_serving_config(Path(project_path), env, overrides)
    if not logging.getLogger().handlers:  # plain python, not the kedro CLI
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    logger.setLevel(logging.INFO)
    try:
        server = create_server(config, host, port)
    except OSError as err:
        raise ServingError(
            f"Cannot listen on {host}:{port}: {err.strerror or err}.\nHint: choose "
            f"another --port, or stop what is using it."
        ) from err
    listener = _access_log_to_stderr()
    server.start()
    stop = threading.Event()
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        logger.info(
            "Listening on %s for %s@%s (env %s, token %s)",
            server.url,
            config.model_name,
            config.alias,
            env,
            "required" if config.token else "not set: /reload disabled",
        )
        current = server.holder.load_first(
            config.startup_attempts, config.startup_interval_seconds
        )
        server.holder.start_polling(config.poll_seconds)
        logger.info(
            "Ready: %s version %s on %s (polling every %s s)",
            current.info.name,
            current.info.version,
            server.url,
            config.poll_seconds,
        )
        while not stop.wait(1.0):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        server.close()
        listener.stop()
