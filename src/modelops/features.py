"""Feature transforms shared by data processing and the logged model."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin

from modelops.errors import ConfigError

CALENDAR_FEATURES: dict[str, Callable[[pd.Series], pd.Series]] = {
    "hour": lambda ts: ts.dt.hour,
    "day_of_week": lambda ts: ts.dt.day_of_week,
    "day_of_month": lambda ts: ts.dt.day,
    "day_of_year": lambda ts: ts.dt.day_of_year,
    "week_of_year": lambda ts: ts.dt.isocalendar().week,
    "month": lambda ts: ts.dt.month,
    "quarter": lambda ts: ts.dt.quarter,
    "year": lambda ts: ts.dt.year,
    "is_weekend": lambda ts: ts.dt.day_of_week >= 5,  # noqa: PLR2004 (Saturday is 5)
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
        timestamps = pd.to_datetime(X[self.time_column])
        derived = {
            name: CALENDAR_FEATURES[name](timestamps).astype("int64")
            for name in self.features
        }
        return X.assign(**derived)

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
