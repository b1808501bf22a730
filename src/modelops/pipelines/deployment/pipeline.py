"""Wiring of the deployment pipeline."""

from __future__ import annotations

from kedro.pipeline import Node, Pipeline

from modelops.pipelines.deployment.nodes import (
    decide_deployment,
    enforce_deployment_gate,
    prepare_registration,
)


def create_pipeline(**kwargs: object) -> Pipeline:
    """Metrics, incumbent, the env's own alias version, code -> gate -> registered model.

    Registration happens once per candidate fingerprint (see
    ``modelops.datasets.RegisteredModelDataset``); ``unchanged`` registers nothing.
    An approved model is registered with its ONNX form verified on the test set, or
    its sklearn form and the reason (``params:model_artifacts``).
    """
    return Pipeline(
        [
            Node(
                func=decide_deployment,
                inputs=[
                    "evaluation_metrics",
                    "incumbent_model",
                    "test_set",
                    "split_manifest",
                    "params:model",
                    "params:features",
                    "params:gate",
                    "current_alias_version",
                    "code_state",
                ],
                outputs="deployment_decision",
                name="decide_deployment_node",
            ),
            Node(
                func=enforce_deployment_gate,
                inputs="deployment_decision",
                outputs="approved_decision",
                name="enforce_deployment_gate_node",
            ),
            Node(
                func=prepare_registration,
                inputs=[
                    "trained_model",
                    "train_set",
                    "test_set",
                    "approved_decision",
                    "split_manifest",
                    "source_manifest",
                    "evaluation_metrics",
                    "params:model",
                    "params:features",
                    "params:model_artifacts",
                ],
                outputs="registered_model",
                name="register_model_node",
            ),
        ]
    )
