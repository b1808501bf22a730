"""Wiring of the promotion pipelines (prod: reuse or retrain the challenger)."""

from __future__ import annotations

from kedro.pipeline import Node, Pipeline

from modelops.pipelines.deployment.nodes import enforce_deployment_gate
from modelops.pipelines.promotion.nodes import (
    check_reproduction,
    decide_promotion,
    request_promotion,
    request_promotion_reproduced,
    score_challenger,
)


def create_pipeline(**kwargs: object) -> Pipeline:
    """Challenger scored on this env's test set -> gate vs champion -> alias moved.

    With ``after_reproduction=True`` the alias moves only once ``reproduction_report``
    (the retrain strategy's check) exists.
    """
    after_reproduction = bool(kwargs.get("after_reproduction", False))
    promote = (
        Node(
            func=request_promotion_reproduced,
            inputs=["challenger_model", "approved_promotion", "reproduction_report"],
            outputs="promoted_alias",
            name="promote_challenger_node",
        )
        if after_reproduction
        else Node(
            func=request_promotion,
            inputs=["challenger_model", "approved_promotion"],
            outputs="promoted_alias",
            name="promote_challenger_node",
        )
    )
    return Pipeline(
        [
            Node(
                func=score_challenger,
                inputs=["challenger_model", "test_set", "params:features"],
                outputs="challenger_metrics",
                name="score_challenger_node",
            ),
            Node(
                func=decide_promotion,
                inputs=[
                    "challenger_model",
                    "challenger_metrics",
                    "incumbent_model",
                    "test_set",
                    "params:features",
                    "params:gate",
                ],
                outputs="promotion_decision",
                name="decide_promotion_node",
            ),
            Node(
                func=enforce_deployment_gate,
                inputs="promotion_decision",
                outputs="approved_promotion",
                name="enforce_promotion_gate_node",
            ),
            promote,
        ]
    )


def create_retrain_checks() -> Pipeline:
    """Retrained metrics vs the challenger's: promotion waits on reproduction."""
    return Pipeline(
        [
            Node(
                func=check_reproduction,
                inputs=[
                    "evaluation_metrics",
                    "challenger_model",
                    "params:model",
                    "params:promotion",
                ],
                outputs="reproduction_report",
                name="check_reproduction_node",
            ),
        ]
    )
