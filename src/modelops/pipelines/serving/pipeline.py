"""Wiring of the serving (batch inference) pipeline."""

from __future__ import annotations

from kedro.pipeline import Node, Pipeline

from modelops.pipelines.serving.nodes import score_window, summarise_scoring


def create_pipeline(**kwargs: object) -> Pipeline:
    """Source window + alias model -> versioned predictions and log -> run summary."""
    return Pipeline(
        [
            Node(
                func=score_window,
                inputs=[
                    "source_partitions",
                    "batch_serving_model",
                    "batch_save_version",
                    "params:serving",
                    "params:source",
                    "params:features",
                ],
                outputs=[
                    "batch_predictions",
                    "batch_prediction_log",
                    "batch_scoring_progress",
                ],
                name="score_window_node",
            ),
            Node(
                func=summarise_scoring,
                inputs="batch_scoring_progress",
                outputs="batch_scoring_summary",
                name="summarise_scoring_node",
            ),
        ]
    )
