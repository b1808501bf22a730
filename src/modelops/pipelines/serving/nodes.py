"""Nodes of the serving pipeline: score a window of source partitions chunk by chunk."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import numpy as np
import pandas as pd

from modelops.batch_datasets import save_version_time
from modelops.contracts import Contract, parse_contract, use_case_key, validate_frame
from modelops.errors import (
    ConfigError,
    DataContractError,
    ModelopsError,
    SourceWindowError,
    positive_days,
)
from modelops.modeling import check_inputs_in_contract, input_columns, model_inputs
from modelops.pipelines.data_processing.nodes import (
    SINGLE_FILE,
    as_partitions,
    is_single_file,
    sample_mask,
    select_partitions,
)
from modelops.prediction_log import (
    IDENTITY_COLUMNS,
    LOG_COLUMNS,
    MODEL_NAME,
    MODEL_VERSION,
    REQUEST_ID,
    RUN_ID,
    SCORED_AT,
    SOURCE_PARTITION,
    batch_request_id,
    log_frame,
)

logger = logging.getLogger(__name__)

SERVING_CONF = "conf/base/parameters_serving.yml"
CATALOG_CONF = "conf/base/catalog_serving.yml"
# Every output row carries the prediction log's identity columns (who scored it, in
# which request, when: modelops.prediction_log), the log also its source partition.
# Without key columns a prediction is identified by its partition and its row there.
SOURCE_ROW = "source_row"
# Catalog entries the scoring node writes (named in the summary).
OUTPUTS = ("batch_predictions", "batch_prediction_log")

Partitions = Mapping[str, Callable[[], pd.DataFrame]]
_ROW_POSITION = "__modelops_row__"  # a chunk's row within its partition, while scoring
Chunk = tuple[dict[str, pd.DataFrame], dict[str, pd.DataFrame], dict[str, Any]]


class NoServingModelError(ModelopsError):
    """The env's serving alias points to no registered model version."""


def serving_identity(
    serving_model: Mapping[str, Any] | None, serving: Mapping[str, Any]
) -> dict[str, Any]:
    """Who scores: the registered model name, alias, version and run of the model.

    Args:
        serving_model: What the ``batch_serving_model`` catalog entry loaded:
            ``{"alias", "version", "run_id", "tags", "model"}``, or None when the alias
            points to no version.
        serving: The ``serving`` parameters (``model_name`` and ``alias``).

    Returns:
        ``{"model_name", "alias", "model_version", "run_id"}``.

    Raises:
        NoServingModelError: the alias has no version (nothing to serve).
        ConfigError: the catalog loaded another alias than ``serving.alias`` says.
    """
    name, alias = serving["model_name"], serving["alias"]
    if serving_model is None:
        raise NoServingModelError(
            f"No version of registered model '{name}' has alias '{alias}', the alias "
            f"this env serves: there is no model to score with.\nHint: register and "
            f"alias one first — `kedro run --env dev` sets 'dev', `kedro run --env "
            f"acceptance` sets 'challenger', `kedro run --env prod` moves 'champion' "
            f"(see `kedro models history`)."
        )
    if serving_model["alias"] != alias:
        raise ConfigError(
            f"serving.alias is '{alias}' but the catalog entry batch_serving_model "
            f"loaded alias '{serving_model['alias']}'.\nHint: both come from the env's "
            f"globals `alias`; change that (conf/<env>/globals.yml), not one of them."
        )
    return {
        MODEL_NAME: name,
        "alias": alias,
        MODEL_VERSION: int(serving_model["version"]),
        RUN_ID: str(serving_model["run_id"]),
    }


def serving_contract(contract_spec: Mapping[str, Any], target: str) -> Contract:
    """The source contract minus the target: labels may be absent at scoring time."""
    return parse_contract(contract_spec).without([target])


def select_window(
    partition_ids: Sequence[str], window: Mapping[str, Any], date_format: str
) -> list[str]:
    """The source partitions of the scoring window, oldest first.

    Args:
        partition_ids: Every partition id of the source.
        window: ``serving.window``: ``start`` and ``end`` (inclusive dates or null)
            and ``last_days`` (the newest N partitions inside them, or null for all).
        date_format: ``strptime`` format of the partition ids.

    Returns:
        The selected partition ids in date order.

    Raises:
        ConfigError: a bound is not a date, or ``last_days`` is not positive.
        SourceWindowError: no partition lies in the window, or an id is not a date.
    """
    for bound in ("start", "end"):
        value = window.get(bound)
        if value is not None and not isinstance(value, dt.date):
            try:
                dt.date.fromisoformat(str(value))
            except ValueError as err:
                raise ConfigError(
                    f"serving.window.{bound} is {value!r}; expected a date like "
                    f"2025-01-31 or null.\nHint: fix {SERVING_CONF}."
                ) from err
    positive_days(
        window.get("last_days"),
        "serving.window.last_days",
        "to score every partition in [start, end]",
        f"fix {SERVING_CONF} or pass --params serving.window.last_days=N.",
    )
    if list(partition_ids) == [SINGLE_FILE]:
        return [SINGLE_FILE]  # a single-file source is scored whole
    try:
        return select_partitions(list(partition_ids), window, date_format)
    except SourceWindowError as err:
        if err.__cause__ is not None:  # a partition not named as a date: as is
            raise
        what = str(err).split("\nHint:", 1)[0]
        raise SourceWindowError(
            f"Nothing to score: {what[0].lower()}{what[1:]}\nHint: set the scoring "
            f"window serving.window in {SERVING_CONF} (e.g. --params "
            f"serving.window.last_days=7), or check that the source has partitions "
            f"for those days."
        ) from None


def _scored_at(save_version: str) -> pd.Timestamp:
    """The scoring run's time: its Kedro save version, read as a UTC timestamp."""
    return pd.Timestamp(save_version_time(save_version))


def _output_layout(
    features: Mapping[str, Any], contract: Contract, serving: Mapping[str, Any]
) -> tuple[list[str], list[str]]:
    """The columns kept from the source: keys (predictions) and keys + inputs (log).

    The log's own columns (identity, source partition) are added by
    ``prediction_log.log_frame``, so they are not among the inputs.
    """
    check_inputs_in_contract(features, contract.column_names)
    prediction = serving["prediction_column"]
    keys = list(features["key_columns"]) or [SOURCE_PARTITION, SOURCE_ROW]
    inputs = [
        column
        for column in dict.fromkeys([*keys, *input_columns(features)])
        if column != SOURCE_PARTITION
    ]
    added = [prediction, *LOG_COLUMNS, SOURCE_ROW]
    if prediction in added[1:]:
        raise ConfigError(
            f"serving.prediction_column is '{prediction}', a column serving adds "
            f"itself ({added[1:]}).\nHint: rename it in {SERVING_CONF}."
        )
    source_columns = {
        *features["key_columns"],
        *input_columns(features),
        *contract.column_names,
        features["target"],
    }
    clash = sorted(set(added) & source_columns)
    if clash:
        raise ConfigError(
            f"Output column(s) {clash} clash with source columns.\nHint: rename "
            f"serving.prediction_column in {SERVING_CONF}."
        )
    return keys, inputs


def _validate_chunk(
    parts: list[tuple[str, pd.DataFrame]], chunk: pd.DataFrame, contract: Contract
) -> None:
    """Check a chunk against the contract; name the partition that breaks it.

    One check of the whole chunk is what the happy path costs (pandera's fixed cost
    per call dominates for small partitions); only when it fails is each partition
    checked on its own to name the culprit.
    """
    try:
        validate_frame(chunk, contract, where="the scoring chunk")
    except DataContractError:
        for partition_id, frame in parts:
            validate_frame(frame, contract, where=_where(partition_id))
        raise


def _where(partition_id: str) -> str:
    """How a partition is named in messages."""
    if partition_id == SINGLE_FILE:
        return f"the source file ({use_case_key('source.dataset')})"
    return f"source partition '{partition_id}'"


def _score_chunk(
    chunk: pd.DataFrame,
    model: Any,
    identity: Mapping[str, Any],
    stamp: tuple[str, pd.Timestamp],
    layout: tuple[list[str], list[str]],
    context: Mapping[str, Any],
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Sample and score one checked chunk: (predictions, prediction log).

    ``stamp`` is the run's ``(request_id, scored_at)``. The log is built by
    ``prediction_log.log_frame``, the schema the REST service writes too.
    """
    features, serving = context["features"], context["serving"]
    keys, inputs = layout
    # The sample hashes the source columns only (not what serving added), so a row's
    # fate is the same whatever chunk it is read in.
    keep = sample_mask(
        chunk.drop(columns=[SOURCE_PARTITION, _ROW_POSITION]), context["sample"]
    )
    if keep is not None:
        chunk = chunk.loc[keep].reset_index(drop=True)
    if SOURCE_ROW in keys:
        chunk = chunk.assign(**{SOURCE_ROW: chunk[_ROW_POSITION].to_numpy()})
    predicted = np.asarray(model.predict_frame(model_inputs(chunk, features)))
    if predicted.size != len(chunk):
        raise ConfigError(
            f"The model returned predictions of shape {predicted.shape}; batch "
            f"serving expects one value per row (a single-target model)."
        )
    target = features["target"]
    logged = [*inputs, target] if target in chunk.columns else inputs
    request_id, scored_at = stamp
    rows = len(chunk)
    log = log_frame(
        chunk[logged],
        predicted.reshape(rows),
        serving["prediction_column"],
        identity,
        request_id,
        # Per row, already as arrays: log_frame builds them from one Timestamp and
        # from a string Series element by element (1.2 s of CPU per 250k rows).
        pd.DatetimeIndex([scored_at]).repeat(rows),
        chunk[SOURCE_PARTITION].to_numpy(dtype=object),
    )
    predictions = log[[*keys, serving["prediction_column"], *IDENTITY_COLUMNS]]
    return predictions, log


def _chunk_key(partition_ids: Sequence[str]) -> str:
    """The output file name of a chunk: its partition, or its first and last."""
    if len(partition_ids) == 1:
        return partition_ids[0]
    return f"{partition_ids[0]}_to_{partition_ids[-1]}"


def score_window(
    partitions: Partitions | pd.DataFrame,
    serving_model: Mapping[str, Any] | None,
    save_version: str,
    serving: Mapping[str, Any],
    source: Mapping[str, Any],
    features: Mapping[str, Any],
) -> Iterator[Chunk]:
    """Score the window's source partitions chunk by chunk, yielding each chunk.

    A generator node: Kedro saves each yielded chunk before the next is read, so at
    most one chunk (whole partitions, up to about ``serving.chunk_rows`` rows) is in
    memory however large the window. Each chunk is checked against the contract
    minus the target, sampled as the env's ``source.sample`` says (dev reads a
    sample), and scored with the model of the env's alias in the form its version
    is served (ONNX on onnxruntime where it has one, else its sklearn form).

    Args:
        partitions: Partition id (a date) to loader, as the source PartitionedDataset
            gives it; nothing is loaded outside the window. Or one DataFrame (a
            single-file source): scored whole, as one chunk; the window does not
            apply.
        serving_model: The loaded ``batch_serving_model`` entry, or None if the alias
            points to no version; its ``"model"`` is a
            ``modelops.model_artifacts.ServedModel`` (``predict_frame``, ``form``,
            ``sha256``).
        save_version: The run's Kedro save version: the output version folder, the
            ``scored_at`` time of every row and its ``request_id``
            (``prediction_log.batch_request_id``).
        serving: ``model_name``, ``alias``, ``window``, ``chunk_rows`` and
            ``prediction_column``.
        source: The ``source`` parameters (``contract``, ``partition_date_format``,
            ``sample``).
        features: The ``features`` parameters.

    Yields:
        Per chunk: ``{chunk key: predictions}`` (keys, prediction and the log's
        identity columns: model name, version, run id, request id, scored_at),
        ``{chunk key: log}`` (the prediction-log schema of
        ``modelops.prediction_log``: keys and model inputs, the target when
        present, prediction, identity, source partition) and the progress so far
        (for the summary, with the form that scored and its artifact's sha256).

    Raises:
        NoServingModelError: the alias points to no version.
        SourceWindowError: no partition lies in the window.
        DataContractError: a partition breaks the contract (chunks before it have
            been written; the run fails and logs no summary).
        ConfigError: a serving parameter is invalid.
    """
    identity = serving_identity(serving_model, serving)
    model = serving_model["model"]  # type: ignore[index]  # None refused above
    if not all(hasattr(model, name) for name in ("predict_frame", "form", "sha256")):
        raise ConfigError(
            f"The catalog entry batch_serving_model loaded a "
            f"{type(model).__name__}, not the version's served artifact (a "
            f"modelops.model_artifacts.ServedModel with predict_frame, form and "
            f"sha256).\nHint: set its type to modelops.datasets.ServedModelDataset "
            f"in {CATALOG_CONF}."
        )
    contract = serving_contract(source["contract"], features["target"])
    chunk_rows = serving["chunk_rows"]
    if (
        isinstance(chunk_rows, bool)
        or not isinstance(chunk_rows, int)
        or chunk_rows < 1
    ):
        raise ConfigError(
            f"serving.chunk_rows is {chunk_rows!r}; expected a positive number of "
            f"rows.\nHint: fix {SERVING_CONF}."
        )
    layout = _output_layout(features, contract, serving)
    partitions = as_partitions(partitions)
    if is_single_file(partitions):
        logger.info(
            "The source is a single file: it is scored whole (serving.window does "
            "not apply)"
        )
    selected = select_window(
        list(partitions), serving["window"], source["partition_date_format"]
    )
    scored_at = _scored_at(save_version)
    stamp = (batch_request_id(save_version), scored_at)
    context = {
        "features": features,
        "serving": serving,
        "sample": source["sample"],
    }
    logger.info(
        "Scoring %d source partitions (%s .. %s) with %s version %s (alias %s) in "
        "its %s form (sha256 %s), chunks of about %d rows",
        len(selected),
        selected[0],
        selected[-1],
        identity[MODEL_NAME],
        identity[MODEL_VERSION],
        identity["alias"],
        model.form,
        model.sha256[:12],
        chunk_rows,
    )
    progress: dict[str, Any] = {
        **identity,
        # Which form of the version scored (onnx on onnxruntime, or the sklearn
        # pipeline from its skops file) and the sha256 of that artifact.
        "form": model.form,
        "artifact_sha256": model.sha256,
        REQUEST_ID: stamp[0],
        "output_version": save_version,
        "outputs": list(OUTPUTS),
        SCORED_AT: scored_at.isoformat(),
        "window": {key: _plain(value) for key, value in serving["window"].items()},
        "first_partition": selected[0],
        "last_partition": selected[-1],
        "partitions": len(selected),
        "rows_read": 0,
        "rows_scored": 0,
        "chunks": [],
    }
    for partition_ids, chunk in read_chunks(partitions, selected, chunk_rows, contract):
        predictions, log = _score_chunk(chunk, model, identity, stamp, layout, context)
        key = _chunk_key(partition_ids)
        progress = {
            **progress,
            "rows_read": progress["rows_read"] + len(chunk),
            "rows_scored": progress["rows_scored"] + len(predictions),
            "chunks": [
                *progress["chunks"],
                {
                    "key": key,
                    "partitions": partition_ids,
                    "rows": len(predictions),
                },
            ],
        }
        logger.info("Scored chunk %s: %d rows", key, len(predictions))
        yield {key: predictions}, {key: log}, progress


def read_chunks(
    partitions: Partitions,
    selected: Sequence[str],
    chunk_rows: int,
    contract: Contract,
) -> Iterator[tuple[list[str], pd.DataFrame]]:
    """Read the selected partitions as contract-checked chunks, one chunk ahead.

    A chunk is whole partitions, gathered in order until it holds at least
    ``chunk_rows`` rows (or the partitions run out). One background thread reads,
    concatenates and checks the next chunk while the caller scores and writes the
    current one (parquet reads and the model's prediction loop release the GIL), so
    at most two chunks are in memory whatever the window.

    Args:
        partitions: Partition id to loader.
        selected: The ids to read, in order.
        chunk_rows: Rows a chunk gathers before it is handed over.
        contract: What every partition must satisfy.

    Yields:
        ``(partition ids, chunk)``; the chunk has a ``source_partition`` column.

    Raises:
        DataContractError: naming the first partition that breaks the contract.
    """
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="serving-read")

    def gather(first: int) -> Future[tuple[list[str], pd.DataFrame]] | None:
        if first >= len(selected):
            return None
        return pool.submit(_gather, partitions, selected, first, chunk_rows, contract)

    try:
        done, future = 0, gather(0)
        while future is not None:
            partition_ids, chunk = future.result()
            done += len(partition_ids)
            future = gather(done)  # read the next chunk while this one is scored
            yield partition_ids, chunk
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _gather(
    partitions: Partitions,
    selected: Sequence[str],
    first: int,
    chunk_rows: int,
    contract: Contract,
) -> tuple[list[str], pd.DataFrame]:
    """Read partitions from ``selected[first]`` on into one checked chunk."""
    parts: list[tuple[str, pd.DataFrame]] = []
    rows = 0
    for partition_id in selected[first:]:
        frame = partitions[partition_id]()
        if len(frame) < contract.min_rows:  # a check of the chunk cannot see this
            validate_frame(frame, contract, where=_where(partition_id))
        parts.append((partition_id, frame))
        rows += len(frame)
        if rows >= chunk_rows:
            break
    frames = [frame for _, frame in parts]
    chunk = frames[0] if len(frames) == 1 else pd.concat(frames, ignore_index=True)
    _validate_chunk(parts, chunk, contract)
    # Categorical while scoring (a code per row: 0.1 s of CPU less per 250k rows than
    # strings); the log gets prediction_log's string column.
    partition_of = pd.Categorical.from_codes(
        np.repeat(np.arange(len(parts)), [len(frame) for frame in frames]),
        categories=[pid for pid, _ in parts],
    )
    row_in_partition = np.concatenate(
        [np.arange(len(frame), dtype=np.int64) for frame in frames]
    )
    return [pid for pid, _ in parts], chunk.assign(
        **{SOURCE_PARTITION: partition_of, _ROW_POSITION: row_in_partition}
    )


def summarise_scoring(progress: Mapping[str, Any]) -> dict[str, Any]:
    """The run's summary once every chunk is written: logged to the MLflow run.

    Args:
        progress: The last progress the scoring node yielded.

    Returns:
        Model identity, the form that scored (``onnx`` | ``sklearn``) and its
        artifact's sha256, the run's request id, output version and catalog entries,
        window, partitions and rows read and scored, the chunks written, and
        ``complete: true``.
    """
    summary = {**progress, "chunks": list(progress["chunks"]), "complete": True}
    logger.info(
        "Batch scoring complete: %d rows from %d partitions (%s .. %s) by %s version "
        "%s (%s form), written as version %s of %s",
        summary["rows_scored"],
        summary["partitions"],
        summary["first_partition"],
        summary["last_partition"],
        summary[MODEL_NAME],
        summary[MODEL_VERSION],
        summary["form"],
        summary["output_version"],
        " and ".join(summary["outputs"]),
    )
    return summary


def _plain(value: object) -> object:
    """A parameter value as JSON can hold it (dates become ISO strings)."""
    return value.isoformat() if isinstance(value, dt.date) else value
