"""Nodes of the monitoring pipeline: the reference profile, and a window against it."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from modelops import drift
from modelops.batch_datasets import save_version_time
from modelops.contracts import use_case_key
from modelops.drift import MonitoringError, WindowAccumulator
from modelops.errors import ConfigError, positive_days
from modelops.monitoring_report import render_report
from modelops.prediction_log import MODEL_VERSION, SOURCE_PARTITION

logger = logging.getLogger(__name__)

MONITORING_CONF = drift.MONITORING_CONF
ACTUAL = "actual"
PREDICTED = "predicted"
_LABEL = "__modelops_label__"

Loader = Callable[..., pd.DataFrame]


# --- the reference profile (evaluation pipeline) -----------------------------------


def reference_rows(
    train_set: pd.DataFrame,
    test_set: pd.DataFrame,
    features: Mapping[str, Any],
    days: int | None,
) -> pd.DataFrame:
    """The rows the feature reference is built from: the newest ``days`` days seen.

    Args:
        train_set: The version's train set; not modified.
        test_set: The version's test set; not modified.
        features: The ``features`` parameters (``time_column``).
        days: Newest days of train + test to keep (by the time column's date); None
            keeps every row (and so does data without a time column).

    Returns:
        The reference rows (a new frame).
    """
    return _newest_days(
        pd.concat([train_set, test_set], ignore_index=True), features, days
    )


def _newest_days(
    both: pd.DataFrame, features: Mapping[str, Any], days: int | None
) -> pd.DataFrame:
    time_column = features.get("time_column")
    if days is None or not time_column:
        return both
    day = pd.to_datetime(both[time_column]).dt.normalize()
    first = day.max() - pd.Timedelta(days=int(days) - 1)
    return both.loc[day >= first].reset_index(drop=True)


def profile_reference(
    train_set: pd.DataFrame,
    test_set: pd.DataFrame,
    test_predictions: pd.DataFrame,
    split_manifest: Mapping[str, Any],
    features: Mapping[str, Any],
    monitoring: Mapping[str, Any],
) -> dict[str, Any]:
    """Profile what monitoring compares production with: this version's own data.

    Features: the newest ``monitoring.reference.days`` days of the version's train and
    test data (the data nearest to production, so seasonal data is not flagged for
    its season); predictions: the version's test predictions. Also records the
    train/test content hashes (the lineage link the monitoring job checks), the row
    counts and the test-time RMSE.

    Args:
        train_set: The train set; not modified.
        test_set: The test set; not modified.
        test_predictions: ``actual`` and ``predicted`` per test row (with the keys).
        split_manifest: The split's manifest (``train_sha256``, ``test_sha256``...).
        features: The ``features`` parameters.
        monitoring: The ``monitoring`` parameters (``reference``).

    Returns:
        A JSON-able profile (``modelops.drift.build_profile`` plus lineage).

    Raises:
        ConfigError: ``monitoring.reference`` is invalid or the data lacks a column.
    """
    settings = monitoring["reference"]
    days = settings.get("days")
    positive_days(
        days,
        "monitoring.reference.days",
        "(the whole train and test data)",
        f"fix {MONITORING_CONF}.",
    )
    numeric = list(features["numeric"])
    categorical = list(features["categorical"])
    keys = list(features.get("key_columns") or [])
    seen = pd.concat([train_set, test_set], ignore_index=True)
    reference = _newest_days(seen, features, days)
    missing = [
        name for name in [*numeric, *categorical] if name not in reference.columns
    ]
    if missing:
        raise ConfigError(
            f"Feature column(s) {missing} are not in the train/test sets.\nHint: fix "
            f"{use_case_key('features')}."
        )
    predicted = test_predictions[PREDICTED].to_numpy(dtype=np.float64)
    actual = pd.to_numeric(test_predictions[ACTUAL]).to_numpy(dtype=np.float64)
    prediction_keys = drift.row_keys(test_predictions, keys, int(settings["seed"]))
    profile = drift.build_profile(
        reference,
        predicted,
        prediction_keys,
        numeric=numeric,
        categorical=categorical,
        key_columns=keys,
        settings=settings,
        seen=seen,
    )
    time_column = features.get("time_column")
    first_day = last_day = None
    if time_column and len(reference):
        times = pd.to_datetime(reference[time_column])
        first_day, last_day = str(times.min().date()), str(times.max().date())
    test_rmse = (
        float(np.sqrt(np.mean((predicted - actual) ** 2))) if len(actual) else None
    )
    profile.update(
        {
            "train_sha256": split_manifest.get("train_sha256"),
            "test_sha256": split_manifest.get("test_sha256"),
            "train_rows": len(train_set),
            "test_rows": len(test_set),
            "metric": "rmse",
            "test_rmse": test_rmse,
            "reference_rows": {
                "days": days,
                "first_day": first_day,
                "last_day": last_day,
                "rows": len(reference),
            },
            "key_columns": keys,
            "time_column": time_column,
        }
    )
    logger.info(
        "Reference profile: %d rows (%s .. %s), %d numeric and %d categorical "
        "columns, test RMSE %s",
        len(reference),
        first_day,
        last_day,
        len(numeric),
        len(categorical),
        test_rmse,
    )
    return profile


# --- the window ------------------------------------------------------------------


def _iso(value: object, setting: str) -> str | None:
    if value is None:
        return None
    try:
        return dt.date.fromisoformat(str(value)).isoformat()
    except ValueError as err:
        raise ConfigError(
            f"{setting} is {value!r}; expected a date like 2025-05-01 or null.\nHint: "
            f"fix {MONITORING_CONF} or pass --params {setting}=YYYY-MM-DD."
        ) from err


def _chunk_days(key: str) -> list[str] | None:
    """The days a batch chunk file covers, from its name (None when not a date)."""
    first, _, last = key.partition("_to_")
    try:
        start = dt.date.fromisoformat(first)
        end = dt.date.fromisoformat(last) if last else start
    except ValueError:
        return None
    return [
        (start + dt.timedelta(days=offset)).isoformat()
        for offset in range((end - start).days + 1)
    ]


def _log_days(logs: Mapping[str, Any]) -> list[str]:
    days: set[str] = set()
    for chunks in logs["batch"].values():
        for key in chunks:
            days.update(_chunk_days(key) or [])
    for day in logs["rest"]:
        if _chunk_days(day):
            days.add(day)
    return sorted(days)


def select_window(logs: Mapping[str, Any], window: Mapping[str, Any]) -> list[str]:
    """The window's days: logged days inside [start, end], the newest ``last_days``.

    Raises:
        ConfigError: a bound is not a date or ``last_days`` is not positive.
        MonitoringError: no logged day lies in the window.
    """
    start = _iso(window.get("start"), "monitoring.window.start")
    end = _iso(window.get("end"), "monitoring.window.end")
    last_days = window.get("last_days")
    positive_days(
        last_days,
        "monitoring.window.last_days",
        "for every day in [start, end]",
        f"fix {MONITORING_CONF} or pass --params monitoring.window.last_days=7.",
    )
    logged = _log_days(logs)
    days = [
        day
        for day in logged
        if (start is None or day >= start) and (end is None or day <= end)
    ]
    if last_days is not None:
        days = days[-last_days:]
    if not days:
        found = f"{logged[0]} .. {logged[-1]}" if logged else "no day at all"
        raise MonitoringError(
            f"No prediction-log day in the monitoring window start={start}, "
            f"end={end}, last_days={last_days}; the env's logs cover {found}.\nHint: "
            f"score the days first (`kedro run --env <env> --pipelines serving`) or "
            f"set monitoring.window in {MONITORING_CONF} (e.g. --params "
            f"monitoring.window.last_days=7)."
        )
    return days


def _log_columns(features: Mapping[str, Any], prediction: str) -> list[str]:
    keys = list(features.get("key_columns") or [])
    time_column = [features["time_column"]] if features.get("time_column") else []
    return list(
        dict.fromkeys(
            [
                *keys,
                *time_column,
                *features["numeric"],
                *features["categorical"],
                prediction,
                MODEL_VERSION,
                SOURCE_PARTITION,
            ]
        )
    )


def _row_days(
    frame: pd.DataFrame, time_column: str | None, fallback: str | None
) -> tuple[np.ndarray, list[str]]:
    """Day codes and day names of the rows (their time column, else the file's day)."""
    if time_column and time_column in frame.columns:
        return drift.day_labels(frame[time_column])
    if SOURCE_PARTITION in frame.columns and frame[SOURCE_PARTITION].notna().all():
        codes, uniques = pd.factorize(frame[SOURCE_PARTITION].astype("str"), sort=True)
        return codes, [str(day) for day in uniques]
    return np.zeros(len(frame), dtype=np.int64), [fallback or "unknown"]


class _Labels:
    """Labels of the window's days from the source partitions, two days cached."""

    def __init__(
        self,
        partitions: Mapping[str, Loader],
        features: Mapping[str, Any],
        date_format: str,
    ) -> None:
        self._partitions = partitions
        self._keys = list(features.get("key_columns") or [])
        self._target = features["target"]
        self._format = date_format
        self._cache: dict[str, pd.DataFrame | None] = {}

    def day(self, day: str) -> pd.DataFrame | None:
        if day in self._cache:
            return self._cache[day]
        partition = dt.date.fromisoformat(day).strftime(self._format)
        loader = self._partitions.get(partition)
        labels = None
        if loader is not None:
            frame = loader()
            if self._target in frame.columns and all(
                key in frame.columns for key in self._keys
            ):
                labels = frame[[*self._keys, self._target]].rename(
                    columns={self._target: _LABEL}
                )
                labels = labels.drop_duplicates(self._keys, keep="last")
        if len(self._cache) >= 2:  # noqa: PLR2004 - a chunk spans at most a day or two
            self._cache.pop(next(iter(self._cache)))
        self._cache[day] = labels
        return labels

    def join(
        self, chunk: pd.DataFrame, codes: np.ndarray, uniques: Sequence[str]
    ) -> np.ndarray:
        """The label of every chunk row (NaN where none has arrived)."""
        actual = np.full(len(chunk), np.nan)
        if not self._keys:
            return actual
        for code, day in enumerate(uniques):
            labels = self.day(day)
            if labels is None:
                continue
            rows = np.flatnonzero(codes == code)
            joined = chunk.iloc[rows][self._keys].merge(
                labels, how="left", on=self._keys, validate="many_to_one"
            )
            actual[rows] = pd.to_numeric(joined[_LABEL]).to_numpy(
                dtype=np.float64, na_value=np.nan
            )
        return actual


def iter_log_chunks(
    logs: Mapping[str, Any],
    days: Sequence[str],
    columns: Sequence[str],
) -> Iterator[tuple[str, str | None, pd.DataFrame]]:
    """Yield ``(kind, run version, frame)`` per log file that may hold window rows.

    Batch run versions come newest first (so a re-scored partition's newest scoring
    is met first), then the REST day folders of the window (and a day either side:
    requests near midnight).
    """
    wanted = set(days)
    for version in sorted(logs["batch"], reverse=True):
        for key, loader in logs["batch"][version].items():
            covered = _chunk_days(key)
            if covered is not None and not wanted.intersection(covered):
                continue
            yield "batch", version, loader(columns=list(columns))
    first = dt.date.fromisoformat(days[0]) - dt.timedelta(days=1)
    last = dt.date.fromisoformat(days[-1]) + dt.timedelta(days=1)
    for day, files in sorted(logs["rest"].items()):
        try:
            folder_day = dt.date.fromisoformat(day)
        except ValueError:
            continue
        if first <= folder_day <= last:
            for loader in files.values():
                yield "rest", None, loader(columns=list(columns))


def accumulate_window(
    logs: Mapping[str, Any],
    source_partitions: Mapping[str, Loader] | pd.DataFrame,
    profile: Mapping[str, Any],
    version: int,
    days: Sequence[str],
    monitoring: Mapping[str, Any],
    features: Mapping[str, Any],
    date_format: str,
) -> tuple[WindowAccumulator, dict[str, int]]:
    """Read the window's log rows file by file into a bounded accumulator.

    Only rows of ``version`` on the window's days count; rows of other versions are
    counted apart, and a source partition batch-scored more than once counts once,
    from its newest scoring (the others are counted as ``rescored``).

    Returns:
        The accumulator and ``{"other_versions", "rescored", "outside_window"}``.
    """
    prediction = monitoring["prediction_column"]
    keys = list(features.get("key_columns") or [])
    time_column = features.get("time_column")
    acc = WindowAccumulator(profile, prediction, keys)
    labels = (
        _Labels(source_partitions, features, date_format)
        if isinstance(source_partitions, Mapping)
        else None
    )
    ignored = {"other_versions": 0, "rescored": 0}
    in_window = set(days)
    seen: set[str] = set()  # partitions a newer batch run scored with this version
    current_run: str | None = None
    run_partitions: set[str] = set()
    columns = _log_columns(features, prediction)
    for kind, run, read in iter_log_chunks(logs, days, columns):
        frame = read
        if kind == "batch" and run != current_run:
            seen |= run_partitions
            current_run, run_partitions = run, set()
        codes, uniques = _row_days(frame, time_column, None)
        inside = np.array([day in in_window for day in uniques], dtype=bool)
        keep = inside[codes] if len(uniques) else np.zeros(len(frame), dtype=bool)
        if MODEL_VERSION in frame.columns:
            mine = frame[MODEL_VERSION].to_numpy() == version
            ignored["other_versions"] += int((keep & ~mine).sum())
            keep &= mine
        if kind == "batch" and SOURCE_PARTITION in frame.columns:
            partition = frame[SOURCE_PARTITION]
            if seen:
                again = partition.isin(seen).to_numpy(dtype=bool)
                ignored["rescored"] += int((keep & again).sum())
                keep &= ~again
            run_partitions.update(str(p) for p in partition[keep].unique())
        if not keep.any():
            continue
        if not keep.all():
            frame = frame.loc[keep].reset_index(drop=True)
            codes = codes[keep]
        acc.add(frame, codes, uniques)
        if labels is not None:
            actual = labels.join(frame, codes, uniques)
            acc.add_errors(codes, uniques, actual, frame[prediction].to_numpy())
    return acc, ignored


def _computed_at(save_version: str) -> str:
    return save_version_time(save_version).isoformat()


def monitor_window(
    prediction_logs: Mapping[str, Any],
    source_partitions: Mapping[str, Loader] | pd.DataFrame,
    reference: Mapping[str, Any],
    save_version: str,
    monitoring: Mapping[str, Any],
    features: Mapping[str, Any],
    source: Mapping[str, Any],
) -> dict[str, Any]:
    """Compare a window of the served version's prediction log with its reference.

    Args:
        prediction_logs: The env's logs as lazy loaders (``PredictionLogsDataset``).
        source_partitions: The production source's partition loaders (labels).
        reference: ``{"model", "profile"}`` of the version the env's alias points
            to (``ReferenceProfileDataset``).
        save_version: The run's Kedro save version (``computed_at``).
        monitoring: The ``monitoring`` parameters.
        features: The ``features`` parameters.
        source: The ``source`` parameters (``partition_date_format``).

    Returns:
        The monitoring result (schema in ISSUE10: window, reference, features,
        prediction, performance, verdict).

    Raises:
        MonitoringError: the window holds no row of the served version.
        ConfigError: a monitoring parameter is invalid.
    """
    model = dict(reference["model"])
    profile = reference["profile"]
    days = select_window(prediction_logs, monitoring["window"])
    acc, ignored = accumulate_window(
        prediction_logs,
        source_partitions,
        profile,
        int(model["version"]),
        days,
        monitoring,
        features,
        source["partition_date_format"],
    )
    if acc.rows < int(monitoring["min_rows"]):
        raise MonitoringError(
            f"The monitoring window {days[0]} .. {days[-1]} holds {acc.rows} "
            f"prediction-log rows of {model['name']} version {model['version']} "
            f"(alias {model['alias']}), fewer than monitoring.min_rows="
            f"{monitoring['min_rows']}; {ignored['other_versions']} rows of other "
            f"versions were skipped.\nHint: score the window with the served version "
            f"first (`kedro run --env <env> --pipelines serving --params "
            f"serving.window.last_days=N`), or move monitoring.window in "
            f"{MONITORING_CONF} to days it scored."
        )
    blocks = drift.evaluate_window(profile, acc, monitoring)
    window_days = sorted(acc.rows_per_day)
    result = {
        "computed_at": _computed_at(save_version),
        "env": monitoring["env"],
        "model": model,
        "window": {
            "start": days[0],
            "end": days[-1],
            "days": window_days,
            "rows": acc.rows,
            "ignored_rows": ignored,
        },
        "reference": {
            "train_sha256": profile.get("train_sha256"),
            "test_sha256": profile.get("test_sha256"),
            "train_rows": profile.get("train_rows"),
            "test_rows": profile.get("test_rows"),
            "metric": profile.get("metric", "rmse"),
            "test_rmse": profile.get("test_rmse"),
            "feature_rows": profile.get("reference_rows"),
        },
        **blocks,
    }
    verdict = result["verdict"]
    logger.info(
        "Monitoring %s version %s over %s .. %s (%d rows): %s",
        model["name"],
        model["version"],
        days[0],
        days[-1],
        acc.rows,
        verdict["reason"],
    )
    return result


def publish_result(
    result: Mapping[str, Any],
) -> tuple[pd.DataFrame, dict[str, float], dict[str, Any]]:
    """The result's drift scores table, MLflow metrics and verdict (run tags).

    Returns:
        ``drift_scores`` (one row per column), ``monitoring_metrics`` (flat floats)
        and ``monitoring_verdict`` (the verdict with the model and window: its
        scalars become ``modelops.monitoring.*`` tags).
    """
    verdict = dict(result["verdict"])
    tagged = {
        "retrain_recommended": verdict["retrain_recommended"],
        "reason": verdict["reason"],
        "dataset_drift": verdict["dataset_drift"],
        "prediction_drift": verdict["prediction_drift"],
        "performance_degraded": verdict["performance_degraded"],
        "new_categories": verdict["new_categories"],
        "drift_share": verdict["drift_share"],
        "drifted_columns": ",".join(verdict["drifted_columns"]),
        "first_drift_day": verdict["first_drift_day"],
        "model_version": result["model"]["version"],
        "window_start": result["window"]["start"],
        "window_end": result["window"]["end"],
        "verdict": verdict,
    }
    return drift.drift_scores_frame(result), drift.monitoring_metrics(result), tagged


def build_report(
    result: Mapping[str, Any],
    history: Sequence[Mapping[str, Any]],
    monitoring: Mapping[str, Any],
) -> str:
    """The HTML report: this result and the previous ones of the env.

    Args:
        result: This run's monitoring result.
        history: Earlier results, oldest first (``monitoring_history``).
        monitoring: The ``monitoring`` parameters (``report.history_runs``).

    Returns:
        A self-contained HTML page.
    """
    runs = int(monitoring["report"]["history_runs"])
    # The history dataset reads the result folder, which holds this run's result
    # already (saved by the node before): leave it out.
    earlier = [
        item for item in history if item.get("computed_at") != result["computed_at"]
    ]
    earlier = earlier[-runs:] if runs > 0 else []
    return render_report(dict(result), [dict(item) for item in earlier])
