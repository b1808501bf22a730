"""Where MLflow tracks: MLFLOW_TRACKING_URI if set, else a SQLite store in mlruns/."""

from __future__ import annotations

import os
from pathlib import Path

DEFAULT_STORE_DIR = "mlruns"


def tracking_uri() -> str:
    """The tracking URI for this process (config resolver ``${tracking_uri:}``).

    MLflow 3.17 refuses the old file store, so the default is a SQLite database in
    ``mlruns/`` under the working directory (the project root for ``kedro run``);
    artifacts land beside it. Set MLFLOW_TRACKING_URI to use a tracking server.
    """
    configured = os.environ.get("MLFLOW_TRACKING_URI")
    if configured:
        return configured
    store = Path.cwd() / DEFAULT_STORE_DIR
    store.mkdir(exist_ok=True)
    return f"sqlite:///{store / 'mlflow.db'}"
