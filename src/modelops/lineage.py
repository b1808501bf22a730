"""Lineage: content hashes, git state and library versions recorded with every run."""

from __future__ import annotations

import hashlib
import importlib.metadata
import logging
import platform
import subprocess
from pathlib import Path

import pandas as pd

logger = logging.getLogger(__name__)

TRACKED_LIBRARIES = (
    "kedro",
    "kedro-mlflow",
    "kedro-datasets",
    "mlflow",
    "scikit-learn",
    "pandas",
    "numpy",
    "pyarrow",
)


def content_hash(data: pd.DataFrame) -> str:
    """A sha256 of a frame's column names and values (the index is ignored)."""
    digest = hashlib.sha256()
    digest.update("\x1f".join(map(str, data.columns)).encode())
    digest.update(pd.util.hash_pandas_object(data, index=False).to_numpy().tobytes())
    return digest.hexdigest()


def git_state(project_path: Path) -> dict[str, str]:
    """The commit checked out at ``project_path`` and whether the tree is dirty.

    Outside a git checkout (an installed wheel run by a scheduler) both are
    ``unknown``, which the lineage then says plainly.
    """
    try:
        commit = _git(project_path, "rev-parse", "HEAD")
        dirty = bool(
            _git(project_path, "status", "--porcelain", "--untracked-files=no")
        )
    except (OSError, subprocess.CalledProcessError) as err:
        detail = getattr(err, "stderr", None) or err
        logger.warning(
            "No git state for %s (lineage says 'unknown'): %s", project_path, detail
        )
        return {"git_commit": "unknown", "git_dirty": "unknown"}
    return {"git_commit": commit, "git_dirty": str(dirty).lower()}


def library_versions() -> dict[str, str]:
    """Versions of Python and the libraries a run's results depend on."""
    versions = {"python": platform.python_version()}
    for name in TRACKED_LIBRARIES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "absent"
    return versions


def _git(project_path: Path, *args: str) -> str:
    result = subprocess.run(  # noqa: S603 (fixed argv, no shell)
        ["git", *args],  # noqa: S607 (git from PATH)
        cwd=project_path,
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    )
    return result.stdout.strip()
