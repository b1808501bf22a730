"""Feature transforms shared by data processing and the logged model."""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin

from modelops.errors import ConfigError


class _Moment(NamedTuple):
    """Wall-clock seconds since 1970-01-01 and the parts every feature reads.

    Each field is an int or an int64 ndarray: the features below use arithmetic
    only, so one definition serves a single JSON value and a million-row column.
    """

    seconds: Any
    days: Any
    day_of_week: Any
    year: Any
    month: Any
    day: Any


def _civil_from_days(days: Any) -> tuple[Any, Any, Any]:
    """(year, month, day) of days since 1970-01-01 (proleptic Gregorian calendar).

    H. Hinnant's ``civil_from_days`` (chrono-Compatible Low-Level Date Algorithms):
    integer arithmetic on a 400-year era of 146,097 days starting on March 1.
    """
    z = days + 719_468
    era = z // 146_097
    day_of_era = z - era * 146_097
    year_of_era = (
        day_of_era - day_of_era // 1_460 + day_of_era // 36_524 - day_of_era // 146_096
    ) // 365
    day_of_march_year = day_of_era - (
        365 * year_of_era + year_of_era // 4 - year_of_era // 100
    )
    month_from_march = (5 * day_of_march_year + 2) // 153
    day = day_of_march_year - (153 * month_from_march + 2) // 5 + 1
    month = month_from_march + 3 - 12 * (month_from_march // 10)
    year = year_of_era + era * 400 + (month <= 2)  # noqa: PLR2004 (Jan, Feb)
    return year, month, day


def _days_to_new_year(year: Any) -> Any:
    """Days from 1970-01-01 to January 1 of ``year`` (Hinnant's days_from_civil)."""
    previous = year - 1  # January 1 is day 306 of the March-based previous year
    era = previous // 400
    year_of_era = previous - era * 400
    return (
        era * 146_097
        + year_of_era * 365
        + year_of_era // 4
        - year_of_era // 100
        + 306
        - 719_468
    )


def _iso_week(moment: _Moment) -> Any:
    """ISO 8601 week number: the week of the Thursday of the same Monday-based week."""
    thursday = moment.days - moment.day_of_week + 3
    year = _civil_from_days(thursday)[0]
    return (thursday - _days_to_new_year(year)) // 7 + 1


# The one definition of every calendar feature (training, batch and online serving).
_CALENDAR_PARTS: dict[str, Callable[[_Moment], Any]] = {
    "hour": lambda m: m.seconds // 3_600 % 24,
    "day_of_week": lambda m: m.day_of_week,  # Monday is 0
    "day_of_month": lambda m: m.day,
    "day_of_year": lambda m: m.days - _days_to_new_year(m.year) + 1,
    "week_of_year": _iso_week,
    "month": lambda m: m.month,
    "quarter": lambda m: (m.month + 2) // 3,
    "year": lambda m: m.year,
    "is_weekend": lambda m: m.day_of_week // 5,  # 1 for Saturday (5) and Sunday (6)
}


def calendar_values(seconds: Any, names: Sequence[str]) -> dict[str, Any]:
    """The calendar features ``names`` of wall-clock times, as ints.

    Args:
        seconds: Seconds since 1970-01-01 00:00 on the wall clock (no time zone),
            an int or an int64 ndarray (see ``wall_clock_seconds``).
        names: Names from ``CALENDAR_FEATURES``.

    Returns:
        Feature name to value: ints for an int, int64 ndarrays for an ndarray.
    """
    days = seconds // 86_400
    day_of_week = (days + 3) % 7  # 1970-01-01 was a Thursday
    moment = _Moment(seconds, days, day_of_week, *_civil_from_days(days))
    return {name: _CALENDAR_PARTS[name](moment) for name in names}


def wall_clock_seconds(timestamps: pd.Series) -> np.ndarray:
    """Seconds since 1970-01-01 of datetime values as their wall clock shows them.

    Time-zone-aware values keep their local time (as pandas' ``.dt.hour`` does).

    Raises:
        ValueError: a timestamp is missing (NaT).
    """
    if getattr(timestamps.dt, "tz", None) is not None:
        timestamps = timestamps.dt.tz_localize(None)
    values = timestamps.to_numpy()
    if np.isnat(values).any():
        raise ValueError(
            f"Column '{timestamps.name}' has missing timestamps (NaT): calendar "
            f"features need every timestamp."
        )
    return values.astype("datetime64[s]").astype(np.int64)


def _series_feature(name: str, timestamps: pd.Series) -> pd.Series:
    """Calendar feature ``name`` of a datetime Series, as an int64 Series."""
    values = calendar_values(wall_clock_seconds(timestamps), [name])[name]
    return pd.Series(values, index=timestamps.index, name=timestamps.name)


CALENDAR_FEATURES: dict[str, Callable[[pd.Series], pd.Series]] = {
    name: functools.partial(_series_feature, name) for name in _CALENDAR_PARTS
}


class CalendarFeatures(TransformerMixin, BaseEstimator):
    """Derive calendar columns (hour, day of week, ...) from a timestamp column.

    Stateless apart from checking its configuration at ``fit``: it can sit first in
    an sklearn ``Pipeline``, so serving derives exactly what training derived.

    Args:
        time_column: Name of the datetime column to derive from.
        features: Names from ``CALENDAR_FEATURES`` to add, as int columns.
    """

    def __init__(
        self, time_column: str = "timestamp", features: Sequence[str] = ("hour",)
    ) -> None:
        self.time_column = time_column
        self.features = features

    def fit(self, X: pd.DataFrame, y: object = None) -> CalendarFeatures:
        """Check the configuration against the data; learns nothing else."""
        check_calendar_features(self.features)
        if self.time_column not in X.columns:
            raise ConfigError(
                f"Time column '{self.time_column}' is not in the data (columns: "
                f"{list(X.columns)}).\nHint: set features.time_column in "
                f"conf/base/parameters_data_processing.yml."
            )
        self.feature_names_in_ = list(X.columns)
        return self

    def transform(self, X: pd.DataFrame) -> pd.DataFrame:
        """Return a copy of ``X`` with the calendar columns added (or replaced)."""
        check_calendar_features(self.features)
        seconds = wall_clock_seconds(pd.to_datetime(X[self.time_column]))
        return X.assign(**calendar_values(seconds, self.features))

    def get_feature_names_out(self, input_features: object = None) -> list[str]:
        """Input columns followed by the derived ones (sklearn's naming protocol)."""
        names = [c for c in self.feature_names_in_ if c not in self.features]
        return [*names, *self.features]


def check_calendar_features(names: Sequence[str]) -> None:
    """Raise ConfigError if a calendar feature name is unknown."""
    unknown = [name for name in names if name not in CALENDAR_FEATURES]
    if unknown:
        raise ConfigError(
            f"Unknown calendar feature(s) {unknown}; expected some of "
            f"{sorted(CALENDAR_FEATURES)}.\nHint: fix features.calendar in "
            f"conf/base/parameters_data_processing.yml."
        )
