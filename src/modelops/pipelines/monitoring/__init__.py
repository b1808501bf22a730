"""The monitoring pipeline: a window of the served version's predictions vs its reference."""

from modelops.pipelines.monitoring.pipeline import create_pipeline

__all__ = ["create_pipeline"]
