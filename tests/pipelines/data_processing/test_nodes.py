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


def test_unknown_feature_names_the_use_case_file_and_key(data_processing_params):
    features = {**data_processing_params["features"], "categorical": ["zone"]}
    with pytest.raises(
        ConfigError,
        match=r"\['zone'\] named in features\.categorical are not in the data(.|\n)*"
        r"Hint: fix use_case\.features\.categorical in conf/base/use_case\.yml",
    ):
        build_model_input(make_source_frame(), features)
    typo = {**data_processing_params["features"], "categorial": ["weather"]}
    with pytest.raises(
        ConfigError,
        match=r"features has unknown key\(s\) \['categorial'\](.|\n)*"
        r"fix use_case\.features in conf/base/use_case\.yml",
    ):
        clean_source(make_source_frame(), typo)


# --- data without a time column or a key (a static table, one file) -----------------


@pytest.fixture(scope="module")
def diabetes() -> pd.DataFrame:
    """A real static dataset: one table, no time column, no key (ships with sklearn)."""
    from sklearn.datasets import load_diabetes  # noqa: PLC0415

    return load_diabetes(as_frame=True, scaled=False).frame


STATIC_FEATURES = {
    "time_column": None,
    "key_columns": [],
    "dedupe": "whole_rows",
    "target": "target",
    "numeric": ["age", "sex", "bmi", "bp", "s1", "s2", "s3", "s4", "s5", "s6"],
    "categorical": [],
    "calendar": [],
}
STATIC_SOURCE = {
    "partition_date_format": "%Y-%m-%d",
    "window": {"start": None, "end": None, "last_days": None},
    "sample": {"fraction": 1.0, "key_columns": [], "seed": 0},
    "contract": {
        "min_rows": 100,
        "unique_key": [],
        "columns": {
            **{
                name: {"dtype": "float", "min": 0}
                for name in STATIC_FEATURES["numeric"]
            },
            "target": {"dtype": "float", "min": 0},
        },
    },
}


def test_a_single_file_is_one_partition_and_the_window_does_not_apply(diabetes, caplog):
    window = {"start": "2025-01-01", "end": None, "last_days": 3}
    data, manifest = load_source_window(diabetes, {**STATIC_SOURCE, "window": window})
    pd.testing.assert_frame_equal(data, diabetes)
    assert manifest["first_partition"] == manifest["last_partition"] == "single_file"
    assert manifest["partition_count"] == 1
    assert manifest["partitions"][0]["rows"] == 442
    assert "does not apply: the source is a single file" in caplog.text


def test_a_broken_single_file_is_named_as_the_source_file(diabetes):
    broken = diabetes.assign(bmi=-diabetes["bmi"])
    with pytest.raises(
        DataContractError,
        match=r"violated in the source file \(use_case\.source\.dataset in "
        r"conf/base/use_case\.yml\):\n  - column 'bmi': rule 'min 0' failed for 442",
    ):
        load_source_window(broken, STATIC_SOURCE)


def test_a_key_repeated_across_partitions_stops_the_run(partitions, source):
    repeated = {**partitions, "2025-03-05": partitions["2025-03-04"]}
    with pytest.raises(
        DataContractError,
        match=r"violated in the source window \(all partitions together\):\n  - "
        r"frame: rule 'unique_key \['timestamp', 'station_id'\]' failed: 144 of "
        r"360 rows repeat a key, e.g. \(timestamp=Timestamp\('2025-03-04 00:00:00'\), "
        r"station_id='S0001'\) at rows 216, 288",
    ):
        load_source_window(repeated, source)


def test_no_key_dedupes_whole_rows_or_nothing(diabetes):
    messy = pd.concat([diabetes, diabetes.iloc[[5, 5, 9]]], ignore_index=True)
    before = messy.copy()
    whole_rows = clean_source(messy, STATIC_FEATURES)
    pd.testing.assert_frame_equal(whole_rows, diabetes)  # first kept, order kept
    kept = clean_source(messy, {**STATIC_FEATURES, "dedupe": "none"})
    pd.testing.assert_frame_equal(kept, messy)
    pd.testing.assert_frame_equal(messy, before)


def test_dedupe_on_keys_without_keys_is_a_config_error_not_a_crash(diabetes):
    with pytest.raises(
        ConfigError,
        match=r"features\.dedupe is 'keys' but features\.key_columns is empty(.|\n)*"
        r"Hint: set features\.dedupe to whole_rows or none(.|\n)*"
        r"use_case\.features in conf/base/use_case\.yml",
    ):
        clean_source(diabetes, {**STATIC_FEATURES, "dedupe": "keys"})
    with pytest.raises(ConfigError, match=r"features\.dedupe is 'latest'"):
        clean_source(diabetes, {**STATIC_FEATURES, "dedupe": "latest"})


def test_no_time_column_derives_no_calendar_features(diabetes, caplog):
    table = build_model_input(diabetes, STATIC_FEATURES)
    assert table.columns.tolist() == [*STATIC_FEATURES["numeric"], "target"]
    ignored = build_model_input(diabetes, {**STATIC_FEATURES, "calendar": ["hour"]})
    pd.testing.assert_frame_equal(ignored, table)
    assert "features.calendar ['hour'] is ignored: features.time_column is null" in (
        caplog.text
    )


def test_a_time_column_that_is_no_key_is_kept(data_processing_params):
    features = {**data_processing_params["features"], "key_columns": ["station_id"]}
    table = build_model_input(make_source_frame(), features)
    assert table.columns.tolist()[:2] == ["station_id", "timestamp"]


def test_the_sample_without_keys_hashes_whole_rows(diabetes):
    sample = {"fraction": 0.25, "key_columns": [], "seed": 0}
    kept = sample_rows(diabetes, sample)
    assert 80 < len(kept) < 140
    shuffled = sample_rows(diabetes.sample(frac=1.0, random_state=1), sample)
    key = ["age", "bmi", "s5", "target"]
    pd.testing.assert_frame_equal(
        kept.sort_values(key).reset_index(drop=True),
        shuffled.sort_values(key).reset_index(drop=True),
    )
    other_seed = sample_rows(diabetes, {**sample, "seed": 7})
    assert not kept.equals(other_seed)
