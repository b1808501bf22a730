"""Where MLflow tracks: MLFLOW_TRACKING_URI if set, else a SQLite store in mlruns/."""

from __future__ import annotations

import os
from pathlib import Path

from kedro.utils import find_kedro_project

DEFAULT_STORE_DIR = "mlruns"


def tracking_uri() -> str:
    """The tracking URI for this process (config resolver ``${tracking_uri:}``).

    MLflow 3.17 refuses the old file store, so the default is a SQLite database in
    ``mlruns/`` at the root of the project holding the working directory (found as
    Kedro finds it, so a subfolder gives the same store), or in the working directory
    outside a project (a packaged run); artifacts land beside it. Set
    MLFLOW_TRACKING_URI to use a tracking server.
    """
    configured = os.environ.get("MLFLOW_TRACKING_URI")
    if configured:
        return configured
    base = find_kedro_project(Path.cwd()) or Path.cwd()
    store = Path(base) / DEFAULT_STORE_DIR
    store.mkdir(exist_ok=True)
    return f"sqlite:///{store / 'mlflow.db'}"
