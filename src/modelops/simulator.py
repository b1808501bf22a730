"""Deterministic simulator of the production source: hourly bike rentals per station."""

from __future__ import annotations

import datetime
import math
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from modelops.errors import ModelopsError

DRIFT_KINDS: tuple[str, ...] = ("none", "covariate", "concept", "new_category")
CORRUPT_KINDS: tuple[str, ...] = (
    "none",
    "missing_column",
    "wrong_type",
    "nulls",
    "out_of_range",
    "empty",
)

COLUMNS: tuple[str, ...] = (
    "timestamp",
    "station_id",
    "station_zone",
    "station_capacity",
    "temperature_c",
    "humidity_pct",
    "wind_speed_kmh",
    "precipitation_mm",
    "weather",
    "is_holiday",
    "rentals",
)
ZONES: tuple[str, ...] = ("center", "business", "residential", "park", "university")
WEATHER_STATES: tuple[str, ...] = ("clear", "cloudy", "rain", "snow", "fog")
# Fixed-date public holidays as (month, day).
HOLIDAYS: tuple[tuple[int, int], ...] = (
    (1, 1),
    (5, 1),
    (7, 14),
    (11, 1),
    (11, 11),
    (12, 25),
    (12, 26),
)

MAX_STATIONS = 9999  # ids are S%04d: four digits, so they also sort numerically
NEW_CATEGORY_SHARE = 0.2
_HOURS = np.arange(24, dtype=np.float64)
_ZONE_PROBS = np.array([0.2, 0.2, 0.3, 0.15, 0.15])
# Demand multiplier per zone: (workday, weekend or holiday).
_ZONE_MOD = np.array([[1.0, 1.0], [1.35, 0.45], [0.9, 0.9], [0.6, 1.6], [1.1, 0.5]])
_BASE_RATE = 40.0
_CLEAR, _CLOUDY, _RAIN, _SNOW, _FOG = range(5)
_SHOWN_EXISTING = 3  # existing partitions named in the refuse-to-overwrite message
_SATURDAY = 5  # date.weekday() of the first weekend day
_SECOND_SPELL_PROB = 0.35  # chance that a rainy day has a second rain spell
_CLOUDY_ABOVE = 0.6  # cloud cover above which an hour is "cloudy"
_FOG_HUMIDITY = 94.0  # fog needs at least this humidity ...
_FOG_WIND = 12.0  # ... and less wind than this (km/h), and no precipitation
_SNOW_AT_OR_BELOW = 0.5  # precipitation falls as snow at or below this temperature

# Covariate drift: shifts of the feature distributions.
_COV_TEMP_SHIFT = 8.0
_COV_HUMIDITY_SHIFT = -12.0
_COV_RAIN_DAY_SHIFT = 0.25


class SimulatorError(ModelopsError, ValueError):
    """The simulator was called with bad arguments or would overwrite data."""


@dataclass(frozen=True)
class SimulationSummary:
    """What `write_source` wrote.

    Attributes:
        output_dir: Directory holding the partitions.
        first_day: Date of the first partition written.
        last_day: Date of the last partition written.
        partitions: Number of parquet files written (one per day).
        rows: Total number of rows written.
    """

    output_dir: Path
    first_day: datetime.date
    last_day: datetime.date
    partitions: int
    rows: int


@dataclass(frozen=True)
class _Stations:
    """Fixed station attributes (all arrays have one entry per station)."""

    ids: np.ndarray  # object array of "S%04d"
    zone: np.ndarray  # int index into ZONES
    capacity: np.ndarray  # int64
    popularity: np.ndarray  # float64


@dataclass(frozen=True)
class _Climate:
    """Seed-derived, slowly varying temperature anomaly shared by all days."""

    amplitudes: np.ndarray
    periods: np.ndarray
    phases: np.ndarray

    def anomaly(self, ordinal: int) -> float:
        """Return the multi-day temperature anomaly (deg C) of a day.

        Args:
            ordinal: The day's proleptic Gregorian ordinal.

        Returns:
            A smooth anomaly, so warm and cold spells last several days.
        """
        angles = 2 * np.pi * ordinal / self.periods + self.phases
        return float(np.sum(self.amplitudes * np.sin(angles)))


@dataclass(frozen=True)
class _Request:
    """The arguments of one simulation call."""

    start: datetime.date
    days: int
    seed: int
    n_stations: int
    drift: str
    corrupt: str


def _validate(request: _Request) -> None:
    """Raise SimulatorError for the first bad argument of a call.

    Args:
        request: The call's arguments.

    Raises:
        SimulatorError: If an argument has the wrong type or value.
    """
    start, days, n_stations = request.start, request.days, request.n_stations
    if isinstance(start, datetime.datetime) or not isinstance(start, datetime.date):
        raise SimulatorError(
            f"start must be a datetime.date, got {start!r} ({type(start).__name__}); "
            "pass e.g. datetime.date(2024, 1, 1) (for a datetime use .date())."
        )
    for name, value, low in (("days", days, 1), ("seed", request.seed, 0)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise SimulatorError(
                f"{name} must be an integer >= {low}, got {value!r}; "
                f"pass a whole number of at least {low}."
            )
    if (
        isinstance(n_stations, bool)
        or not isinstance(n_stations, int)
        or not 1 <= _total_stations(n_stations, request.drift) <= MAX_STATIONS
    ):
        raise SimulatorError(
            f"n_stations must be an integer between 1 and {MAX_STATIONS} (including the "
            f"~{NEW_CATEGORY_SHARE:.0%} extra stations of drift='new_category', since "
            f"ids are S%04d), got {n_stations!r}; pass a smaller positive number."
        )
    if request.drift not in DRIFT_KINDS:
        raise SimulatorError(
            f"drift must be one of {', '.join(DRIFT_KINDS)}, got {request.drift!r}; "
            "pass one of those names."
        )
    if request.corrupt not in CORRUPT_KINDS:
        raise SimulatorError(
            f"corrupt must be one of {', '.join(CORRUPT_KINDS)}, got "
            f"{request.corrupt!r}; pass one of those names."
        )
    try:
        start + datetime.timedelta(days=days - 1)
    except OverflowError:
        raise SimulatorError(
            f"start={start} with days={days} runs past {datetime.date.max}; "
            "pass fewer days or an earlier start."
        ) from None


def _total_stations(n_stations: int, drift: str) -> int:
    """Return how many stations a call simulates, new_category extras included.

    Args:
        n_stations: Number of regular stations.
        drift: Drift kind.

    Returns:
        n_stations, plus about 20% when drift is "new_category".
    """
    if drift == "new_category" and n_stations >= 1:
        return n_stations + max(1, round(n_stations * NEW_CATEGORY_SHARE))
    return n_stations


def _make_stations(seed: int, count: int) -> _Stations:
    """Draw the fixed station attributes from the seed alone.

    Attributes are drawn for all MAX_STATIONS possible stations and sliced, so a
    station's attributes never depend on how many stations a call simulates.

    Args:
        seed: Random seed.
        count: Number of stations to return.

    Returns:
        The attributes of stations S0001 .. S<count>.
    """
    rng = np.random.default_rng([seed, 0])
    zone = rng.choice(len(ZONES), size=MAX_STATIONS, p=_ZONE_PROBS)[:count]
    capacity = np.exp(rng.normal(np.log(22.0), 0.45, size=MAX_STATIONS))[:count]
    popularity = np.exp(rng.normal(0.0, 0.45, size=MAX_STATIONS))[:count]
    ids = np.array([f"S{i:04d}" for i in range(1, count + 1)], dtype=object)
    return _Stations(
        ids=ids,
        zone=zone,
        capacity=np.clip(np.rint(capacity), 5, 80).astype(np.int64),
        popularity=np.clip(popularity, 0.3, 3.0),
    )


def _make_climate(seed: int) -> _Climate:
    """Draw the seed's slow temperature anomaly (a sum of a few sinusoids).

    Args:
        seed: Random seed.

    Returns:
        The climate parameters.
    """
    rng = np.random.default_rng([seed, 3])
    return _Climate(
        amplitudes=rng.uniform(0.8, 1.8, size=4),
        periods=rng.uniform(3.0, 25.0, size=4),
        phases=rng.uniform(0.0, 2 * np.pi, size=4),
    )


def _is_holiday(day: datetime.date) -> bool:
    """Return whether a day is one of the fixed-date holidays.

    Args:
        day: The date.

    Returns:
        True for the dates listed in HOLIDAYS.
    """
    return (day.month, day.day) in HOLIDAYS


def _gauss(center: float, width: float) -> np.ndarray:
    """Return a Gaussian bump over the 24 hours.

    Args:
        center: Hour of the peak.
        width: Standard deviation in hours.

    Returns:
        Array of 24 values in (0, 1].
    """
    return np.exp(-0.5 * ((_HOURS - center) / width) ** 2)


def _hour_profiles(concept: bool) -> np.ndarray:
    """Return the hour-of-day demand profiles.

    Args:
        concept: Whether concept drift moves the workday commute peaks by 2 hours.

    Returns:
        Array (2, 24): row 0 workday, row 1 weekend or holiday.
    """
    shift = 2.0 if concept else 0.0
    workday = (
        0.03
        + 0.95 * _gauss(8.0 + shift, 1.1)
        + 1.0 * _gauss(17.5 + shift, 1.4)
        + 0.3 * _gauss(12.5, 2.5)
    )
    weekend = 0.03 + 0.75 * _gauss(14.0, 3.2)
    return np.stack([workday, weekend])


def _day_weather(
    day: datetime.date, seed: int, climate: _Climate, covariate: bool
) -> dict[str, np.ndarray]:
    """Simulate the city-level weather of one day, hour by hour.

    All randomness comes from the day's own generator, drawn in a fixed order, so
    covariate drift shifts the same draws instead of drawing different ones.

    Args:
        day: The date.
        seed: Random seed.
        climate: The seed's slow temperature anomaly.
        covariate: Whether covariate drift shifts the distributions.

    Returns:
        Arrays of 24 values: temperature_c, humidity_pct, wind_speed_kmh,
        precipitation_mm and weather (an int index into WEATHER_STATES).
    """
    rng = np.random.default_rng([seed, 1, day.toordinal(), 0])
    z_temp_day = rng.normal()
    temp_noise = rng.normal(size=24)
    u_rain_day = rng.random()
    spell_start = rng.integers(0, 24, size=2)
    spell_length = rng.integers(1, 9, size=2)
    u_second_spell = rng.random()
    intensity = rng.gamma(1.3, 1.0, size=24)
    z_hum_day = rng.normal()
    hum_noise = rng.normal(size=24)
    z_wind_day = rng.normal()
    wind_noise = rng.normal(size=24)
    u_cloud_day = rng.random()
    cloud_noise = rng.normal(size=24)

    season = -np.cos(2 * np.pi * (day.timetuple().tm_yday - 20) / 365.25)  # -1..1
    p_rain_day = 0.3 + 0.08 * np.cos(2 * np.pi * (day.timetuple().tm_yday - 330) / 365)
    if covariate:
        p_rain_day += _COV_RAIN_DAY_SHIFT
    rainy_day = u_rain_day < p_rain_day
    wet = np.zeros(24, dtype=bool)
    if rainy_day:
        for k in range(1 + (u_second_spell < _SECOND_SPELL_PROB)):
            wet[spell_start[k] : spell_start[k] + spell_length[k]] = True

    day_mean = (
        11.0 + 12.0 * season + climate.anomaly(day.toordinal()) + 2.0 * z_temp_day
    )
    amplitude = 4.5 + 1.5 * season
    diurnal = amplitude * np.cos(2 * np.pi * (_HOURS - 15.0) / 24)
    temperature = day_mean + diurnal + 0.5 * temp_noise - 1.5 * wet
    humidity = (
        72.0
        - 1.6 * diurnal
        - 4.0 * season
        + 7.0 * z_hum_day
        + 2.5 * hum_noise
        + 15.0 * wet
        + 6.0 * rainy_day
    )
    wind = (
        12.0
        * np.exp(0.45 * z_wind_day)
        * (1 + 0.25 * np.sin(2 * np.pi * (_HOURS - 9.0) / 24))
        * np.exp(0.2 * wind_noise)
        + 6.0 * wet
    )
    if covariate:
        temperature = temperature + _COV_TEMP_SHIFT
        humidity = humidity + _COV_HUMIDITY_SHIFT
    temperature = np.clip(np.round(temperature, 1), -30.0, 50.0)
    humidity = np.clip(np.round(humidity, 1), 5.0, 100.0)
    wind = np.clip(np.round(wind, 1), 0.0, 150.0)
    precipitation = np.where(wet, np.clip(np.round(intensity, 1), 0.1, 100.0), 0.0)

    cloud = (0.5 + 0.5 * u_cloud_day if rainy_day else u_cloud_day) + 0.15 * cloud_noise
    weather = np.full(24, _CLEAR, dtype=np.int64)
    weather[cloud > _CLOUDY_ABOVE] = _CLOUDY
    weather[(humidity >= _FOG_HUMIDITY) & (wind < _FOG_WIND)] = _FOG
    weather[wet] = np.where(temperature[wet] <= _SNOW_AT_OR_BELOW, _SNOW, _RAIN)
    return {
        "temperature_c": temperature,
        "humidity_pct": humidity,
        "wind_speed_kmh": wind,
        "precipitation_mm": precipitation,
        "weather": weather,
    }


def _weather_effect(weather: dict[str, np.ndarray], concept: bool) -> np.ndarray:
    """Return the demand multiplier of each hour's weather.

    Args:
        weather: Output of `_day_weather`.
        concept: Whether concept drift removes the rain deterrent.

    Returns:
        Array of 24 multipliers in (0, 1].
    """
    temp = weather["temperature_c"]
    comfort = 0.15 + 0.85 * np.exp(-0.5 * ((temp - 22.0) / 10.0) ** 2)
    state = weather["weather"]
    precip = weather["precipitation_mm"]
    effect = comfort * np.exp(-0.012 * np.maximum(weather["wind_speed_kmh"] - 10.0, 0))
    effect *= 1.0 - 0.003 * np.maximum(weather["humidity_pct"] - 70.0, 0.0)
    effect *= np.where(state == _CLOUDY, 0.95, 1.0)
    effect *= np.where(state == _FOG, 0.85, 1.0)
    effect *= np.where(state == _SNOW, 0.25, 1.0)
    if not concept:
        effect *= np.where(state == _RAIN, 0.45 * np.exp(-0.1 * precip), 1.0)
    return effect


def _corrupt(
    frame: pd.DataFrame, corrupt: str, rng: np.random.Generator
) -> pd.DataFrame:
    """Break a clean day frame the way `corrupt` says.

    Args:
        frame: A clean frame (not modified).
        corrupt: One of CORRUPT_KINDS.
        rng: The day's corruption generator.

    Returns:
        The corrupted frame (a new object unless corrupt is "none").
    """
    n = len(frame)
    if corrupt == "missing_column":
        return frame.drop(columns="temperature_c")
    if corrupt == "wrong_type":
        # Values carry one decimal already, so str() gives e.g. "63.2".
        text = frame["humidity_pct"].astype("str") + "%"
        return frame.assign(humidity_pct=text)
    if corrupt == "nulls":
        temperature = frame["temperature_c"].to_numpy(copy=True)
        rows = rng.choice(n, size=max(1, round(0.05 * n)), replace=False)
        temperature[rows] = np.nan
        return frame.assign(temperature_c=temperature)
    if corrupt == "out_of_range":
        humidity = frame["humidity_pct"].to_numpy(copy=True)
        rentals = frame["rentals"].to_numpy(copy=True)
        humidity[rng.choice(n, size=min(3, n), replace=False)] = 140.0
        rentals[rng.choice(n, size=min(3, n), replace=False)] = -3
        return frame.assign(humidity_pct=humidity, rentals=rentals)
    if corrupt == "empty":
        return frame.iloc[:0].copy()
    return frame


def simulate_days(  # noqa: PLR0913 - the API the CLI and the contract rely on
    start: datetime.date,
    days: int,
    *,
    seed: int = 42,
    n_stations: int = 50,
    drift: str = "none",
    corrupt: str = "none",
) -> Iterator[tuple[datetime.date, pd.DataFrame]]:
    """Simulate the source day by day, one frame per day in date order.

    Each day depends only on the seed, its date and the options, so simulating a
    range in pieces yields exactly the frames of one call over the whole range.
    Only one day is held in memory at a time.

    Args:
        start: First day (the drift start when drift is not "none").
        days: Number of consecutive days, >= 1.
        seed: Random seed (>= 0); station attributes derive from it alone.
        n_stations: Number of regular stations, S0001 .. S<n_stations>.
        drift: One of DRIFT_KINDS, applied to every simulated day.
        corrupt: One of CORRUPT_KINDS, applied to every simulated day.

    Yields:
        (date, frame) with the columns of COLUMNS, n_stations * 24 rows (more with
        drift "new_category"), sorted by timestamp then station_id.

    Raises:
        SimulatorError: If an argument is invalid (raised on the call, before any
            frame is produced).
    """
    request = _Request(start, days, seed, n_stations, drift, corrupt)
    _validate(request)
    return _generate(request)


def _generate(request: _Request) -> Iterator[tuple[datetime.date, pd.DataFrame]]:
    """Yield the frames of `simulate_days` for an already validated request.

    Args:
        request: The call's arguments.

    Yields:
        (date, frame) per day.
    """
    seed, drift, corrupt = request.seed, request.drift, request.corrupt
    stations = _make_stations(seed, _total_stations(request.n_stations, drift))
    climate = _make_climate(seed)
    concept = drift == "concept"
    covariate = drift == "covariate"
    profiles = _hour_profiles(concept)
    n = len(stations.ids)
    # Columns that are the same every day are built once; each frame gets its own
    # (cheap) copy so that a caller editing one frame cannot change the next.
    station_id = pd.array(np.tile(stations.ids, 24), dtype="str")
    station_zone = pd.array(
        np.tile(np.array(ZONES, dtype=object)[stations.zone], 24), dtype="str"
    )
    capacity = np.tile(stations.capacity, 24)
    weather_names = pd.array(list(WEATHER_STATES), dtype="str")
    station_scale = (
        _BASE_RATE * stations.popularity * (stations.capacity / 22.0) ** 0.6
    )  # (n,)
    hour_offsets = np.arange(24).astype("timedelta64[h]")

    for offset in range(request.days):
        day = request.start + datetime.timedelta(days=offset)
        holiday = _is_holiday(day)
        day_type = 1 if holiday or day.weekday() >= _SATURDAY else 0
        weather = _day_weather(day, seed, climate, covariate)
        effect = _weather_effect(weather, concept)
        # Commuters are less sensitive to the weather than leisure riders.
        if day_type == 0:
            effect = effect**0.7

        rng = np.random.default_rng([seed, 1, day.toordinal(), 1])
        station_day_noise = np.exp(rng.normal(0.0, 0.1, size=n))
        row_noise = np.exp(rng.normal(0.0, 0.15, size=(24, n)))
        mean = (
            (profiles[day_type] * effect)[:, None]
            * (station_scale * _ZONE_MOD[stations.zone, day_type] * station_day_noise)
            * row_noise
        )
        rentals = rng.poisson(mean).astype(np.int64).ravel()

        timestamps = (np.datetime64(day, "h") + hour_offsets).astype("datetime64[us]")
        frame = pd.DataFrame(
            {
                "timestamp": np.repeat(timestamps, n),
                "station_id": station_id.copy(),
                "station_zone": station_zone.copy(),
                "station_capacity": capacity.copy(),
                "temperature_c": np.repeat(weather["temperature_c"], n),
                "humidity_pct": np.repeat(weather["humidity_pct"], n),
                "wind_speed_kmh": np.repeat(weather["wind_speed_kmh"], n),
                "precipitation_mm": np.repeat(weather["precipitation_mm"], n),
                "weather": weather_names.take(np.repeat(weather["weather"], n)),
                "is_holiday": np.full(24 * n, holiday),
                "rentals": rentals,
            },
            copy=False,
        )
        if corrupt != "none":
            corrupt_rng = np.random.default_rng([seed, 1, day.toordinal(), 2])
            frame = _corrupt(frame, corrupt, corrupt_rng)
        yield day, frame


def partition_name(day: datetime.date) -> str:
    """Return the file name of a day's partition.

    Args:
        day: The date.

    Returns:
        "<YYYY-MM-DD>.parquet".
    """
    return f"{day:%Y-%m-%d}.parquet"


def write_source(  # noqa: PLR0913 - the API the CLI and the contract rely on
    output_dir: str | Path,
    start: datetime.date,
    days: int,
    *,
    seed: int = 42,
    n_stations: int = 50,
    drift: str = "none",
    corrupt: str = "none",
    overwrite: bool = False,
) -> SimulationSummary:
    """Simulate days and write one parquet partition per day.

    Files are named <YYYY-MM-DD>.parquet and written atomically (temp file in the
    same directory, then os.replace); one day is generated and written at a time,
    so memory stays flat whatever the number of days.

    Args:
        output_dir: Directory of the partitions (created if missing).
        start: First day.
        days: Number of days, >= 1.
        seed: Random seed.
        n_stations: Number of regular stations.
        drift: One of DRIFT_KINDS.
        corrupt: One of CORRUPT_KINDS.
        overwrite: Whether existing partitions of the range may be replaced.

    Returns:
        What was written.

    Raises:
        SimulatorError: If an argument is invalid, output_dir is not a directory,
            or (overwrite False) a partition of the range already exists; nothing
            is written in these cases.
    """
    request = _Request(start, days, seed, n_stations, drift, corrupt)
    _validate(request)
    out = Path(output_dir)
    if out.exists() and not out.is_dir():
        raise SimulatorError(
            f"output_dir {out} exists but is not a directory; "
            "pass the path of a directory (it is created if missing)."
        )
    if not overwrite and out.is_dir():
        existing = [
            out / partition_name(start + datetime.timedelta(days=i))
            for i in range(days)
        ]
        existing = [path for path in existing if path.exists()]
        if existing:
            shown = ", ".join(str(path) for path in existing[:_SHOWN_EXISTING])
            more = len(existing) - _SHOWN_EXISTING
            more_text = f" and {more} more" if more > 0 else ""
            raise SimulatorError(
                f"{len(existing)} partition(s) of the requested range already exist "
                f"({shown}{more_text}); nothing was written. Pass overwrite=True "
                "(CLI: --overwrite) to replace them, or choose another start date "
                "or output_dir."
            )
    out.mkdir(parents=True, exist_ok=True)

    rows = 0
    last_day = start
    for day, frame in _generate(request):
        _write_atomic(frame, out / partition_name(day))
        rows += len(frame)
        last_day = day
    return SimulationSummary(
        output_dir=out,
        first_day=start,
        last_day=last_day,
        partitions=days,
        rows=rows,
    )


def _write_atomic(frame: pd.DataFrame, path: Path) -> None:
    """Write a frame to parquet via a temp file and an atomic rename.

    Args:
        frame: The frame to write.
        path: Final file path.
    """
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    # What DataFrame.to_parquet(index=False) does, minus its per-call thread pool,
    # which costs more than it saves on a one-day frame.
    table = pa.Table.from_pandas(frame, preserve_index=False, nthreads=1)
    try:
        pq.write_table(table, tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def days_for_rows(rows: int, n_stations: int) -> int:
    """Return how many days give at least `rows` rows with `n_stations` stations.

    Args:
        rows: Wanted number of rows.
        n_stations: Number of stations.

    Returns:
        ceil(rows / (n_stations * 24)), at least 1.
    """
    return max(1, math.ceil(rows / (n_stations * 24)))
