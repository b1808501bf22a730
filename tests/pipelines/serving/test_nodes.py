"""Unit tests of the serving nodes and its datasets: a good input and bad ones for each."""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import threading

import numpy as np
import pandas as pd
import pytest
from kedro.io import DatasetError, Version

from modelops.batch_datasets import SaveVersionDataset, VersionedPartitionedDataset
from modelops.errors import ConfigError, DataContractError, SourceWindowError
from modelops.model_artifacts import ServedModel
from modelops.modeling import build_model, input_columns, model_inputs
from modelops.onnx_model import export_onnx, onnx_sha256
from modelops.pipelines.serving.nodes import (
    NoServingModelError,
    read_chunks,
    score_window,
    select_window,
    serving_contract,
    serving_identity,
    summarise_scoring,
)
from modelops.prediction_log import IDENTITY_COLUMNS, LOG_COLUMNS, log_frame
from tests.conftest import make_source_frame

DAYS = ["2025-03-01", "2025-03-02", "2025-03-03", "2025-03-04"]
VERSION = "2025-03-05T06.07.08.123Z"
MODEL_NAME = "modelops-bike-demand"
SERVING = {
    "model_name": MODEL_NAME,
    "alias": "dev",
    "window": {"start": None, "end": None, "last_days": 1},
    "chunk_rows": 1,
    "prediction_column": "prediction",
}
ROWS_PER_DAY = 72  # make_source_frame: 24 hours x 3 stations


@pytest.fixture(scope="module")
def frames():
    return {day: make_source_frame(day) for day in DAYS}


@pytest.fixture
def partitions(frames):
    return {day: (lambda frame=frame: frame.copy()) for day, frame in frames.items()}


@pytest.fixture
def source(data_processing_params):
    return data_processing_params["source"]


@pytest.fixture
def full_source(source):
    """The source parameters with no sampling (acceptance and prod)."""
    return {**source, "sample": {**source["sample"], "fraction": 1.0}}


@pytest.fixture
def features(data_processing_params):
    return data_processing_params["features"]


@pytest.fixture(scope="module")
def fitted_model(frames, data_processing_params):
    features = data_processing_params["features"]
    train = pd.concat(frames.values(), ignore_index=True)
    model = build_model(
        features,
        {
            "class": "sklearn.ensemble.HistGradientBoostingRegressor",
            "kwargs": {"max_iter": 10},
            "seed": 0,
        },
    )
    return model.fit(model_inputs(train, features), train[features["target"]])


def served(model, features=None, *, run_id="abc123"):
    """What ServedModelDataset loads for version 3: ONNX form when given features."""
    import skops.io  # noqa: PLC0415

    onnx_bytes = export_onnx(model, features) if features is not None else None
    skops_bytes = skops.io.dumps(model)
    return {
        "alias": "dev",
        "version": 3,
        "run_id": run_id,
        "tags": {},
        "model": ServedModel(
            name=MODEL_NAME,
            version=3,
            run_id=run_id,
            tags={},
            skops_bytes=skops_bytes,
            onnx_bytes=onnx_bytes,
        ),
        "skops_bytes": skops_bytes,  # the served file's bytes (not read by serving)
    }


@pytest.fixture(scope="module")
def onnx_served(fitted_model, data_processing_params):
    return served(fitted_model, data_processing_params["features"])


@pytest.fixture
def serving_model(onnx_served):
    return onnx_served


@pytest.fixture
def score(serving_model, full_source, features):
    """Run the generator node to the end: every yielded (predictions, log, progress)."""

    def run(partitions, serving=SERVING, source=full_source, model=serving_model):
        return list(score_window(partitions, model, VERSION, serving, source, features))

    return run


def window(**values):
    return {
        **SERVING,
        "window": {"start": None, "end": None, "last_days": None} | values,
    }


# --- serving_identity -------------------------------------------------------------


def test_serving_identity_names_the_model_version_and_run(serving_model):
    identity = serving_identity(serving_model, SERVING)
    assert identity == {
        "model_name": MODEL_NAME,
        "alias": "dev",
        "model_version": 3,
        "run_id": "abc123",
    }


def test_serving_identity_refuses_an_alias_without_a_version():
    with pytest.raises(NoServingModelError) as error:
        serving_identity(None, SERVING)
    message = str(error.value)
    assert f"'{MODEL_NAME}' has alias 'dev'" in message
    assert "Hint:" in message
    assert "kedro run --env dev" in message


def test_serving_identity_refuses_another_alias_than_configured(serving_model):
    with pytest.raises(ConfigError, match="loaded alias 'champion'"):
        serving_identity({**serving_model, "alias": "champion"}, SERVING)


# --- select_window ----------------------------------------------------------------


def test_select_window_defaults_to_the_newest_day():
    assert select_window(DAYS[::-1], SERVING["window"], "%Y-%m-%d") == ["2025-03-04"]


def test_select_window_takes_a_date_range():
    chosen = select_window(
        DAYS,
        {"start": "2025-03-02", "end": "2025-03-03", "last_days": None},
        "%Y-%m-%d",
    )
    assert chosen == ["2025-03-02", "2025-03-03"]


def test_select_window_refuses_an_empty_window_with_a_serving_hint():
    with pytest.raises(SourceWindowError) as error:
        select_window(DAYS, {"start": "2026-01-01", "last_days": 1}, "%Y-%m-%d")
    message = str(error.value)
    assert message.startswith("Nothing to score: no source partition in the window")
    assert "from 2025-03-01 to 2025-03-04" in message
    assert "serving.window in conf/base/parameters_serving.yml" in message
    assert "parameters_data_processing" not in message


@pytest.mark.parametrize(
    ("bad", "match"),
    [
        ({"last_days": 0}, "serving.window.last_days is 0"),
        ({"last_days": "7"}, "serving.window.last_days is '7'"),
        ({"start": "March"}, "serving.window.start is 'March'"),
    ],
)
def test_select_window_refuses_bad_window_settings(bad, match):
    with pytest.raises(ConfigError, match=match):
        select_window(DAYS, {"start": None, "end": None, **bad}, "%Y-%m-%d")


def test_select_window_passes_on_a_partition_not_named_as_a_date():
    with pytest.raises(SourceWindowError, match="not named as a date"):
        select_window([*DAYS, "latest"], SERVING["window"], "%Y-%m-%d")


# --- score_window -----------------------------------------------------------------


def test_score_window_scores_the_newest_day_with_the_model_identity(
    score, partitions, fitted_model, features, serving_model
):
    chunks = score(partitions)
    assert len(chunks) == 1
    predictions, _, progress = chunks[0]
    assert list(predictions) == ["2025-03-04"]
    scored = predictions["2025-03-04"]
    day = partitions["2025-03-04"]()
    assert list(scored.columns) == [
        "timestamp",
        "station_id",
        "prediction",
        *IDENTITY_COLUMNS,
    ]
    assert len(scored) == ROWS_PER_DAY
    # Scored by onnxruntime: the sklearn model's values within the export tolerance.
    expected = fitted_model.predict(model_inputs(day, features))
    np.testing.assert_allclose(scored["prediction"].to_numpy(), expected, atol=1e-9)
    assert (scored["model_name"] == MODEL_NAME).all()
    assert (scored["model_version"] == 3).all()
    assert scored["model_version"].dtype == "int64"
    assert (scored["run_id"] == "abc123").all()
    assert (scored["request_id"] == f"batch-{VERSION}").all()
    assert (
        scored["scored_at"] == pd.Timestamp("2025-03-05 06:07:08.123", tz="UTC")
    ).all()
    pd.testing.assert_frame_equal(
        scored[["timestamp", "station_id"]], day[["timestamp", "station_id"]]
    )
    assert progress["rows_scored"] == ROWS_PER_DAY
    assert progress["model_version"] == 3
    assert progress["output_version"] == VERSION
    assert progress["request_id"] == f"batch-{VERSION}"
    # The summary says which form scored, and which artifact (by hash).
    assert progress["form"] == "onnx"
    onnx_bytes = export_onnx(fitted_model, features)
    assert progress["artifact_sha256"] == onnx_sha256(onnx_bytes)
    assert serving_model["model"].sha256 == onnx_sha256(onnx_bytes)


def test_score_window_scores_a_version_served_in_its_sklearn_form(
    partitions, score, fitted_model, features, frames
):
    sklearn_served = served(fitted_model)  # no ONNX form: its skops file serves
    ((predictions, log, progress),) = score(partitions, model=sklearn_served)
    expected = fitted_model.predict(model_inputs(frames["2025-03-04"], features))
    np.testing.assert_array_equal(
        predictions["2025-03-04"]["prediction"].to_numpy(), expected
    )
    assert progress["form"] == "sklearn"
    skops_sha = hashlib.sha256(sklearn_served["skops_bytes"]).hexdigest()
    assert progress["artifact_sha256"] == skops_sha
    assert list(log["2025-03-04"].columns[-len(LOG_COLUMNS) :]) == list(LOG_COLUMNS)


def test_the_batch_log_has_the_schema_a_rest_log_has_for_the_same_inputs(
    partitions, score, frames, features
):
    """Columns and dtypes are prediction_log's: monitoring reads batch and REST alike."""
    ((_, log, _),) = score(partitions)
    logged = log["2025-03-04"]
    inputs = list(dict.fromkeys([*features["key_columns"], *input_columns(features)]))
    assert list(logged.columns) == [*inputs, "rentals", "prediction", *LOG_COLUMNS]
    # What the REST service writes for the same rows (one request, no partition).
    rest = log_frame(
        frames["2025-03-04"][inputs],
        logged["prediction"].to_numpy(),
        "prediction",
        {"model_name": MODEL_NAME, "model_version": 3, "run_id": "abc123"},
        "a-request-id",
        pd.Timestamp("2025-03-05 06:07:08.123", tz="UTC"),
    )
    pd.testing.assert_series_equal(
        logged.drop(columns="rentals").dtypes, rest.dtypes, check_names=False
    )
    assert str(logged["source_partition"].dtype) == str(rest["source_partition"].dtype)
    assert (logged["source_partition"] == "2025-03-04").all()
    assert rest["source_partition"].isna().all()
    assert (logged["request_id"] == f"batch-{VERSION}").all()
    pd.testing.assert_frame_equal(
        logged.drop(columns=["rentals", "request_id", "source_partition"]),
        rest.drop(columns=["request_id", "source_partition"]),
    )


def test_score_window_logs_inputs_label_prediction_and_identity(
    partitions, score, frames, features
):
    ((_, log, _),) = score(partitions)
    logged = log["2025-03-04"]
    for column in [
        *features["numeric"],
        *features["categorical"],
        "timestamp",
        "rentals",  # the label is kept when the source already has it
        "prediction",
        *IDENTITY_COLUMNS,
        "source_partition",
    ]:
        assert column in logged.columns, column
    assert (logged["source_partition"] == "2025-03-04").all()
    np.testing.assert_array_equal(
        logged["rentals"].to_numpy(), frames["2025-03-04"]["rentals"].to_numpy()
    )


def test_score_window_scores_rows_without_the_label(
    frames, score, fitted_model, features
):
    unlabelled = frames["2025-03-04"].drop(columns="rentals")
    ((predictions, log, _),) = score({"2025-03-04": lambda: unlabelled})
    assert "rentals" not in log["2025-03-04"].columns
    np.testing.assert_allclose(
        predictions["2025-03-04"]["prediction"].to_numpy(),
        fitted_model.predict(model_inputs(unlabelled, features)),
        atol=1e-9,
    )


def test_score_window_goes_partition_by_partition_and_never_mutates_inputs(
    frames, score
):
    originals = {day: frame.copy() for day, frame in frames.items()}
    loads = []

    def loader(day):
        def load():
            loads.append(day)
            return frames[day]  # the same object each time: must stay untouched

        return load

    partitions = {day: loader(day) for day in DAYS}
    serving = window(start="2025-03-02")
    chunks = score(partitions, serving)
    assert [list(predictions) for predictions, _, _ in chunks] == [
        ["2025-03-02"],
        ["2025-03-03"],
        ["2025-03-04"],
    ]
    assert sorted(loads) == ["2025-03-02", "2025-03-03", "2025-03-04"]
    assert [progress["rows_scored"] for _, _, progress in chunks] == [72, 144, 216]
    assert [c["key"] for c in chunks[-1][2]["chunks"]] == DAYS[1:]
    for day, frame in frames.items():
        pd.testing.assert_frame_equal(frame, originals[day])


def test_score_window_gathers_partitions_into_chunks_of_chunk_rows(partitions, score):
    serving = {**window(), "chunk_rows": 2 * ROWS_PER_DAY}
    chunks = score(partitions, serving)
    keys = [next(iter(predictions)) for predictions, _, _ in chunks]
    assert keys == ["2025-03-01_to_2025-03-02", "2025-03-03_to_2025-03-04"]
    log = chunks[0][1]["2025-03-01_to_2025-03-02"]
    assert log["source_partition"].value_counts().to_dict() == {
        "2025-03-01": ROWS_PER_DAY,
        "2025-03-02": ROWS_PER_DAY,
    }


def test_score_window_samples_rows_as_the_env_says(score, partitions, source):
    dev_source = {**source, "sample": {**source["sample"], "fraction": 0.5}}
    serving = window()
    first = score(partitions, serving, dev_source)
    again = score(partitions, serving, dev_source)
    rows = [len(next(iter(p.values()))) for p, _, _ in first]
    assert all(0 < n < ROWS_PER_DAY for n in rows)
    assert rows == [len(next(iter(p.values()))) for p, _, _ in again]
    assert first[-1][2]["rows_read"] == 4 * ROWS_PER_DAY
    assert first[-1][2]["rows_scored"] == sum(rows)


def test_score_window_refuses_a_model_that_is_not_a_served_artifact(
    score, partitions, fitted_model, serving_model
):
    bare_pipeline = {**serving_model, "model": fitted_model}  # e.g. an old catalog
    with pytest.raises(
        ConfigError,
        match=r"batch_serving_model loaded a Pipeline, not the version's served "
        r"artifact(.|\n)*Hint: set its type to modelops\.datasets\.ServedModelDataset "
        r"in conf/base/catalog_serving\.yml",
    ):
        score(partitions, model=bare_pipeline)


def test_score_window_refuses_when_the_alias_has_no_model(score, partitions):
    with pytest.raises(NoServingModelError, match="has alias 'dev'"):
        score(partitions, model=None)


def test_score_window_names_the_partition_that_breaks_the_contract(
    partitions, frames, score
):
    broken = frames["2025-03-03"].assign(humidity_pct=150.0)
    partitions = {**partitions, "2025-03-03": lambda: broken}
    serving = {**window(), "chunk_rows": 10_000}  # one chunk: the check names the day
    with pytest.raises(DataContractError) as error:
        score(partitions, serving)
    message = str(error.value)
    assert "source partition '2025-03-03'" in message
    assert "humidity_pct" in message


def test_score_window_refuses_a_partition_missing_a_model_input(
    partitions, frames, score
):
    broken = frames["2025-03-04"].drop(columns="weather")
    partitions = {**partitions, "2025-03-04": lambda: broken}
    with pytest.raises(DataContractError, match="column 'weather'"):
        score(partitions)


def test_score_window_refuses_an_empty_partition(partitions, frames, score):
    empty = frames["2025-03-04"].iloc[:0]
    partitions = {**partitions, "2025-03-04": lambda: empty}
    with pytest.raises(DataContractError, match="source partition '2025-03-04'"):
        score(partitions)


def test_score_window_refuses_an_empty_window(partitions, score):
    serving = window(start="2025-04-01")
    with pytest.raises(SourceWindowError, match="Nothing to score"):
        score(partitions, serving)


@pytest.mark.parametrize(
    ("override", "match"),
    [
        ({"prediction_column": "rentals"}, r"clash with source columns"),
        ({"prediction_column": "run_id"}, r"a column serving adds"),
        ({"chunk_rows": 0}, "serving.chunk_rows is 0"),
    ],
)
def test_score_window_refuses_bad_serving_settings(score, partitions, override, match):
    with pytest.raises(ConfigError, match=match):
        score(partitions, {**SERVING, **override})


# --- read_chunks and summarise_scoring ----------------------------------------------


def test_read_chunks_reads_checked_chunks_ahead_in_one_thread(frames, source):
    contract = serving_contract(source["contract"], "rentals")
    threads = set()

    def loader(day):
        def load():
            threads.add(threading.current_thread().name)
            return frames[day]

        return load

    partitions = {day: loader(day) for day in DAYS}
    chunks = list(read_chunks(partitions, DAYS, 2 * ROWS_PER_DAY - 1, contract))
    assert [ids for ids, _ in chunks] == [DAYS[:2], DAYS[2:]]
    first = chunks[0][1]
    assert len(first) == 2 * ROWS_PER_DAY
    assert first["source_partition"].tolist() == [DAYS[0]] * 72 + [DAYS[1]] * 72
    assert len(threads) == 1
    assert next(iter(threads)).startswith("serving-read")


def test_read_chunks_passes_on_a_loader_error(frames, source):
    contract = serving_contract(source["contract"], "rentals")

    def broken():
        raise OSError("disk gone")

    partitions = {"2025-03-01": lambda: frames["2025-03-01"], "2025-03-02": broken}
    with pytest.raises(OSError, match="disk gone"):
        list(read_chunks(partitions, ["2025-03-01", "2025-03-02"], 1, contract))


def test_summarise_scoring_marks_the_run_complete(partitions, score):
    chunks = score(partitions, window())
    progress = chunks[-1][2]
    before = {**progress, "chunks": list(progress["chunks"])}
    summary = summarise_scoring(progress)
    assert progress == before
    assert summary["complete"] is True
    assert summary["rows_scored"] == 4 * ROWS_PER_DAY
    assert summary["partitions"] == 4
    assert summary["first_partition"] == "2025-03-01"
    assert summary["last_partition"] == "2025-03-04"
    assert summary["outputs"] == ["batch_predictions", "batch_prediction_log"]
    assert summary["window"] == {"start": None, "end": None, "last_days": None}


# --- the serving datasets -----------------------------------------------------------


def versioned(tmp_path, save, load=None):
    return VersionedPartitionedDataset(
        path=str(tmp_path / "predictions"),
        dataset="pandas.ParquetDataset",
        filename_suffix=".parquet",
        version=Version(load, save),
    )


def test_versioned_partitions_write_one_folder_per_run_and_never_overwrite(tmp_path):
    frame = pd.DataFrame({"a": [1, 2]})
    first = versioned(tmp_path, "2025-01-01T00.00.00.000Z")
    first.save({"day1": frame})
    first.save({"day2": lambda: frame})  # saved chunk by chunk, lazily
    assert first._describe()["path"] == str(
        tmp_path / "predictions" / "2025-01-01T00.00.00.000Z"
    )
    with pytest.raises(DatasetError, match="never overwritten"):
        first.save({"day1": frame})
    first.commit()  # a run's version appears once the run commits it
    second = versioned(tmp_path, "2025-01-02T00.00.00.000Z")
    second.save({"day1": frame.assign(a=[3, 4])})
    second.commit()
    assert second.versions() == [
        "2025-01-01T00.00.00.000Z",
        "2025-01-02T00.00.00.000Z",
    ]
    latest = versioned(tmp_path, "2025-01-03T00.00.00.000Z").load()
    assert list(latest) == ["day1"]
    assert latest["day1"]()["a"].tolist() == [3, 4]
    pinned = versioned(
        tmp_path, "2025-01-03T00.00.00.000Z", load="2025-01-01T00.00.00.000Z"
    ).load()
    assert sorted(pinned) == ["day1", "day2"]
    pd.testing.assert_frame_equal(pinned["day1"](), frame)


def test_versioned_partitions_refuse_loading_nothing_and_unversioned_use(tmp_path):
    with pytest.raises(DatasetError, match="No version saved yet"):
        versioned(tmp_path, "2025-01-01T00.00.00.000Z").load()
    with pytest.raises(DatasetError, match="not found"):
        versioned(tmp_path, "x", load="2020-01-01T00.00.00.000Z").load()
    with pytest.raises(DatasetError, match="versioned: true"):
        VersionedPartitionedDataset(path=str(tmp_path), dataset="pandas.ParquetDataset")


def test_save_version_dataset_loads_the_runs_save_version():
    assert SaveVersionDataset(version=Version(None, VERSION)).load() == VERSION
    with pytest.raises(DatasetError, match="versioned: true"):
        SaveVersionDataset().load()
    with pytest.raises(DatasetError, match="read-only"):
        SaveVersionDataset(version=Version(None, VERSION)).save("x")


def test_scored_at_is_the_runs_save_version_in_utc(
    partitions, score, serving_model, full_source, features
):
    ((predictions, _, progress),) = score(partitions)
    stamp = predictions["2025-03-04"]["scored_at"].iloc[0]
    assert stamp.to_pydatetime() == dt.datetime(
        2025, 3, 5, 6, 7, 8, 123000, tzinfo=dt.UTC
    )
    assert progress["scored_at"] == "2025-03-05T06:07:08.123000+00:00"
    with pytest.raises(ConfigError, match="not a Kedro timestamp"):
        list(
            score_window(
                partitions, serving_model, "latest", SERVING, full_source, features
            )
        )


# --- a single-file source without a time column or a key ----------------------------

STATIC_FEATURES = {
    "time_column": None,
    "key_columns": [],
    "dedupe": "whole_rows",
    "target": "target",
    "numeric": ["age", "sex", "bmi", "bp", "s1", "s2", "s3", "s4", "s5", "s6"],
    "categorical": [],
    "calendar": [],
}
STATIC_SOURCE = {
    "partition_date_format": "%Y-%m-%d",
    "window": {"start": None, "end": None, "last_days": None},
    "sample": {"fraction": 1.0, "key_columns": [], "seed": 0},
    "contract": {
        "min_rows": 1,
        "unique_key": [],
        "columns": {
            **{name: {"dtype": "float"} for name in STATIC_FEATURES["numeric"]},
            "target": {"dtype": "float", "min": 0},
        },
    },
}


@pytest.fixture(scope="module")
def static_case():
    """sklearn's diabetes table (no time column, no key), a model fitted on it."""
    from sklearn.datasets import load_diabetes  # noqa: PLC0415

    data = load_diabetes(as_frame=True, scaled=False).frame
    model = build_model(
        STATIC_FEATURES,
        {
            "class": "sklearn.ensemble.HistGradientBoostingRegressor",
            "kwargs": {"max_iter": 10},
            "seed": 0,
        },
    ).fit(model_inputs(data, STATIC_FEATURES), data["target"])
    return data, served(model, run_id="r")  # the sklearn form (no ONNX)


def test_a_single_file_is_scored_whole_as_one_chunk(static_case, caplog):
    data, serving_model = static_case
    caplog.set_level(logging.INFO, logger="modelops.pipelines.serving.nodes")
    serving = {**SERVING, "chunk_rows": 100}  # last_days 1 does not apply to a file
    scored = list(
        score_window(
            data.drop(columns="target"),
            serving_model,
            VERSION,
            serving,
            STATIC_SOURCE,
            STATIC_FEATURES,
        )
    )
    assert len(scored) == 1
    predictions, log, progress = scored[0]
    assert list(predictions) == ["single_file"]
    frame = predictions["single_file"]
    # Without a key, a prediction names its partition and its row there.
    assert frame.columns.tolist() == [
        "source_partition",
        "source_row",
        "prediction",
        *IDENTITY_COLUMNS,
    ]
    assert frame["source_row"].tolist() == list(range(442))
    sklearn_model = serving_model["model"].sklearn_model
    expected = sklearn_model.predict(model_inputs(data, STATIC_FEATURES))
    np.testing.assert_array_equal(frame["prediction"].to_numpy(), expected)
    assert "target" not in log["single_file"].columns
    assert progress["first_partition"] == progress["last_partition"] == "single_file"
    assert "scored whole" in caplog.text


def test_a_keyless_single_file_log_has_the_row_key_then_the_log_schema(static_case):
    data, serving_model = static_case  # the sklearn form
    ((_, log, progress),) = score_window(
        data, serving_model, VERSION, SERVING, STATIC_SOURCE, STATIC_FEATURES
    )
    assert progress["form"] == "sklearn"
    logged = log["single_file"]
    # The row key, then the inputs and label, then prediction_log's own columns.
    assert logged.columns.tolist() == [
        "source_row",
        *STATIC_FEATURES["numeric"],
        "target",
        "prediction",
        *LOG_COLUMNS,
    ]
    assert (logged["source_partition"] == "single_file").all()


def test_the_dev_sample_without_keys_keeps_source_rows(static_case):
    data, serving_model = static_case
    source = {
        **STATIC_SOURCE,
        "sample": {"fraction": 0.25, "key_columns": [], "seed": 0},
    }
    ((predictions, log, _),) = score_window(
        data, serving_model, VERSION, SERVING, source, STATIC_FEATURES
    )
    rows = predictions["single_file"]["source_row"].to_numpy()
    assert 80 < len(rows) < 140
    # The rows the dev sample keeps in data processing: the same hash of whole rows.
    from modelops.pipelines.data_processing.nodes import sample_rows  # noqa: PLC0415

    kept = sample_rows(data, source["sample"])
    pd.testing.assert_frame_equal(
        data.iloc[rows].reset_index(drop=True), kept.reset_index(drop=True)
    )
    assert log["single_file"]["target"].tolist() == kept["target"].tolist()


def test_a_feature_outside_the_contract_names_the_use_case_keys(static_case):
    data, serving_model = static_case
    features = {**STATIC_FEATURES, "numeric": [*STATIC_FEATURES["numeric"], "bmi2"]}
    with pytest.raises(
        ConfigError,
        match=r"\['bmi2'\] \(features\.time_column, numeric, categorical\) are not "
        r"columns of the data contract(.|\n)*Hint: declare them in "
        r"use_case\.contract\.columns in conf/base/use_case\.yml",
    ):
        list(
            score_window(data, serving_model, VERSION, SERVING, STATIC_SOURCE, features)
        )
