"""The evaluation pipeline: test-set metrics against a naive baseline, and plots."""

from modelops.pipelines.evaluation.pipeline import create_pipeline

__all__ = ["create_pipeline"]
