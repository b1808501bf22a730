"""The promotion pipelines: move an acceptance-approved challenger to champion."""

from modelops.pipelines.promotion.pipeline import create_pipeline, create_retrain_checks

__all__ = ["create_pipeline", "create_retrain_checks"]
