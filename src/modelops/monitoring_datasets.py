"""Catalog datasets of the monitoring job: the served version's profile, logs, history."""

from __future__ import annotations

import functools
import json
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
from kedro.io import AbstractDataset, DatasetError
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from modelops import registry
from modelops.drift import MonitoringError
from modelops.model_artifacts import FORM_TAG

PROFILE_ARTIFACT = "monitoring/reference_profile.json"
TRAIN_SHA_TAG = "modelops.train_sha256"
TEST_SHA_TAG = "modelops.test_sha256"
DEPLOY_HINT = (
    "re-run the deployment job on new source data (`kedro run --env acceptance`, then "
    "`kedro run --env prod` to promote; or `kedro retrain`): every version it registers "
    f"logs {PROFILE_ARTIFACT} (the evaluation pipeline's profile_reference_node). On "
    "the same data and config as this version it reports `unchanged` and registers "
    "nothing"
)


Loader = Callable[..., pd.DataFrame]


class ReferenceProfileDataset(AbstractDataset[None, dict[str, Any]]):
    """The reference profile of the version the env's alias points to, from its run.

    Loads ``{"model": {name, version, alias, run_id, serving_form}, "profile": dict,
    "tags": dict}``. The profile is the JSON artifact the evaluation pipeline logged
    into the run that trained the version (``monitoring/reference_profile.json``),
    downloaded with ``MlflowClient.download_artifacts``; its ``train_sha256`` must be
    the version's ``modelops.train_sha256`` tag (the lineage link). Read-only.
    """

    def __init__(
        self,
        model_name: str,
        alias: str,
        artifact_file: str = PROFILE_ARTIFACT,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        """Name the registered model, the alias monitored and the artifact.

        Args:
            model_name: The registered model.
            alias: The alias whose version is monitored (the env's globals ``alias``).
            artifact_file: The profile's path in the version's run.
            metadata: Free metadata, ignored here.
        """
        self._model_name = model_name
        self._alias = alias
        self._artifact_file = artifact_file
        self.metadata = metadata

    def _load(self) -> dict[str, Any]:
        client = MlflowClient()
        version = registry.alias_version(client, self._model_name, self._alias)
        where = f"'{self._model_name}@{self._alias}'"
        if version is None:
            raise MonitoringError(
                f"No version of registered model '{self._model_name}' has alias "
                f"'{self._alias}', the alias this env monitors: there is no served "
                f"model to monitor.\nHint: deploy one first (`kedro run --env dev`, "
                f"`--env acceptance`, `--env prod`; see `kedro models history`)."
            )
        named = f"{where} (version {version.version}, run {version.run_id})"
        if not version.run_id:
            raise MonitoringError(
                f"Version {version.version} of {where} has no MLflow run, so it "
                f"carries no reference profile.\nHint: {DEPLOY_HINT}."
            )
        with tempfile.TemporaryDirectory(prefix="modelops-profile-") as folder:
            try:
                local = client.download_artifacts(
                    version.run_id, self._artifact_file, folder
                )
            except (MlflowException, OSError) as err:
                raise MonitoringError(
                    f"The run of {named} has no reference profile "
                    f"'{self._artifact_file}' (versions registered before monitoring "
                    f"existed have none), so monitoring has nothing to compare the "
                    f"window with.\nHint: {DEPLOY_HINT}."
                ) from err
            profile = json.loads(Path(local).read_text())
        tags = dict(version.tags)
        expected = tags.get(TRAIN_SHA_TAG)
        if not expected or profile.get("train_sha256") != expected:
            raise MonitoringError(
                f"The reference profile of {named} was built from train set "
                f"{profile.get('train_sha256')!r}, but the version's tag "
                f"{TRAIN_SHA_TAG} is {expected!r}: the profile is not this "
                f"version's own.\nHint: {DEPLOY_HINT}."
            )
        return {
            "model": {
                "name": self._model_name,
                "version": str(version.version),
                "alias": self._alias,
                "run_id": version.run_id,
                "serving_form": tags.get(FORM_TAG),
            },
            "profile": profile,
            "tags": tags,
        }

    def _save(self, data: None) -> None:
        raise DatasetError("ReferenceProfileDataset is read-only.")

    def _describe(self) -> dict[str, Any]:
        # The registry, not a data location: no path keys for the access policy.
        return {
            "model_name": self._model_name,
            "alias": self._alias,
            "artifact_file": self._artifact_file,
        }


def read_parquet(path: str, columns: list[str] | None = None) -> pd.DataFrame:
    """Read one parquet file, only ``columns`` if given (those present)."""
    if columns is not None:
        import pyarrow.parquet as pq  # noqa: PLC0415 - only for the schema

        present = set(pq.read_schema(path).names)
        columns = [name for name in columns if name in present]
    return pd.read_parquet(path, columns=columns)


class PredictionLogsDataset(AbstractDataset[None, dict[str, Any]]):
    """The env's prediction logs as lazy loaders, batch and REST. Read-only.

    Loads ``{"batch": {run version: {chunk key: loader}}, "rest": {day: {file:
    loader}}}``, every level sorted oldest first. Batch logs are the
    ``VersionedPartitionedDataset`` layout ``<batch_path>/<save version>/<chunk
    key><suffix>`` (hidden staging folders ignored); REST logs are
    ``<rest_path>/<YYYY-MM-DD>/<file><suffix>`` (hidden temporary files ignored). A
    loader reads its file when called (``loader(columns=[...])`` reads only those
    columns), as ``PartitionedDataset`` hands out loaders: nothing is read here.
    """

    def __init__(
        self,
        batch_path: str,
        rest_path: str,
        filename_suffix: str = ".parquet",
        metadata: dict[str, Any] | None = None,
    ) -> None:
        """Name the two log folders.

        Args:
            batch_path: Folder of the batch prediction log versions.
            rest_path: Folder of the REST service's daily log folders.
            filename_suffix: Suffix of the log files.
            metadata: Free metadata, ignored here.
        """
        self._batch = Path(batch_path)
        self._rest = Path(rest_path)
        self._suffix = filename_suffix
        self.metadata = metadata

    def _files(self, folder: Path) -> dict[str, Loader]:
        return {
            path.name[: -len(self._suffix)] if self._suffix else path.name: (
                functools.partial(read_parquet, str(path))
            )
            for path in sorted(folder.iterdir())
            if path.is_file()
            and not path.name.startswith(".")
            and path.name.endswith(self._suffix)
        }

    def _folders(self, root: Path) -> dict[str, dict[str, Loader]]:
        if not root.is_dir():
            return {}
        return {
            entry.name: self._files(entry)
            for entry in sorted(root.iterdir())
            if entry.is_dir() and not entry.name.startswith(".")
        }

    def _load(self) -> dict[str, Any]:
        return {"batch": self._folders(self._batch), "rest": self._folders(self._rest)}

    def _save(self, data: None) -> None:
        raise DatasetError("PredictionLogsDataset is read-only.")

    def _describe(self) -> dict[str, Any]:
        return {
            "batch": {"path": str(self._batch)},
            "rest": {"path": str(self._rest)},
            "suffix": self._suffix,
        }


class MonitoringHistoryDataset(AbstractDataset[None, list[dict[str, Any]]]):
    """The previous monitoring results of the env, oldest first, at most ``max_runs``.

    Reads Kedro's versioned layout of the ``monitoring_result`` entry,
    ``<filepath>/<save version>/<file name>``. Read-only.
    """

    def __init__(
        self, filepath: str, max_runs: int = 20, metadata: dict[str, Any] | None = None
    ) -> None:
        """Name the versioned result file and how many versions to read at most.

        Args:
            filepath: The ``filepath`` of the ``monitoring_result`` entry.
            max_runs: The newest N results are loaded.
            metadata: Free metadata, ignored here.
        """
        self._filepath = Path(filepath)
        self._max_runs = int(max_runs)
        self.metadata = metadata

    def _load(self) -> list[dict[str, Any]]:
        if not self._filepath.is_dir():
            return []
        files = [
            entry / self._filepath.name
            for entry in sorted(self._filepath.iterdir())
            if entry.is_dir() and (entry / self._filepath.name).is_file()
        ]
        chosen = files[-self._max_runs :] if self._max_runs > 0 else []
        return [json.loads(path.read_text()) for path in chosen]

    def _save(self, data: None) -> None:
        raise DatasetError("MonitoringHistoryDataset is read-only.")

    def _describe(self) -> dict[str, Any]:
        return {"filepath": str(self._filepath), "max_runs": self._max_runs}
