"""Nodes of the training pipeline: a reproducible split and the configured model."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
from sklearn.pipeline import Pipeline

from modelops.contracts import use_case_key
from modelops.errors import ConfigError
from modelops.lineage import content_hash
from modelops.modeling import build_model, check_features, input_columns, model_inputs

TRAINING_CONF = "conf/base/parameters_training.yml"
SPLIT_CONF = use_case_key("split")
SPLIT_STRATEGIES = ("time", "random")


def split_model_input(
    table: pd.DataFrame, split: Mapping[str, Any], features: Mapping[str, Any]
) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, Any]]:
    """Split the model input table into train and test sets, identified by content hash.

    ``time`` (default): the test set is every row from ``cutoff`` on, or the newest
    ``test_days`` days when no cutoff is set. ``random`` (for data without a time
    column): a seeded ``test_fraction`` of rows.

    Args:
        table: The model input table; not modified.
        split: ``strategy``, ``cutoff``, ``test_days``, ``test_fraction``, ``seed``.
        features: The ``features`` parameters (``time_column`` is used).

    Returns:
        Train set, test set, and a manifest with sizes, periods and sha256 hashes.
    """
    strategy = split.get("strategy", "time")
    if strategy == "time":
        is_test, cutoff = _time_split(table, split, features)
    elif strategy == "random":
        fraction = float(split["test_fraction"])
        if not 0.0 < fraction < 1.0:
            raise ConfigError(
                f"split.test_fraction is {fraction}; expected a number in (0, 1).\n"
                f"Hint: fix {use_case_key('split.test_fraction')}."
            )
        rng = np.random.default_rng(int(split["seed"]))
        is_test = rng.random(len(table)) < fraction
        cutoff = None
    else:
        raise ConfigError(
            f"split.strategy is {strategy!r}; expected one of "
            f"{list(SPLIT_STRATEGIES)}.\nHint: fix {use_case_key('split.strategy')}."
        )
    train = table.loc[~is_test].reset_index(drop=True)
    test = table.loc[is_test].reset_index(drop=True)
    if train.empty or test.empty:
        raise ConfigError(
            f"The {strategy} split left {len(train)} training and {len(test)} test "
            f"rows out of {len(table)}; both must be non-empty.\nHint: adjust "
            f"{SPLIT_CONF}, or widen source.window in "
            f"conf/base/parameters_data_processing.yml."
        )
    manifest = {
        "strategy": strategy,
        "cutoff": cutoff,
        "train_rows": len(train),
        "test_rows": len(test),
        "train_sha256": content_hash(train),
        "test_sha256": content_hash(test),
        **_periods(train, test, features),
    }
    return train, test, manifest


def train_model(
    train_set: pd.DataFrame, features: Mapping[str, Any], model: Mapping[str, Any]
) -> Pipeline:
    """Fit the configured model (calendar features, encoding, estimator) on the train set.

    Args:
        train_set: Training rows; not modified.
        features: The ``features`` parameters.
        model: ``class`` (dotted path), ``kwargs``, ``seed``, ``categorical_encoding``.

    Returns:
        The fitted sklearn Pipeline: raw source columns in, predictions out.
    """
    check_features(features)
    missing = [
        name
        for name in [*input_columns(features), features["target"]]
        if name not in train_set.columns
    ]
    if missing:
        raise ConfigError(
            f"Column(s) {missing} are not in the train set (columns: "
            f"{list(train_set.columns)}).\nHint: fix {use_case_key('features')} "
            f"and re-run data_processing."
        )
    pipeline = build_model(features, model)
    return pipeline.fit(
        model_inputs(train_set, features), train_set[features["target"]]
    )


def _time_split(
    table: pd.DataFrame, split: Mapping[str, Any], features: Mapping[str, Any]
) -> tuple[np.ndarray, str]:
    """Rows at or after the cutoff are the test set; returns the mask and the cutoff."""
    time_column = features.get("time_column")
    if not time_column:
        raise ConfigError(
            "split.strategy is 'time' but features.time_column is not set (null).\n"
            f"Hint: for data without a time column use strategy 'random' "
            f"({use_case_key('split.strategy')}); otherwise name the time column "
            f"({use_case_key('features.time_column')})."
        )
    if time_column not in table.columns:
        raise ConfigError(
            f"Time column '{time_column}' is not in the model input table (columns: "
            f"{list(table.columns)}).\nHint: fix "
            f"{use_case_key('features.time_column')}."
        )
    timestamps = pd.to_datetime(table[time_column])
    if split.get("cutoff") is not None:
        try:
            cutoff = pd.Timestamp(str(split["cutoff"]))
        except ValueError as err:
            raise ConfigError(
                f"split.cutoff is {split['cutoff']!r}; expected a date like "
                f"2025-04-01.\nHint: fix {use_case_key('split.cutoff')}."
            ) from err
    else:
        test_days = int(split["test_days"])
        if test_days < 1:
            raise ConfigError(
                f"split.test_days is {test_days}; expected at least 1.\n"
                f"Hint: fix {use_case_key('split.test_days')}."
            )
        newest = timestamps.max().normalize()
        cutoff = newest - dt.timedelta(days=test_days - 1)
    return (timestamps >= cutoff).to_numpy(), cutoff.isoformat()


def _periods(
    train: pd.DataFrame, test: pd.DataFrame, features: Mapping[str, Any]
) -> dict[str, str | None]:
    """First and last timestamps of each set, for lineage (None without a time column)."""
    time_column = features.get("time_column")
    if not time_column:
        return {}
    return {
        "train_start": str(train[time_column].min()),
        "train_end": str(train[time_column].max()),
        "test_start": str(test[time_column].min()),
        "test_end": str(test[time_column].max()),
    }
