"""Unit tests of the deployment gate: the candidate must beat the bar on the same data."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from kedro.io import DataCatalog, MemoryDataset
from kedro.runner import SequentialRunner
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.pipeline import Pipeline

from modelops.errors import ConfigError, DeploymentRejected
from modelops.lineage import candidate_fingerprint
from modelops.modeling import build_model, model_inputs
from modelops.pipelines.deployment.nodes import (
    decide_deployment,
    enforce_deployment_gate,
    prepare_registration,
)
from modelops.pipelines.deployment.pipeline import create_pipeline
from modelops.pipelines.training.nodes import train_model

GATE = {"metric": "rmse", "business_threshold": 10.0, "min_improvement": 0.05}
MODEL = {
    "class": "sklearn.ensemble.HistGradientBoostingRegressor",
    "kwargs": {"max_iter": 15},
    "seed": 0,
}
SPLIT = {"train_sha256": "a" * 64, "test_sha256": "b" * 64}
ARTIFACTS = {"onnx": True, "tolerance": 1e-9, "verify_rows": 1000, "trusted_types": []}


class ConstantModel:
    """An incumbent that predicts one value: its RMSE on a test set is easy to know."""

    def __init__(self, value: float) -> None:
        self.value = value

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        return np.full(len(frame), self.value)


@pytest.fixture
def features(data_processing_params):
    return data_processing_params["features"]


@pytest.fixture
def test_set(model_input_table):
    return model_input_table.tail(500).reset_index(drop=True)


def _incumbent(value, test_set, **tags):
    return {
        "alias": "champion",
        "version": 3,
        "run_id": "r1",
        "tags": tags,
        "model": ConstantModel(value),
    }


def test_first_model_must_beat_the_business_threshold(test_set, features):
    ok = decide_deployment({"rmse": 4.0}, None, test_set, SPLIT, MODEL, features, GATE)
    assert ok["approved"] and ok["outcome"] == "approved"
    assert "business threshold 10" in ok["reason"]
    bad = decide_deployment(
        {"rmse": 12.0}, None, test_set, SPLIT, MODEL, features, GATE
    )
    assert not bad["approved"] and bad["outcome"] == "rejected"


def test_incumbent_is_scored_now_on_the_same_test_set(test_set, features):
    mean = float(test_set["rentals"].mean())
    incumbent_rmse = float(np.sqrt(((test_set["rentals"] - mean) ** 2).mean()))
    incumbent = _incumbent(mean, test_set)
    better = decide_deployment(
        {"rmse": incumbent_rmse * 0.9},
        incumbent,
        test_set,
        SPLIT,
        MODEL,
        features,
        GATE,
    )
    assert better["approved"]
    assert better["incumbent_value"] == pytest.approx(incumbent_rmse)
    assert better["incumbent_version"] == 3
    within_margin = decide_deployment(
        {"rmse": incumbent_rmse * 0.97},
        incumbent,
        test_set,
        SPLIT,
        MODEL,
        features,
        GATE,
    )
    assert not within_margin["approved"]  # better, but not by the 5 % margin
    assert f"on the same {len(test_set)} test rows" in within_margin["reason"]


def test_a_better_incumbent_still_needs_the_threshold(test_set, features):
    incumbent = _incumbent(1e6, test_set)  # terrible incumbent
    decision = decide_deployment(
        {"rmse": 11.0}, incumbent, test_set, SPLIT, MODEL, features, GATE
    )
    assert not decision["approved"]


def test_higher_is_better_metrics(test_set, features):
    gate = {"metric": "r2", "business_threshold": 0.5, "min_improvement": 0.0}
    assert decide_deployment({"r2": 0.8}, None, test_set, SPLIT, MODEL, features, gate)[
        "approved"
    ]
    assert not decide_deployment(
        {"r2": 0.2}, None, test_set, SPLIT, MODEL, features, gate
    )["approved"]


def test_retrained_incumbent_is_unchanged_not_rejected(
    model_input_table, test_set, features
):
    model = train_model(model_input_table, features, MODEL)
    from modelops.modeling import model_inputs  # noqa: PLC0415

    rmse = float(
        np.sqrt(
            (
                (model.predict(model_inputs(test_set, features)) - test_set["rentals"])
                ** 2
            ).mean()
        )
    )
    tags = {
        "modelops.train_sha256": SPLIT["train_sha256"],
        "modelops.model_config": json.dumps(MODEL, sort_keys=True),
    }
    incumbent = {
        "alias": "dev",
        "version": 1,
        "run_id": "r",
        "tags": tags,
        "model": model,
    }
    decision = decide_deployment(
        {"rmse": rmse}, incumbent, test_set, SPLIT, MODEL, features, GATE
    )
    assert decision["unchanged"] and decision["outcome"] == "unchanged"
    assert enforce_deployment_gate(decision) == decision
    other_data = {**SPLIT, "train_sha256": "c" * 64}
    changed = decide_deployment(
        {"rmse": rmse}, incumbent, test_set, other_data, MODEL, features, GATE
    )
    assert not changed["unchanged"] and changed["outcome"] == "rejected"


def test_rejection_is_one_paragraph_for_the_scheduler_log(test_set, features):
    decision = decide_deployment(
        {"rmse": 12.5}, None, test_set, SPLIT, MODEL, features, GATE
    )
    with pytest.raises(DeploymentRejected) as info:
        enforce_deployment_gate(decision)
    message = str(info.value)
    assert "\n" not in message
    assert "candidate rmse 12.5000" in message
    assert "business threshold 10" in message
    assert "Nothing was registered and no alias moved" in message


def test_unknown_gate_metric(test_set, features):
    with pytest.raises(ConfigError, match=r"gate\.metric is 'auc'"):
        decide_deployment(
            {"auc": 1},
            None,
            test_set,
            SPLIT,
            MODEL,
            features,
            {**GATE, "metric": "auc"},
        )


def test_registration_bundle_carries_lineage_and_a_small_example(
    model_input_table, features
):
    model = train_model(model_input_table, features, MODEL)
    decision = {"approved": True, "reason": "ok"}
    source = {
        "first_partition": "2025-03-01",
        "last_partition": "2025-03-21",
        "partition_count": 21,
        "rows": 3024,
    }
    split = {**SPLIT, "strategy": "time", "cutoff": "2025-03-15T00:00:00"}
    bundle = prepare_registration(
        model,
        model_input_table,
        model_input_table.tail(200),
        decision,
        split,
        source,
        {"rmse": 3.2},
        MODEL,
        features,
        ARTIFACTS,
    )
    assert len(bundle["input_example"]) == 1000
    assert "rentals" not in bundle["input_example"].columns
    assert bundle["tags"]["train_sha256"] == "a" * 64
    assert bundle["tags"]["source_last_partition"] == "2025-03-21"
    assert json.loads(bundle["tags"]["model_config"]) == MODEL
    assert bundle["tags"]["metric.rmse"] == "3.2"
    # The ONNX form is verified on the test set's rows, not the training rows.
    assert bundle["artifacts"].form == "onnx"
    assert bundle["artifacts"].verification["held_out_rows"] == 200
    assert bundle["artifacts"].tags()["modelops.onnx.passed"] == "true"
    unchanged = prepare_registration(
        model,
        model_input_table,
        model_input_table.tail(200),
        {"unchanged": True, "reason": "same"},
        split,
        source,
        {},
        MODEL,
        features,
        ARTIFACTS,
    )
    assert unchanged["model"] is None
    assert unchanged["artifacts"] is None  # nothing exported for a reused version


# --- threshold first, idempotent per env -------------------------------------------

CODE = {"git_commit": "1" * 40, "git_dirty": "false", "code_sha256": "c" * 64}


def _fingerprint(features, code=CODE, model=MODEL):
    return candidate_fingerprint(
        train_sha256=SPLIT["train_sha256"],
        test_sha256=SPLIT["test_sha256"],
        model_config=model,
        features=features,
        git_commit=code["git_commit"],
        code_sha256=code["code_sha256"],
    )


def _current(alias, version, fingerprint):
    """The env's own alias version, as current_alias_version loads it (no model)."""
    return {
        "alias": alias,
        "version": version,
        "run_id": "r0",
        "tags": {"modelops.fingerprint": fingerprint},
        "model": None,
    }


def test_a_candidate_identical_to_the_envs_own_alias_is_unchanged(test_set, features):
    """acceptance: challenger (v4) != champion (v3); a re-run must not register v5."""
    champion = _incumbent(4.0, test_set)  # scores far worse than 3.0: beatable
    current = _current("challenger", 4, _fingerprint(features))
    decision = decide_deployment(
        {"rmse": 3.0}, champion, test_set, SPLIT, MODEL, features, GATE, current, CODE
    )
    assert decision["outcome"] == "unchanged" and decision["unchanged"]
    assert not decision["approved"]
    assert decision["fingerprint"] == _fingerprint(features)
    assert decision["unchanged_version"] == 4
    assert (
        "The candidate is challenger version 4 (same train and test data"
        in (decision["reason"])
    )
    assert enforce_deployment_gate(decision) == decision  # not a failure
    bundle = prepare_registration(
        None, test_set, test_set, decision, SPLIT, {}, {}, MODEL, features, ARTIFACTS
    )
    assert bundle["model"] is None  # nothing to register


@pytest.mark.parametrize(
    "changed",
    [
        {"code": {**CODE, "git_commit": "2" * 40}},
        {"code": {**CODE, "code_sha256": "d" * 64}},  # an uncommitted edit
        {"model": {**MODEL, "seed": 1}},
        {"split": {**SPLIT, "test_sha256": "e" * 64}},
    ],
    ids=["other-commit", "other-code", "other-seed", "other-test-set"],
)
def test_a_candidate_that_differs_from_the_own_alias_is_not_unchanged(
    test_set, features, changed
):
    current = _current("challenger", 4, _fingerprint(features))
    decision = decide_deployment(
        {"rmse": 3.0},
        None,
        test_set,
        changed.get("split", SPLIT),
        changed.get("model", MODEL),
        features,
        GATE,
        current,
        changed.get("code", CODE),
    )
    assert decision["outcome"] == "approved"
    assert decision["fingerprint"] != _fingerprint(features)


def test_the_deployed_model_that_misses_the_threshold_fails_the_run(test_set, features):
    """Threshold first: unchanged data, a threshold the deployed model misses."""
    strict = {**GATE, "business_threshold": 0.000001}
    current = _current("dev", 1, _fingerprint(features))
    decision = decide_deployment(
        {"rmse": 3.25}, None, test_set, SPLIT, MODEL, features, strict, current, CODE
    )
    assert decision["outcome"] == "rejected"
    assert not decision["approved"] and not decision["unchanged"]
    with pytest.raises(DeploymentRejected) as info:
        enforce_deployment_gate(decision)
    message = str(info.value)
    assert message == (
        "Deployment gate rejected: the deployed model itself misses the business "
        "requirement: the candidate is dev version 1 (same train and test data, model "
        f"and feature config and code: fingerprint {_fingerprint(features)[:12]}), and "
        f"it scores rmse 3.2500 on the current {len(test_set)} test rows, not below "
        "the business threshold 1e-06 (gate.business_threshold). Nothing was "
        "registered and no alias moved. Hint: train a model that meets the "
        "requirement (conf/base/parameters_training.yml); if the requirement itself "
        "is wrong, change use_case.gate.business_threshold in "
        "conf/base/use_case.yml."
    )


def test_a_retrained_incumbent_that_misses_the_threshold_fails_too(test_set, features):
    mean = float(test_set["rentals"].mean())
    rmse = float(np.sqrt(((test_set["rentals"] - mean) ** 2).mean()))
    tags = {
        "modelops.train_sha256": SPLIT["train_sha256"],
        "modelops.model_config": json.dumps(MODEL, sort_keys=True),
    }
    incumbent = _incumbent(mean, test_set, **tags)
    strict = {**GATE, "business_threshold": rmse / 2}
    decision = decide_deployment(
        {"rmse": rmse}, incumbent, test_set, SPLIT, MODEL, features, strict
    )
    assert decision["outcome"] == "rejected"
    with pytest.raises(
        DeploymentRejected,
        match=r"the deployed model itself misses the business requirement: the "
        r"candidate is champion version 3 retrained on the same data",
    ):
        enforce_deployment_gate(decision)


def test_the_bundle_carries_the_fingerprint(model_input_table, features):
    decision = {"approved": True, "reason": "ok", "fingerprint": "9" * 64}
    source = {
        "first_partition": "a",
        "last_partition": "b",
        "partition_count": 1,
        "rows": 1,
    }
    model = train_model(model_input_table, features, MODEL)
    bundle = prepare_registration(
        model,
        model_input_table,
        model_input_table.tail(50),
        decision,
        SPLIT,
        source,
        {},
        MODEL,
        features,
        ARTIFACTS,
    )
    assert bundle["fingerprint"] == "9" * 64
    assert bundle["tags"]["fingerprint"] == "9" * 64


class Shift(TransformerMixin, BaseEstimator):
    """A custom step whose type skops does not trust."""

    def fit(self, X, y=None):
        return self

    def transform(self, X):
        return X


def test_a_model_with_an_untrusted_type_is_refused_before_registration(
    model_input_table, features
):
    steps = build_model(features, MODEL).steps
    model = Pipeline([*steps[:-1], ("shift", Shift()), steps[-1]])
    model.fit(model_inputs(model_input_table, features), model_input_table["rentals"])
    decision = {"approved": True, "reason": "ok", "fingerprint": "9" * 64}
    source = {"first_partition": "a", "last_partition": "b"}
    source.update(partition_count=1, rows=1)

    with pytest.raises(
        ConfigError,
        match=r"holds type\(s\) \['[\w.]*Shift'\] outside the trusted types.*"
        r"Nothing was registered\.\nHint: .*model_artifacts\.trusted_types in "
        r"conf/base/parameters_deployment\.yml",
    ):
        prepare_registration(
            model,
            model_input_table,
            model_input_table.tail(50),
            decision,
            SPLIT,
            source,
            {},
            MODEL,
            features,
            ARTIFACTS,
        )


def test_invalid_artifact_settings_fail_even_for_an_unchanged_candidate(
    test_set, features
):
    decision = {"unchanged": True, "reason": "same", "fingerprint": "9" * 64}

    with pytest.raises(
        ConfigError,
        match=r"^model_artifacts\.tolerance is -1; expected .*\nHint: fix "
        r"model_artifacts\.tolerance in conf/base/parameters_deployment\.yml",
    ):
        prepare_registration(
            None,
            test_set,
            test_set,
            decision,
            SPLIT,
            {},
            {},
            MODEL,
            features,
            {**ARTIFACTS, "tolerance": -1},
        )


def test_the_registration_node_verifies_on_the_test_set_from_the_catalog(
    model_input_table, features, test_set, base_parameters
):
    model = train_model(model_input_table, features, MODEL)
    catalog = DataCatalog(
        {
            "trained_model": MemoryDataset(model),
            "train_set": MemoryDataset(model_input_table),
            "test_set": MemoryDataset(test_set),
            "approved_decision": MemoryDataset({"approved": True, "reason": "ok"}),
            "split_manifest": MemoryDataset(SPLIT),
            "source_manifest": MemoryDataset(
                {
                    "first_partition": "a",
                    "last_partition": "b",
                    "partition_count": 1,
                    "rows": 1,
                }
            ),
            "evaluation_metrics": MemoryDataset({"rmse": 3.0}),
            "params:model": MemoryDataset(MODEL),
            "params:features": MemoryDataset(features),
            "params:model_artifacts": MemoryDataset(base_parameters["model_artifacts"]),
            "registered_model": MemoryDataset(),
        }
    )
    pipeline = create_pipeline().only_nodes("register_model_node")

    SequentialRunner().run(pipeline, catalog)

    artifacts = catalog.load("registered_model")["artifacts"]
    assert artifacts.form == "onnx"
    assert artifacts.verification["held_out_rows"] == len(test_set)
    assert artifacts.verification["tolerance"] == 1e-9  # from the shipped conf
