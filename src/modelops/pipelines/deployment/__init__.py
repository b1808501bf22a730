"""The deployment pipeline: the gate, then registration and the env's alias."""

from modelops.pipelines.deployment.pipeline import create_pipeline

__all__ = ["create_pipeline"]
