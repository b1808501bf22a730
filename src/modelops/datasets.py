"""Catalog datasets: content-addressed storage and the MLflow tracking/registry entries."""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
from kedro.io import AbstractDataset, DatasetError
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from modelops import registry
from modelops.lineage import content_hash


class ContentAddressedParquetDataset(AbstractDataset[pd.DataFrame, pd.DataFrame]):
    """Parquet files named by the sha256 of their content: the same data is stored once.

    ``save`` writes ``<directory>/<sha256>.parquet`` unless it already exists (so
    re-running on the same data writes nothing and never overwrites) and appends the
    hash to ``index.jsonl``. ``load`` returns what this process saved last (kept in
    memory, so a run never re-reads what it just wrote), else the newest entry of the
    index.
    """

    def __init__(self, directory: str, metadata: dict[str, Any] | None = None) -> None:
        self._directory = Path(directory).absolute()
        self._last_hash: str | None = None
        self._last_data: pd.DataFrame | None = None
        self.metadata = metadata

    @property
    def last_path(self) -> Path | None:
        """Where the last saved (or loaded) frame lies."""
        return self._path(self._last_hash) if self._last_hash else None

    def _path(self, sha: str) -> Path:
        return self._directory / f"{sha}.parquet"

    def _save(self, data: pd.DataFrame) -> None:
        sha = content_hash(data)
        target = self._path(sha)
        if not target.exists():
            self._directory.mkdir(parents=True, exist_ok=True)
            partial = target.with_name(f".{target.name}.{os.getpid()}.tmp")
            data.to_parquet(partial, index=False)
            os.replace(partial, target)
        with (self._directory / "index.jsonl").open("a") as index:
            index.write(json.dumps({"sha256": sha, "rows": len(data)}) + "\n")
        self._last_hash = sha
        self._last_data = data

    def _load(self) -> pd.DataFrame:
        if self._last_data is not None:
            return self._last_data.copy(deep=False)  # nodes never mutate their inputs
        if self._last_hash is None:
            index = self._directory / "index.jsonl"
            if not index.exists():
                raise DatasetError(
                    f"Nothing saved yet in {self._directory}: run the pipeline that "
                    f"writes it first."
                )
            lines = index.read_text().splitlines()
            self._last_hash = json.loads(lines[-1])["sha256"]
        return pd.read_parquet(self._path(self._last_hash))

    def _exists(self) -> bool:
        return (self._directory / "index.jsonl").exists()

    def _describe(self) -> dict[str, Any]:
        return {"directory": str(self._directory), "last_path": str(self.last_path)}


class _ActiveRunDataset(AbstractDataset[Any, Any]):
    """Base for datasets that write into the active MLflow run and cache what they saved."""

    def __init__(self, metadata: dict[str, Any] | None = None) -> None:
        self._data: Any = None
        self._access_policy: registry.AliasPolicy | None = None
        self.metadata = metadata

    def bind_access_policy(self, policy: registry.AliasPolicy) -> None:
        """Receive the env's access policy (from the access hook) for alias moves."""
        self._access_policy = policy

    def _policy(self) -> registry.AliasPolicy:
        if self._access_policy is None:
            raise DatasetError(
                f"{type(self).__name__} has no access policy to check alias moves "
                f"against.\nHint: keep modelops.access.AccessPolicyHooks in HOOKS "
                f"(src/modelops/settings.py)."
            )
        return self._access_policy

    @staticmethod
    def _active_run_id() -> str:
        run = mlflow.active_run()
        if run is None:
            raise DatasetError(
                "No active MLflow run: this dataset logs into the run that kedro-mlflow "
                "opens.\nHint: do not list this pipeline under "
                "tracking.disable_tracking.pipelines in conf/base/mlflow.yml."
            )
        return run.info.run_id

    def _load(self) -> Any:
        if self._data is None:
            raise DatasetError(
                f"{type(self).__name__} holds nothing saved in this run."
            )
        return self._data

    def _describe(self) -> dict[str, Any]:
        return {"type": type(self).__name__}


class MlflowMetricsDataset(_ActiveRunDataset):
    """A flat ``{name: number}`` dict logged as metrics of the active run."""

    def __init__(
        self, prefix: str = "", metadata: dict[str, Any] | None = None
    ) -> None:
        super().__init__(metadata)
        self._prefix = prefix

    def _save(self, data: dict[str, float]) -> None:
        self._active_run_id()
        mlflow.log_metrics({f"{self._prefix}{k}": float(v) for k, v in data.items()})
        self._data = dict(data)


class MlflowJsonDataset(_ActiveRunDataset):
    """A dict logged as a JSON artifact of the active run, its scalars also as tags."""

    def __init__(
        self,
        artifact_file: str,
        tag_prefix: str | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(metadata)
        self._artifact_file = artifact_file
        self._tag_prefix = tag_prefix

    def _save(self, data: dict[str, Any]) -> None:
        self._active_run_id()
        mlflow.log_dict(data, self._artifact_file)
        if self._tag_prefix is not None:
            mlflow.set_tags(
                {
                    f"{self._tag_prefix}{key}": str(value)
                    for key, value in data.items()
                    if isinstance(value, str | int | float | bool) or value is None
                }
            )
        self._data = dict(data)


class IncumbentModelDataset(AbstractDataset[None, dict[str, Any] | None]):
    """The model the candidate must beat: the first alias in ``aliases`` that exists.

    Loads ``{"alias", "version", "run_id", "tags", "model"}`` or None when no alias is set
    (nothing promoted yet). Read-only.
    """

    def __init__(
        self,
        model_name: str,
        aliases: list[str],
        metadata: dict[str, Any] | None = None,
    ) -> None:
        self._model_name = model_name
        self._aliases = list(aliases)
        self.metadata = metadata

    def _load(self) -> dict[str, Any] | None:
        client = MlflowClient()
        for alias in self._aliases:
            version = registry.alias_version(client, self._model_name, alias)
            if version is None:
                continue
            model = mlflow.sklearn.load_model(f"models:/{self._model_name}@{alias}")
            return {
                "alias": alias,
                "version": int(version.version),
                "run_id": version.run_id,
                "tags": dict(version.tags),
                "model": model,
            }
        return None

    def _save(self, data: None) -> None:
        raise DatasetError("IncumbentModelDataset is read-only.")

    def _describe(self) -> dict[str, Any]:
        return {"model_name": self._model_name, "aliases": self._aliases}


class RegisteredModelDataset(_ActiveRunDataset):
    """Log an approved model to the active run, register it and set the env's alias.

    ``save`` takes ``{"model", "input_example", "tags", "reason"}`` (``model`` None:
    nothing to register, the candidate is the incumbent retrained): the signature is
    inferred from the small input example (never the whole training set), pip
    requirements are given explicitly (no inference subprocess), and the project's
    package travels with the model as ``code_paths`` so it loads anywhere.
    """

    def __init__(
        self,
        model_name: str,
        alias: str,
        artifact_name: str = "model",
        metadata: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(metadata)
        self._model_name = model_name
        self._alias = alias
        self._artifact_name = artifact_name

    @property
    def access_aliases(self) -> tuple[str, ...]:
        """The aliases a save moves (checked by the access hook before the run)."""
        return (self._alias,)

    def _save(self, data: dict[str, Any]) -> None:
        run_id = self._active_run_id()
        policy = self._policy()  # refuse before logging anything
        if data.get("model") is None:  # the gate found nothing new to register
            mlflow.set_tags({"modelops.registered_version": "none"})
            self._data = {"model_name": self._model_name, "version": None}
            return
        example = data["input_example"]
        with warnings.catch_warnings():
            # MLflow warns that int columns cannot hold missing values; the data
            # contract, not the signature, is what rejects nulls here.
            warnings.filterwarnings(
                "ignore", message=".*[Ii]nteger column", category=UserWarning
            )
            signature = mlflow.models.infer_signature(
                example, data["model"].predict(example)
            )
        info = mlflow.sklearn.log_model(
            data["model"],
            name=self._artifact_name,
            signature=signature,
            serialization_format="cloudpickle",
            pip_requirements=registry.pip_requirements(),
            code_paths=[str(registry.package_dir())],
        )
        client = MlflowClient()
        run_tags = client.get_run(run_id).data.tags
        tags = {
            **{k: v for k, v in run_tags.items() if k.startswith("modelops.")},
            **{f"modelops.{k}": str(v) for k, v in data["tags"].items()},
            "modelops.run_id": run_id,
        }
        try:
            version = registry.register_version(
                self._model_name, info.model_uri, run_id, tags
            )
        except MlflowException as err:
            raise DatasetError(
                f"Registering model '{self._model_name}' failed: {err}"
            ) from err
        try:
            registry.set_alias(
                client,
                self._model_name,
                self._alias,
                version,
                policy=policy,
                run_id=run_id,
                reason=data["reason"],
            )
        except Exception:
            # Leave the registry as it was: no version without its alias.
            client.delete_model_version(self._model_name, version)
            raise
        mlflow.set_tags(
            {"modelops.registered_version": version, "modelops.alias": self._alias}
        )
        self._data = {"model_name": self._model_name, "version": version}


class AliasDataset(_ActiveRunDataset):
    """Move the env's alias to an already registered version (promotion).

    ``save`` takes ``{"version", "reason"}``; a None version moves nothing.
    """

    def __init__(
        self, model_name: str, alias: str, metadata: dict[str, Any] | None = None
    ) -> None:
        super().__init__(metadata)
        self._model_name = model_name
        self._alias = alias

    @property
    def access_aliases(self) -> tuple[str, ...]:
        """The aliases a save moves (checked by the access hook before the run)."""
        return (self._alias,)

    def _save(self, data: dict[str, Any]) -> None:
        run_id = self._active_run_id()
        policy = self._policy()
        if data.get("version") is None:
            mlflow.set_tags({"modelops.promoted_version": "none"})
            self._data = dict(data)
            return
        registry.set_alias(
            MlflowClient(),
            self._model_name,
            self._alias,
            str(data["version"]),
            policy=policy,
            run_id=run_id,
            reason=data["reason"],
        )
        mlflow.set_tags(
            {
                "modelops.promoted_version": str(data["version"]),
                "modelops.alias": self._alias,
            }
        )
        self._data = dict(data)
