"""The MLflow Model Registry: registering versions and moving aliases, in one place."""

from __future__ import annotations

import importlib.metadata
import logging
from pathlib import Path

import mlflow
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

logger = logging.getLogger(__name__)

SERVING_REQUIREMENTS = ("mlflow", "scikit-learn", "pandas", "numpy", "cloudpickle")


def package_dir() -> Path:
    """The installed ``modelops`` package folder (shipped with the model as code)."""
    return Path(__file__).resolve().parent


def pip_requirements() -> list[str]:
    """Exact pins of what the logged model needs to load (no inference subprocess)."""
    return [
        f"{name}=={importlib.metadata.version(name)}" for name in SERVING_REQUIREMENTS
    ]


def alias_version(
    client: MlflowClient, model_name: str, alias: str
) -> ModelVersion | None:
    """The version an alias points to, or None if the model or the alias is absent."""
    try:
        return client.get_model_version_by_alias(model_name, alias)
    except MlflowException as err:
        if err.error_code in {"RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"}:
            return None
        raise


def register_version(
    client: MlflowClient,
    model_name: str,
    model_uri: str,
    run_id: str,
    tags: dict[str, str],
) -> str:
    """Register a logged model as a new version of ``model_name`` with lineage tags."""
    del client  # mlflow.register_model uses the configured registry
    version = mlflow.register_model(model_uri, model_name, tags=tags)
    logger.info(
        "Registered %s version %s from run %s", model_name, version.version, run_id
    )
    return str(version.version)


def set_alias(  # noqa: PLR0913
    client: MlflowClient,
    model_name: str,
    alias: str,
    version: str,
    *,
    env: str,
    run_id: str | None,
    reason: str,
) -> None:
    """Point ``alias`` at ``version``: the one function through which aliases move.

    Records who moved it and why on the version's tags, so the registry shows it.
    """
    previous = alias_version(client, model_name, alias)
    client.set_registered_model_alias(model_name, alias, version)
    client.set_model_version_tag(model_name, version, f"modelops.alias.{alias}", reason)
    logger.info(
        "Alias %s@%s: %s -> %s (env %s, run %s): %s",
        model_name,
        alias,
        previous.version if previous else None,
        version,
        env,
        run_id,
        reason,
    )
