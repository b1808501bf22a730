"""Tests of the production-source simulator (modelops.simulator)."""

from __future__ import annotations

import datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from modelops.errors import ModelopsError
from modelops.simulator import (
    COLUMNS,
    CORRUPT_KINDS,
    DRIFT_KINDS,
    WEATHER_STATES,
    ZONES,
    SimulationSummary,
    SimulatorError,
    simulate_days,
    write_source,
)

START = datetime.date(2024, 3, 4)  # a Monday


def frames(start: datetime.date = START, days: int = 3, **kwargs) -> pd.DataFrame:
    """Simulate days and concatenate them into one frame."""
    parts = [frame for _, frame in simulate_days(start, days, **kwargs)]
    return pd.concat(parts, ignore_index=True)


@pytest.fixture(scope="module")
def year() -> pd.DataFrame:
    """A year of clean data for the realism checks."""
    data = frames(datetime.date(2023, 1, 1), 365, n_stations=20, seed=7)
    return data.assign(
        hour=data["timestamp"].dt.hour,
        rest_day=(data["timestamp"].dt.day_of_week >= 5) | data["is_holiday"],
    )


# --- determinism -------------------------------------------------------------------


def test_same_seed_gives_identical_frames():
    pd.testing.assert_frame_equal(frames(seed=3), frames(seed=3))


def test_chunks_give_the_same_data_as_one_call():
    whole = frames(START, 20, n_stations=5)
    first = frames(START, 10, n_stations=5)
    second = frames(START + datetime.timedelta(days=10), 10, n_stations=5)
    pd.testing.assert_frame_equal(pd.concat([first, second], ignore_index=True), whole)


def test_different_seeds_give_different_data():
    one, two = frames(seed=1), frames(seed=2)
    assert not one["rentals"].equals(two["rentals"])
    assert not one["temperature_c"].equals(two["temperature_c"])
    assert not one["station_zone"].equals(two["station_zone"])


def test_days_are_yielded_in_order_and_inputs_are_not_changed():
    start = datetime.date(2024, 12, 30)
    days = [day for day, _ in simulate_days(start, 4, n_stations=2)]
    assert days == [start + datetime.timedelta(days=i) for i in range(4)]
    assert start == datetime.date(2024, 12, 30)


def test_editing_a_yielded_frame_does_not_leak_into_the_next():
    days = simulate_days(START, 2, n_stations=2)
    _, first = next(days)
    first.loc[0, ["station_id", "station_zone"]] = ["XXXX", "nowhere"]
    first.loc[0, "station_capacity"] = 999
    _, second = next(days)
    assert second.loc[0, "station_id"] == "S0001"
    assert second.loc[0, "station_zone"] in ZONES
    assert second.loc[0, "station_capacity"] <= 80


# --- schema --------------------------------------------------------------------------


def test_clean_partition_schema_rows_and_ranges():
    day, frame = next(simulate_days(START, 1, n_stations=7))
    assert tuple(frame.columns) == COLUMNS
    assert len(frame) == 7 * 24
    assert str(frame["timestamp"].dtype).startswith("datetime64")
    assert frame["timestamp"].dt.tz is None
    for column in ("station_id", "station_zone", "weather"):
        assert pd.api.types.is_string_dtype(frame[column]), column
    for column in ("station_capacity", "rentals"):
        assert frame[column].dtype == np.int64, column
    for column in ("temperature_c", "humidity_pct", "wind_speed_kmh"):
        assert frame[column].dtype == np.float64, column
    assert frame["precipitation_mm"].dtype == np.float64
    assert frame["is_holiday"].dtype == bool
    assert not frame.isna().any().any()

    hours = pd.date_range(pd.Timestamp(day), periods=24, freq="h")
    assert (frame["timestamp"].unique() == hours).all()
    assert frame.equals(frame.sort_values(["timestamp", "station_id"]))
    assert not frame.duplicated(["timestamp", "station_id"]).any()
    assert sorted(frame["station_id"].unique()) == [f"S{i:04d}" for i in range(1, 8)]
    assert set(frame["station_zone"]) <= set(ZONES)
    assert set(frame["weather"]) <= set(WEATHER_STATES)


def test_values_stay_in_contract_ranges_over_a_year(year):
    assert year["station_capacity"].between(5, 80).all()
    assert year["temperature_c"].between(-30, 50).all()
    assert year["humidity_pct"].between(0, 100).all()
    assert year["wind_speed_kmh"].between(0, 150).all()
    assert year["precipitation_mm"].between(0, 100).all()
    assert (year["rentals"] >= 0).all()
    assert year["rentals"].max() < 1000
    assert set(year["station_zone"]) == set(ZONES)
    assert set(year["weather"]) == set(WEATHER_STATES)


def test_station_attributes_are_fixed_and_weather_is_city_level(year):
    per_station = year.groupby("station_id")[["station_zone", "station_capacity"]]
    assert (per_station.nunique() == 1).all().all()
    per_hour = year.groupby("timestamp")[["temperature_c", "weather"]].nunique()
    assert (per_hour == 1).all().all()


def test_weather_states_are_consistent_with_the_measurements(year):
    wet = year["precipitation_mm"] > 0
    assert (wet == year["weather"].isin(["rain", "snow"])).all()
    assert (year.loc[year["weather"] == "snow", "temperature_c"] <= 0.5).all()
    assert (year.loc[year["weather"] == "rain", "temperature_c"] > 0.5).all()


def test_holidays_cover_whole_days(year):
    holidays = year.loc[year["is_holiday"], "timestamp"].dt.date.value_counts()
    assert datetime.date(2023, 12, 25) in holidays.index
    assert datetime.date(2023, 1, 1) in holidays.index
    assert (holidays == 20 * 24).all()
    assert not year.loc[year["timestamp"].dt.date == datetime.date(2023, 3, 1)][
        "is_holiday"
    ].any()


# --- realism -------------------------------------------------------------------------


def test_seasons_and_daily_cycle(year):
    month = year.groupby(year["timestamp"].dt.month)["temperature_c"].mean()
    assert month[7] > month[1] + 15
    hour = year.groupby("hour")["temperature_c"].mean()
    assert hour[15] > hour[4] + 4


def test_workday_commute_peak_and_night_low(year):
    workday = year[~year["rest_day"]].groupby("hour")["rentals"].mean()
    assert workday[8] > 5 * workday[3]
    assert workday[17] > 2 * workday[12]


def test_weekend_profile_differs_from_workday(year):
    workday = year[~year["rest_day"]].groupby("hour")["rentals"].mean()
    rest_day = year[year["rest_day"]].groupby("hour")["rentals"].mean()
    assert rest_day[14] > rest_day[8]
    assert rest_day[14] > workday[14]
    assert workday[8] > 2 * rest_day[8]


def test_rain_lowers_demand_at_similar_temperature(year):
    similar = year[year["temperature_c"].between(8, 22) & year["hour"].between(7, 19)]
    by_weather = similar.groupby("weather")["rentals"].mean()
    assert by_weather["rain"] < 0.8 * by_weather["clear"]


def test_zones_react_differently_to_rest_days(year):
    mean = year.groupby(["station_zone", "rest_day"])["rentals"].mean()
    assert mean["business", False] > mean["business", True]
    assert mean["park", True] > mean["park", False]


# --- drift ---------------------------------------------------------------------------


def test_covariate_drift_shifts_features():
    none = frames(START, 14, n_stations=3)
    drifted = frames(START, 14, n_stations=3, drift="covariate")
    assert drifted["temperature_c"].mean() > none["temperature_c"].mean() + 5
    assert drifted["humidity_pct"].mean() < none["humidity_pct"].mean()
    assert (drifted["precipitation_mm"] > 0).sum() > (
        none["precipitation_mm"] > 0
    ).sum()


def test_concept_drift_changes_label_but_not_features():
    none = frames(START, 7, n_stations=5)
    drifted = frames(START, 7, n_stations=5, drift="concept")
    features = [column for column in COLUMNS if column != "rentals"]
    pd.testing.assert_frame_equal(none[features], drifted[features])
    assert not none["rentals"].equals(drifted["rentals"])
    workdays = none["timestamp"].dt.day_of_week < 5
    hour = none["timestamp"].dt.hour
    peak_before = none[workdays & (hour == 8)]["rentals"].mean()
    peak_after = drifted[workdays & (hour == 10)]["rentals"].mean()
    assert drifted[workdays & (hour == 8)]["rentals"].mean() < peak_before
    assert peak_after > none[workdays & (hour == 10)]["rentals"].mean()


def test_new_category_drift_adds_unseen_stations():
    _, frame = next(simulate_days(START, 1, n_stations=10, drift="new_category"))
    ids = sorted(frame["station_id"].unique())
    assert ids == [f"S{i:04d}" for i in range(1, 13)]
    assert len(frame) == 12 * 24
    assert frame.equals(frame.sort_values(["timestamp", "station_id"]))
    _, clean = next(simulate_days(START, 1, n_stations=10))
    regular = frame[frame["station_id"] <= "S0010"].reset_index(drop=True)
    for column in ("station_zone", "station_capacity", "temperature_c", "weather"):
        assert regular[column].equals(clean[column]), column


# --- corruption ----------------------------------------------------------------------


def one_day(corrupt: str) -> pd.DataFrame:
    """Return one day with the given corruption."""
    return next(simulate_days(START, 1, n_stations=10, corrupt=corrupt))[1]


def test_corrupt_missing_column():
    frame = one_day("missing_column")
    assert "temperature_c" not in frame.columns
    assert len(frame.columns) == len(COLUMNS) - 1


def test_corrupt_wrong_type():
    frame = one_day("wrong_type")
    humidity = frame["humidity_pct"]
    assert pd.api.types.is_string_dtype(humidity)
    assert humidity.str.fullmatch(r"\d{1,3}\.\d%").all()
    clean = one_day("none")["humidity_pct"]
    assert (humidity.str.rstrip("%").astype(float) == clean).all()


def test_corrupt_nulls():
    frame = one_day("nulls")
    share = frame["temperature_c"].isna().mean()
    assert 0.03 < share < 0.07
    assert frame.drop(columns="temperature_c").notna().all().all()


def test_corrupt_out_of_range():
    frame = one_day("out_of_range")
    assert 1 <= (frame["humidity_pct"] == 140.0).sum() <= 5
    assert 1 <= (frame["rentals"] == -3).sum() <= 5
    assert frame["humidity_pct"].dtype == np.float64


def test_corrupt_empty_keeps_columns_and_dtypes():
    frame = one_day("empty")
    clean = one_day("none")
    assert len(frame) == 0
    assert frame.dtypes.equals(clean.dtypes)


def test_corruption_is_deterministic():
    for corrupt in CORRUPT_KINDS:
        pd.testing.assert_frame_equal(one_day(corrupt), one_day(corrupt))


# --- write_source --------------------------------------------------------------------


def test_write_source_writes_one_file_per_day(tmp_path: Path):
    out = tmp_path / "source" / "bike_rentals"
    summary = write_source(out, datetime.date(2024, 2, 27), 4, n_stations=3)
    names = sorted(path.name for path in out.iterdir())
    assert names == [
        "2024-02-27.parquet",
        "2024-02-28.parquet",
        "2024-02-29.parquet",
        "2024-03-01.parquet",
    ]
    assert summary == SimulationSummary(
        output_dir=out,
        first_day=datetime.date(2024, 2, 27),
        last_day=datetime.date(2024, 3, 1),
        partitions=4,
        rows=4 * 3 * 24,
    )
    read = pd.read_parquet(out / "2024-02-29.parquet")
    expected = dict(simulate_days(datetime.date(2024, 2, 27), 4, n_stations=3))
    pd.testing.assert_frame_equal(read, expected[datetime.date(2024, 2, 29)])


def test_write_source_round_trips_corrupt_and_empty(tmp_path: Path):
    summary = write_source(tmp_path, START, 2, n_stations=2, corrupt="empty")
    assert summary.rows == 0
    read = pd.read_parquet(tmp_path / f"{START:%Y-%m-%d}.parquet")
    assert tuple(read.columns) == COLUMNS
    assert len(read) == 0


def test_write_source_refuses_to_overwrite_and_writes_nothing(tmp_path: Path):
    write_source(tmp_path, START, 2, n_stations=2)
    before = {path.name: path.stat().st_mtime_ns for path in tmp_path.iterdir()}
    with pytest.raises(SimulatorError) as error:
        # Starts one day earlier: the first day is new, the next two exist.
        write_source(tmp_path, START - datetime.timedelta(days=1), 3, n_stations=2)
    message = str(error.value)
    assert f"{START:%Y-%m-%d}.parquet" in message
    assert "overwrite=True" in message
    assert "--overwrite" in message
    after = {path.name: path.stat().st_mtime_ns for path in tmp_path.iterdir()}
    assert after == before


def test_write_source_overwrite_replaces(tmp_path: Path):
    write_source(tmp_path, START, 2, n_stations=2, seed=1)
    summary = write_source(tmp_path, START, 2, n_stations=2, seed=2, overwrite=True)
    assert summary.partitions == 2
    read = pd.read_parquet(tmp_path / f"{START:%Y-%m-%d}.parquet")
    expected = next(simulate_days(START, 1, n_stations=2, seed=2))[1]
    pd.testing.assert_frame_equal(read, expected)
    assert sorted(path.name for path in tmp_path.iterdir()) == [
        f"{START + datetime.timedelta(days=i):%Y-%m-%d}.parquet" for i in range(2)
    ]


def test_write_source_rejects_a_file_as_output_dir(tmp_path: Path):
    target = tmp_path / "not_a_dir"
    target.write_text("x")
    with pytest.raises(SimulatorError, match="not a directory"):
        write_source(target, START, 1)


# --- argument validation -------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"days": 0}, "days"),
        ({"days": 2.5}, "days"),
        ({"n_stations": 0}, "n_stations"),
        ({"n_stations": 10_000}, "n_stations"),
        ({"n_stations": 9000, "drift": "new_category"}, "n_stations"),
        ({"seed": -1}, "seed"),
        ({"drift": "sideways"}, "drift"),
        ({"corrupt": "broken"}, "corrupt"),
        ({"start": "2024-01-01"}, "start"),
        ({"start": datetime.datetime(2024, 1, 1, 12)}, "start"),
    ],
)
def test_bad_arguments_raise_simulator_error(tmp_path: Path, kwargs: dict, name: str):
    arguments = {"start": START, "days": 1, **kwargs}
    with pytest.raises(SimulatorError, match=name) as error:
        simulate_days(**arguments)
    assert isinstance(error.value, ValueError)
    assert isinstance(error.value, ModelopsError)
    with pytest.raises(SimulatorError, match=name):
        write_source(tmp_path / "out", **arguments)
    assert not (tmp_path / "out").exists()


def test_kinds_are_exported():
    assert DRIFT_KINDS == ("none", "covariate", "concept", "new_category")
    assert CORRUPT_KINDS[0] == "none"


def test_label_is_learnable_beyond_a_seasonal_baseline(year):
    """A boosted model on the features clearly beats a per-station hour-of-week mean."""
    from sklearn.ensemble import HistGradientBoostingRegressor  # noqa: PLC0415

    def features(data: pd.DataFrame) -> pd.DataFrame:
        when = data["timestamp"].dt
        numeric = [
            "station_capacity",
            "temperature_c",
            "humidity_pct",
            "wind_speed_kmh",
            "precipitation_mm",
            "is_holiday",
        ]
        return data[numeric].assign(
            hour=when.hour,
            day_of_week=when.day_of_week,
            month=when.month,
            station_id=data["station_id"].astype("category"),
            station_zone=data["station_zone"].astype("category"),
            weather=data["weather"].astype("category"),
        )

    cut = pd.Timestamp("2023-10-01")
    train, test = year[year["timestamp"] < cut], year[year["timestamp"] >= cut]
    model = HistGradientBoostingRegressor(
        loss="poisson",
        max_iter=60,
        learning_rate=0.2,
        categorical_features="from_dtype",
        random_state=0,
    ).fit(features(train), train["rentals"])
    model_mae = np.mean(np.abs(model.predict(features(test)) - test["rentals"]))

    def key(data: pd.DataFrame) -> list[pd.Series]:
        return [data["station_id"], data["timestamp"].dt.day_of_week, data["hour"]]

    means = train.groupby(key(train))["rentals"].mean()
    baseline = means.reindex(pd.MultiIndex.from_arrays(key(test))).to_numpy()
    baseline_mae = np.mean(np.abs(baseline - test["rentals"]))
    assert model_mae < 0.8 * baseline_mae
    assert model_mae > 0.5  # noisy: not a deterministic function of the features
