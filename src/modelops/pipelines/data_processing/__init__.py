"""The data_processing pipeline: production source to versioned model input table."""

from modelops.pipelines.data_processing.pipeline import create_pipeline

__all__ = ["create_pipeline"]
