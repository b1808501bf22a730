"""The training pipeline: split the model input table and fit the configured model."""

from modelops.pipelines.training.pipeline import create_pipeline

__all__ = ["create_pipeline"]
