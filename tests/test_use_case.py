"""The use case lives in one file, conf/base/use_case.yml, that the rest of conf reads."""

from __future__ import annotations

import re
import shutil
import textwrap
from pathlib import Path
from typing import Any

import pytest
from kedro.config import OmegaConfigLoader
from kedro.io import DataCatalog

from modelops.contracts import parse_contract
from modelops.modeling import check_features
from modelops.settings import CONFIG_LOADER_ARGS
from tests.conftest import PROJECT_ROOT

README = PROJECT_ROOT / "README.md"


def loader(
    conf: Path, env: str = "base", runtime_params: dict[str, Any] | None = None
) -> OmegaConfigLoader:
    return OmegaConfigLoader(
        conf_source=str(conf),
        env=env,
        runtime_params=runtime_params,
        **CONFIG_LOADER_ARGS,
    )


def readme_use_case(name: str) -> str:
    """The use_case.yml the README's recipe tells the user to write, as text."""
    found = re.search(
        rf"<!-- use_case\.yml: {name} -->\n *```yaml\n(.*?)\n *```",
        README.read_text(),
        re.S,
    )
    assert found, f"README has no use_case.yml block for {name}"
    return textwrap.dedent(found.group(1)) + "\n"


@pytest.fixture
def conf(tmp_path) -> Path:
    """A copy of the project's conf/ (without local) to edit."""
    copy = tmp_path / "conf"
    shutil.copytree(PROJECT_ROOT / "conf", copy, ignore=shutil.ignore_patterns("local"))
    return copy


def test_the_use_case_reaches_parameters_catalog_and_globals():
    config = loader(PROJECT_ROOT / "conf")
    use_case = config["globals"]["use_case"]
    parameters = config["parameters"]
    assert parameters["features"] == use_case["features"]
    assert parameters["source"]["contract"] == use_case["contract"]
    assert parameters["source"]["sample"]["key_columns"] == ["timestamp", "station_id"]
    assert parameters["split"] == use_case["split"]
    assert parameters["baseline"] == use_case["baseline"]
    # The gate keeps its shape; only its values come from the use case.
    assert parameters["gate"] == {
        "metric": "rmse",
        "business_threshold": 10.0,
        "min_improvement": 0.0,
    }
    assert parameters["promotion"]["metric"] == "rmse"
    assert config["catalog"]["source_partitions"] == {
        "type": "partitions.PartitionedDataset",
        "path": "data/source/bike_rentals",
        "dataset": {"type": "pandas.ParquetDataset"},
        "filename_suffix": ".parquet",
    }
    assert config["globals"]["registered_model_name"] == "modelops-bike-demand"
    # The default use case is the simulator's bike data, as before.
    assert parameters["features"]["target"] == "rentals"
    assert parameters["baseline"]["group_by"] == ["station_id"]
    assert parameters["split"]["test_days"] == 14


def test_run_params_still_override_use_case_values():
    config = loader(
        PROJECT_ROOT / "conf",
        env="dev",
        runtime_params={
            "features": {"target": "humidity_pct"},
            "split": {"test_days": 3},
            "baseline": {"group_by": []},
            "gate": {"business_threshold": 99.0},
        },
    )
    parameters = config["parameters"]
    assert parameters["features"]["target"] == "humidity_pct"
    assert parameters["features"]["numeric"][0] == "station_capacity"  # kept
    assert parameters["split"] == {**parameters["split"], "test_days": 3}
    assert parameters["split"]["strategy"] == "time"
    assert parameters["baseline"] == {
        "group_by": [],
        "time_grains": ["day_of_week", "hour"],
    }
    assert parameters["gate"]["business_threshold"] == 99.0
    assert parameters["source"]["sample"]["fraction"] == 0.25  # conf/dev still applies


def test_an_env_can_override_one_use_case_key(conf):
    (conf / "acceptance" / "use_case.yml").write_text(
        "use_case:\n  gate:\n    business_threshold: 7.5\n"
    )
    parameters = loader(conf, env="acceptance")["parameters"]
    assert parameters["gate"]["business_threshold"] == 7.5
    assert parameters["gate"]["metric"] == "rmse"
    assert parameters["features"]["target"] == "rentals"


def test_the_readme_recipe_is_a_complete_use_case(conf):
    (conf / "base" / "use_case.yml").write_text(readme_use_case("diabetes"))
    config = loader(conf, env="dev")
    parameters = config["parameters"]
    features = parameters["features"]
    assert features["time_column"] is None
    assert features["key_columns"] == []
    check_features(features)
    contract = parse_contract(parameters["source"]["contract"])
    assert contract.unique_key == ()
    assert "target" in contract.column_names
    assert parameters["split"]["strategy"] == "random"
    assert parameters["source"]["sample"] == {
        "fraction": 0.25,
        "key_columns": [],
        "seed": 0,
    }
    assert parameters["source"]["partition_date_format"] == "%Y-%m-%d"  # the default
    assert parameters["baseline"] == {"group_by": [], "time_grains": []}
    assert parameters["gate"]["business_threshold"] == 70.0
    catalog = config["catalog"]
    assert catalog["source_partitions"] == {
        "type": "pandas.CSVDataset",
        "filepath": "data/source/diabetes.csv",
    }
    assert config["globals"]["registered_model_name"] == "diabetes-progression"
    dataset = DataCatalog.from_config({"source": catalog["source_partitions"]})
    assert type(dataset.get("source")).__name__ == "CSVDataset"
