"""The serving pipeline: batch inference with the model of the env's registry alias."""

from modelops.pipelines.serving.pipeline import create_pipeline

__all__ = ["create_pipeline"]
