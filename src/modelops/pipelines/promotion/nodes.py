"""Nodes of promotion: score the challenger on prod data, gate it, check reproduction."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import pandas as pd

from modelops.errors import PromotionError
from modelops.modeling import model_inputs
from modelops.pipelines.deployment.nodes import (
    GATE_METRICS,
    MISSES_REQUIREMENT_HINT,
    decide_deployment,
    misses_requirement_reason,
)

PROMOTION_CONF = "conf/base/parameters_promotion.yml"
# Where the promotion parameters live, as a hint says it: base, or a prod override.
PROMOTION_CONF_HINT = (
    f"{PROMOTION_CONF} (or, for prod alone, in a conf/prod/parameters_promotion.yml "
    f"you create, which overrides it key by key)"
)


def score_challenger(
    challenger: Mapping[str, Any] | None,
    test_set: pd.DataFrame,
    features: Mapping[str, Any],
) -> dict[str, float]:
    """The challenger's metrics on this env's current test set.

    Raises:
        PromotionError: there is no challenger to promote.
    """
    if challenger is None:
        raise PromotionError(
            "There is no challenger to promote: no model version has the alias that "
            "acceptance sets.\nHint: run `kedro run --env acceptance` first."
        )
    predicted = challenger["model"].predict(model_inputs(test_set, features))
    actual = test_set[features["target"]]
    metrics = {
        name: float(score(actual, predicted))
        for name, (score, _) in GATE_METRICS.items()
    }
    return {**metrics, "rows": float(len(test_set))}


def decide_promotion(
    challenger: Mapping[str, Any],
    challenger_metrics: Mapping[str, float],
    incumbent: Mapping[str, Any] | None,
    test_set: pd.DataFrame,
    features: Mapping[str, Any],
    gate: Mapping[str, Any],
) -> dict[str, Any]:
    """The deployment gate, for the challenger against the champion on prod's test set.

    The challenger already being the champion is ``unchanged``: nothing to move.
    """
    tags = challenger.get("tags") or {}
    decision = decide_deployment(
        challenger_metrics,
        incumbent,
        test_set,
        {"train_sha256": tags.get("modelops.train_sha256")},
        json.loads(tags.get("modelops.model_config") or "{}"),
        features,
        gate,
    )
    same_version = (
        incumbent is not None and incumbent["version"] == challenger["version"]
    )
    if same_version and not decision["passes_threshold"]:
        # The threshold comes first: the champion itself misses the requirement.
        decision["reason"] = misses_requirement_reason(
            incumbent,
            f"(the challenger is already {incumbent['alias']})",
            decision["metric"],
            decision["candidate_value"],
            decision["business_threshold"],
            decision["test_rows"],
            decision["lower_is_better"],
        )
        decision["hint"] = MISSES_REQUIREMENT_HINT
    elif same_version:
        decision.update(approved=False, unchanged=True, outcome="unchanged")
        decision["reason"] += (
            f" Version {challenger['version']} is already {incumbent['alias']}."
        )
    decision["candidate_version"] = challenger["version"]
    decision["candidate_run_id"] = challenger["run_id"]
    return decision


def request_promotion(
    challenger: Mapping[str, Any], decision: Mapping[str, Any]
) -> dict[str, Any]:
    """What the alias dataset should do: move to the challenger, or nothing if unchanged."""
    version = None if decision.get("unchanged") else challenger["version"]
    return {
        "version": version,
        "reason": f"promoted challenger version {challenger['version']}: {decision['reason']}",
    }


def request_promotion_reproduced(
    challenger: Mapping[str, Any],
    decision: Mapping[str, Any],
    reproduction: Mapping[str, Any],
) -> dict[str, Any]:
    """Like ``request_promotion``, only once the retrain reproduced the challenger."""
    request = request_promotion(challenger, decision)
    request["reason"] += (
        f" Retrain reproduced its {reproduction['metric']} within "
        f"{reproduction['tolerance']:.2%} ({reproduction['relative_deviation']:.3%})."
    )
    return request


def check_reproduction(
    metrics: Mapping[str, float],
    challenger: Mapping[str, Any] | None,
    model_config: Mapping[str, Any],
    promotion: Mapping[str, Any],
) -> dict[str, Any]:
    """Check that retraining with the same config reproduces the challenger's metrics.

    Raises:
        PromotionError: no challenger, a different model config, or a metric outside
            the tolerance — nothing is promoted.
    """
    if challenger is None:
        raise PromotionError(
            "There is no challenger to reproduce.\nHint: run `kedro run --env "
            "acceptance` first."
        )
    tags = challenger.get("tags") or {}
    challenger_config = json.loads(tags.get("modelops.model_config") or "{}")
    if challenger_config != json.loads(json.dumps(dict(model_config))):
        raise PromotionError(
            f"The prod model config {dict(model_config)} differs from challenger "
            f"version {challenger['version']}'s {challenger_config}: a retrain would "
            f"not reproduce it.\nHint: deploy the same conf to prod as to acceptance."
        )
    metric = promotion["metric"]
    tolerance = float(promotion["tolerance"])
    logged = tags.get(f"modelops.metric.{metric}")
    if logged is None:
        raise PromotionError(
            f"Challenger version {challenger['version']} carries no metric '{metric}' "
            f"tag to compare with.\nHint: set promotion.metric in {PROMOTION_CONF_HINT}."
        )
    expected = float(logged)
    observed = float(metrics[metric])
    deviation = abs(observed - expected) / max(abs(expected), 1e-12)
    report = {
        "metric": metric,
        "challenger_value": expected,
        "retrained_value": observed,
        "relative_deviation": deviation,
        "tolerance": tolerance,
        "reproduced": deviation <= tolerance,
    }
    if not report["reproduced"]:
        raise PromotionError(
            f"Retraining with challenger version {challenger['version']}'s config gave "
            f"{metric} {observed:.4f} against its {expected:.4f} (relative deviation "
            f"{deviation:.2%} > tolerance {tolerance:.2%}): it does not reproduce, so "
            f"nothing is promoted.\nHint: check that prod reads the same source window "
            f"as acceptance, or widen promotion.tolerance in {PROMOTION_CONF_HINT}."
        )
    return report
