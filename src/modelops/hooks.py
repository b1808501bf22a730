"""Project hooks: lineage tags, atomic staged outputs, a summary of what a run wrote."""

from __future__ import annotations

import importlib
import logging
import warnings
from pathlib import Path, PurePath
from typing import Any

import click
import mlflow
from kedro.framework.hooks import hook_impl
from kedro.io import MemoryDataset

from modelops.datasets import ContentAddressedParquetDataset
from modelops.lineage import git_state, library_versions

logger = logging.getLogger(__name__)

# MLflow warns "Add type hints to the `predict` method ..." when a PythonModel
# subclass with an untyped ``predict`` is *defined* (PythonModel.__init_subclass__).
# kedro-mlflow defines one, KedroPipelineModel, in kedro_mlflow.mlflow, which its
# plugin entry points import in every `kedro` process; we do not own that class and
# never log it as a model. MLflow raises the warning inside its own
# ``catch_warnings()`` + ``simplefilter("once")``, which sits in front of any filter
# we install, so a warnings filter cannot stop it. Instead the module is imported
# here first (settings imports this module before Kedro loads plugins) with its
# warnings recorded, and every warning except that one is issued again unchanged.
TYPE_HINT_WARNING = "Add type hints to the `predict` method"
KEDRO_MLFLOW_MODEL_MODULE = "kedro_mlflow.mlflow"


def import_without_type_hint_warning(module: str = KEDRO_MLFLOW_MODEL_MODULE) -> None:
    """Import ``module`` once, dropping only MLflow's type-hint warning about it."""
    with warnings.catch_warnings(record=True) as caught:
        importlib.import_module(module)
    for warning in caught:
        if issubclass(warning.category, UserWarning) and TYPE_HINT_WARNING in str(
            warning.message
        ):
            continue
        warnings.warn_explicit(
            warning.message,
            warning.category,
            warning.filename,
            warning.lineno,
            source=warning.source,
        )


import_without_type_hint_warning()


def saved_location(dataset: Any) -> str | None:
    """The file a dataset wrote last (versioned paths resolved), or None if in memory."""
    if isinstance(dataset, MemoryDataset):
        return None
    if isinstance(dataset, ContentAddressedParquetDataset):
        return str(dataset.last_path)
    description = dataset._describe()
    target = description.get("filepath") or description.get("path")
    if target is None:
        return None
    version = description.get("version")
    if version is not None and version.save:
        path = PurePath(str(target))
        return str(path / version.save / path.name)
    return str(target)


MAX_PARAM_LENGTH = 6000
PARAMS_PER_BATCH = 100


def flatten_parameters(params: dict[str, Any], prefix: str = "") -> dict[str, str]:
    """``{"model": {"seed": 1}}`` -> ``{"model.seed": "1"}`` (lists stay whole)."""
    flat: dict[str, str] = {}
    for key, value in params.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            flat.update(flatten_parameters(value, prefix=f"{name}."))
        else:
            flat[name] = str(value)
    return flat


def log_parameters(params: dict[str, Any]) -> None:
    """Log every run parameter, flattened, in a few batched calls.

    kedro-mlflow (``flatten: false`` in mlflow.yml) logs each node's parameter
    inputs one call at a time; this gives the searchable flat keys in batches of 100,
    not one SQLite commit per key.
    """
    flat = flatten_parameters(params, prefix="p.")
    short = {k: v for k, v in flat.items() if len(v) <= MAX_PARAM_LENGTH}
    names = sorted(short)
    for start in range(0, len(names), PARAMS_PER_BATCH):
        mlflow.log_params(
            {n: short[n] for n in names[start : start + PARAMS_PER_BATCH]}
        )


class LineageHooks:
    """Tag the kedro-mlflow run with env, git state, libraries and every file written."""

    def __init__(self) -> None:
        self._env = "unknown"
        self._project_path = Path.cwd()
        self._catalog: Any = None

    @hook_impl
    def after_context_created(self, context: Any) -> None:
        """Note the env in force (a bare `kedro run` passes none) and the project."""
        self._env = context.config_loader["globals"].get("env", "unknown")
        self._project_path = Path(context.project_path)

    @hook_impl(trylast=True)  # after kedro-mlflow has opened the run
    def before_pipeline_run(self, run_params: dict[str, Any], catalog: Any) -> None:
        """Record what makes the run reproducible: env, code version, libraries."""
        self._catalog = catalog
        if mlflow.active_run() is None:
            return
        pipelines = run_params.get("pipeline_names") or ["__default__"]
        tags = {
            "modelops.env": self._env,
            "modelops.pipeline": ",".join(pipelines),
            "modelops.kedro_run_id": str(
                run_params.get("session_id") or run_params.get("run_id")
            ),
            **{
                f"modelops.{key}": value
                for key, value in git_state(self._project_path).items()
            },
            **{
                f"modelops.lib.{key}": value
                for key, value in library_versions().items()
            },
        }
        mlflow.set_tags(tags)
        log_parameters(catalog.load("parameters"))

    @hook_impl
    def after_dataset_saved(self, dataset_name: str) -> None:
        """Tag the run with the file each persisted dataset was written to.

        A dataset whose catalog entry has ``metadata.mlflow_artifact_path`` is also
        logged into the run under that folder.
        """
        if mlflow.active_run() is None or self._catalog is None:
            return
        dataset = self._catalog.get(dataset_name)
        location = saved_location(dataset)
        if location is None:
            return
        mlflow.set_tag(f"modelops.saved.{dataset_name}", location)
        artifact_path = (getattr(dataset, "metadata", None) or {}).get(
            "mlflow_artifact_path"
        )
        if artifact_path:
            mlflow.log_artifact(location, artifact_path=artifact_path)


def staged_outputs(pipeline: Any, catalog: Any) -> list[tuple[str, Any]]:
    """The pipeline's outputs whose dataset stages writes: has ``commit``/``discard``."""
    staged = []
    for name in sorted(pipeline.all_outputs()):
        dataset = catalog.get(name) if name in catalog else None
        if callable(getattr(dataset, "commit", None)) and callable(
            getattr(dataset, "discard", None)
        ):
            staged.append((name, dataset))
    return staged


class StagedOutputHooks:
    """Make a run's staged outputs visible only when the whole run has succeeded.

    A dataset that stages its writes (``commit()`` and ``discard()``, e.g.
    ``VersionedPartitionedDataset``, saved chunk by chunk by a generator node) keeps
    what a run writes hidden. This hook commits every such output of the pipeline
    when the run has succeeded and discards them when it fails, so a failed run
    leaves no partial version and cleans up after itself.

    Why the pipeline hooks, not ``after_node_run``: in Kedro 1.7 ``after_node_run``
    fires before the node's outputs are saved (for a generator node, before anything
    past its first chunk has even been computed), and an error raised while a
    generator streams reaches only ``on_pipeline_error``, never ``on_node_error``.
    """

    @hook_impl(tryfirst=True)  # before kedro-mlflow ends the run, before the summary
    def after_pipeline_run(self, pipeline: Any, catalog: Any) -> None:
        """Commit every staged output; if one cannot be, discard the rest and fail."""
        staged = staged_outputs(pipeline, catalog)
        for position, (name, dataset) in enumerate(staged):
            try:
                dataset.commit()
            except Exception:
                logger.error("Could not commit the output '%s' of this run", name)
                self._discard(staged[position:])
                raise

    @hook_impl
    def on_pipeline_error(self, pipeline: Any, catalog: Any) -> None:
        """Discard every staged output: a failed run makes nothing visible."""
        self._discard(staged_outputs(pipeline, catalog))

    @staticmethod
    def _discard(staged: list[tuple[str, Any]]) -> None:
        for name, dataset in staged:
            try:
                dataset.discard()
            except Exception:  # never hide the run's own error behind this one
                logger.exception(
                    "Could not discard the staged output '%s': delete its hidden "
                    "staging folder by hand (readers ignore it)",
                    name,
                )


class RunSummaryHooks:
    """Print, at the end of a run, every persisted dataset it wrote and the exact path."""

    def __init__(self) -> None:
        self._saved: list[str] = []
        self._env = "unknown"

    @hook_impl
    def after_context_created(self, context: Any) -> None:
        """Note the env actually in force."""
        self._env = context.config_loader["globals"].get("env", "unknown")

    @hook_impl
    def before_pipeline_run(self) -> None:
        """Start a fresh record for this run."""
        self._saved = []

    @hook_impl
    def after_dataset_saved(self, dataset_name: str) -> None:
        """Remember each dataset the run saved."""
        self._saved.append(dataset_name)

    @hook_impl
    def after_pipeline_run(self, catalog: Any) -> None:
        """Print where each persisted output landed."""
        lines = []
        for name in dict.fromkeys(self._saved):
            location = saved_location(catalog.get(name))
            if location is not None:
                lines.append(f"  {name}: {location}")
        if lines:
            # Echoed, not logged: a log handler would wrap the long paths.
            click.echo(f"Run in env '{self._env}' wrote:\n" + "\n".join(lines))
