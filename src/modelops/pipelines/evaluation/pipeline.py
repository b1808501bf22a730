"""Wiring of the evaluation pipeline."""

from __future__ import annotations

from kedro.pipeline import Node, Pipeline

from modelops.pipelines.evaluation.nodes import (
    evaluate_predictions,
    fit_baseline,
    plot_feature_importance,
    plot_predicted_vs_actual,
    plot_residuals,
    predict_baseline,
    predict_test_set,
)
from modelops.pipelines.monitoring.nodes import profile_reference


def create_pipeline(**kwargs: object) -> Pipeline:
    """Model and test set -> predictions, metrics against a naive baseline, plots."""
    return Pipeline(
        [
            Node(
                func=predict_test_set,
                inputs=["trained_model", "test_set", "params:features"],
                outputs="test_predictions",
                name="predict_test_set_node",
            ),
            Node(
                func=fit_baseline,
                inputs=["train_set", "params:features", "params:baseline"],
                outputs="baseline_table",
                name="fit_baseline_node",
            ),
            Node(
                func=predict_baseline,
                inputs=[
                    "baseline_table",
                    "test_set",
                    "params:features",
                    "params:baseline",
                ],
                outputs="baseline_predictions",
                name="predict_baseline_node",
            ),
            Node(
                func=evaluate_predictions,
                inputs=["test_predictions", "baseline_predictions"],
                outputs="evaluation_metrics",
                name="evaluate_predictions_node",
            ),
            Node(
                func=plot_predicted_vs_actual,
                inputs="test_predictions",
                outputs="predicted_vs_actual_plot",
                name="plot_predicted_vs_actual_node",
            ),
            Node(
                func=plot_residuals,
                inputs=["test_predictions", "params:features"],
                outputs="residuals_plot",
                name="plot_residuals_node",
            ),
            Node(
                func=plot_feature_importance,
                inputs=[
                    "trained_model",
                    "test_set",
                    "params:features",
                    "params:importance",
                ],
                outputs=["feature_importance_plot", "feature_importance"],
                name="plot_feature_importance_node",
            ),
            # What monitoring compares production with: logged into the run, so the
            # registered version's run carries its own reference.
            Node(
                func=profile_reference,
                inputs=[
                    "train_set",
                    "test_set",
                    "test_predictions",
                    "split_manifest",
                    "params:features",
                    "params:monitoring",
                ],
                outputs="reference_profile",
                name="profile_reference_node",
            ),
        ]
    )
