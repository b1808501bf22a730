"""Reading an env's configuration (catalog, parameters, globals) outside a Kedro session."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def load_config(project_path: Path, env: str, key: str) -> dict[str, Any]:
    """Read one kind of config (catalog, parameters, ...) as an env sees it.

    No session is created, so no hook runs and nothing is written.

    Args:
        project_path: The Kedro project's root.
        env: The config env (dev, acceptance, prod).
        key: What to read: ``catalog``, ``parameters``, ``globals``...

    Returns:
        The resolved config, as a new dict.
    """
    from kedro.framework.project import settings  # noqa: PLC0415 (loaded on use)
    from kedro.framework.startup import bootstrap_project  # noqa: PLC0415

    bootstrap_project(project_path)
    loader = settings.CONFIG_LOADER_CLASS(
        conf_source=str(project_path / settings.CONF_SOURCE),
        env=env,
        **settings.CONFIG_LOADER_ARGS,
    )
    return dict(loader[key])
