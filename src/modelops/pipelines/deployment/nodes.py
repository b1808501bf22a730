"""Nodes of the deployment pipeline: gate decision, its enforcement, registration request."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import pandas as pd
from sklearn.pipeline import Pipeline

from modelops.contracts import use_case_key
from modelops.errors import ConfigError, DeploymentRejected
from modelops.lineage import FINGERPRINT_TAG, candidate_fingerprint
from modelops.model_artifacts import build_artifacts, check_settings
from modelops.modeling import model_inputs

DEPLOYMENT_CONF = "conf/base/parameters_deployment.yml"


def _sklearn_metric(name: str) -> Callable[[Any, Any], float]:
    """``sklearn.metrics.<name>``, imported on first use (not by every `kedro` command)."""

    def score(actual: Any, predicted: Any) -> float:
        from sklearn import metrics  # noqa: PLC0415

        return getattr(metrics, name)(actual, predicted)

    score.__name__ = name
    return score


# metric -> (function of (actual, predicted), lower is better)
GATE_METRICS: dict[str, tuple[Callable[[Any, Any], float], bool]] = {
    "rmse": (_sklearn_metric("root_mean_squared_error"), True),
    "mae": (_sklearn_metric("mean_absolute_error"), True),
    "r2": (_sklearn_metric("r2_score"), False),
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
    current: Mapping[str, Any] | None = None,
    code: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Decide whether the candidate may be registered.

    The business threshold comes first, every time: a candidate that misses it is
    rejected, even one identical to the deployed model (then the message says that
    the deployed model itself misses the requirement). When a model has been
    promoted (an incumbent alias exists), the candidate must also beat that model
    **evaluated now on the same test set** by at least ``min_improvement``
    (relative) — never its old logged metric.

    A candidate is ``unchanged`` (nothing to register, not a failure) when it is
    identical to the version the env's own alias points to — same candidate
    fingerprint: train and test content, model and feature config, code — or when
    it is the incumbent retrained on the same train set with the same config and
    scoring exactly the same.

    Args:
        metrics: The candidate's metrics on the test set.
        incumbent: ``{"alias", "version", "run_id", "tags", "model"}`` or None.
        test_set: The current test set; not modified.
        split_manifest: The split's manifest (train/test sha256).
        model_config: The ``model`` parameters the candidate was trained with.
        features: The ``features`` parameters.
        gate: ``metric``, ``business_threshold``, ``min_improvement``.
        current: The version the env's own alias points to (``alias``, ``version``,
            ``tags``; its model is not needed) or None.
        code: ``{"git_commit", "code_sha256", ...}`` of the running code; without it
            the candidate has no fingerprint.

    Returns:
        The decision: ``approved``, ``outcome``, the values compared, the
        candidate's ``fingerprint`` and a one-paragraph reason.
    """
    metric = gate["metric"]
    if metric not in GATE_METRICS:
        raise ConfigError(
            f"gate.metric is {metric!r}; expected one of {sorted(GATE_METRICS)}.\n"
            f"Hint: fix {use_case_key('gate.metric')}."
        )
    score, lower_is_better = GATE_METRICS[metric]
    candidate = float(metrics[metric])
    threshold = float(gate["business_threshold"])
    margin = float(gate.get("min_improvement", 0.0))

    def beats(value: float, bar: float) -> bool:
        return value < bar if lower_is_better else value > bar

    passes_threshold = beats(candidate, threshold)
    fingerprint = (
        None
        if code is None
        else candidate_fingerprint(
            train_sha256=split_manifest["train_sha256"],
            test_sha256=split_manifest["test_sha256"],
            model_config=model_config,
            features=features,
            git_commit=code["git_commit"],
            code_sha256=code["code_sha256"],
        )
    )
    decision: dict[str, Any] = {
        "metric": metric,
        "lower_is_better": lower_is_better,
        "candidate_value": candidate,
        "business_threshold": threshold,
        "passes_threshold": passes_threshold,
        "min_improvement": margin,
        "test_rows": len(test_set),
        "fingerprint": fingerprint,
        "current_alias": None if current is None else current["alias"],
        "current_version": None if current is None else current["version"],
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
    same_as, why = _identical_deployed(
        current,
        fingerprint,
        incumbent,
        candidate,
        decision,
        split_manifest,
        model_config,
    )
    if not passes_threshold:
        verdict = "rejected"
    elif same_as is not None:
        verdict = "unchanged"
    else:
        verdict = "approved" if approved else "rejected"
    decision["approved"] = verdict == "approved"
    decision["unchanged"] = verdict == "unchanged"
    decision["outcome"] = verdict
    decision["unchanged_version"] = None if same_as is None else same_as["version"]
    if same_as is not None and not passes_threshold:
        decision["reason"] = misses_requirement_reason(
            same_as, why, metric, candidate, threshold, len(test_set), lower_is_better
        )
        decision["hint"] = MISSES_REQUIREMENT_HINT
    else:
        decision["reason"] = (
            f"Deployment gate {verdict}: candidate {metric} {candidate:.4f} compared "
            f"with {comparison}."
        )
    if verdict == "unchanged" and same_as is not None:
        decision["reason"] += (
            f" The candidate is {same_as['alias']} version {same_as['version']} "
            f"{why}: nothing to register."
        )
    logger.info(decision["reason"])
    return decision


MISSES_REQUIREMENT_HINT = (
    f"Hint: train a model that meets the requirement (conf/base/parameters_training"
    f".yml); if the requirement itself is wrong, change "
    f"{use_case_key('gate.business_threshold')}."
)


def misses_requirement_reason(
    deployed: Mapping[str, Any],
    why: str,
    metric: str,
    value: float,
    threshold: float,
    rows: int,
    lower_is_better: bool,
) -> str:
    """The rejection of a candidate that is the deployed model: it misses the bar."""
    return (
        f"Deployment gate rejected: the deployed model itself misses the business "
        f"requirement: the candidate is {deployed['alias']} version "
        f"{deployed['version']} {why}, and it scores {metric} {value:.4f} on the "
        f"current {rows} test rows, {'not below' if lower_is_better else 'not above'} "
        f"the business threshold {threshold:g} (gate.business_threshold)."
    )


def _identical_deployed(
    current: Mapping[str, Any] | None,
    fingerprint: str | None,
    incumbent: Mapping[str, Any] | None,
    candidate: float,
    decision: Mapping[str, Any],
    split_manifest: Mapping[str, Any],
    model_config: Mapping[str, Any],
) -> tuple[Mapping[str, Any] | None, str]:
    """The registered version the candidate is identical to, and why; or (None, "")."""
    if (
        current is not None
        and fingerprint is not None
        and (current.get("tags") or {}).get(FINGERPRINT_TAG) == fingerprint
    ):
        return current, (
            f"(same train and test data, model and feature config and code: "
            f"fingerprint {fingerprint[:12]})"
        )
    if incumbent is not None and _is_retrained_incumbent(
        incumbent, candidate, decision["incumbent_value"], split_manifest, model_config
    ):
        return incumbent, "retrained on the same data with the same config"
    return None, ""


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
        hint = decision.get("hint") or (
            f"Hint: improve the model (conf/base/parameters_training.yml) or, if the "
            f"bar is wrong, change {use_case_key('gate.business_threshold')} (or "
            f"gate.min_improvement in {DEPLOYMENT_CONF})."
        )
        raise DeploymentRejected(
            f"{decision['reason']} Nothing was registered and no alias moved. {hint}"
        )
    return dict(decision)


def prepare_registration(
    model: Pipeline,
    train_set: pd.DataFrame,
    test_set: pd.DataFrame,
    decision: Mapping[str, Any],
    split_manifest: Mapping[str, Any],
    source_manifest: Mapping[str, Any],
    metrics: Mapping[str, float],
    model_config: Mapping[str, Any],
    features: Mapping[str, Any],
    artifact_settings: Mapping[str, Any],
) -> dict[str, Any]:
    """Bundle an approved model with its input example, lineage tags and artifacts.

    The artifacts (``modelops.model_artifacts.build_artifacts``) are the ONNX form
    verified against ``model.predict`` on the test set's inputs (plus synthetic edge
    rows), or the sklearn form and the reason; built only for an approved candidate.

    Args:
        model: The trained Pipeline.
        train_set: Where the input example is drawn from.
        test_set: The held-out rows the ONNX form is verified on; not modified.
        decision: The approved (or ``unchanged``) gate decision.
        split_manifest: The split's manifest (train/test sha256).
        source_manifest: The source partitions the model was trained on.
        metrics: The candidate's test metrics.
        model_config: The ``model`` parameters.
        features: The ``features`` parameters.
        artifact_settings: The ``model_artifacts`` parameters.

    Returns:
        ``{"model", "input_example", "tags", "fingerprint", "reason", "artifacts"}``
        for the registry dataset; ``model`` and ``artifacts`` are None when the
        decision is ``unchanged``.

    Raises:
        ConfigError: invalid ``model_artifacts`` settings, or a model holding a type
            outside the trusted types (nothing is registered).
    """
    check_settings(artifact_settings)
    if decision.get("unchanged"):
        return {
            "model": None,
            "input_example": None,
            "tags": {},
            "fingerprint": decision.get("fingerprint"),
            "reason": decision["reason"],
            "artifacts": None,
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
    if decision.get("fingerprint"):
        tags["fingerprint"] = decision["fingerprint"]
    artifacts = build_artifacts(
        model, model_inputs(test_set, features), features, artifact_settings
    )
    return {
        "model": model,
        "input_example": example.reset_index(drop=True),
        "tags": tags,
        "fingerprint": decision.get("fingerprint"),
        "reason": decision["reason"],
        "artifacts": artifacts,
    }
