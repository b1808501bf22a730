"""Datasets for batch outputs written chunk by chunk: one atomic folder per run."""

from __future__ import annotations

import datetime as dt
import logging
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kedro.io import AbstractDataset, DatasetError, Version
from kedro.io.core import VERSION_FORMAT, generate_timestamp
from kedro_datasets.partitions import PartitionedDataset

from modelops.errors import ConfigError

logger = logging.getLogger(__name__)

# A run's partitions are staged in ``<path>/.<save version><STAGING_SUFFIX>``.
STAGING_SUFFIX = ".partial"


class VersionedPartitionedDataset(AbstractDataset[dict[str, Any], dict[str, Any]]):
    """A PartitionedDataset whose every run writes its own folder, whole or not at all.

    Kedro's ``versioned: true`` does not apply to ``PartitionedDataset``; this one
    takes it. A run's version is ``<path>/<save_version>/<partition id><suffix>`` (the
    save version is the run's, the same timestamp every versioned dataset of the run
    saves under). ``save`` may be called many times in one run, each call adding
    partitions (a generator node saves chunk by chunk); it refuses to write a
    partition that already exists, so nothing is ever overwritten. Values that are
    callables are called at save time (lazy saving), as in ``PartitionedDataset``.

    Atomic versions: partitions are written into a hidden staging folder beside the
    versions, ``<path>/.<save_version>.partial/``, and only ``commit()`` makes it the
    version folder, with one rename on the same filesystem (``os.replace``). Readers
    never see hidden folders, so a run that fails half-way leaves no partial version:
    ``discard()`` deletes its staging folder. The project hook
    ``modelops.hooks.StagedOutputHooks`` commits every such output when the whole run
    has succeeded and discards them when it fails. The path is local (``Path``).

    ``load`` returns ``{partition id: loader}`` for the load version: the one given
    (``kedro run --load-versions name:VERSION``), else what this run has staged (a run
    reads what it wrote), else the newest committed folder.
    """

    def __init__(
        self,
        path: str,
        dataset: str | type[AbstractDataset] | dict[str, Any],
        filename_suffix: str = "",
        version: Version | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        """Describe where the versions lie and how one partition is stored.

        Args:
            path: The local folder holding one subfolder per version.
            dataset: The dataset type (or config) of one partition, e.g.
                ``pandas.ParquetDataset``.
            filename_suffix: Appended to each partition id, e.g. ``.parquet``.
            version: Set by Kedro when the catalog entry has ``versioned: true``.
            metadata: Free metadata, ignored here.
        """
        if version is None:
            raise DatasetError(
                f"VersionedPartitionedDataset at '{path}' needs `versioned: true` in "
                f"its catalog entry: every run writes its own version folder."
            )
        self._root = Path(path)
        self._dataset = dataset
        self._suffix = filename_suffix
        self._load_version = version.load
        self._save_version = str(version.save or generate_timestamp())
        self.metadata = metadata

    @property
    def save_path(self) -> Path:
        """The version folder this run's partitions appear in once committed."""
        return self._root / self._save_version

    @property
    def staging_path(self) -> Path:
        """The hidden folder this run's partitions are written to until committed."""
        return self._root / f".{self._save_version}{STAGING_SUFFIX}"

    def versions(self) -> list[str]:
        """Every committed version folder, oldest first (hidden staging ignored)."""
        if not self._root.is_dir():
            return []
        return sorted(
            entry.name
            for entry in self._root.iterdir()
            if entry.is_dir() and not entry.name.startswith(".")
        )

    def commit(self) -> Path | None:
        """Make what this run staged its version folder, in one atomic rename.

        Returns:
            The version folder, or None if this run staged nothing.

        Raises:
            DatasetError: the version folder exists already (never overwritten).
        """
        staging = self.staging_path
        if not staging.is_dir():
            return None
        if self.save_path.exists():
            raise DatasetError(
                f"Version folder '{self.save_path}' exists already, so this run's "
                f"partitions stay staged in '{staging}': versioned outputs are never "
                f"overwritten."
            )
        os.replace(staging, self.save_path)
        logger.info("Committed version %s of '%s'", self._save_version, self._root)
        return self.save_path

    def discard(self) -> None:
        """Delete what this run staged (nothing becomes visible)."""
        if self.staging_path.exists():
            shutil.rmtree(self.staging_path)
            logger.info(
                "Discarded the partial version %s of '%s'",
                self._save_version,
                self._root,
            )

    def _partitions(self, folder: Path) -> PartitionedDataset:
        return PartitionedDataset(
            path=str(folder), dataset=self._dataset, filename_suffix=self._suffix
        )

    def _save(self, data: dict[str, Any]) -> None:
        if self.save_path.exists():
            raise DatasetError(
                f"Version folder '{self.save_path}' exists already: versioned outputs "
                f"are never overwritten."
            )
        existing = [
            partition_id
            for partition_id in data
            if (self.staging_path / f"{partition_id}{self._suffix}").exists()
        ]
        if existing:
            raise DatasetError(
                f"Partitions {sorted(existing)} were already written by this run "
                f"(version '{self._save_version}' of '{self._root}'): versioned "
                f"outputs are never overwritten."
            )
        self._partitions(self.staging_path).save(data)

    def _load(self) -> dict[str, Callable[[], Any]]:
        version = self._load_version
        if version is None:
            if self.staging_path.is_dir():  # the run reads back what it wrote
                return self._partitions(self.staging_path).load()
            versions = self.versions()
            if not versions:
                raise DatasetError(
                    f"No version saved yet under '{self._root}': run the pipeline "
                    f"that writes it first."
                )
            version = versions[-1]
        folder = self._root / str(version)
        if str(version).startswith(".") or not folder.is_dir():
            raise DatasetError(f"Version '{version}' not found under '{self._root}'.")
        return self._partitions(folder).load()

    def _exists(self) -> bool:
        return bool(self.versions())

    def _describe(self) -> dict[str, Any]:
        # ``path`` is the version folder this run's partitions appear in: the access
        # policy checks it (the staging folder is its hidden sibling, in the same zone)
        # and the run summary / lineage tags name it exactly.
        return {"path": str(self.save_path), "suffix": self._suffix}


class SaveVersionDataset(AbstractDataset[Any, str]):
    """The run's Kedro save version, for nodes that must name what the run wrote.

    Loads the timestamp every ``versioned: true`` dataset of the run saves under
    (e.g. ``2025-03-24T10.15.00.123Z``). Read-only; needs ``versioned: true``.
    """

    def __init__(
        self, version: Version | None = None, metadata: dict[str, Any] | None = None
    ) -> None:
        """Keep the version Kedro hands to versioned catalog entries.

        Args:
            version: Set by Kedro when the catalog entry has ``versioned: true``.
            metadata: Free metadata, ignored here.
        """
        self._version = version
        self.metadata = metadata

    def _load(self) -> str:
        if self._version is None or self._version.save is None:
            raise DatasetError(
                "SaveVersionDataset needs `versioned: true` in its catalog entry."
            )
        return str(self._version.save)

    def _save(self, data: Any) -> None:
        raise DatasetError("SaveVersionDataset is read-only.")

    def _describe(self) -> dict[str, Any]:
        return {"save_version": self._version.save if self._version else None}


def save_version_time(save_version: str) -> dt.datetime:
    """A run's Kedro save version read as the UTC time it names.

    Raises:
        ConfigError: ``save_version`` is not a Kedro timestamp.
    """
    try:
        moment = dt.datetime.strptime(save_version, VERSION_FORMAT)
    except ValueError as err:
        raise ConfigError(
            f"The run's save version {save_version!r} is not a Kedro timestamp "
            f"({VERSION_FORMAT}).\nHint: let Kedro choose the save version."
        ) from err
    return moment.replace(tzinfo=dt.UTC)
