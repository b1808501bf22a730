"""Feature transforms shared by data processing, the logged model and REST serving."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin

from modelops.contracts import use_case_key
from modelops.errors import ConfigError, DataContractError

# The one definition of each calendar feature: a function of one date-time. Every
# feature depends on the date and the hour only (CALENDAR_GRAIN), so a column of
# timestamps is derived by evaluating these once per distinct hour (see
# `calendar_columns`), and REST serving calls them on a request's single value.
CALENDAR_FEATURES: dict[str, Callable[[dt.datetime], int]] = {
    "hour": lambda d: d.hour,
    "day_of_week": lambda d: d.weekday(),
    "day_of_month": lambda d: d.day,
    "day_of_year": lambda d: d.timetuple().tm_yday,
    "week_of_year": lambda d: d.isocalendar()[1],
    "month": lambda d: d.month,
    "quarter": lambda d: (d.month - 1) // 3 + 1,
    "year": lambda d: d.year,
    "is_weekend": lambda d: int(d.weekday() >= 5),  # noqa: PLR2004 (Saturday is 5)
}
CALENDAR_GRAIN = "h"


def calendar_columns(timestamps: Any, names: Sequence[str]) -> dict[str, np.ndarray]:
    """Derive calendar features for a column of timestamps, as int64 arrays.

    Each feature of ``CALENDAR_FEATURES`` is evaluated once per distinct hour of
    the data, then spread to the rows: as fast as pandas' ``.dt`` accessors and
    exactly what the single-value functions give a REST request.

    Args:
        timestamps: Date-times (a Series, array or list; strings are parsed).
        names: Names from ``CALENDAR_FEATURES``.

    Returns:
        Feature name to an int64 array, one value per timestamp, in order.

    Raises:
        ConfigError: a name is not a calendar feature.
        DataContractError: a timestamp is missing.
    """
    check_calendar_features(names)
    stamps = pd.to_datetime(pd.Series(timestamps, copy=False))
    codes, hours = pd.factorize(stamps.dt.floor(CALENDAR_GRAIN), sort=False)
    if (codes < 0).any():
        raise DataContractError(
            f"{int((codes < 0).sum())} of {len(codes)} timestamps are missing; "
            f"calendar features need every one.\nHint: make the time column not "
            f"nullable in {use_case_key('contract')}, or fix the data upstream."
        )
    distinct = hours.to_pydatetime()
    return {
        name: np.fromiter(
            (CALENDAR_FEATURES[name](moment) for moment in distinct),
            dtype=np.int64,
            count=len(distinct),
        )[codes]
        for name in names
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
                f"{list(X.columns)}).\nHint: fix "
                f"{use_case_key('features.time_column')} (null for data without one)."
            )
        self.feature_names_in_ = list(X.columns)
        return self

    def transform(self, X: pd.DataFrame) -> pd.DataFrame:
        """Return a copy of ``X`` with the calendar columns added (or replaced)."""
        return X.assign(**calendar_columns(X[self.time_column], self.features))

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
            f"{sorted(CALENDAR_FEATURES)}.\nHint: fix "
            f"{use_case_key('features.calendar')}."
        )
