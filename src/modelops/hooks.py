"""Project hooks: report where a run's persisted outputs were written."""

from __future__ import annotations

from pathlib import PurePath
from typing import Any

import click
from kedro.framework.hooks import hook_impl
from kedro.io import MemoryDataset


class RunSummaryHooks:
    """Log, at the end of a run, every persisted dataset it wrote and the exact path."""

    def __init__(self) -> None:
        self._saved: list[str] = []
        self._env = "?"

    @hook_impl
    def after_context_created(self, context: Any) -> None:
        """Note the env actually in force (a bare `kedro run` passes none)."""
        self._env = context.config_loader["globals"].get("env", "?")

    @hook_impl
    def before_pipeline_run(self, run_params: dict[str, Any]) -> None:
        """Start a fresh record for this run."""
        self._saved = []

    @hook_impl
    def after_dataset_saved(self, dataset_name: str) -> None:
        """Remember each dataset the run saved."""
        self._saved.append(dataset_name)

    @hook_impl
    def after_pipeline_run(self, run_params: dict[str, Any], catalog: Any) -> None:
        """Log where each persisted output landed (the versioned file, if versioned)."""
        lines = []
        for name in dict.fromkeys(self._saved):
            dataset = catalog.get(name)
            if dataset is None or isinstance(dataset, MemoryDataset):
                continue
            lines.append(f"  {name}: {saved_location(dataset._describe())}")
        if lines:
            # Echoed, not logged: a log handler would wrap the long paths.
            click.echo(f"Run in env '{self._env}' wrote:\n" + "\n".join(lines))


def saved_location(description: dict[str, Any]) -> str:
    """The file a dataset wrote, from its description (versioned paths resolved)."""
    target = description.get("filepath") or description.get("path")
    if target is None:
        return str(description)
    version = description.get("version")
    if version is not None and version.save:
        path = PurePath(str(target))
        return str(path / version.save / path.name)
    return str(target)
