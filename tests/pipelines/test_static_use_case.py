"""The README's own-data recipe (a static table) through the real pipelines, in-process.

data_processing -> training -> evaluation on sklearn's diabetes table with the
parameters conf resolves from the README's conf/base/use_case.yml: one file, no time
column, no key. A Kedro runner on an in-memory catalog, as the spaceflights starter
tests pipelines; the `kedro` commands run in tests/test_own_data.py (slow).
"""

from __future__ import annotations

import shutil

import pandas as pd
import pytest
from kedro.io import DataCatalog, MemoryDataset
from kedro.runner import SequentialRunner
from matplotlib.figure import Figure

from modelops.pipelines import data_processing, evaluation, training
from modelops.pipelines.data_processing.nodes import sample_rows
from tests.conftest import PROJECT_ROOT
from tests.test_use_case import loader, readme_use_case


@pytest.fixture(scope="module")
def parameters(tmp_path_factory):
    conf = tmp_path_factory.mktemp("static") / "conf"
    shutil.copytree(PROJECT_ROOT / "conf", conf, ignore=shutil.ignore_patterns("local"))
    (conf / "base" / "use_case.yml").write_text(readme_use_case("diabetes"))
    parameters = loader(conf, env="dev")["parameters"]
    parameters["model"]["kwargs"]["max_iter"] = 30
    return parameters


class _Kept(MemoryDataset):
    """A MemoryDataset the runner does not release after its last consumer."""

    def _release(self) -> None:
        pass


def _catalog(parameters: dict, source: pd.DataFrame) -> DataCatalog:
    datasets = {"source_partitions": MemoryDataset(source)}
    for name in (
        "source",
        "features",
        "split",
        "model",
        "baseline",
        "importance",
        "monitoring",
    ):
        datasets[f"params:{name}"] = MemoryDataset(parameters[name])
    datasets["params:source.sample"] = MemoryDataset(parameters["source"]["sample"])
    return DataCatalog(datasets)


def test_a_static_table_runs_through_processing_training_and_evaluation(parameters):
    from sklearn.datasets import load_diabetes  # noqa: PLC0415

    source = load_diabetes(as_frame=True, scaled=False).frame
    source = pd.concat([source, source.iloc[[3]]], ignore_index=True)  # a repeated row
    pipeline = (
        data_processing.create_pipeline()
        + training.create_pipeline()
        + evaluation.create_pipeline()
    )
    catalog = _catalog(parameters, source)
    # The split manifest also feeds the reference profile: keep it to look at.
    catalog["split_manifest"] = _Kept()
    free = SequentialRunner().run(pipeline, catalog)
    outputs = {name: dataset.load() for name, dataset in free.items()}
    outputs["split_manifest"] = catalog.load("split_manifest")

    manifest = outputs["source_manifest"]
    assert manifest["first_partition"] == "single_file"
    assert manifest["rows"] == 443
    # dev: a 25 % sample by a hash of whole rows; identical rows are kept once.
    sampled = sample_rows(source, parameters["source"]["sample"])
    split = outputs["split_manifest"]
    assert split["strategy"] == "random"
    assert split["train_rows"] + split["test_rows"] == len(sampled.drop_duplicates())
    assert 80 < split["train_rows"] + split["test_rows"] < 140
    metrics = outputs["evaluation_metrics"]
    assert metrics["rmse"] < metrics["baseline_rmse"]
    assert metrics["rows"] == split["test_rows"]
    assert isinstance(outputs["residuals_plot"], Figure)
    importance = outputs["feature_importance"]
    assert set(importance["feature"]) == set(parameters["features"]["numeric"])
    # Without a time column or keys the reference is the whole train + test data.
    profile = outputs["reference_profile"]
    assert profile["reference_rows"]["rows"] == len(sampled.drop_duplicates())
    assert set(profile["numeric"]) == set(parameters["features"]["numeric"])
