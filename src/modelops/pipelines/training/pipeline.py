"""Wiring of the training pipeline."""

from __future__ import annotations

from kedro.pipeline import Node, Pipeline

from modelops.pipelines.training.nodes import split_model_input, train_model


def create_pipeline(**kwargs: object) -> Pipeline:
    """Model input table -> content-addressed train/test sets -> fitted model."""
    return Pipeline(
        [
            Node(
                func=split_model_input,
                inputs=["model_input_table", "params:split", "params:features"],
                outputs=["train_set", "test_set", "split_manifest"],
                name="split_model_input_node",
            ),
            Node(
                func=train_model,
                inputs=["train_set", "params:features", "params:model"],
                outputs="trained_model",
                name="train_model_node",
            ),
        ]
    )
