"""The model as configuration: an sklearn Pipeline that turns source rows into predictions."""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from modelops.contracts import use_case_key
from modelops.errors import ConfigError
from modelops.features import CalendarFeatures, check_calendar_features

if TYPE_CHECKING:
    from sklearn.base import RegressorMixin
    from sklearn.pipeline import Pipeline

TRAINING_CONF = "conf/base/parameters_training.yml"
ENCODINGS = ("auto", "ordinal", "onehot")
DEDUPE_MODES = ("keys", "whole_rows", "none")
FEATURE_KEYS = (
    "time_column",
    "key_columns",
    "dedupe",
    "target",
    "numeric",
    "categorical",
    "calendar",
)
_LIST_KEYS = ("key_columns", "numeric", "categorical", "calendar")


def check_features(features: Mapping[str, Any]) -> None:
    """Check the ``features`` settings themselves (not the data), naming what to fix.

    Raises:
        ConfigError: an unknown key, a list that is not a list of names, no target,
            a target that is also a feature, no feature at all, or an unknown
            ``dedupe`` mode or calendar feature.
    """
    unknown = sorted(set(features) - set(FEATURE_KEYS), key=str)
    if unknown:
        raise ConfigError(
            f"features has unknown key(s) {unknown}; expected some of "
            f"{list(FEATURE_KEYS)}.\nHint: fix {use_case_key('features')}."
        )
    for key in _LIST_KEYS:
        value = features.get(key)
        if value is None and key == "calendar":
            continue
        if (
            isinstance(value, str)
            or not isinstance(value, list | tuple)
            or not all(isinstance(name, str) for name in value)
        ):
            raise ConfigError(
                f"features.{key} is {value!r}; expected a list of column names "
                f"([] for none).\nHint: fix {use_case_key(f'features.{key}')}."
            )
    time_column = features.get("time_column")
    if time_column is not None and not isinstance(time_column, str):
        raise ConfigError(
            f"features.time_column is {time_column!r}; expected a column name, or "
            f"null for data without one.\nHint: fix "
            f"{use_case_key('features.time_column')}."
        )
    target = features.get("target")
    if not isinstance(target, str) or not target:
        raise ConfigError(
            f"features.target is {target!r}; expected the name of the column to "
            f"predict.\nHint: fix {use_case_key('features.target')}."
        )
    inputs = input_columns(features)
    if target in inputs:
        raise ConfigError(
            f"The target '{target}' is also a model input (time column, numeric or "
            f"categorical).\nHint: fix {use_case_key('features')}."
        )
    if not inputs:
        raise ConfigError(
            "features lists no model input: numeric, categorical and time_column are "
            f"all empty.\nHint: fix {use_case_key('features')}."
        )
    dedupe = features.get("dedupe", "keys")
    if dedupe not in DEDUPE_MODES:
        raise ConfigError(
            f"features.dedupe is {dedupe!r}; expected one of {list(DEDUPE_MODES)}.\n"
            f"Hint: fix {use_case_key('features.dedupe')}."
        )
    check_calendar_features(list(features.get("calendar") or []))


def check_inputs_in_contract(
    features: Mapping[str, Any], contract_columns: Sequence[str]
) -> None:
    """Raise ConfigError unless every model input is a column of the contract.

    Serving reads exactly the contract's columns (minus the target): a feature the
    contract does not declare would reach the model as a missing column.
    """
    missing = [name for name in input_columns(features) if name not in contract_columns]
    if missing:
        raise ConfigError(
            f"Model input column(s) {missing} (features.time_column, numeric, "
            f"categorical) are not columns of the data contract (columns: "
            f"{list(contract_columns)}).\nHint: declare them in "
            f"{use_case_key('contract.columns')}, or fix {use_case_key('features')}."
        )


def calendar_features(features: Mapping[str, Any]) -> list[str]:
    """The calendar features derived: none without a time column."""
    if not features.get("time_column"):
        return []
    return list(features.get("calendar") or [])


def input_columns(features: Mapping[str, Any]) -> list[str]:
    """The source columns the model reads: time column, numeric and categorical."""
    time_column = [features["time_column"]] if features.get("time_column") else []
    return list(
        dict.fromkeys([*time_column, *features["numeric"], *features["categorical"]])
    )


def model_inputs(frame: pd.DataFrame, features: Mapping[str, Any]) -> pd.DataFrame:
    """The columns of ``frame`` the model reads (a view for predict, nothing derived)."""
    return frame[input_columns(features)]


def load_estimator_class(class_path: str) -> type:
    """Import an estimator class from a dotted path such as ``sklearn.linear_model.Ridge``."""
    module_name, _, class_name = class_path.rpartition(".")
    try:
        estimator_class = getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError, ValueError) as err:
        raise ConfigError(
            f"Model class '{class_path}' not found, is this a typo?\nHint: set "
            f"model.class in {TRAINING_CONF} to an importable estimator class."
        ) from err
    if not inspect.isclass(estimator_class) or not hasattr(estimator_class, "fit"):
        raise ConfigError(
            f"Model class '{class_path}' is not an estimator class with fit().\n"
            f"Hint: fix model.class in {TRAINING_CONF}."
        )
    return estimator_class


def build_estimator(model: Mapping[str, Any]) -> RegressorMixin:
    """Instantiate the configured estimator, seeding it when it takes a random_state."""
    estimator_class = load_estimator_class(model["class"])
    kwargs = dict(model.get("kwargs") or {})
    accepted = inspect.signature(estimator_class).parameters
    if "random_state" in accepted and "random_state" not in kwargs:
        kwargs["random_state"] = model.get("seed")
    try:
        return estimator_class(**kwargs)
    except TypeError as err:
        raise ConfigError(
            f"Model class '{model['class']}' rejected its kwargs {kwargs}: {err}.\n"
            f"Hint: fix model.kwargs in {TRAINING_CONF}."
        ) from err


def build_model(features: Mapping[str, Any], model: Mapping[str, Any]) -> Pipeline:
    """The unfitted model: calendar features, encoding, then the configured estimator.

    Everything serving needs to turn a raw source row into a prediction lives in this
    one sklearn Pipeline, so batch and online serving cannot drift from training.
    """
    # Imported here: serving and every other `kedro` command import this module
    # for its column helpers and need none of these classes.
    from sklearn.compose import ColumnTransformer  # noqa: PLC0415
    from sklearn.pipeline import Pipeline  # noqa: PLC0415
    from sklearn.preprocessing import OneHotEncoder, OrdinalEncoder  # noqa: PLC0415

    estimator = build_estimator(model)
    encoding = model.get("categorical_encoding", "auto")
    if encoding not in ENCODINGS:
        raise ConfigError(
            f"model.categorical_encoding is {encoding!r}; expected one of "
            f"{list(ENCODINGS)}.\nHint: fix {TRAINING_CONF}."
        )
    if encoding == "auto":  # codes (unseen -> NaN) only where the estimator takes NaN
        encoding = (
            "ordinal" if estimator.__sklearn_tags__().input_tags.allow_nan else "onehot"
        )
    if encoding == "ordinal":
        encoder = OrdinalEncoder(
            handle_unknown="use_encoded_value",
            unknown_value=np.nan,
            encoded_missing_value=np.nan,
        )
    else:
        encoder = OneHotEncoder(handle_unknown="ignore", sparse_output=False)
    calendar = calendar_features(features)
    numeric = list(dict.fromkeys([*features["numeric"], *calendar]))
    # No encoder without categorical columns: sklearn leaves a transformer of no
    # columns unfitted, and an unfitted step has no ONNX form.
    encoders = (
        [("categorical", encoder, list(features["categorical"]))]
        if features["categorical"]
        else []
    )
    prepare = ColumnTransformer(
        [*encoders, ("numeric", "passthrough", numeric)],
        remainder="drop",
        verbose_feature_names_out=False,
    )
    steps: list[tuple[str, Any]] = []
    if calendar:
        steps.append(
            (
                "calendar",
                CalendarFeatures(
                    time_column=features["time_column"], features=calendar
                ),
            )
        )
    return Pipeline([*steps, ("prepare", prepare), ("model", estimator)])
