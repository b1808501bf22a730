"""Unit tests of the evaluation nodes: a good input and a bad one for each."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure

from modelops.errors import ConfigError, DataContractError
from modelops.modeling import build_model, input_columns, model_inputs
from modelops.pipelines.data_processing.nodes import build_model_input
from modelops.pipelines.evaluation.nodes import (
    evaluate_predictions,
    fit_baseline,
    plot_feature_importance,
    plot_predicted_vs_actual,
    plot_residuals,
    predict_baseline,
    predict_test_set,
)
from tests.conftest import make_source_frame

HGB = {
    "class": "sklearn.ensemble.HistGradientBoostingRegressor",
    "kwargs": {"max_iter": 30},
    "seed": 0,
}
TRAIN_DAYS = ["2025-03-03", "2025-03-04", "2025-03-05", "2025-03-06"]
TEST_DAY = "2025-03-07"
BASELINE = {"group_by": ["station_id"], "time_grains": ["day_of_week", "hour"]}
IMPORTANCE = {"max_rows": 200, "n_repeats": 3, "seed": 0}
EMPTY_TEST_SET = (
    r"The test set is empty(.|\n)*widen the split in use_case\.split in "
    r"conf/base/use_case\.yml"
)


@pytest.fixture(scope="module")
def features(data_processing_params):
    return data_processing_params["features"]


def model_input(features, days):
    source = pd.concat([make_source_frame(day) for day in days], ignore_index=True)
    return build_model_input(source, features)


@pytest.fixture(scope="module")
def train_set(features):
    return model_input(features, TRAIN_DAYS)


@pytest.fixture(scope="module")
def test_set(features):
    """One later day; a station never seen in training; a shuffled index."""
    frame = model_input(features, [TEST_DAY])
    frame = frame.assign(station_id=frame["station_id"].replace("S0003", "S0099"))
    return frame.sample(frac=1.0, random_state=0)


@pytest.fixture(scope="module")
def model(features, train_set):
    fitted = build_model(features, HGB)
    return fitted.fit(model_inputs(train_set, features), train_set["rentals"])


@pytest.fixture(scope="module")
def test_predictions(model, test_set, features):
    return predict_test_set(model, test_set, features)


# --- predict_test_set ---------------------------------------------------------------


def test_predict_test_set_keeps_rows_keys_and_order(model, test_set, features):
    before = test_set.copy()
    predictions = predict_test_set(model, test_set, features)

    assert list(predictions.columns) == [
        "timestamp",
        "station_id",
        "actual",
        "predicted",
    ]
    assert predictions.index.equals(test_set.index)
    pd.testing.assert_frame_equal(
        predictions[["timestamp", "station_id"]], test_set[["timestamp", "station_id"]]
    )
    assert predictions["actual"].tolist() == test_set["rentals"].tolist()
    assert predictions["predicted"].dtype == "float64"
    expected = model.predict(model_inputs(test_set, features))
    np.testing.assert_allclose(predictions["predicted"].to_numpy(), expected)
    pd.testing.assert_frame_equal(test_set, before)


def test_predict_test_set_adds_the_time_column_when_it_is_no_key(
    model, test_set, features
):
    predictions = predict_test_set(
        model, test_set, {**features, "key_columns": ["station_id"]}
    )
    assert list(predictions.columns) == [
        "station_id",
        "timestamp",
        "actual",
        "predicted",
    ]


def test_predict_test_set_refuses_an_empty_test_set(model, test_set, features):
    with pytest.raises(ConfigError, match=EMPTY_TEST_SET):
        predict_test_set(model, test_set.iloc[:0], features)


def test_predict_test_set_names_a_missing_column(model, test_set, features):
    with pytest.raises(ConfigError, match=r"\['temperature_c'\] are not in the test"):
        predict_test_set(model, test_set.drop(columns="temperature_c"), features)


# --- fit_baseline / predict_baseline ------------------------------------------------

TINY_FEATURES = {"time_column": "timestamp", "target": "rentals"}


def tiny(rows):
    return pd.DataFrame(rows, columns=["timestamp", "station_id", "rentals"]).astype(
        {"timestamp": "datetime64[us]"}
    )


@pytest.fixture
def tiny_train():
    # 2025-03-03 and 2025-03-10 are Mondays (day_of_week 0), 2025-03-04 a Tuesday.
    return tiny(
        [
            ("2025-03-03 08:00", "A", 10),
            ("2025-03-10 08:00", "A", 20),
            ("2025-03-03 09:00", "A", 30),
            ("2025-03-03 08:00", "B", 2),
            ("2025-03-04 08:00", "B", 4),
        ]
    )


@pytest.fixture
def tiny_test():
    frame = tiny(
        [
            ("2025-03-17 08:00", "A", 0),  # seen (A, Mon, 8): 15
            ("2025-03-11 08:00", "B", 0),  # seen (B, Tue, 8): 4
            ("2025-03-05 12:00", "A", 0),  # unseen hour of week: mean of A, 20
            ("2025-03-17 08:00", "C", 0),  # unseen station: global mean, 66 / 5
            ("2025-03-03 09:00", "B", 0),  # unseen hour of week: mean of B, 3
        ]
    )
    return frame.set_axis([40, 30, 20, 10, 0])


def test_fit_baseline_is_the_group_mean(tiny_train):
    before = tiny_train.copy()
    table = fit_baseline(tiny_train, TINY_FEATURES, BASELINE)

    expected = pd.DataFrame(
        {
            "station_id": ["A", "A", "B", "B"],
            "day_of_week": [0, 0, 0, 1],
            "hour": [8, 9, 8, 8],
            "target_mean": [15.0, 30.0, 2.0, 4.0],
            "rows": [2, 1, 1, 1],
        }
    )
    pd.testing.assert_frame_equal(table, expected, check_dtype=False)
    assert table["target_mean"].dtype == "float64"
    pd.testing.assert_frame_equal(tiny_train, before)


def test_predict_baseline_falls_back_for_unseen_groups(tiny_train, tiny_test):
    table = fit_baseline(tiny_train, TINY_FEATURES, BASELINE)
    before = tiny_test.copy()
    baseline = predict_baseline(table, tiny_test, TINY_FEATURES, BASELINE)

    assert baseline.name == "baseline"
    assert baseline.dtype == "float64"
    assert baseline.index.equals(tiny_test.index)
    np.testing.assert_allclose(baseline.to_numpy(), [15.0, 4.0, 20.0, 13.2, 3.0])
    pd.testing.assert_frame_equal(tiny_test, before)


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        ({"group_by": [], "time_grains": []}, [13.2] * 5),
        ({"group_by": ["station_id"], "time_grains": []}, [20, 3, 20, 13.2, 3]),
        # hour 8 mean is 9 (four rows), hour 9 is 30, hour 12 unseen: global
        ({"group_by": [], "time_grains": ["hour"]}, [9, 9, 13.2, 9, 30]),
    ],
)
def test_predict_baseline_with_coarser_configs(tiny_train, tiny_test, config, expected):
    table = fit_baseline(tiny_train, TINY_FEATURES, config)
    baseline = predict_baseline(table, tiny_test, TINY_FEATURES, config)
    np.testing.assert_allclose(baseline.to_numpy(), expected)


def test_predict_baseline_is_never_nan_on_model_input(train_set, test_set, features):
    table = fit_baseline(train_set, features, BASELINE)
    baseline = predict_baseline(table, test_set, features, BASELINE)
    assert len(baseline) == len(test_set)
    assert baseline.notna().all()
    assert baseline.index.equals(test_set.index)


def test_baseline_rejects_bad_config(tiny_train):
    with pytest.raises(ConfigError, match=r"time grain\(s\) \['minute'\]"):
        fit_baseline(
            tiny_train, TINY_FEATURES, {"group_by": [], "time_grains": ["minute"]}
        )
    with pytest.raises(ConfigError, match=r"\['hour'\] are in both"):
        fit_baseline(
            tiny_train, TINY_FEATURES, {"group_by": ["hour"], "time_grains": ["hour"]}
        )
    with pytest.raises(
        ConfigError,
        match=r"\['zone'\] of baseline\.group_by are not in the data(.|\n)*"
        r"Hint: fix use_case\.baseline\.group_by in conf/base/use_case\.yml",
    ):
        fit_baseline(
            tiny_train, TINY_FEATURES, {"group_by": ["zone"], "time_grains": []}
        )


def test_baseline_rejects_empty_train_set_and_stale_table(tiny_train, tiny_test):
    with pytest.raises(ConfigError, match="train set has no labelled rows"):
        fit_baseline(tiny_train.iloc[:0], TINY_FEATURES, BASELINE)
    table = fit_baseline(tiny_train, TINY_FEATURES, {"group_by": [], "time_grains": []})
    with pytest.raises(ConfigError, match=r"not in the baseline table(.|\n)*refit"):
        predict_baseline(table, tiny_test, TINY_FEATURES, BASELINE)
    with pytest.raises(ConfigError, match=EMPTY_TEST_SET):
        predict_baseline(table, tiny_test.iloc[:0], TINY_FEATURES, {})


# --- evaluate_predictions -----------------------------------------------------------


def predictions_frame(actual, predicted, index=None):
    return pd.DataFrame({"actual": actual, "predicted": predicted}, index=index)


def test_evaluate_predictions_matches_hand_computed_metrics():
    predictions = predictions_frame([0, 2, 4], [1.0, 2.0, 3.0])
    baseline = pd.Series([2.0, 2.0, 2.0], name="baseline")
    before = predictions.copy()

    metrics = evaluate_predictions(predictions, baseline)

    assert set(metrics) == {
        "rmse",
        "mae",
        "r2",
        "baseline_rmse",
        "baseline_mae",
        "baseline_r2",
        "rows",
        "improvement_over_baseline",
    }
    assert all(type(value) is float for value in metrics.values())
    assert metrics["rmse"] == pytest.approx(math.sqrt(2 / 3))
    assert metrics["mae"] == pytest.approx(2 / 3)
    assert metrics["r2"] == pytest.approx(0.75)
    assert metrics["baseline_rmse"] == pytest.approx(math.sqrt(8 / 3))
    assert metrics["baseline_mae"] == pytest.approx(4 / 3)
    assert metrics["baseline_r2"] == pytest.approx(0.0)
    assert metrics["rows"] == 3.0
    assert metrics["improvement_over_baseline"] == pytest.approx(0.5)
    pd.testing.assert_frame_equal(predictions, before)


def test_evaluate_predictions_perfect_model():
    predictions = predictions_frame([1, 2, 3, 4], [1.0, 2.0, 3.0, 4.0])
    metrics = evaluate_predictions(predictions, pd.Series([2.5] * 4))
    assert metrics["rmse"] == 0.0
    assert metrics["mae"] == 0.0
    assert metrics["r2"] == 1.0
    assert metrics["baseline_rmse"] == pytest.approx(math.sqrt(1.25))
    assert metrics["improvement_over_baseline"] == 1.0


def test_evaluate_predictions_aligns_the_baseline_by_index():
    predictions = predictions_frame([0, 2, 4], [1.0, 2.0, 3.0], index=[7, 8, 9])
    baseline = pd.Series([4.0, 0.0, 2.0], index=[9, 7, 8])  # = [0, 2, 4] in order
    assert evaluate_predictions(predictions, baseline)["baseline_rmse"] == 0.0
    with pytest.raises(ValueError, match="not for the same rows"):
        evaluate_predictions(predictions, pd.Series([1.0, 2.0], index=[7, 8]))


def test_evaluate_predictions_refuses_an_empty_test_set():
    with pytest.raises(ConfigError, match=EMPTY_TEST_SET):
        evaluate_predictions(predictions_frame([], []), pd.Series([], dtype=float))


def test_evaluate_predictions_refuses_missing_values():
    predictions = predictions_frame([1.0, np.nan], [1.0, 2.0])
    with pytest.raises(DataContractError, match="1 of 2 test rows have no 'actual'"):
        evaluate_predictions(predictions, pd.Series([1.0, 1.0]))


def test_evaluate_predictions_on_a_trained_model(
    test_predictions, train_set, test_set, features
):
    table = fit_baseline(train_set, features, BASELINE)
    baseline = predict_baseline(table, test_set, features, BASELINE)
    metrics = evaluate_predictions(test_predictions, baseline)
    assert metrics["rows"] == len(test_set)
    assert all(math.isfinite(value) for value in metrics.values())


# --- plots --------------------------------------------------------------------------


def assert_saves_png(fig, path):
    fig.savefig(path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert path.stat().st_size > 1000


def test_plot_predicted_vs_actual(test_predictions, tmp_path):
    before = test_predictions.copy()
    fig = plot_predicted_vs_actual(test_predictions)

    assert isinstance(fig, Figure)
    assert len(fig.axes) == 1
    ax = fig.axes[0]
    assert "RMSE" in ax.get_title()
    assert ax.get_xlabel() == "Actual"
    assert ax.get_ylabel() == "Predicted"
    assert ax.get_xlim() == ax.get_ylim()
    assert len(ax.collections[0].get_offsets()) == len(test_predictions)
    assert_saves_png(fig, tmp_path / "predicted_vs_actual.png")
    pd.testing.assert_frame_equal(test_predictions, before)


def test_plot_predicted_vs_actual_samples_large_sets_reproducibly():
    rng = np.random.default_rng(1)
    actual = rng.uniform(0, 50, 25_000)
    predictions = predictions_frame(actual, actual + rng.normal(0, 1, len(actual)))
    first = plot_predicted_vs_actual(predictions).axes[0].collections[0].get_offsets()
    second = plot_predicted_vs_actual(predictions).axes[0].collections[0].get_offsets()
    assert len(first) == 20_000
    np.testing.assert_array_equal(first, second)


def test_plot_predicted_vs_actual_refuses_an_empty_test_set():
    with pytest.raises(ConfigError, match=EMPTY_TEST_SET):
        plot_predicted_vs_actual(predictions_frame([], []))


def test_plot_residuals(test_predictions, features, tmp_path):
    before = test_predictions.copy()
    fig = plot_residuals(test_predictions, features)

    assert isinstance(fig, Figure)
    assert len(fig.axes) == 2
    for ax in fig.axes:
        assert ax.get_title()
        assert ax.get_xlabel()
        assert "Residual" in ax.get_ylabel()
    assert "hour" in fig.axes[1].get_title()
    assert_saves_png(fig, tmp_path / "residuals.png")
    pd.testing.assert_frame_equal(test_predictions, before)


def test_plot_residuals_aggregates_long_periods_per_day(features):
    times = pd.date_range("2025-01-01", periods=24 * 30, freq="h")
    predictions = pd.DataFrame(
        {"timestamp": times, "actual": 1.0, "predicted": np.linspace(0, 2, len(times))}
    )
    fig = plot_residuals(predictions, features)
    top = fig.axes[0]
    assert "day" in top.get_title()
    assert len(top.lines[0].get_xdata()) == 30


def test_plot_residuals_needs_the_time_column(test_predictions, features):
    with pytest.raises(ConfigError, match=r"\['timestamp'\] are not in the test"):
        plot_residuals(test_predictions.drop(columns="timestamp"), features)


@pytest.fixture(scope="module")
def one_feature_case(features, train_set, test_set):
    """Target = 3 x temperature: only temperature_c matters."""
    train = train_set.assign(rentals=3.0 * train_set["temperature_c"])
    test = test_set.assign(rentals=3.0 * test_set["temperature_c"])
    fitted = build_model(features, HGB)
    return fitted.fit(model_inputs(train, features), train["rentals"]), test


def test_plot_feature_importance_ranks_the_driving_feature_first(
    one_feature_case, features, tmp_path
):
    model, test = one_feature_case
    before = test.copy()
    fig, table = plot_feature_importance(model, test, features, IMPORTANCE)

    assert list(table.columns) == ["feature", "importance_mean", "importance_std"]
    assert sorted(table["feature"]) == sorted(input_columns(features))
    assert table["feature"].iloc[0] == "temperature_c"
    assert table["importance_mean"].is_monotonic_decreasing
    assert isinstance(fig, Figure)
    assert len(fig.axes) == 1
    ax = fig.axes[0]
    assert "Permutation importance" in ax.get_title()
    labels = [label.get_text() for label in ax.get_yticklabels()]
    assert labels[int(np.argmax(ax.get_yticks()))] == "temperature_c"  # top bar
    assert "timestamp (calendar)" in labels
    assert_saves_png(fig, tmp_path / "importance.png")
    pd.testing.assert_frame_equal(test, before)


def test_plot_feature_importance_is_seeded_and_samples(model, test_set, features):
    config = {"max_rows": 40, "n_repeats": 2, "seed": 3}
    fig, first = plot_feature_importance(model, test_set, features, config)
    _, second = plot_feature_importance(model, test_set, features, config)
    pd.testing.assert_frame_equal(first, second)
    assert "40 rows" in fig.axes[0].get_title()


def test_plot_feature_importance_rejects_bad_config(model, test_set, features):
    with pytest.raises(ConfigError, match=r"importance\.n_repeats is 0"):
        plot_feature_importance(
            model, test_set, features, {**IMPORTANCE, "n_repeats": 0}
        )
    with pytest.raises(ConfigError, match=r"importance\.max_rows is None"):
        plot_feature_importance(model, test_set, features, {"n_repeats": 2})
    with pytest.raises(ConfigError, match=EMPTY_TEST_SET):
        plot_feature_importance(model, test_set.iloc[:0], features, IMPORTANCE)


# --- data without a time column or a key (finding: baseline hard-coded station_id) ---

STATIC_FEATURES = {
    "time_column": None,
    "key_columns": [],
    "dedupe": "whole_rows",
    "target": "target",
    "numeric": ["age", "sex", "bmi", "bp", "s1", "s2", "s3", "s4", "s5", "s6"],
    "categorical": [],
    "calendar": [],
}


@pytest.fixture(scope="module")
def static_case():
    """sklearn's diabetes data (no time column, no key): train, test, fitted model."""
    from sklearn.datasets import load_diabetes  # noqa: PLC0415

    data = load_diabetes(as_frame=True, scaled=False).frame
    train, test = data.iloc[:350], data.iloc[350:]
    fitted = build_model(STATIC_FEATURES, HGB)
    return (
        train,
        test,
        fitted.fit(model_inputs(train, STATIC_FEATURES), train["target"]),
    )


def test_without_time_column_or_key_evaluation_runs_end_to_end(static_case, caplog):
    train, test, model = static_case
    predictions = predict_test_set(model, test, STATIC_FEATURES)
    assert list(predictions.columns) == ["actual", "predicted"]
    # The default use case's baseline config, applied to data that has neither the
    # station_id group nor a time column: time grains are ignored, and naming a
    # column the data lacks says which key of which file to fix.
    bike_baseline = {"group_by": ["station_id"], "time_grains": ["day_of_week", "hour"]}
    with pytest.raises(
        ConfigError,
        match=r"\['station_id'\] of baseline\.group_by are not in the data(.|\n)*"
        r"Hint: fix use_case\.baseline\.group_by in conf/base/use_case\.yml",
    ):
        fit_baseline(train, STATIC_FEATURES, bike_baseline)
    grains_only = {"group_by": [], "time_grains": ["day_of_week", "hour"]}
    table = fit_baseline(train, STATIC_FEATURES, grains_only)
    assert "time_grains ['day_of_week', 'hour'] are ignored" in caplog.text
    baseline = predict_baseline(table, test, STATIC_FEATURES, grains_only)
    np.testing.assert_allclose(baseline.to_numpy(), train["target"].mean())
    by_sex = {"group_by": ["sex"], "time_grains": []}
    grouped = predict_baseline(
        fit_baseline(train, STATIC_FEATURES, by_sex), test, STATIC_FEATURES, by_sex
    )
    means = train.groupby("sex")["target"].mean()
    np.testing.assert_allclose(grouped.to_numpy(), test["sex"].map(means).to_numpy())
    metrics = evaluate_predictions(predictions, baseline)
    assert metrics["rmse"] < metrics["baseline_rmse"]


def test_residuals_without_time_are_plotted_against_the_prediction(static_case):
    _, test, model = static_case
    predictions = predict_test_set(model, test, STATIC_FEATURES)
    fig = plot_residuals(predictions, STATIC_FEATURES)
    top, bottom = fig.axes
    assert (
        top.get_title() == "Residual against prediction (all 92 rows; no time column)"
    )
    assert top.get_xlabel() == "Predicted"
    offsets = top.collections[0].get_offsets()
    np.testing.assert_allclose(offsets[:, 0], predictions["predicted"])
    np.testing.assert_allclose(
        offsets[:, 1], predictions["predicted"] - predictions["actual"]
    )
    assert bottom.get_title() == "Distribution of residuals"
    importance_fig, table = plot_feature_importance(
        model, test, STATIC_FEATURES, IMPORTANCE
    )
    assert set(table["feature"]) == set(STATIC_FEATURES["numeric"])
    assert "calendar" not in importance_fig.axes[0].get_title()


def test_daily_data_residuals_are_shown_by_day_of_week(features):
    days = pd.date_range("2025-03-01", periods=28, freq="D")
    predictions = pd.DataFrame(
        {"timestamp": days, "actual": np.arange(28.0), "predicted": np.arange(28.0) + 1}
    )
    bottom = plot_residuals(predictions, features).axes[1]
    assert bottom.get_xlabel() == "Day of week (0 = Monday) (from timestamp)"
