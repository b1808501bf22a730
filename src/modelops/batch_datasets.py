"""Datasets for batch outputs written chunk by chunk: one folder per run's save version."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from kedro.io import AbstractDataset, DatasetError, Version
from kedro_datasets.partitions import PartitionedDataset


class VersionedPartitionedDataset(AbstractDataset[dict[str, Any], dict[str, Any]]):
    """A PartitionedDataset whose every run writes its own folder: never overwritten.

    Kedro's ``versioned: true`` does not apply to ``PartitionedDataset``; this one
    takes it. ``save`` writes ``<path>/<save_version>/<partition id><suffix>`` (the
    save version is the run's, the same timestamp every versioned dataset of the run
    saves under) and may be called many times in one run, each call adding partitions
    (a generator node saves chunk by chunk). It refuses to write a partition that
    already exists, so nothing is ever overwritten. Values that are callables are
    called at save time (lazy saving), as in ``PartitionedDataset``.

    ``load`` returns ``{partition id: loader}`` for the load version: the one given
    (``kedro run --load-versions name:VERSION``), else the newest folder.
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
            path: The folder holding one subfolder per version.
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
        self._version = version
        self.metadata = metadata

    @property
    def save_path(self) -> Path:
        """The folder this run's partitions are written to."""
        return self._root / str(self._version.save)

    def versions(self) -> list[str]:
        """Every version folder written so far, oldest first."""
        if not self._root.is_dir():
            return []
        return sorted(entry.name for entry in self._root.iterdir() if entry.is_dir())

    def _partitions(self, folder: Path) -> PartitionedDataset:
        return PartitionedDataset(
            path=str(folder), dataset=self._dataset, filename_suffix=self._suffix
        )

    def _save(self, data: dict[str, Any]) -> None:
        existing = [
            partition_id
            for partition_id in data
            if (self.save_path / f"{partition_id}{self._suffix}").exists()
        ]
        if existing:
            raise DatasetError(
                f"Partitions {sorted(existing)} already exist in version folder "
                f"'{self.save_path}': versioned outputs are never overwritten."
            )
        self._partitions(self.save_path).save(data)

    def _load(self) -> dict[str, Callable[[], Any]]:
        version = self._version.load
        if version is None:
            versions = self.versions()
            if not versions:
                raise DatasetError(
                    f"No version saved yet under '{self._root}': run the pipeline "
                    f"that writes it first."
                )
            version = versions[-1]
        folder = self._root / str(version)
        if not folder.is_dir():
            raise DatasetError(f"Version '{version}' not found under '{self._root}'.")
        return self._partitions(folder).load()

    def _exists(self) -> bool:
        return bool(self.versions())

    def _describe(self) -> dict[str, Any]:
        # ``path`` is the version folder this run writes: the access policy checks it
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
