"""Wiring of the monitoring pipeline."""

from __future__ import annotations

from kedro.pipeline import Node, Pipeline

from modelops.pipelines.monitoring.nodes import (
    build_report,
    monitor_window,
    publish_result,
)


def create_pipeline(**kwargs: object) -> Pipeline:
    """Prediction logs + the served version's profile -> result, scores, report."""
    return Pipeline(
        [
            Node(
                func=monitor_window,
                inputs=[
                    "prediction_logs",
                    "source_partitions",
                    "monitoring_reference",
                    "monitoring_save_version",
                    "params:monitoring",
                    "params:features",
                    "params:source",
                ],
                outputs="monitoring_result",
                name="monitor_window_node",
            ),
            Node(
                func=publish_result,
                inputs="monitoring_result",
                outputs=["drift_scores", "monitoring_metrics", "monitoring_verdict"],
                name="publish_monitoring_result_node",
            ),
            Node(
                func=build_report,
                inputs=["monitoring_result", "monitoring_history", "params:monitoring"],
                outputs="monitoring_report",
                name="build_monitoring_report_node",
            ),
        ]
    )
