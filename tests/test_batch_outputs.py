"""Atomic batch outputs: a run's partitions appear whole when it succeeds, or never."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from kedro.framework.hooks import _create_hook_manager, hook_impl
from kedro.io import DataCatalog, DatasetError, MemoryDataset, Version
from kedro.pipeline import Node, Pipeline
from kedro.runner import SequentialRunner

from modelops.batch_datasets import VersionedPartitionedDataset
from modelops.errors import DataContractError
from modelops.hooks import StagedOutputHooks

OLD = "2025-01-01T00.00.00.000Z"
NEW = "2025-01-02T00.00.00.000Z"
DAYS = ["2025-03-01", "2025-03-02", "2025-03-03"]


def versioned(root: Path, save: str, load: str | None = None):
    return VersionedPartitionedDataset(
        path=str(root),
        dataset="pandas.ParquetDataset",
        filename_suffix=".parquet",
        version=Version(load, save),
    )


def listing(root: Path) -> list[str]:
    """Everything in the output root, hidden entries included."""
    return sorted(entry.name for entry in root.iterdir()) if root.is_dir() else []


def frame(value: int) -> pd.DataFrame:
    return pd.DataFrame({"x": [value, value + 1]})


# --- the dataset ----------------------------------------------------------------------


def test_saved_partitions_stay_hidden_until_commit(tmp_path):
    root = tmp_path / "predictions"
    old = versioned(root, OLD)
    old.save({"day1": frame(1)})
    assert old.commit() == root / OLD
    run = versioned(root, NEW)
    run.save({"day1": frame(5)})
    run.save({"day2": lambda: frame(7)})  # chunk by chunk, lazily

    assert listing(root) == [f".{NEW}.partial", OLD]
    assert run.versions() == [OLD]
    assert run._describe()["path"] == str(root / NEW)  # where it will appear
    reader = versioned(root, "2025-01-03T00.00.00.000Z")  # another run reads
    assert list(reader.load()) == ["day1"]
    assert reader.load()["day1"]()["x"].tolist() == [1, 2]
    assert sorted(run.load()) == ["day1", "day2"]  # a run reads what it wrote

    assert run.commit() == root / NEW
    assert listing(root) == [OLD, NEW]
    assert sorted(reader.load()) == ["day1", "day2"]
    assert reader.load()["day2"]()["x"].tolist() == [7, 8]


def test_discard_removes_the_staged_partitions_and_keeps_older_versions(tmp_path):
    root = tmp_path / "predictions"
    old = versioned(root, OLD)
    old.save({"day1": frame(1)})
    old.commit()
    run = versioned(root, NEW)
    run.save({"day1": frame(5)})
    run.discard()
    assert listing(root) == [OLD]
    assert run.commit() is None  # nothing staged: nothing to commit
    assert listing(root) == [OLD]
    run.discard()  # twice is harmless


def test_commit_never_overwrites_a_version_folder(tmp_path):
    root = tmp_path / "predictions"
    (root / NEW).mkdir(parents=True)  # e.g. an empty folder someone made
    run = versioned(root, NEW)
    with pytest.raises(DatasetError, match="exists already"):
        run.save({"day1": frame(1)})
    (root / NEW).rmdir()
    run.save({"day1": frame(1)})
    (root / NEW).mkdir()  # appears between the save and the commit
    with pytest.raises(DatasetError, match=r"exists already, so .* stay staged"):
        run.commit()
    assert listing(root / NEW) == []


def test_hidden_folders_are_no_version(tmp_path):
    root = tmp_path / "predictions"
    run = versioned(root, NEW)
    run.save({"day1": frame(1)})
    assert not run.exists()
    with pytest.raises(DatasetError, match="No version saved yet"):
        versioned(root, OLD).load()
    with pytest.raises(DatasetError, match="not found"):
        versioned(root, OLD, load=f".{NEW}.partial").load()


# --- the hook, in a real runner ---------------------------------------------------------


def score(partitions: dict[str, Any]) -> Iterator[tuple[dict, dict]]:
    """A generator node like score_window: one chunk per partition, two outputs."""
    for day, data in partitions.items():
        if data is None:
            raise DataContractError(f"Data contract violated in partition '{day}'.")
        yield {day: data}, {day: data.assign(logged=True)}


SCORING = Pipeline(
    [Node(score, "partitions", ["predictions", "prediction_log"], name="score")]
)


def run_session(
    catalog: DataCatalog, hooks: StagedOutputHooks, pipeline: Pipeline = SCORING
) -> None:
    """Run a pipeline as KedroSession.run does: pipeline hooks around a runner."""
    manager = _create_hook_manager()
    manager.register(hooks)
    try:
        SequentialRunner().run(pipeline, catalog, manager)
    except Exception as error:
        manager.hook.on_pipeline_error(
            error=error, run_params={}, pipeline=pipeline, catalog=catalog
        )
        raise
    manager.hook.after_pipeline_run(
        run_params={}, run_result={}, pipeline=pipeline, catalog=catalog
    )


def scoring_catalog(tmp_path: Path, save: str, partitions: dict) -> DataCatalog:
    return DataCatalog(
        {
            "partitions": MemoryDataset(partitions, copy_mode="assign"),
            "predictions": versioned(tmp_path / "predictions", save),
            "prediction_log": versioned(tmp_path / "prediction_log", save),
        }
    )


class Spy(StagedOutputHooks):
    """The hook, noting what lay on disk when each chunk had been saved."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.seen: list[list[str]] = []

    @hook_impl
    def after_dataset_saved(self, dataset_name: str) -> None:
        if dataset_name == "prediction_log":
            staged = self.root / "prediction_log" / f".{NEW}.partial"
            self.seen.append(listing(staged))


def test_a_run_failing_mid_way_leaves_no_version_and_no_staging(tmp_path):
    good = {day: frame(i) for i, day in enumerate(DAYS)}
    run_session(scoring_catalog(tmp_path, OLD, good), StagedOutputHooks())
    assert listing(tmp_path / "predictions") == [OLD]

    broken = {**good, DAYS[-1]: None}  # the last partition breaks the contract
    spy = Spy(tmp_path)
    with pytest.raises(DataContractError, match="2025-03-03"):
        run_session(scoring_catalog(tmp_path, NEW, broken), spy)
    # the first chunks were written, then the run failed: all of it is gone
    assert spy.seen == [
        [f"{DAYS[0]}.parquet"],
        [f"{DAYS[0]}.parquet", f"{DAYS[1]}.parquet"],
    ]
    for name in ("predictions", "prediction_log"):
        assert listing(tmp_path / name) == [OLD], name
        reader = versioned(tmp_path / name, "2025-01-09T00.00.00.000Z")
        assert sorted(reader.load()) == DAYS  # the previous complete version

    run_session(scoring_catalog(tmp_path, NEW, good), StagedOutputHooks())  # re-run
    for name in ("predictions", "prediction_log"):
        assert listing(tmp_path / name) == [OLD, NEW], name
        assert listing(tmp_path / name / NEW) == [f"{day}.parquet" for day in DAYS]


def test_a_run_that_fails_after_scoring_commits_nothing(tmp_path):
    """A later node failing (e.g. the summary) fails the run: the chunks vanish too."""

    def summarise(partitions: dict) -> None:
        raise RuntimeError("tracking server gone")

    pipeline = SCORING + Pipeline([Node(summarise, "prediction_log", None)])
    catalog = scoring_catalog(tmp_path, NEW, {DAYS[0]: frame(1)})
    with pytest.raises(RuntimeError, match="tracking server gone"):
        run_session(catalog, StagedOutputHooks(), pipeline)
    assert listing(tmp_path / "predictions") == []
    assert listing(tmp_path / "prediction_log") == []
