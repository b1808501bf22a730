"""Tests of the ONNX form of the model: export, refusals, verification, predictor."""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.pipeline import Pipeline

from modelops import onnx_model
from modelops.features import CALENDAR_FEATURES, calendar_columns
from modelops.modeling import build_model, model_inputs
from modelops.onnx_model import (
    CATEGORICAL_INPUT,
    UNSEEN_CATEGORY,
    OnnxExportError,
    OnnxModelError,
    OnnxPredictor,
    export_onnx,
    onnx_sha256,
    verify_onnx,
)
from modelops.pipelines.training.nodes import split_model_input, train_model

RIDGE = {"class": "sklearn.linear_model.Ridge", "kwargs": {}, "seed": 0}
SMALL_HGB = {
    "class": "sklearn.ensemble.HistGradientBoostingRegressor",
    "kwargs": {"max_iter": 40, "early_stopping": False},
    "seed": 0,
}


@pytest.fixture(scope="module")
def features(data_processing_params) -> dict[str, Any]:
    return data_processing_params["features"]


@pytest.fixture(scope="module")
def split(model_input_table, training_params, features):
    train, test, _ = split_model_input(
        model_input_table, training_params["split"], features
    )
    return train, test


@pytest.fixture(scope="module")
def hgb(split, features, training_params):
    """The default model (conf/base/parameters_training.yml), trained on the fixture."""
    return train_model(split[0], features, training_params["model"])


@pytest.fixture(scope="module")
def hgb_onnx(hgb, features) -> bytes:
    return export_onnx(hgb, features)


@pytest.fixture(scope="module")
def ridge(split, features):
    return train_model(split[0], features, RIDGE)


@pytest.fixture(scope="module")
def native_categorical(split, features):
    """HGB with native categorical splits on the three encoded columns."""
    kwargs = {**SMALL_HGB["kwargs"], "categorical_features": [0, 1, 2]}
    return train_model(split[0], features, {**SMALL_HGB, "kwargs": kwargs})


def awkward_rows(test: pd.DataFrame, features) -> pd.DataFrame:
    """Held-out rows with unseen, missing and literal-'nan' categories and NaN numbers."""
    frame = model_inputs(test, features).head(12).copy()
    frame["station_id"] = frame["station_id"].astype(object)
    frame.loc[0:2, "station_id"] = "S9999"  # unseen
    frame.loc[3:4, "station_id"] = None  # missing
    frame.loc[5, "station_zone"] = "nan"  # a string, not a missing value
    frame.loc[6, "weather"] = None
    frame.loc[7:9, "temperature_c"] = np.nan
    frame.loc[10, "station_capacity"] = 10**9
    return frame


def json_columns(frame: pd.DataFrame) -> dict[str, list[Any]]:
    """A frame as a request's JSON columns (ISO timestamps, None for missing)."""
    out: dict[str, list[Any]] = {}
    for column in frame.columns:
        values = frame[column].astype(object).tolist()
        out[column] = [
            None
            if v is None or (isinstance(v, float) and np.isnan(v))
            else v.isoformat()
            if isinstance(v, pd.Timestamp)
            else v.item()
            if hasattr(v, "item")
            else v
            for v in values
        ]
    return out


# --- export and verification -----------------------------------------------------------


def test_default_hgb_converts_and_verifies_bit_exact(hgb, hgb_onnx, split, features):
    report = verify_onnx(hgb, hgb_onnx, split[1], features, tolerance=1e-9)

    assert report["passed"], report["reason"]
    assert report["reason"] is None
    assert report["exact"]  # float64 TreeEnsemble: sklearn's numbers bit for bit
    assert report["max_abs_diff"] == 0.0
    assert report["max_rel_diff"] == 0.0
    assert report["held_out_rows"] == len(split[1])
    assert report["edge_rows"] > 100
    assert report["rows_checked"] == report["held_out_rows"] + report["edge_rows"]
    assert report["json_rows"] >= report["edge_rows"]
    assert report["refused_rows"] == 0
    assert report["tolerance"] == 1e-9
    assert report["onnx_sha256"] == hashlib.sha256(hgb_onnx).hexdigest()
    assert onnx_sha256(hgb_onnx) == report["onnx_sha256"]


def test_export_is_deterministic_so_the_hash_identifies_the_model(
    hgb, hgb_onnx, features
):
    assert export_onnx(hgb, features) == hgb_onnx


def test_ridge_with_onehot_converts_and_verifies_within_tolerance(
    ridge, split, features
):
    report = verify_onnx(
        ridge, export_onnx(ridge, features), split[1], features, tolerance=1e-9
    )

    assert report["passed"], report["reason"]
    assert report["max_rel_diff"] < 1e-12
    # NaN into Ridge: sklearn refuses those rows, and so does the ONNX predictor.
    assert report["refused_rows"] > 0


def test_native_categorical_splits_are_refused(native_categorical, features):
    with pytest.raises(
        OnnxExportError,
        match=r"^Cannot export the model to ONNX: step 'model' "
        r"\(HistGradientBoostingRegressor\) uses native categorical splits "
        r"\(categorical_features\), which skl2onnx converts silently wrong\. The "
        r"model will be served in its sklearn form\.\nHint: remove "
        r"categorical_features from model\.kwargs in "
        r"conf/base/parameters_training\.yml",
    ) as refused:
        export_onnx(native_categorical, features)
    assert refused.value.step == "model"
    assert "native categorical" in refused.value.reason


def test_verification_catches_a_silently_wrong_conversion(
    native_categorical, split, features, monkeypatch
):
    # Bypass the refusal: skl2onnx then converts without complaint...
    monkeypatch.setattr(onnx_model, "check_exportable", lambda layout: None)
    wrong = export_onnx(native_categorical, features)
    OnnxPredictor(wrong).predict(model_inputs(split[1], features))

    report = verify_onnx(native_categorical, wrong, split[1], features, 1e-6)

    # ...and verification reports the conversion as failed, with the reason.
    assert not report["passed"]
    assert report["max_abs_diff"] > 1.0
    assert report["reason"].startswith("ONNX disagrees with sklearn: held-out rows: ")
    assert report["reason"].endswith("The model will be served in its sklearn form.")


class Clip(TransformerMixin, BaseEstimator):
    """A custom step skl2onnx has no converter for."""

    def fit(self, X, y=None):
        return self

    def transform(self, X):
        return np.clip(X, -1e6, 1e6)


def test_step_without_converter_is_refused_naming_the_step(split, features):
    steps = build_model(features, RIDGE).steps
    model = Pipeline([*steps[:-1], ("clip", Clip()), steps[-1]])
    model.fit(model_inputs(split[0], features), split[0][features["target"]])

    with pytest.raises(
        OnnxExportError,
        match=r"^Cannot export the model to ONNX: step 'clip' \(Clip\) has no ONNX "
        r"converter in skl2onnx\. The model will be served in its sklearn form\.",
    ):
        export_onnx(model, features)


def test_a_model_that_is_not_a_fitted_pipeline_is_refused(features):
    with pytest.raises(OnnxExportError, match=r"step 'model' is not fitted"):
        export_onnx(build_model(features, RIDGE), features)
    with pytest.raises(OnnxExportError, match=r"is a dict, not an sklearn Pipeline"):
        export_onnx({}, features)


def test_features_that_do_not_match_the_model_are_refused(hgb, features):
    fewer = {**features, "numeric": features["numeric"][1:]}
    with pytest.raises(OnnxExportError, match=r"but the features parameters name"):
        export_onnx(hgb, fewer)


def test_tolerance_must_be_a_number(hgb, hgb_onnx, split, features):
    with pytest.raises(ValueError, match=r"tolerance must be a number >= 0"):
        verify_onnx(hgb, hgb_onnx, split[1], features, tolerance=-1.0)


# --- missing and unseen values ---------------------------------------------------------


def test_unseen_missing_and_nan_rows_agree_with_sklearn(hgb, hgb_onnx, split, features):
    rows = awkward_rows(split[1], features)
    predictor = OnnxPredictor(hgb_onnx)

    expected = hgb.predict(rows)
    np.testing.assert_array_equal(predictor.predict(rows), expected)
    np.testing.assert_array_equal(
        predictor.predict_values(json_columns(rows)), expected
    )


@pytest.mark.parametrize("model_conf", [SMALL_HGB, RIDGE], ids=["ordinal", "onehot"])
def test_missing_category_seen_in_training_is_fed_as_sklearn_saw_it(
    model_conf, split, features
):
    train = split[0].copy()
    train.loc[train.index[::7], "weather"] = np.nan  # a str column: missing is NaN
    model = train_model(train, features, model_conf)
    onnx_bytes = export_onnx(model, features)
    rows = model_inputs(split[1], features).head(4).copy()
    # Missing, the text 'nan' (a string to sklearn: unseen), known, unseen.
    rows["weather"] = pd.Series([None, "nan", "clear", UNSEEN_CATEGORY], dtype="str")

    predictor = OnnxPredictor(onnx_bytes)
    expected = model.predict(rows)
    np.testing.assert_allclose(predictor.predict(rows), expected, rtol=1e-12)
    np.testing.assert_allclose(
        predictor.predict_values(json_columns(rows)), expected, rtol=1e-12
    )
    # In an object column sklearn tells None (unseen) from NaN (the missing category).
    as_object = rows.assign(
        weather=pd.Series([None, np.nan, "nan", "clear"], dtype=object)
    )
    np.testing.assert_allclose(
        predictor.predict(as_object), model.predict(as_object), rtol=1e-12
    )
    assert verify_onnx(model, onnx_bytes, split[1], features, 1e-9)["passed"]


def test_none_as_a_trained_category_is_refused(split, features):
    train = split[0].copy()
    train["weather"] = train["weather"].astype(object)
    train.loc[train.index[::7], "weather"] = None  # sklearn: a category, not missing
    model = train_model(train, features, SMALL_HGB)

    with pytest.raises(
        OnnxExportError,
        match=r"step 'prepare/categorical' \(column 'weather'\) has non-text "
        r"categories \(e\.g\. None\)",
    ):
        export_onnx(model, features)


def test_ridge_predictor_refuses_nan_as_sklearn_does(ridge, split, features):
    rows = model_inputs(split[1], features).head(3).copy()
    rows.loc[1, "temperature_c"] = np.nan
    predictor = OnnxPredictor(export_onnx(ridge, features))

    with pytest.raises(ValueError, match="NaN"):
        ridge.predict(rows)
    with pytest.raises(
        ValueError, match=r"Column 'temperature_c' holds missing or infinite values"
    ):
        predictor.predict(rows)
    with pytest.raises(ValueError, match=r"Column 'temperature_c' holds missing"):
        predictor.predict_values(json_columns(rows))


# --- the predictor ---------------------------------------------------------------------


def test_predictor_on_frames_and_json_values_matches_model_predict(
    hgb, hgb_onnx, split, features
):
    rows = model_inputs(split[1], features)
    predictor = OnnxPredictor(hgb_onnx)
    expected = hgb.predict(rows)

    batch = predictor.predict(rows)
    assert batch.dtype == np.float64
    np.testing.assert_array_equal(batch, expected)
    values = json_columns(rows.head(50))
    np.testing.assert_array_equal(predictor.predict_values(values), expected[:50])
    for index in range(5):  # one request, one value per column (not lists)
        single = {
            column: column_values[index] for column, column_values in values.items()
        }
        np.testing.assert_array_equal(
            predictor.predict_values(single), expected[index : index + 1]
        )


def test_predictor_runs_on_cpu_with_the_threads_it_was_given(hgb_onnx):
    predictor = OnnxPredictor(hgb_onnx, intra_op_threads=2)

    assert predictor.providers == ["CPUExecutionProvider"]
    assert predictor.threads == (2, 1)
    assert predictor.sha256 == onnx_sha256(hgb_onnx)


def test_predictor_names_missing_columns(hgb_onnx, split, features):
    rows = model_inputs(split[1], features).drop(columns=["weather"])
    predictor = OnnxPredictor(hgb_onnx)

    with pytest.raises(ValueError, match=r"Columns \['weather'\] are missing"):
        predictor.predict(rows)
    with pytest.raises(ValueError, match=r"Columns \['weather'\] are missing"):
        predictor.predict_values(json_columns(rows.head(1)))


def test_predictor_refuses_onnx_that_modelops_did_not_export(hgb_onnx):
    import onnx  # noqa: PLC0415

    proto = onnx.load_from_string(hgb_onnx)
    del proto.metadata_props[:]

    with pytest.raises(OnnxModelError, match=r"has no modelops metadata"):
        OnnxPredictor(proto.SerializeToString())


def test_graph_takes_two_matrices(hgb_onnx, features):
    import onnx  # noqa: PLC0415

    inputs = {
        item.name: item.type.tensor_type.shape.dim[1].dim_value
        for item in onnx.load_from_string(hgb_onnx).graph.input
    }
    numeric = len(set(features["numeric"]) | set(features["calendar"]))
    assert inputs == {
        CATEGORICAL_INPUT: len(features["categorical"]),
        "numeric_columns": numeric,
    }


# --- the shared calendar definition ----------------------------------------------------


def test_calendar_features_match_pandas_for_columns_and_single_values():
    rng = np.random.default_rng(7)
    low, high = (
        np.datetime64(d, "s").astype(np.int64) for d in ("1900-01-01", "2100-12-31")
    )
    stamps = pd.Series(
        np.concatenate(
            [
                rng.integers(low, high, 20_000).astype("datetime64[s]"),
                pd.date_range("2019-12-25", "2021-01-08", freq="5h").to_numpy(),
                np.array(
                    ["1969-12-31T23:59:59", "1970-01-01T00:00:00"], "datetime64[s]"
                ),
            ]
        ).astype("datetime64[us]")
    )
    pandas_says = {
        "hour": stamps.dt.hour,
        "day_of_week": stamps.dt.day_of_week,
        "day_of_month": stamps.dt.day,
        "day_of_year": stamps.dt.day_of_year,
        "week_of_year": stamps.dt.isocalendar().week,
        "month": stamps.dt.month,
        "quarter": stamps.dt.quarter,
        "year": stamps.dt.year,
        "is_weekend": stamps.dt.day_of_week >= 5,
    }
    derived = calendar_columns(stamps, list(pandas_says))
    for name, expected in pandas_says.items():
        np.testing.assert_array_equal(derived[name], expected.astype("int64"), name)
        assert derived[name].dtype == np.int64
    for index in range(0, len(stamps), 997):  # the same definition on one value
        moment = stamps[index].to_pydatetime()
        single = {name: CALENDAR_FEATURES[name](moment) for name in pandas_says}
        assert single == {name: int(derived[name][index]) for name in pandas_says}


@pytest.mark.parametrize("model_conf", [SMALL_HGB, RIDGE], ids=["hgb", "ridge"])
def test_numeric_only_models_convert_and_verify(split, features, model_conf):
    # A use case with no categorical column (the README's diabetes example) has no
    # encoder step: it converts like any other instead of failing on an unfitted one.
    numeric = {**features, "categorical": [], "calendar": [], "time_column": None}
    train, test = split
    columns = list(numeric["numeric"])
    model = build_model(numeric, model_conf).fit(
        train[columns], train[numeric["target"]]
    )
    report = verify_onnx(
        model, export_onnx(model, numeric), test[columns], numeric, 1e-9
    )
    assert report["passed"], report["reason"]


# --- batch scoring in shares of rows ------------------------------------------------------


def test_row_threads_score_a_large_batch_in_shares_bit_equal(
    hgb_onnx, split, features, monkeypatch
):
    """Batch serving runs the session on two shares of rows at once: same numbers."""
    rows = model_inputs(split[1], features)
    batch = pd.concat(
        [rows] * (onnx_model.ROW_SPLIT_MIN // len(rows) + 2), ignore_index=True
    )
    single = OnnxPredictor(hgb_onnx).predict(batch)
    shares: list[int] = []
    run_rows = OnnxPredictor._run_rows

    def counting(self, feeds):
        shares.append(len(next(iter(feeds.values()))))
        return run_rows(self, feeds)

    monkeypatch.setattr(OnnxPredictor, "_run_rows", counting)
    split_predictor = OnnxPredictor(hgb_onnx, row_threads=2)

    assert np.array_equal(split_predictor.predict(batch), single)
    assert len(shares) == 2
    assert sum(shares) == len(batch)
    shares.clear()
    split_predictor.predict(rows.head(5))  # a REST-sized batch is not split
    assert shares == [5]
