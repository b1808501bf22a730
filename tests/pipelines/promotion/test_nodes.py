"""Unit tests of promotion: the gate's threshold comes first, hints name real files."""

from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd
import pytest

from modelops.errors import DeploymentRejected, PromotionError
from modelops.pipelines.deployment.nodes import enforce_deployment_gate
from modelops.pipelines.promotion.nodes import (
    check_reproduction,
    decide_promotion,
    request_promotion,
    score_challenger,
)
from tests.conftest import PROJECT_ROOT

GATE = {"metric": "rmse", "business_threshold": 1000.0, "min_improvement": 0.0}
MODEL = {"class": "sklearn.linear_model.Ridge", "kwargs": {}, "seed": 0}


class ConstantModel:
    """Predicts one value."""

    def __init__(self, value: float) -> None:
        self.value = value

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        return np.full(len(frame), self.value)


@pytest.fixture
def features(data_processing_params):
    return data_processing_params["features"]


@pytest.fixture
def test_set(model_input_table):
    return model_input_table.tail(300).reset_index(drop=True)


def _version(alias, version, value):
    return {
        "alias": alias,
        "version": version,
        "run_id": f"r{version}",
        "tags": {
            "modelops.train_sha256": "a" * 64,
            "modelops.model_config": json.dumps(MODEL, sort_keys=True),
            "modelops.metric.rmse": "5.0",
        },
        "model": ConstantModel(value),
    }


def test_the_champion_promoted_again_is_unchanged(test_set, features):
    mean = float(test_set["rentals"].mean())
    champion = _version("champion", 3, mean)
    challenger = {**_version("challenger", 3, mean), "alias": "challenger"}
    metrics = score_challenger(challenger, test_set, features)
    decision = decide_promotion(challenger, metrics, champion, test_set, features, GATE)
    assert decision["outcome"] == "unchanged"
    assert (
        request_promotion(challenger, enforce_deployment_gate(decision))["version"]
        is None
    )


def test_a_champion_that_misses_the_threshold_is_not_unchanged(test_set, features):
    """Threshold first: promoting the champion again must fail, not pass silently."""
    mean = float(test_set["rentals"].mean())
    champion = _version("champion", 3, mean)
    challenger = _version("challenger", 3, mean)
    metrics = score_challenger(challenger, test_set, features)
    strict = {**GATE, "business_threshold": 0.000001}
    decision = decide_promotion(
        challenger, metrics, champion, test_set, features, strict
    )
    assert decision["outcome"] == "rejected" and not decision["unchanged"]
    with pytest.raises(
        DeploymentRejected,
        match=r"the deployed model itself misses the business requirement: the "
        r"candidate is champion version 3 \(the challenger is already champion\), and "
        r"it scores rmse [0-9.]+ on the current 300 test rows, not below the business "
        r"threshold 1e-06 \(gate\.business_threshold\)\. Nothing was registered and "
        r"no alias moved\. Hint: .*use_case\.gate\.business_threshold in "
        r"conf/base/use_case\.yml\.",
    ):
        enforce_deployment_gate(decision)


def test_promotion_hints_name_the_params_file_that_exists():
    challenger = _version("challenger", 2, 1.0)
    del challenger["tags"]["modelops.metric.rmse"]
    with pytest.raises(PromotionError) as refused:
        check_reproduction(
            {"rmse": 5.0}, challenger, MODEL, {"metric": "rmse", "tolerance": 0.01}
        )
    message = str(refused.value)
    named = re.findall(r"conf/[\w/]+\.yml", message)
    assert named[0] == "conf/base/parameters_promotion.yml"
    assert (PROJECT_ROOT / named[0]).exists()
    assert "conf/prod/parameters_promotion.yml you create" in message
