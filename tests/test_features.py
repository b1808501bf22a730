"""Tests of the calendar feature transformer shared by training and serving."""

from __future__ import annotations

import pickle

import pandas as pd
import pytest
from sklearn.base import clone

from modelops.errors import ConfigError
from modelops.features import CalendarFeatures


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
