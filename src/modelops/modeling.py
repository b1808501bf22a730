"""The model as configuration: an sklearn Pipeline that turns source rows into predictions."""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import RegressorMixin
from sklearn.compose import ColumnTransformer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, OrdinalEncoder

from modelops.errors import ConfigError
from modelops.features import CalendarFeatures

TRAINING_CONF = "conf/base/parameters_training.yml"
ENCODINGS = ("auto", "ordinal", "onehot")


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
    has_time = bool(features.get("time_column"))
    calendar_columns = list(features.get("calendar") or []) if has_time else []
    numeric = list(dict.fromkeys([*features["numeric"], *calendar_columns]))
    prepare = ColumnTransformer(
        [
            ("categorical", encoder, list(features["categorical"])),
            ("numeric", "passthrough", numeric),
        ],
        remainder="drop",
        verbose_feature_names_out=False,
    )
    steps: list[tuple[str, Any]] = []
    if features.get("time_column") and features.get("calendar"):
        calendar = CalendarFeatures(
            time_column=features["time_column"], features=list(features["calendar"])
        )
        steps.append(("calendar", calendar))
    return Pipeline([*steps, ("prepare", prepare), ("model", estimator)])
