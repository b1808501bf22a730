"""Unit tests of the data_processing nodes: a good input and a bad one for each."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from modelops.errors import ConfigError, DataContractError, SourceWindowError
from modelops.pipelines.data_processing.nodes import (
    build_model_input,
    clean_source,
    load_source_window,
    sample_rows,
    select_partitions,
)
from tests.conftest import make_source_frame

DAYS = ["2025-03-01", "2025-03-02", "2025-03-03", "2025-03-04"]


@pytest.fixture
def partitions():
    frames = {day: make_source_frame(day) for day in DAYS}
    return {day: (lambda frame=frame: frame.copy()) for day, frame in frames.items()}


@pytest.fixture
def source(data_processing_params):
    return data_processing_params["source"]


def test_load_source_window_reads_window_and_writes_manifest(partitions, source):
    window = {"start": "2025-03-02", "end": "2025-03-03", "last_days": None}
    data, manifest = load_source_window(partitions, {**source, "window": window})
    assert len(data) == 2 * 72
    assert data["timestamp"].dt.day.unique().tolist() == [2, 3]
    assert manifest["first_partition"] == "2025-03-02"
    assert manifest["last_partition"] == "2025-03-03"
    assert manifest["partition_count"] == 2
    assert [p["rows"] for p in manifest["partitions"]] == [72, 72]
    assert len(manifest["partitions"][0]["sha256"]) == 64


def test_load_source_window_stops_at_the_broken_partition(partitions, source):
    broken = make_source_frame("2025-03-03").drop(columns="temperature_c")
    partitions = {**partitions, "2025-03-03": lambda: broken}
    with pytest.raises(DataContractError, match="source partition '2025-03-03'"):
        load_source_window(partitions, source)


def test_load_source_window_drops_columns_outside_the_contract(partitions, source):
    extra = make_source_frame("2025-03-01").assign(debug_note="x")
    data, _ = load_source_window({"2025-03-01": lambda: extra}, source)
    assert "debug_note" not in data.columns


def test_select_partitions_orders_and_bounds():
    ids = ["2025-03-03", "2025-03-01", "2025-03-02"]
    window = {"start": None, "end": "2025-03-02", "last_days": None}
    assert select_partitions(ids, window, "%Y-%m-%d") == ["2025-03-01", "2025-03-02"]
    newest = {"start": None, "end": None, "last_days": 1}
    assert select_partitions(ids, newest, "%Y-%m-%d") == ["2025-03-03"]


def test_select_partitions_empty_window_says_what_exists():
    window = {"start": "2026-01-01", "end": None, "last_days": None}
    with pytest.raises(SourceWindowError, match="3 partitions from 2025-03-01 to"):
        select_partitions(
            ["2025-03-01", "2025-03-02", "2025-03-03"], window, "%Y-%m-%d"
        )


def test_select_partitions_rejects_non_date_names_and_bad_bounds():
    window = {"start": None, "end": None, "last_days": None}
    with pytest.raises(SourceWindowError, match="'notes' is not named as a date"):
        select_partitions(["2025-03-01", "notes"], window, "%Y-%m-%d")
    with pytest.raises(ConfigError, match=r"source\.window\.start is 'March'"):
        select_partitions(["2025-03-01"], {**window, "start": "March"}, "%Y-%m-%d")
    with pytest.raises(ConfigError, match="last_days is 0"):
        select_partitions(["2025-03-01"], {**window, "last_days": 0}, "%Y-%m-%d")


def test_sample_rows_is_deterministic_and_window_independent():
    data = pd.concat([make_source_frame(day, stations=3) for day in DAYS])
    sample = {"fraction": 0.3, "key_columns": ["timestamp", "station_id"], "seed": 7}
    first = sample_rows(data, sample)
    again = sample_rows(data.iloc[::-1], sample)
    assert 0.2 < len(first) / len(data) < 0.4
    keys = ["timestamp", "station_id"]
    assert set(map(tuple, first[keys].to_numpy())) == set(
        map(tuple, again[keys].to_numpy())
    )
    one_day = sample_rows(data[data["timestamp"].dt.day == 2], sample)
    assert set(map(tuple, one_day[keys].to_numpy())) <= set(
        map(tuple, first[keys].to_numpy())
    )
    other_seed = sample_rows(data, {**sample, "seed": 8})
    assert not first[keys].equals(other_seed[keys])


def test_sample_rows_full_fraction_keeps_everything_and_bad_fraction_fails():
    data = make_source_frame()
    full = {"fraction": 1.0, "key_columns": ["timestamp"], "seed": 0}
    assert len(sample_rows(data, full)) == len(data)
    with pytest.raises(ConfigError, match=r"fraction is 1.5; expected a number in"):
        sample_rows(data, {**full, "fraction": 1.5})
    with pytest.raises(ConfigError, match=r"\['station'\] named in source.sample"):
        sample_rows(data, {**full, "fraction": 0.5, "key_columns": ["station"]})


def test_clean_source_keeps_newest_duplicate_sorted(data_processing_params):
    features = data_processing_params["features"]
    data = make_source_frame()
    repeated = data.iloc[[0]].assign(rentals=999)
    messy = pd.concat([data.iloc[::-1], repeated], ignore_index=True)
    before = messy.copy()
    clean = clean_source(messy, features)
    pd.testing.assert_frame_equal(messy, before)
    assert len(clean) == len(data)
    assert clean.iloc[0]["rentals"] == 999
    assert clean["timestamp"].is_monotonic_increasing


def test_build_model_input_has_keys_features_target(data_processing_params):
    features = data_processing_params["features"]
    data = make_source_frame()
    table = build_model_input(data, features)
    assert table.columns.tolist()[:2] == ["timestamp", "station_id"]
    assert table.columns[-1] == "rentals"
    assert {"hour", "day_of_week", "month", "is_weekend"} <= set(table.columns)
    np.testing.assert_array_equal(table["hour"], data["timestamp"].dt.hour)
    assert "hour" not in data.columns


def test_build_model_input_names_unknown_feature(data_processing_params):
    features = {**data_processing_params["features"], "numeric": ["wind_gust"]}
    with pytest.raises(ConfigError, match=r"\['wind_gust'\] named in features"):
        build_model_input(make_source_frame(), features)
