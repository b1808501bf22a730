"""Nodes of the deployment pipeline: gate decision, its enforcement, registration request."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import mean_absolute_error, r2_score, root_mean_squared_error
from sklearn.pipeline import Pipeline

from modelops.errors import ConfigError, DeploymentRejected
from modelops.modeling import model_inputs

DEPLOYMENT_CONF = "conf/base/parameters_deployment.yml"
# metric -> (function of (actual, predicted), lower is better)
GATE_METRICS: dict[str, tuple[Callable[[Any, Any], float], bool]] = {
    "rmse": (root_mean_squared_error, True),
    "mae": (mean_absolute_error, True),
    "r2": (r2_score, False),
}
INPUT_EXAMPLE_ROWS = 1000

logger = logging.getLogger(__name__)


def decide_deployment(
    metrics: Mapping[str, float],
    incumbent: Mapping[str, Any] | None,
    test_set: pd.DataFrame,
    split_manifest: Mapping[str, Any],
    model_config: Mapping[str, Any],
    features: Mapping[str, Any],
    gate: Mapping[str, Any],
) -> dict[str, Any]:
    """Decide whether the candidate may be registered.

    The candidate must always beat the business threshold. When a model has been
    promoted (an incumbent alias exists), it must also beat that model **evaluated
    now on the same test set** by at least ``min_improvement`` (relative) — never
    its old logged metric. A candidate trained on the incumbent's train set with the
    incumbent's config that scores exactly the same is the incumbent retrained:
    ``unchanged``, nothing to register, and not a failure.

    Args:
        metrics: The candidate's metrics on the test set.
        incumbent: ``{"alias", "version", "run_id", "tags", "model"}`` or None.
        test_set: The current test set; not modified.
        split_manifest: The split's manifest (train/test sha256).
        model_config: The ``model`` parameters the candidate was trained with.
        features: The ``features`` parameters.
        gate: ``metric``, ``business_threshold``, ``min_improvement``.

    Returns:
        The decision: ``approved``, the values compared and a one-paragraph reason.
    """
    metric = gate["metric"]
    if metric not in GATE_METRICS:
        raise ConfigError(
            f"gate.metric is {metric!r}; expected one of {sorted(GATE_METRICS)}.\n"
            f"Hint: fix {DEPLOYMENT_CONF}."
        )
    score, lower_is_better = GATE_METRICS[metric]
    candidate = float(metrics[metric])
    threshold = float(gate["business_threshold"])
    margin = float(gate.get("min_improvement", 0.0))

    def beats(value: float, bar: float) -> bool:
        return value < bar if lower_is_better else value > bar

    passes_threshold = beats(candidate, threshold)
    decision: dict[str, Any] = {
        "metric": metric,
        "lower_is_better": lower_is_better,
        "candidate_value": candidate,
        "business_threshold": threshold,
        "min_improvement": margin,
        "test_rows": len(test_set),
        "incumbent_alias": None,
        "incumbent_version": None,
        "incumbent_run_id": None,
        "incumbent_value": None,
        "required_value": threshold,
    }
    comparison = f"business threshold {threshold:g}"
    approved = passes_threshold
    if incumbent is not None:
        predicted = incumbent["model"].predict(model_inputs(test_set, features))
        incumbent_value = float(score(test_set[features["target"]], predicted))
        required = incumbent_value * (1 - margin if lower_is_better else 1 + margin)
        approved = passes_threshold and beats(candidate, required)
        decision.update(
            incumbent_alias=incumbent["alias"],
            incumbent_version=incumbent["version"],
            incumbent_run_id=incumbent["run_id"],
            incumbent_value=incumbent_value,
            required_value=required,
        )
        comparison = (
            f"{incumbent['alias']} version {incumbent['version']} scoring "
            f"{incumbent_value:.4f} on the same {len(test_set)} test rows (required: "
            f"{'below' if lower_is_better else 'above'} {required:.4f} with a margin "
            f"of {margin:.1%}) and the business threshold {threshold:g}"
        )
    unchanged = incumbent is not None and _is_retrained_incumbent(
        incumbent, candidate, decision["incumbent_value"], split_manifest, model_config
    )
    verdict = "unchanged" if unchanged else "approved" if approved else "rejected"
    decision["approved"] = bool(approved)
    decision["unchanged"] = bool(unchanged)
    decision["outcome"] = verdict
    decision["reason"] = (
        f"Deployment gate {verdict}: candidate {metric} {candidate:.4f} compared "
        f"with {comparison}."
    )
    if unchanged:
        decision["reason"] += (
            f" The candidate is {incumbent['alias']} version {incumbent['version']} "
            f"retrained on the same data with the same config: nothing to register."
        )
    logger.info(decision["reason"])
    return decision


def _is_retrained_incumbent(
    incumbent: Mapping[str, Any],
    candidate: float,
    incumbent_value: float,
    split_manifest: Mapping[str, Any],
    model_config: Mapping[str, Any],
) -> bool:
    """Same train set, same config, same score: the incumbent, trained again."""
    tags = incumbent.get("tags") or {}
    return (
        tags.get("modelops.train_sha256") == split_manifest["train_sha256"]
        and tags.get("modelops.model_config")
        == json.dumps(dict(model_config), sort_keys=True)
        and candidate == incumbent_value
    )


def enforce_deployment_gate(decision: Mapping[str, Any]) -> dict[str, Any]:
    """Pass an approved decision on; stop the run on a rejected one.

    An ``unchanged`` decision passes on too: there is nothing to register, and a
    re-run on the same data is not a failure.

    Raises:
        DeploymentRejected: with a paragraph a scheduler log can show.
    """
    if not decision["approved"] and not decision.get("unchanged"):
        raise DeploymentRejected(
            f"{decision['reason']} Nothing was registered and no alias moved. Hint: "
            f"improve the model (conf/base/parameters_training.yml) or, if the bar is "
            f"wrong, change the gate in {DEPLOYMENT_CONF}."
        )
    return dict(decision)


def prepare_registration(
    model: Pipeline,
    train_set: pd.DataFrame,
    decision: Mapping[str, Any],
    split_manifest: Mapping[str, Any],
    source_manifest: Mapping[str, Any],
    metrics: Mapping[str, float],
    model_config: Mapping[str, Any],
    features: Mapping[str, Any],
) -> dict[str, Any]:
    """Bundle an approved model with its input example and lineage tags.

    Returns:
        ``{"model", "input_example", "tags", "reason"}`` for the registry dataset;
        ``model`` is None when the decision is ``unchanged``.
    """
    if decision.get("unchanged"):
        return {
            "model": None,
            "input_example": None,
            "tags": {},
            "reason": decision["reason"],
        }
    rows = min(len(train_set), INPUT_EXAMPLE_ROWS)
    picked = np.random.default_rng(0).choice(len(train_set), size=rows, replace=False)
    example = model_inputs(train_set.iloc[np.sort(picked)], features)
    tags = {
        "train_sha256": split_manifest["train_sha256"],
        "test_sha256": split_manifest["test_sha256"],
        "split": json.dumps(
            {k: v for k, v in split_manifest.items() if "sha" not in k}
        ),
        "source_first_partition": source_manifest["first_partition"],
        "source_last_partition": source_manifest["last_partition"],
        "source_partition_count": source_manifest["partition_count"],
        "source_rows": source_manifest["rows"],
        "model_class": model_config["class"],
        "model_config": json.dumps(dict(model_config), sort_keys=True),
        **{f"metric.{name}": f"{value:.6g}" for name, value in metrics.items()},
    }
    return {
        "model": model,
        "input_example": example.reset_index(drop=True),
        "tags": tags,
        "reason": decision["reason"],
    }
