"""Unit tests of the training nodes: split, hashes and the model as configuration."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from modelops.errors import ConfigError
from modelops.modeling import model_inputs
from modelops.pipelines.training.nodes import split_model_input, train_model

SMALL_HGB = {
    "class": "sklearn.ensemble.HistGradientBoostingRegressor",
    "kwargs": {"max_iter": 20},
    "seed": 0,
}


@pytest.fixture
def features(data_processing_params):
    return data_processing_params["features"]


def test_time_split_tests_on_newest_days_with_stable_hashes(
    model_input_table, features
):
    before = model_input_table.copy()
    split = {"strategy": "time", "cutoff": None, "test_days": 7}
    train, test, manifest = split_model_input(model_input_table, split, features)
    pd.testing.assert_frame_equal(model_input_table, before)
    assert len(train) + len(test) == len(model_input_table)
    assert test["timestamp"].min() == pd.Timestamp("2025-03-15")
    assert train["timestamp"].max() < test["timestamp"].min()
    assert manifest["test_rows"] == 7 * 6 * 24
    assert manifest["cutoff"] == "2025-03-15T00:00:00"
    _, _, again = split_model_input(
        model_input_table.sample(frac=1, random_state=1), split, features
    )
    assert again["train_sha256"] != manifest["train_sha256"]  # row order is content
    _, _, same = split_model_input(model_input_table.copy(), split, features)
    assert same == manifest


def test_cutoff_overrides_test_days(model_input_table, features):
    split = {"strategy": "time", "cutoff": "2025-03-20", "test_days": 7}
    _, test, _ = split_model_input(model_input_table, split, features)
    assert test["timestamp"].min() == pd.Timestamp("2025-03-20")


def test_random_split_is_seeded(model_input_table, features):
    split = {"strategy": "random", "test_fraction": 0.25, "seed": 5}
    _, test, manifest = split_model_input(model_input_table, split, features)
    _, _, again = split_model_input(model_input_table, split, features)
    assert 0.2 < len(test) / len(model_input_table) < 0.3
    assert again["test_sha256"] == manifest["test_sha256"]


@pytest.mark.parametrize(
    ("split", "message"),
    [
        (
            {"strategy": "time", "cutoff": "2030-01-01", "test_days": 1},
            "left 3024 training and 0 test",
        ),
        ({"strategy": "time", "cutoff": None, "test_days": 0}, "test_days is 0"),
        (
            {"strategy": "time", "cutoff": "soon", "test_days": 1},
            "split.cutoff is 'soon'",
        ),
        (
            {"strategy": "random", "test_fraction": 1.0, "seed": 0},
            "test_fraction is 1.0",
        ),
        ({"strategy": "kfold"}, "split.strategy is 'kfold'"),
    ],
)
def test_bad_split_config_is_named(model_input_table, features, split, message):
    with pytest.raises(ConfigError, match=message) as info:
        split_model_input(model_input_table, split, features)
    assert "use_case.split" in str(info.value)
    assert "conf/base/use_case.yml" in str(info.value)


def test_time_split_needs_a_time_column(model_input_table, features):
    split = {"strategy": "time", "cutoff": None, "test_days": 7}
    with pytest.raises(
        ConfigError,
        match=r"use strategy 'random' \(use_case\.split\.strategy in "
        r"conf/base/use_case\.yml\)",
    ):
        split_model_input(model_input_table, split, {**features, "time_column": None})


STATIC_FEATURES = {
    "time_column": None,
    "key_columns": [],
    "dedupe": "whole_rows",
    "target": "target",
    "numeric": ["age", "sex", "bmi", "bp", "s1", "s2", "s3", "s4", "s5", "s6"],
    "categorical": [],
    "calendar": [],
}


@pytest.fixture(scope="module")
def diabetes() -> pd.DataFrame:
    """A real static dataset: no time column, no key (ships with sklearn)."""
    from sklearn.datasets import load_diabetes  # noqa: PLC0415

    return load_diabetes(as_frame=True, scaled=False).frame


def test_data_without_time_column_or_key_splits_at_random_and_trains(diabetes):
    split = {"strategy": "random", "test_fraction": 0.2, "seed": 42}
    train, test, manifest = split_model_input(diabetes, split, STATIC_FEATURES)
    assert len(train) + len(test) == 442
    assert 60 < len(test) < 120
    assert set(manifest) >= {"train_sha256", "test_sha256"}
    assert "train_start" not in manifest
    model = train_model(train, STATIC_FEATURES, SMALL_HGB)
    assert [name for name, _ in model.steps] == ["prepare", "model"]  # no calendar
    predicted = model.predict(model_inputs(test, STATIC_FEATURES))
    assert len(predicted) == len(test)


def test_training_names_a_missing_column_and_the_use_case_key(diabetes):
    features = {**STATIC_FEATURES, "numeric": ["age", "bmi_"]}
    with pytest.raises(
        ConfigError,
        match=r"\['bmi_'\] are not in the train set(.|\n)*Hint: fix use_case\.features "
        r"in conf/base/use_case\.yml",
    ):
        train_model(diabetes, features, SMALL_HGB)
    with pytest.raises(ConfigError, match=r"target 'target' is also a model input"):
        train_model(diabetes, {**features, "numeric": ["age", "target"]}, SMALL_HGB)


def test_trained_model_turns_raw_rows_into_predictions(model_input_table, features):
    model = train_model(model_input_table, features, SMALL_HGB)
    raw = model_inputs(model_input_table.head(50), features)
    assert "hour" not in raw.columns  # calendar features are derived inside the model
    predictions = model.predict(raw)
    assert predictions.shape == (50,)
    assert np.isfinite(predictions).all()
    unseen = raw.assign(station_id="S9999")
    assert np.isfinite(model.predict(unseen)).all()  # an unseen station still scores


def test_training_is_reproducible(model_input_table, features):
    first = train_model(model_input_table, features, SMALL_HGB)
    second = train_model(model_input_table, features, SMALL_HGB)
    raw = model_inputs(model_input_table, features)
    np.testing.assert_array_equal(first.predict(raw), second.predict(raw))


def test_swapping_the_model_class_needs_only_config(model_input_table, features):
    ridge = {"class": "sklearn.linear_model.Ridge", "kwargs": {"alpha": 1.0}, "seed": 0}
    model = train_model(model_input_table, features, ridge)
    assert type(model.named_steps["model"]).__name__ == "Ridge"
    raw = model_inputs(model_input_table.head(10), features)
    assert np.isfinite(
        model.predict(raw.assign(weather="fog", station_id="S9999"))
    ).all()


@pytest.mark.parametrize(
    ("model", "message"),
    [
        (
            {"class": "sklearn.ensemble.HistGradientBoostingRegresor"},
            "not found, is this a typo",
        ),
        (
            {
                "class": "sklearn.linear_model.Ridge",
                "kwargs": {"max_iter": "x", "depth": 3},
            },
            "rejected its kwargs",
        ),
        (
            {"class": "sklearn.linear_model.Ridge", "categorical_encoding": "hash"},
            "categorical_encoding is 'hash'",
        ),
        ({"class": "pandas.DataFrame"}, "not an estimator class"),
    ],
)
def test_bad_model_config_is_named(model_input_table, features, model, message):
    with pytest.raises(ConfigError, match=message):
        train_model(model_input_table, features, {"seed": 0, **model})
