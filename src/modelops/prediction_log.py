"""The prediction log's schema: what batch scoring and the REST service both append for monitoring."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

# Columns every prediction-log row carries after the model's input columns (and the
# use case's key columns, and the label when the source already has it) and the
# prediction column (serving.prediction_column):
MODEL_NAME = "model_name"  # registered model name
MODEL_VERSION = "model_version"  # registered version number (int64)
RUN_ID = "run_id"  # MLflow run that trained the version
REQUEST_ID = (
    "request_id"  # REST: the request's X-Request-Id; batch: "batch-<save version>"
)
SCORED_AT = "scored_at"  # when the row was scored (UTC)
SOURCE_PARTITION = "source_partition"  # batch: the source partition; REST: null
IDENTITY_COLUMNS = (MODEL_NAME, MODEL_VERSION, RUN_ID, REQUEST_ID, SCORED_AT)
LOG_COLUMNS = (*IDENTITY_COLUMNS, SOURCE_PARTITION)
BATCH_REQUEST_PREFIX = "batch-"


def batch_request_id(save_version: str) -> str:
    """The ``request_id`` of every row a batch scoring run writes."""
    return f"{BATCH_REQUEST_PREFIX}{save_version}"


def log_frame(  # noqa: PLR0913, PLR0917
    inputs: pd.DataFrame,
    predictions: np.ndarray | Sequence[float],
    prediction_column: str,
    identity: Mapping[str, Any],
    request_ids: str | Sequence[str],
    scored_at: pd.Timestamp | Sequence[pd.Timestamp],
    source_partition: str | Sequence[str | None] | None = None,
) -> pd.DataFrame:
    """Prediction-log rows: ``inputs`` (not modified) plus prediction and identity.

    Args:
        inputs: The rows as scored: keys, model input columns, the label if present.
        predictions: One float per row.
        prediction_column: Name of the prediction column.
        identity: ``model_name``, ``model_version``, ``run_id`` of the scoring model.
        request_ids: One id for every row, or one per row.
        scored_at: One UTC time for every row, or one per row.
        source_partition: The source partition (batch), one per row, or None (REST).

    Returns:
        A new frame with the columns of ``inputs`` then ``prediction_column`` then
        ``LOG_COLUMNS``, dtypes fixed (float64, int64, str, datetime64[us, UTC]).
    """
    rows = len(inputs)
    values = np.asarray(predictions, dtype=np.float64).reshape(rows)
    if isinstance(scored_at, pd.Timestamp):  # one time: no per-row parsing
        moment = scored_at.tz_localize("UTC") if scored_at.tz is None else scored_at
        stamps = pd.DatetimeIndex(
            np.full(rows, moment.tz_convert("UTC").as_unit("us").asm8), tz="UTC"
        )
    else:
        stamps = pd.to_datetime(scored_at, utc=True).as_unit("us")
    ids = [request_ids] * rows if isinstance(request_ids, str) else list(request_ids)
    partitions = (
        [source_partition] * rows
        if source_partition is None or isinstance(source_partition, str)
        else list(source_partition)
    )
    added = {
        prediction_column: values,
        MODEL_NAME: pd.array([str(identity[MODEL_NAME])] * rows, dtype="str"),
        MODEL_VERSION: np.full(rows, int(identity[MODEL_VERSION]), dtype=np.int64),
        RUN_ID: pd.array([str(identity[RUN_ID])] * rows, dtype="str"),
        REQUEST_ID: pd.array(ids, dtype="str"),
        SCORED_AT: stamps,
        SOURCE_PARTITION: pd.array(partitions, dtype="str"),
    }
    return inputs.reset_index(drop=True).assign(**added)
