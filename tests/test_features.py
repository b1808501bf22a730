"""Tests of the calendar feature transformer shared by training and serving."""

from __future__ import annotations

import pickle

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone

from modelops.errors import ConfigError, DataContractError
from modelops.features import CALENDAR_FEATURES, CalendarFeatures, calendar_columns


def test_derives_calendar_columns_without_touching_input(source_frame):
    before = source_frame.copy()
    transformer = CalendarFeatures(
        "timestamp", ["hour", "day_of_week", "month", "is_weekend"]
    )
    out = transformer.fit_transform(source_frame)
    pd.testing.assert_frame_equal(source_frame, before)
    assert out["hour"].tolist()[:6] == [0, 0, 0, 1, 1, 1]
    assert set(out["day_of_week"]) == {0}  # 2025-03-03 is a Monday
    assert set(out["is_weekend"]) == {0}
    assert set(out["month"]) == {3}
    assert out["hour"].dtype == "int64"


def test_accepts_timestamps_as_strings(source_frame):
    as_text = source_frame.assign(timestamp=source_frame["timestamp"].astype(str))
    out = CalendarFeatures("timestamp", ["hour"]).fit_transform(as_text)
    assert out["hour"].max() == 23


def test_unknown_feature_and_missing_time_column_are_config_errors(source_frame):
    with pytest.raises(ConfigError, match=r"Unknown calendar feature\(s\) \['hours'\]"):
        CalendarFeatures("timestamp", ["hours"]).fit(source_frame)
    with pytest.raises(ConfigError, match="Time column 'time' is not in the data"):
        CalendarFeatures("time", ["hour"]).fit(source_frame)


def test_clones_and_pickles_like_an_sklearn_transformer(source_frame):
    transformer = CalendarFeatures("timestamp", ["hour", "month"]).fit(source_frame)
    assert clone(transformer).get_params() == transformer.get_params()
    restored = pickle.loads(pickle.dumps(transformer))  # noqa: S301
    pd.testing.assert_frame_equal(
        restored.transform(source_frame), transformer.transform(source_frame)
    )


# The pandas accessors the calendar features were first written with: the one
# definition (scalar functions on one date-time) must give exactly these.
PANDAS_REFERENCE = {
    "hour": lambda ts: ts.dt.hour,
    "day_of_week": lambda ts: ts.dt.day_of_week,
    "day_of_month": lambda ts: ts.dt.day,
    "day_of_year": lambda ts: ts.dt.day_of_year,
    "week_of_year": lambda ts: ts.dt.isocalendar().week,
    "month": lambda ts: ts.dt.month,
    "quarter": lambda ts: ts.dt.quarter,
    "year": lambda ts: ts.dt.year,
    "is_weekend": lambda ts: ts.dt.day_of_week >= 5,
}


def test_one_definition_gives_columns_and_single_values_alike():
    # Four years of irregular times, minutes and seconds included, across new years
    # and ISO week 53 (2020-12-31).
    stamps = pd.Series(
        pd.date_range("2019-12-25", "2024-01-05", freq="7h13min17s")
    ).sample(frac=1.0, random_state=0)
    names = list(CALENDAR_FEATURES)
    assert set(names) == set(PANDAS_REFERENCE)
    columns = calendar_columns(stamps, names)
    for name in names:
        expected = PANDAS_REFERENCE[name](stamps).astype("int64").to_numpy()
        np.testing.assert_array_equal(columns[name], expected, err_msg=name)
        assert columns[name].dtype == np.int64
        single = [CALENDAR_FEATURES[name](s.to_pydatetime()) for s in stamps[:50]]
        assert single == expected[:50].tolist(), name


def test_a_missing_timestamp_is_a_contract_error_naming_the_use_case_file(
    source_frame,
):
    stamps = source_frame["timestamp"].astype("datetime64[us]").copy()
    stamps.iloc[3] = pd.NaT
    with pytest.raises(
        DataContractError,
        match=r"1 of 72 timestamps are missing(.|\n)*use_case\.contract in "
        r"conf/base/use_case\.yml",
    ):
        CalendarFeatures("timestamp", ["hour"]).fit_transform(
            source_frame.assign(timestamp=stamps)
        )


def test_config_errors_name_the_use_case_key(source_frame):
    with pytest.raises(
        ConfigError, match=r"fix use_case\.features\.calendar in conf/base/use_case"
    ):
        CalendarFeatures("timestamp", ["hours"]).fit(source_frame)
    with pytest.raises(
        ConfigError, match=r"fix use_case\.features\.time_column in conf/base/use_case"
    ):
        CalendarFeatures("time", ["hour"]).fit(source_frame)
