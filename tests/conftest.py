"""Shared fixtures: a small valid source frame and the project's data_processing params."""

from __future__ import annotations

import datetime as dt
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

PROJECT_ROOT = Path(__file__).resolve().parents[1]

os.environ.setdefault("KEDRO_DISABLE_TELEMETRY", "true")
os.environ.setdefault("DO_NOT_TRACK", "1")
# The environment as the test session started: `kedro` subprocesses get this, not what
# in-process code set since (bootstrap_project writes PYTHONPATH, MLflow its URIs).
CLEAN_ENVIRON = dict(os.environ)
# One migrated MLflow SQLite store per test session: migrating a new store costs seconds
# (and races when several processes create it at once), copying the file costs nothing.
_STORE_TEMPLATE: Path | None = None


def mlflow_store_template() -> Path:
    """A freshly migrated, empty MLflow SQLite database, made once per test session."""
    global _STORE_TEMPLATE  # noqa: PLW0603 (a per-process cache)
    if _STORE_TEMPLATE is None:
        from mlflow.store.model_registry.sqlalchemy_store import (  # noqa: PLC0415
            SqlAlchemyStore as RegistryStore,
        )
        from mlflow.store.tracking.sqlalchemy_store import (  # noqa: PLC0415
            SqlAlchemyStore as TrackingStore,
        )

        folder = Path(tempfile.mkdtemp(prefix="mlflow-template-"))
        uri = f"sqlite:///{folder / 'mlflow.db'}"
        TrackingStore(uri, str(folder / "artifacts"))  # runs the migrations
        RegistryStore(uri)
        _STORE_TEMPLATE = folder / "mlflow.db"
    return _STORE_TEMPLATE


def new_mlflow_store(folder: Path) -> str:
    """Copy the migrated template to ``folder/mlflow.db`` and return its SQLite URI."""
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy2(mlflow_store_template(), folder / "mlflow.db")
    return f"sqlite:///{folder / 'mlflow.db'}"


@pytest.fixture
def mlflow_store_uri(tmp_path) -> str:
    """A new, empty, already migrated MLflow SQLite store for one test."""
    return new_mlflow_store(tmp_path / "mlruns")


def load_base_config(key: str, conf: Path | None = None) -> dict[str, Any]:
    """One kind of config (``parameters``, ``catalog``...) of conf/base, resolved.

    Read with the project's config loader settings, so ``${globals:use_case...}``
    interpolations resolve as a run sees them.
    """
    from kedro.config import OmegaConfigLoader  # noqa: PLC0415

    from modelops.settings import CONFIG_LOADER_ARGS  # noqa: PLC0415

    loader = OmegaConfigLoader(
        conf_source=str(conf or PROJECT_ROOT / "conf"), env="base", **CONFIG_LOADER_ARGS
    )
    return dict(loader[key])


@pytest.fixture(scope="session")
def base_parameters() -> dict[str, Any]:
    """Every base parameter, as a run receives them (use case interpolated)."""
    return load_base_config("parameters")


@pytest.fixture(scope="session")
def data_processing_params(base_parameters) -> dict[str, Any]:
    """The base ``source`` and ``features`` parameters, as the pipeline receives them."""
    return {key: base_parameters[key] for key in ("source", "features")}


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


def copy_project(destination: Path) -> Path:
    """Copy what a Kedro run needs (pyproject, src, conf without local) to a temp dir.

    Runs in the copy write their data/ and mlruns/ inside ``destination``, never into
    the developer's; mlruns/ starts as a copy of the migrated template store.
    """
    destination.mkdir(parents=True, exist_ok=True)
    shutil.copy2(PROJECT_ROOT / "pyproject.toml", destination / "pyproject.toml")
    shutil.copytree(
        PROJECT_ROOT / "conf",
        destination / "conf",
        ignore=shutil.ignore_patterns("local"),
    )
    shutil.copytree(
        PROJECT_ROOT / "src",
        destination / "src",
        ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"),
    )
    (destination / "conf" / "local").mkdir()
    (destination / "data").mkdir()
    new_mlflow_store(destination / "mlruns")  # where tracking.tracking_uri() looks
    return destination


def run_kedro(
    project: Path, *args: str, check: bool = True
) -> subprocess.CompletedProcess:
    """Run the venv's `kedro` command in ``project`` and return what it printed."""
    env = {
        **CLEAN_ENVIRON,
        "KEDRO_DISABLE_TELEMETRY": "true",
        "DO_NOT_TRACK": "1",
        "COLUMNS": "200",
    }
    env.pop("MLFLOW_TRACKING_URI", None)
    result = subprocess.run(
        [str(Path(sys.executable).parent / "kedro"), *args],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    if check and result.returncode != 0:
        raise AssertionError(
            f"kedro {' '.join(args)} exited {result.returncode}:\n"
            f"{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
        )
    return result


def files_under(root: Path) -> set[str]:
    """Every file below ``root``, as paths relative to it."""
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}


@pytest.fixture(scope="session")
def simulated_project(tmp_path_factory) -> Path:
    """A project copy with 21 simulated source days (8 stations), shared read-only."""
    project = copy_project(tmp_path_factory.mktemp("project"))
    run_kedro(
        project, "simulate", "--start", "2025-03-01", "--days", "21", "--stations", "8"
    )
    return project


@pytest.fixture
def project(simulated_project, tmp_path) -> Path:
    """A fresh project copy that shares the simulated source partitions (copied)."""
    copy = copy_project(tmp_path / "project")
    shutil.copytree(simulated_project / "data" / "source", copy / "data" / "source")
    return copy


@pytest.fixture(scope="session")
def model_input_table(data_processing_params) -> pd.DataFrame:
    """Three weeks of simulated source (6 stations) as a model input table."""
    from modelops.pipelines.data_processing.nodes import build_model_input  # noqa: PLC0415
    from modelops.simulator import simulate_days  # noqa: PLC0415

    days = simulate_days(dt.date(2025, 3, 1), 21, seed=3, n_stations=6)
    source = pd.concat([frame for _, frame in days], ignore_index=True)
    return build_model_input(source, data_processing_params["features"])


@pytest.fixture(scope="session")
def training_params(base_parameters) -> dict[str, Any]:
    """The base ``split`` and ``model`` parameters."""
    return {key: base_parameters[key] for key in ("split", "model")}
