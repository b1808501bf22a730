"""Lineage: content hashes, git state and library versions recorded with every run."""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import logging
import platform
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

logger = logging.getLogger(__name__)

# The tag that carries a registered version's candidate fingerprint.
FINGERPRINT_TAG = "modelops.fingerprint"
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


def canonical_json(value: Any) -> str:
    """JSON with sorted keys and no whitespace: equal values give equal text."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


def candidate_fingerprint(  # noqa: PLR0913
    *,
    train_sha256: str,
    test_sha256: str,
    model_config: Mapping[str, Any],
    features: Mapping[str, Any],
    git_commit: str,
    code_sha256: str,
) -> str:
    """What makes two candidates the same model: a sha256 over all that trains it.

    Two runs with the same train and test content, the same model config (seed
    included), the same feature config and the same code (git commit and the
    package's source hash, so an uncommitted edit or an unknown commit still
    counts) train the same model; the registry keeps it once.
    """
    identity = {
        "train_sha256": train_sha256,
        "test_sha256": test_sha256,
        "model_config": dict(model_config),
        "features": dict(features),
        "git_commit": git_commit,
        "code_sha256": code_sha256,
    }
    return hashlib.sha256(canonical_json(identity).encode()).hexdigest()


def source_hash(package_dir: Path) -> str:
    """A sha256 over the ``.py`` files under ``package_dir`` (names and contents)."""
    digest = hashlib.sha256()
    for path in sorted(package_dir.rglob("*.py")):
        if "__pycache__" in path.parts:
            continue
        digest.update(path.relative_to(package_dir).as_posix().encode() + b"\0")
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


def code_state(project_path: Path) -> dict[str, str]:
    """The git state at ``project_path`` plus the sha256 of the running package code.

    The package hash identifies the code when git cannot (a dirty tree, or an
    installed wheel with no checkout).
    """
    return {
        **git_state(project_path),
        "code_sha256": source_hash(Path(__file__).resolve().parent),
    }


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
