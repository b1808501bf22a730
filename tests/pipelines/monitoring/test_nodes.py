"""Tests of the monitoring nodes on small simulated logs (in process, no Kedro session)."""

from __future__ import annotations

import datetime as dt
import functools

import numpy as np
import pandas as pd
import pytest

from modelops.drift import MonitoringError
from modelops.pipelines.monitoring.nodes import (
    monitor_window,
    profile_reference,
    publish_result,
)
from modelops.simulator import simulate_days

SAVE_VERSION = "2025-05-10T03.00.00.000Z"
START = dt.date(2025, 4, 1)


def days(start: dt.date, count: int, drift: str = "none") -> pd.DataFrame:
    frames = simulate_days(start, count, seed=5, n_stations=6, drift=drift)
    return pd.concat([frame for _, frame in frames], ignore_index=True)


def log_rows(source: pd.DataFrame, version: int, run: str) -> pd.DataFrame:
    """Prediction-log rows (inputs, prediction, identity) for the source rows."""
    return source.drop(columns="rentals").assign(
        prediction=source["rentals"].to_numpy(dtype=float) + 0.5,
        model_name="m",
        model_version=np.int64(version),
        run_id="r",
        request_id=f"batch-{run}",
        scored_at=pd.Timestamp("2025-05-09", tz="UTC"),
        source_partition=source["timestamp"].dt.strftime("%Y-%m-%d").astype("str"),
    )


def loader(frame: pd.DataFrame, columns: list[str] | None = None) -> pd.DataFrame:
    return frame if columns is None else frame[[c for c in columns if c in frame]]


@pytest.fixture(scope="module")
def params(request):
    from tests.conftest import load_base_config  # noqa: PLC0415

    parameters = load_base_config("parameters")
    monitoring = {**parameters["monitoring"], "env": "test", "min_rows": 10}
    return {
        "monitoring": monitoring,
        "features": parameters["features"],
        "source": parameters["source"],
    }


@pytest.fixture(scope="module")
def reference(params):
    table = days(START, 28)
    train, test = table.iloc[: 24 * 6 * 14], table.iloc[24 * 6 * 14 :]
    predictions = test[["timestamp", "station_id"]].assign(
        actual=test["rentals"], predicted=test["rentals"] + 0.5
    )
    manifest = {"train_sha256": "abc", "test_sha256": "def"}
    profile = profile_reference(
        train, test, predictions, manifest, params["features"], params["monitoring"]
    )
    return {
        "model": {
            "name": "m",
            "version": "3",
            "alias": "champion",
            "run_id": "r",
            "serving_form": "onnx",
        },
        "profile": profile,
    }


@pytest.fixture(scope="module")
def window_source():
    return days(START + dt.timedelta(days=28), 7)


def source_loaders(frame: pd.DataFrame) -> dict:
    by_day = {
        str(day): part
        for day, part in frame.groupby(frame["timestamp"].dt.strftime("%Y-%m-%d"))
    }
    return {
        day: functools.partial(lambda part: part, part) for day, part in by_day.items()
    }


def test_the_profile_is_the_newest_reference_days(reference, params):
    profile = reference["profile"]
    assert profile["reference_rows"]["days"] == 14
    assert profile["reference_rows"]["first_day"] == "2025-04-15"
    assert profile["reference_rows"]["last_day"] == "2025-04-28"
    assert profile["train_sha256"] == "abc"
    assert profile["test_rmse"] == pytest.approx(0.5)
    assert set(profile["numeric"]) == set(params["features"]["numeric"])


def test_a_rescored_partition_counts_once_and_other_versions_apart(
    reference, window_source, params
):
    old = log_rows(window_source, 3, "old")
    new = log_rows(window_source[window_source["timestamp"].dt.day <= 2], 3, "new")
    other = log_rows(window_source.iloc[:50], 4, "other")
    logs = {
        "batch": {
            "2025-05-08T00.00.00.000Z": {
                "2025-04-29_to_2025-05-05": functools.partial(loader, old)
            },
            "2025-05-09T00.00.00.000Z": {
                "2025-04-29_to_2025-04-30": functools.partial(loader, new)
            },
        },
        "rest": {"2025-05-01": {"f1": functools.partial(loader, other)}},
    }
    result = monitor_window(
        logs,
        source_loaders(window_source),
        reference,
        SAVE_VERSION,
        params["monitoring"],
        params["features"],
        params["source"],
    )
    assert result["window"]["rows"] == len(window_source)
    assert result["window"]["ignored_rows"] == {
        "other_versions": 50,
        "rescored": len(new),
    }
    assert result["window"]["start"] == "2025-04-29"
    assert result["window"]["end"] == "2025-05-05"
    assert result["computed_at"] == "2025-05-10T03:00:00+00:00"
    assert result["model"]["version"] == "3"
    assert result["performance"]["available"] is True
    assert result["performance"]["labelled_rows"] == len(window_source)
    assert result["performance"]["rmse"] == pytest.approx(0.5)
    assert result["verdict"]["retrain_recommended"] is False, result["verdict"]
    scores, metrics, verdict = publish_result(result)
    assert list(scores["column"])[-1] == "prediction"
    assert metrics["performance.rmse"] == pytest.approx(0.5)
    assert verdict["retrain_recommended"] is False


def test_new_stations_are_flagged(reference, params):
    drifted = days(START + dt.timedelta(days=28), 7, drift="new_category")
    logs = {
        "batch": {
            "2025-05-08T00.00.00.000Z": {
                "all": functools.partial(loader, log_rows(drifted, 3, "x"))
            }
        },
        "rest": {},
    }
    with pytest.raises(MonitoringError, match="No prediction-log day"):
        monitor_window(
            logs,
            {},
            reference,
            SAVE_VERSION,
            params["monitoring"],
            params["features"],
            params["source"],
        )
    logs["batch"]["2025-05-08T00.00.00.000Z"] = {
        "2025-04-29_to_2025-05-05": logs["batch"]["2025-05-08T00.00.00.000Z"]["all"]
    }
    result = monitor_window(
        logs,
        {},
        reference,
        SAVE_VERSION,
        params["monitoring"],
        params["features"],
        params["source"],
    )
    assert "station_id" in result["verdict"]["drifted_columns"]
    assert result["verdict"]["new_categories"] is True
    assert result["verdict"]["retrain_recommended"] is True
    assert result["performance"]["available"] is False


def test_a_window_without_rows_of_the_served_version_says_which_and_how_to_fix(
    reference, window_source, params
):
    logs = {
        "batch": {
            "2025-05-08T00.00.00.000Z": {
                "2025-04-29_to_2025-05-05": functools.partial(
                    loader, log_rows(window_source, 2, "old")
                )
            }
        },
        "rest": {},
    }
    with pytest.raises(
        MonitoringError,
        match=(
            r"The monitoring window 2025-04-29 \.\. 2025-05-05 holds 0 prediction-log "
            r"rows of m version 3 \(alias champion\).*"
            rf"{len(window_source)} rows of other versions were skipped\.\nHint: score "
            r"the window with the served version first"
        ),
    ):
        monitor_window(
            logs,
            {},
            reference,
            SAVE_VERSION,
            params["monitoring"],
            params["features"],
            params["source"],
        )


def test_the_report_gets_the_earlier_results_only(monkeypatch):
    from modelops.pipelines.monitoring import nodes  # noqa: PLC0415

    seen = {}
    monkeypatch.setattr(
        nodes, "render_report", lambda result, history: seen.setdefault("h", history)
    )
    history = [{"computed_at": f"t{i}"} for i in range(5)]
    nodes.build_report({"computed_at": "t4"}, history, {"report": {"history_runs": 2}})
    assert seen["h"] == [{"computed_at": "t2"}, {"computed_at": "t3"}]
