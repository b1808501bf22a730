"""Wiring of the data_processing pipeline."""

from __future__ import annotations

from kedro.pipeline import Node, Pipeline

from modelops.pipelines.data_processing.nodes import (
    build_model_input,
    clean_source,
    load_source_window,
    sample_rows,
)


def create_pipeline(**kwargs: object) -> Pipeline:
    """Source partitions -> validated -> sampled -> cleaned -> model input table."""
    return Pipeline(
        [
            Node(
                func=load_source_window,
                inputs=["source_partitions", "params:source"],
                outputs=["validated_source", "source_manifest"],
                name="load_source_window_node",
            ),
            Node(
                func=sample_rows,
                inputs=["validated_source", "params:source.sample"],
                outputs="sampled_source",
                name="sample_rows_node",
            ),
            Node(
                func=clean_source,
                inputs=["sampled_source", "params:features"],
                outputs="clean_source",
                name="clean_source_node",
            ),
            Node(
                func=build_model_input,
                inputs=["clean_source", "params:features"],
                outputs="model_input_table",
                name="build_model_input_node",
            ),
        ]
    )
