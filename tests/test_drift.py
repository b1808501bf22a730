"""Unit tests of modelops.drift: profiles, chunked accumulation, statistics, verdict."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from modelops import drift
from modelops.errors import ConfigError

SETTINGS = {
    "psi_epsilon": 1e-4,
    "max_categories": 20,
    "report_only": ["flag"],
    "numeric": {"wasserstein_norm": 0.5, "ks_pvalue": 0.01, "psi": 0.25},
    "categorical": {
        "jensen_shannon": 0.1,
        "chi2_pvalue": 0.01,
        "psi": 0.25,
        "new_category_share": 0.01,
    },
    "prediction": {"wasserstein_norm": 0.4, "ks_pvalue": 0.01, "psi": 0.25},
    "performance": {"degradation": 0.5, "min_labelled_rows": 10},
    "verdict": {
        "dataset_drift_share": 0.1,
        "retrain_on": {
            "dataset_drift": True,
            "prediction_drift": True,
            "performance_degraded": True,
            "new_categories": True,
        },
    },
}
REFERENCE = {"bins": 10, "sample_size": 500, "seed": 0}
NUMERIC = ["shifted", "steady", "flag"]
CATEGORICAL = ["station"]


def frame(rows: int, seed: int, shift: float = 0.0, new: bool = False) -> pd.DataFrame:
    """Synthetic log rows over three days: two numeric columns, a bool, a category."""
    rng = np.random.default_rng(seed)
    stations = np.array(["A", "B", "C"])
    station = stations[rng.integers(0, 3, rows)].astype(object)
    if new:
        station[: rows // 5] = "Z"
    return pd.DataFrame(
        {
            "timestamp": pd.Timestamp("2025-05-01")
            + pd.to_timedelta(np.sort(rng.integers(0, 72, rows)), unit="h"),
            "key": np.arange(rows) + seed * 1_000_000,
            "shifted": rng.normal(10.0 + shift, 2.0, rows),
            "steady": rng.normal(0.0, 1.0, rows),
            "flag": rng.random(rows) < (0.5 if shift else 0.0),
            "station": pd.array(station, dtype="str"),
            "prediction": rng.normal(5.0, 1.0, rows),
            "actual": rng.normal(5.0, 1.0, rows),
        }
    )


@pytest.fixture(scope="module")
def profile() -> dict:
    reference = frame(4000, seed=1)
    return drift.build_profile(
        reference,
        reference["actual"].to_numpy(),
        drift.row_keys(reference, ["key"], 0),
        numeric=NUMERIC,
        categorical=CATEGORICAL,
        key_columns=["key"],
        settings=REFERENCE,
    ) | {"test_rmse": 1.4}


def accumulate(
    profile: dict, rows: pd.DataFrame, chunk: int
) -> drift.WindowAccumulator:
    acc = drift.WindowAccumulator(profile, "prediction", ["key"])
    for start in range(0, len(rows), chunk):
        part = rows.iloc[start : start + chunk]
        codes, uniques = drift.day_labels(part["timestamp"])
        acc.add(part, codes, uniques)
        acc.add_errors(
            codes, uniques, part["actual"].to_numpy(), part["prediction"].to_numpy()
        )
    return acc


def entry(result: dict, column: str) -> dict:
    return next(item for item in result["features"] if item["column"] == column)


def test_a_shifted_numeric_column_is_flagged_and_an_unshifted_one_is_not(profile):
    result = drift.evaluate_window(
        profile, accumulate(profile, frame(3000, 2, shift=3.0), 3000), SETTINGS
    )
    shifted, steady = entry(result, "shifted"), entry(result, "steady")
    assert shifted["drifted"] is True
    assert shifted["statistics"]["wasserstein_norm"] > 1.0
    assert shifted["statistics"]["ks_pvalue"] < 1e-10
    assert "wasserstein_norm" in shifted["reason"]
    assert steady["drifted"] is False
    assert result["verdict"]["drifted_columns"] == ["shifted"]
    assert result["verdict"]["retrain_recommended"] is True
    assert "shifted" in result["verdict"]["reason"]


def test_nothing_is_flagged_without_drift(profile):
    result = drift.evaluate_window(
        profile, accumulate(profile, frame(3000, 3), 1000), SETTINGS
    )
    assert [item["column"] for item in result["features"] if item["drifted"]] == []
    assert result["prediction"]["drifted"] is False
    assert result["performance"]["degraded"] is False
    assert result["verdict"]["retrain_recommended"] is False
    assert result["verdict"]["first_drift_day"] is None
    assert result["verdict"]["reason"].startswith("No drift")


def test_a_report_only_column_is_reported_but_never_flagged(profile):
    result = drift.evaluate_window(
        profile, accumulate(profile, frame(3000, 2, shift=3.0), 3000), SETTINGS
    )
    flag = entry(result, "flag")
    assert flag["statistics"]["wasserstein_norm"] > 0.4  # it did move
    assert flag["drifted"] is False
    assert flag["report_only"] is True
    assert "flag" not in result["verdict"]["drifted_columns"]


def test_new_categories_are_counted_and_flag_the_column(profile):
    result = drift.evaluate_window(
        profile, accumulate(profile, frame(3000, 4, new=True), 700), SETTINGS
    )
    station = entry(result, "station")
    assert station["statistics"]["new_categories"] == 1
    assert station["statistics"]["new_category_share"] == pytest.approx(0.2)
    assert station["new_category_examples"] == ["Z"]
    assert station["drifted"] is True
    assert station["distribution"]["labels"][-1] == drift.NEW_LABEL
    assert result["verdict"]["new_categories"] is True
    assert result["verdict"]["retrain_recommended"] is True


def test_a_category_seen_in_training_but_not_in_the_reference_days_is_not_new():
    stats = drift.categorical_statistics(
        {"clear": 90, "rain": 10},
        {"clear": 80, "snow": 20},
        1e-4,
        ["clear", "rain", "snow"],
    )
    assert stats["new_categories"] == 0
    assert stats["new_category_share"] == 0.0


def test_chunked_accumulation_equals_one_shot(profile):
    rows = frame(5000, 5, shift=1.0)
    one = drift.evaluate_window(profile, accumulate(profile, rows, len(rows)), SETTINGS)
    chunked = drift.evaluate_window(profile, accumulate(profile, rows, 333), SETTINGS)
    assert json.dumps(one, sort_keys=True) == json.dumps(chunked, sort_keys=True)


def test_the_window_state_does_not_grow_with_rows(profile):
    acc = accumulate(profile, frame(20_000, 6), 2000)
    assert len(acc.sample_keys) == REFERENCE["sample_size"]
    assert all(len(values) == 500 for values in acc.sample_values.values())
    assert len(acc.hist["shifted"]) == 3  # one histogram per day


def test_performance_is_rmse_per_day_against_the_test_rmse(profile):
    rows = frame(3000, 7).assign(actual=lambda f: f["prediction"] + 3.0)
    result = drift.evaluate_window(profile, accumulate(profile, rows, 1000), SETTINGS)
    performance = result["performance"]
    assert performance["rmse"] == pytest.approx(3.0)
    assert performance["mae"] == pytest.approx(3.0)
    assert performance["degradation"] == pytest.approx(3.0 / 1.4 - 1, rel=1e-6)
    assert performance["degraded"] is True
    assert [day["day"] for day in performance["daily"]] == [
        "2025-05-01",
        "2025-05-02",
        "2025-05-03",
    ]
    assert result["verdict"]["performance_degraded"] is True
    assert "RMSE" in result["verdict"]["reason"]


def test_the_profile_round_trips_through_json(profile):
    assert json.loads(json.dumps(profile)) == profile
    rows = frame(2000, 8)
    back = json.loads(json.dumps(profile))
    first = drift.evaluate_window(profile, accumulate(profile, rows, 500), SETTINGS)
    second = drift.evaluate_window(back, accumulate(back, rows, 500), SETTINGS)
    assert first == second


def test_statistics_are_scipy_s_on_the_samples(profile):
    from scipy.stats import ks_2samp, wasserstein_distance  # noqa: PLC0415

    acc = accumulate(profile, frame(3000, 9, shift=1.0), 3000)
    reference = profile["numeric"]["shifted"]
    stats = drift.numeric_statistics(
        reference, acc.numeric_counts("shifted"), acc.sample("shifted"), 1e-4
    )
    ref_sample = np.asarray(reference["sample"])
    assert stats["ks_pvalue"] == ks_2samp(ref_sample, acc.sample("shifted")).pvalue
    assert stats["wasserstein_norm"] == pytest.approx(
        wasserstein_distance(ref_sample, acc.sample("shifted")) / reference["std"]
    )


def test_psi_is_zero_for_equal_shares_and_finite_for_empty_bins():
    assert drift.psi([10, 20, 30], [1, 2, 3], 1e-4) == pytest.approx(0.0, abs=1e-12)
    assert 0 < drift.psi([10, 0, 30], [10, 5, 30], 1e-4) < 10


def test_a_threshold_for_a_column_the_model_lacks_is_ignored_and_logged(
    profile, caplog
):
    acc = accumulate(profile, frame(500, 10), 500)
    settings = {**SETTINGS, "columns": {"nope": {"wasserstein_norm": 1.0}}}
    result = drift.evaluate_window(profile, acc, settings)
    assert "nope" not in [item["column"] for item in result["features"]]
    assert "monitoring.columns names ['nope']" in caplog.text


def test_a_per_column_threshold_overrides_the_default(profile):
    acc = accumulate(profile, frame(3000, 2, shift=3.0), 3000)
    settings = {**SETTINGS, "columns": {"shifted": {"wasserstein_norm": 100.0}}}
    result = drift.evaluate_window(profile, acc, settings)
    assert entry(result, "shifted")["drifted"] is False
    assert entry(result, "shifted")["thresholds"]["wasserstein_norm"] == 100.0


def test_an_unknown_performance_aggregate_is_refused(profile):
    acc = accumulate(profile, frame(500, 11), 500)
    settings = {
        **SETTINGS,
        "performance": {**SETTINGS["performance"], "aggregate": "x"},
    }
    with pytest.raises(
        ConfigError, match=r"monitoring.performance.aggregate is 'x'.*\nHint: fix conf"
    ):
        drift.evaluate_window(profile, acc, settings)
