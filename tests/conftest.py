"""Shared fixtures: a small valid source frame and the project's data_processing params."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml

PROJECT_ROOT = Path(__file__).resolve().parents[1]

os.environ.setdefault("KEDRO_DISABLE_TELEMETRY", "true")
os.environ.setdefault("DO_NOT_TRACK", "1")


@pytest.fixture(scope="session")
def data_processing_params() -> dict[str, Any]:
    """The base parameters_data_processing.yml, as the pipeline receives them."""
    path = PROJECT_ROOT / "conf" / "base" / "parameters_data_processing.yml"
    return yaml.safe_load(path.read_text())


def make_source_frame(day: str = "2025-03-03", stations: int = 3) -> pd.DataFrame:
    """One valid day of source data for a few stations (hand-made, contract-clean)."""
    hours = pd.date_range(day, periods=24, freq="h")
    rng = np.random.default_rng(0)
    n = len(hours) * stations
    return pd.DataFrame(
        {
            "timestamp": np.repeat(hours.to_numpy(), stations),
            "station_id": [f"S{i:04d}" for i in range(1, stations + 1)] * len(hours),
            "station_zone": ["center", "park", "business"][:stations] * len(hours),
            "station_capacity": np.tile(np.arange(10, 10 + stations), len(hours)),
            "temperature_c": rng.uniform(0, 25, n),
            "humidity_pct": rng.uniform(30, 90, n),
            "wind_speed_kmh": rng.uniform(0, 30, n),
            "precipitation_mm": np.zeros(n),
            "weather": ["clear"] * n,
            "is_holiday": np.zeros(n, dtype=bool),
            "rentals": rng.integers(0, 40, n),
        }
    )


@pytest.fixture
def source_frame() -> pd.DataFrame:
    """A valid day of source data, three stations."""
    return make_source_frame()
