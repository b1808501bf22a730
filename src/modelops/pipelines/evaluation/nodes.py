"""Nodes of the evaluation pipeline: predictions, naive baseline, metrics and plots."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import matplotlib.dates as mdates
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from sklearn.pipeline import Pipeline

from modelops.contracts import use_case_key
from modelops.errors import ConfigError, DataContractError
from modelops.features import CALENDAR_FEATURES, calendar_columns
from modelops.modeling import calendar_features, input_columns, model_inputs

logger = logging.getLogger(__name__)

TRAINING_CONF = "conf/base/parameters_training.yml"
EVALUATION_CONF = "conf/base/parameters_evaluation.yml"
SPLIT_CONF = use_case_key("split")
BASELINE_CONF = use_case_key("baseline")

ACTUAL = "actual"
PREDICTED = "predicted"
BASELINE = "baseline"
BASELINE_MEAN = "target_mean"
BASELINE_ROWS = "rows"

MAX_SCATTER_POINTS = 20_000
PLOT_SEED = 0
MAX_TIME_POINTS = 500  # more distinct timestamps than this: residuals per day
FIGSIZE = (8.0, 6.0)
DPI = 100


# --- predictions ------------------------------------------------------------------


def predict_test_set(
    model: Pipeline, test_set: pd.DataFrame, features: Mapping[str, Any]
) -> pd.DataFrame:
    """Predict the test set with the trained model.

    Args:
        model: The fitted model (the sklearn Pipeline of ``modelops.modeling``).
        test_set: Rows of the model input table; not modified.
        features: The ``features`` parameters (``key_columns``, ``time_column``,
            ``target`` and the feature lists).

    Returns:
        One row per test row, same order and index: the key columns (and the time
        column when it is not a key), ``actual`` (the target) and ``predicted``
        (float64, not clipped).

    Raises:
        ConfigError: the test set is empty, or a configured column is missing.
    """
    _require_rows(test_set, "test set")
    keys = _identity_columns(features)
    target = features["target"]
    clash = [name for name in keys if name in (ACTUAL, PREDICTED)]
    if clash:
        raise ConfigError(
            f"Key column(s) {clash} clash with the prediction columns "
            f"'{ACTUAL}'/'{PREDICTED}'.\nHint: rename them in "
            f"{use_case_key('features.key_columns')}."
        )
    _require_columns(
        test_set,
        [*keys, target, *input_columns(features)],
        "test set",
        setting="features",
    )
    predicted = np.asarray(model.predict(model_inputs(test_set, features)))
    predicted = predicted.astype("float64").reshape(len(test_set), -1)
    if predicted.shape[1] != 1:
        raise ConfigError(
            f"The model returned {predicted.shape[1]} outputs per row; evaluation "
            f"expects one (a single-target regressor).\nHint: set model.class in "
            f"{TRAINING_CONF} to a single-output regressor."
        )
    return test_set[keys].assign(
        **{ACTUAL: test_set[target].array, PREDICTED: predicted[:, 0]}
    )


# --- naive baseline ---------------------------------------------------------------


def fit_baseline(
    train_set: pd.DataFrame, features: Mapping[str, Any], baseline: Mapping[str, Any]
) -> pd.DataFrame:
    """Learn the naive baseline: the mean target per group and time grain.

    With ``group_by: [station_id]`` and ``time_grains: [day_of_week, hour]`` this is
    the per-station hour-of-week mean. Time grains are calendar features derived from
    ``features["time_column"]`` (names from ``modelops.features.CALENDAR_FEATURES``);
    without a time column they are ignored (group means, or the global mean).

    Args:
        train_set: Rows of the model input table; not modified.
        features: The ``features`` parameters (``time_column``, ``target``).
        baseline: ``group_by`` (columns of the data) and ``time_grains``
            (calendar feature names); either may be empty.

    Returns:
        One row per group seen in training: the group and grain columns,
        ``target_mean`` and ``rows`` (how many training rows the mean is over), so
        coarser means can be derived exactly at prediction time.

    Raises:
        ConfigError: the train set has no labelled rows, the baseline config is
            invalid, or a configured column is missing.
    """
    group_by, grains = _baseline_spec(baseline, features)
    target = features["target"]
    _require_columns(train_set, [target], "train set", setting="features.target")
    keys = _baseline_keys(train_set, features, group_by, grains)
    values = train_set[target].astype("float64")
    if not values.notna().any():
        raise ConfigError(
            "The train set has no labelled rows, so there is no baseline to fit.\n"
            f"Hint: widen the split window in {SPLIT_CONF}."
        )
    columns = [*group_by, *grains]
    if not columns:
        return pd.DataFrame(
            {BASELINE_MEAN: [values.mean()], BASELINE_ROWS: [int(values.count())]}
        )
    table = (
        keys.assign(**{BASELINE_MEAN: values})
        .groupby(columns, dropna=False, sort=True)[BASELINE_MEAN]
        .agg(**{BASELINE_MEAN: "mean", BASELINE_ROWS: "count"})
        .reset_index()
    )
    table = table[table[BASELINE_ROWS] > 0].reset_index(drop=True)
    return table.astype({BASELINE_MEAN: "float64", BASELINE_ROWS: "int64"})


def predict_baseline(
    baseline_table: pd.DataFrame,
    test_set: pd.DataFrame,
    features: Mapping[str, Any],
    baseline: Mapping[str, Any],
) -> pd.Series:
    """Predict the test set with the naive baseline, falling back for unseen groups.

    A row whose (group, grains) was not seen in training gets the mean over its
    ``group_by`` columns alone; a row whose group was not seen either gets the global
    training mean, so the result is never NaN.

    Args:
        baseline_table: The output of ``fit_baseline``.
        test_set: Rows of the model input table; not modified.
        features: The ``features`` parameters (``time_column``).
        baseline: The same ``group_by`` and ``time_grains`` as for ``fit_baseline``.

    Returns:
        Float64 Series named ``baseline`` with the index of ``test_set``.

    Raises:
        ConfigError: the test set is empty, the baseline table does not match the
            baseline config, or a configured column is missing.
    """
    _require_rows(test_set, "test set")
    group_by, grains = _baseline_spec(baseline, features, warn=False)
    _require_columns(
        baseline_table,
        [*group_by, *grains, BASELINE_MEAN, BASELINE_ROWS],
        "baseline table",
        hint=f"refit the baseline with the current {BASELINE_CONF}",
    )
    table = baseline_table[baseline_table[BASELINE_ROWS] > 0]
    if table.empty:
        raise ConfigError(
            "The baseline table is empty, so the baseline cannot predict.\n"
            f"Hint: widen the split window in {SPLIT_CONF} and refit it."
        )
    keys = _baseline_keys(test_set, features, group_by, grains)
    result = pd.Series(np.nan, index=test_set.index, name=BASELINE, dtype="float64")
    levels = list(dict.fromkeys([(*group_by, *grains), tuple(group_by)]))
    for level in levels:
        missing = result.isna().to_numpy()
        if not missing.any() or not level:
            break
        means = _level_means(table, list(level))
        looked_up = keys.loc[missing, list(level)].merge(
            means, how="left", on=list(level), validate="many_to_one"
        )
        result.loc[missing] = looked_up[BASELINE_MEAN].to_numpy()
        if level != levels[0]:
            logger.info(
                "Baseline: %d test rows fell back to the mean per %s",
                int(missing.sum()),
                list(level),
            )
    missing = result.isna().to_numpy()
    if missing.any():
        global_mean = float(
            (table[BASELINE_MEAN] * table[BASELINE_ROWS]).sum()
            / table[BASELINE_ROWS].sum()
        )
        result.loc[missing] = global_mean
        if group_by or grains:
            logger.info(
                "Baseline: %d test rows fell back to the global mean",
                int(missing.sum()),
            )
    return result


def _baseline_spec(
    baseline: Mapping[str, Any], features: Mapping[str, Any], *, warn: bool = True
) -> tuple[list[str], list[str]]:
    """Return the validated ``group_by`` and ``time_grains`` lists.

    Without a time column the time grains are dropped (and, with ``warn``, logged):
    the baseline is then the mean per ``group_by`` (the global mean without groups).
    """
    group_by = list(baseline.get("group_by") or [])
    grains = list(baseline.get("time_grains") or [])
    unknown = [name for name in grains if name not in CALENDAR_FEATURES]
    if unknown:
        raise ConfigError(
            f"Unknown baseline time grain(s) {unknown}; expected some of "
            f"{sorted(CALENDAR_FEATURES)}.\nHint: fix "
            f"{use_case_key('baseline.time_grains')}."
        )
    if grains and not features.get("time_column"):
        if warn:
            logger.warning(
                "baseline.time_grains %s are ignored: features.time_column is null; "
                "the baseline is the mean per %s",
                grains,
                group_by or "whole train set",
            )
        grains = []
    both = [name for name in group_by if name in grains]
    if both:
        raise ConfigError(
            f"Column(s) {both} are in both baseline.group_by and "
            f"baseline.time_grains.\nHint: list each once in {BASELINE_CONF} "
            f"(time grains are derived from the time column)."
        )
    return group_by, grains


def _baseline_keys(
    frame: pd.DataFrame,
    features: Mapping[str, Any],
    group_by: Sequence[str],
    grains: Sequence[str],
) -> pd.DataFrame:
    """The group columns of ``frame`` plus the time grains derived from its time."""
    missing = [name for name in group_by if name not in frame.columns]
    if missing:
        raise ConfigError(
            f"Column(s) {missing} of baseline.group_by are not in the data (columns: "
            f"{list(frame.columns)}).\nHint: fix "
            f"{use_case_key('baseline.group_by')} (columns of the model input table: "
            f"key, numeric or categorical features; [] for the global mean)."
        )
    keys = frame[list(group_by)]
    if not grains:
        return keys
    time_column = features["time_column"]
    _require_columns(frame, [time_column], "data", setting="features.time_column")
    return keys.assign(**calendar_columns(frame[time_column], grains))


def _level_means(table: pd.DataFrame, level: list[str]) -> pd.DataFrame:
    """Exact mean target per ``level`` from the finer means and their row counts."""
    weighted = table.assign(_sum=table[BASELINE_MEAN] * table[BASELINE_ROWS])
    sums = weighted.groupby(level, dropna=False, sort=False)[
        ["_sum", BASELINE_ROWS]
    ].sum()
    return (sums["_sum"] / sums[BASELINE_ROWS]).rename(BASELINE_MEAN).reset_index()


# --- metrics ----------------------------------------------------------------------


def evaluate_predictions(
    test_predictions: pd.DataFrame, baseline_predictions: pd.Series
) -> dict[str, float]:
    """Score the model and the naive baseline on the same test rows.

    Args:
        test_predictions: The output of ``predict_test_set``.
        baseline_predictions: The output of ``predict_baseline`` for the same rows
            (aligned by index).

    Returns:
        ``rmse``, ``mae``, ``r2`` of the model, the same three prefixed
        ``baseline_``, ``rows`` and ``improvement_over_baseline`` (1 - rmse /
        baseline_rmse: positive when the model beats the baseline; 0.0 when both
        are perfect, -inf when only the baseline is). R2 is NaN on a single row.

    Raises:
        ConfigError: the test set is empty.
        DataContractError: an actual, prediction or baseline value is missing.
        ValueError: the baseline rows do not match the prediction rows.
    """
    _require_rows(test_predictions, "test set")
    _require_columns(test_predictions, [ACTUAL, PREDICTED], "test predictions")
    baseline = _align(baseline_predictions, test_predictions.index)
    columns = {
        ACTUAL: test_predictions[ACTUAL],
        PREDICTED: test_predictions[PREDICTED],
        BASELINE: baseline,
    }
    values = {}
    for name, column in columns.items():
        array = pd.to_numeric(column).to_numpy(dtype="float64", na_value=np.nan)
        missing = int(np.isnan(array).sum())
        if missing:
            raise DataContractError(
                f"{missing} of {len(array)} test rows have no '{name}' value; "
                "metrics need every row.\nHint: check the target column of the "
                f"test set ({use_case_key('features.target')}) and the model output."
            )
        values[name] = array
    actual = values[ACTUAL]
    metrics = {
        **_scores(actual, values[PREDICTED], prefix=""),
        **_scores(actual, values[BASELINE], prefix="baseline_"),
        "rows": float(len(actual)),
    }
    if metrics["baseline_rmse"] > 0:
        improvement = 1.0 - metrics["rmse"] / metrics["baseline_rmse"]
    else:
        improvement = 0.0 if metrics["rmse"] == 0 else float("-inf")
    metrics["improvement_over_baseline"] = float(improvement)
    logger.info(
        "Test RMSE %.4f (baseline %.4f), R2 %.4f over %d rows",
        metrics["rmse"],
        metrics["baseline_rmse"],
        metrics["r2"],
        len(actual),
    )
    return metrics


def _scores(actual: np.ndarray, predicted: np.ndarray, prefix: str) -> dict[str, float]:
    """RMSE, MAE and R2 of ``predicted`` against ``actual``, keys prefixed."""
    # sklearn.metrics on use: every `kedro` command imports this module.
    from sklearn.metrics import (  # noqa: PLC0415
        mean_absolute_error,
        r2_score,
        root_mean_squared_error,
    )

    r2 = r2_score(actual, predicted) if len(actual) > 1 else np.nan
    return {
        f"{prefix}rmse": float(root_mean_squared_error(actual, predicted)),
        f"{prefix}mae": float(mean_absolute_error(actual, predicted)),
        f"{prefix}r2": float(r2),
    }


def _align(series: pd.Series, index: pd.Index) -> pd.Series:
    """``series`` in the row order of ``index``; ValueError if the rows differ."""
    if series.index.equals(index):
        return series
    if (
        len(series) == len(index)
        and series.index.is_unique
        and index.is_unique
        and series.index.isin(index).all()
    ):
        return series.reindex(index)
    raise ValueError(
        f"The baseline predictions ({len(series)} rows) are not for the same rows as "
        f"the test predictions ({len(index)} rows): their indexes differ.\nHint: "
        "compute both from the same test_set without resetting either index."
    )


# --- plots ------------------------------------------------------------------------


def plot_predicted_vs_actual(test_predictions: pd.DataFrame) -> Figure:
    """Scatter of predicted against actual values, with the y = x line.

    Args:
        test_predictions: The output of ``predict_test_set``; not modified.

    Returns:
        A one-axes figure; at most 20,000 points (a seeded sample), RMSE and R2
        over all rows in the title, equal axis limits.

    Raises:
        ConfigError: the test set is empty.
    """
    _require_rows(test_predictions, "test set")
    _require_columns(test_predictions, [ACTUAL, PREDICTED], "test predictions")
    actual = test_predictions[ACTUAL].to_numpy(dtype="float64")
    predicted = test_predictions[PREDICTED].to_numpy(dtype="float64")
    scores = _scores(actual, predicted, prefix="")
    shown = np.arange(len(actual))
    if len(shown) > MAX_SCATTER_POINTS:
        rng = np.random.default_rng(PLOT_SEED)
        shown = np.sort(rng.choice(shown, size=MAX_SCATTER_POINTS, replace=False))
    fig = Figure(figsize=FIGSIZE, dpi=DPI, layout="constrained")
    ax = fig.add_subplot()
    ax.scatter(
        actual[shown],
        predicted[shown],
        s=6,
        alpha=min(0.6, max(0.1, 1000 / len(shown))),
        color="tab:blue",
        edgecolors="none",
        rasterized=True,
        label=(
            f"test rows ({len(shown):,} of {len(actual):,}, seeded sample)"
            if len(shown) < len(actual)
            else f"test rows (all {len(actual):,})"
        ),
    )
    low = float(min(actual.min(), predicted.min()))
    high = float(max(actual.max(), predicted.max()))
    pad = 0.03 * (high - low) or 1.0
    limits = (low - pad, high + pad)
    ax.plot(limits, limits, color="black", linewidth=1, linestyle="--", label="y = x")
    ax.set_xlim(limits)
    ax.set_ylim(limits)
    ax.set_aspect("equal", adjustable="box")
    ax.set_xlabel("Actual")
    ax.set_ylabel("Predicted")
    ax.set_title(
        f"Predicted vs actual on the test set\nRMSE {scores['rmse']:.3f}, "
        f"$R^2$ {scores['r2']:.3f}, {len(actual):,} rows"
    )
    ax.grid(alpha=0.3)
    legend = ax.legend(loc="upper left", markerscale=3)
    for handle in legend.legend_handles:
        handle.set_alpha(1.0)  # the points are faint; their legend marker need not be
    return fig


def plot_residuals(
    test_predictions: pd.DataFrame, features: Mapping[str, Any]
) -> Figure:
    """Residuals (predicted - actual) over time and by hour of day or day of week.

    Without a time column (``features.time_column`` null): residuals against the
    prediction, and their distribution.

    Args:
        test_predictions: The output of ``predict_test_set``; not modified.
        features: The ``features`` parameters (``time_column``).

    Returns:
        A two-axes figure. With a time column: top, the mean residual per timestamp
        (per day when there are more than 500 timestamps) with a +-1 std band;
        bottom, residual boxplots per hour of day (per day of week when every
        timestamp is at the same hour, as for daily data) with their means. Without:
        top, residual against prediction (at most 20,000 points, a seeded sample);
        bottom, a histogram of the residuals.

    Raises:
        ConfigError: the test set is empty or lacks a column it needs.
    """
    _require_rows(test_predictions, "test set")
    time_column = features.get("time_column")
    needed = [*([time_column] if time_column else []), ACTUAL, PREDICTED]
    _require_columns(test_predictions, needed, "test predictions")
    residual = (
        test_predictions[PREDICTED].astype("float64")
        - test_predictions[ACTUAL].astype("float64")
    ).to_numpy()
    fig = Figure(figsize=(10.0, 8.0), dpi=DPI, layout="constrained")
    top, bottom = fig.subplots(2, 1)
    if time_column:
        timestamps = pd.to_datetime(test_predictions[time_column])
        _residuals_over_time(top, timestamps, residual, time_column)
        _residuals_by_period(bottom, timestamps, residual, time_column)
    else:
        predicted = test_predictions[PREDICTED].to_numpy(dtype="float64")
        _residuals_against_prediction(top, bottom, predicted, residual)
    return fig


def _residuals_over_time(
    ax: Any, timestamps: pd.Series, residual: np.ndarray, time_column: str
) -> None:
    frame = pd.DataFrame({"time": timestamps.to_numpy(), "residual": residual})
    grain = f"{time_column} value"
    if frame["time"].nunique() > MAX_TIME_POINTS:
        frame["time"] = frame["time"].dt.floor("D")
        grain = "day"
    over_time = frame.groupby("time", sort=True)["residual"].agg(["mean", "std"])
    spread = over_time["std"].fillna(0.0)
    times = over_time.index.to_numpy()
    ax.fill_between(
        times,
        over_time["mean"] - spread,
        over_time["mean"] + spread,
        color="tab:blue",
        alpha=0.2,
        linewidth=0,
        label=r"mean $\pm$ 1 std across rows",
    )
    ax.plot(times, over_time["mean"], color="tab:blue", linewidth=1, label="mean")
    ax.axhline(0.0, color="black", linewidth=1, linestyle="--")
    locator = mdates.AutoDateLocator()
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))
    ax.set_xlabel(f"{time_column} (daily)" if grain == "day" else time_column)
    ax.set_ylabel("Residual (predicted - actual)")
    ax.set_title(f"Residual over time (mean per {grain})")
    ax.legend(loc="upper right")
    ax.grid(alpha=0.3)


def _residuals_by_period(
    ax: Any, timestamps: pd.Series, residual: np.ndarray, time_column: str
) -> None:
    hours = calendar_columns(timestamps, ["hour"])["hour"]
    if len(np.unique(hours)) > 1:
        period, label, ticks = hours, "Hour of day", range(24)
    else:  # daily (or coarser) data: every row is at the same hour
        period = calendar_columns(timestamps, ["day_of_week"])["day_of_week"]
        label, ticks = "Day of week (0 = Monday)", range(7)
    values = sorted(np.unique(period).tolist())
    groups = [residual[period == value] for value in values]
    ax.boxplot(
        groups,
        positions=values,
        widths=0.6,
        showfliers=False,
        patch_artist=True,
        boxprops={"facecolor": "tab:blue", "alpha": 0.35},
        medianprops={"color": "tab:blue"},
    )
    ax.plot(
        values,
        [group.mean() for group in groups],
        "o",
        color="tab:red",
        markersize=4,
        label="mean",
    )
    ax.axhline(0.0, color="black", linewidth=1, linestyle="--")
    ax.set_xticks(list(ticks))
    ax.set_xlim(-0.7, len(ticks) - 0.3)
    ax.set_xlabel(f"{label} (from {time_column})")
    ax.set_ylabel("Residual (predicted - actual)")
    ax.set_title(
        f"Residual by {label.split(' (')[0].lower()} (boxes: quartiles, whiskers: "
        f"1.5 IQR)"
    )
    ax.legend(loc="upper right")
    ax.grid(alpha=0.3, axis="y")


def _residuals_against_prediction(
    top: Any, bottom: Any, predicted: np.ndarray, residual: np.ndarray
) -> None:
    shown = np.arange(len(residual))
    if len(shown) > MAX_SCATTER_POINTS:
        rng = np.random.default_rng(PLOT_SEED)
        shown = np.sort(rng.choice(shown, size=MAX_SCATTER_POINTS, replace=False))
    top.scatter(
        predicted[shown],
        residual[shown],
        s=6,
        alpha=min(0.6, max(0.1, 1000 / len(shown))),
        color="tab:blue",
        edgecolors="none",
        rasterized=True,
    )
    top.axhline(0.0, color="black", linewidth=1, linestyle="--")
    top.set_xlabel("Predicted")
    top.set_ylabel("Residual (predicted - actual)")
    sample = (
        f"{len(shown):,} of {len(residual):,} rows, seeded sample"
        if len(shown) < len(residual)
        else f"all {len(residual):,} rows"
    )
    top.set_title(f"Residual against prediction ({sample}; no time column)")
    top.grid(alpha=0.3)
    bottom.hist(residual, bins=min(50, max(5, len(residual) // 5)), color="tab:blue")
    bottom.axvline(0.0, color="black", linewidth=1, linestyle="--")
    bottom.axvline(
        float(residual.mean()), color="tab:red", linewidth=1, label="mean residual"
    )
    bottom.set_xlabel("Residual (predicted - actual)")
    bottom.set_ylabel("Rows")
    bottom.set_title("Distribution of residuals")
    bottom.legend(loc="upper right")
    bottom.grid(alpha=0.3, axis="y")


def plot_feature_importance(
    model: Pipeline,
    test_set: pd.DataFrame,
    features: Mapping[str, Any],
    importance: Mapping[str, Any],
) -> tuple[Figure, pd.DataFrame]:
    """Permutation importance of the model's raw input columns on the test set.

    The score is RMSE, so an importance is how much the RMSE grows when the column
    is shuffled. The time column stands for every calendar feature derived from it:
    shuffling it shuffles them together.

    Args:
        model: The fitted model.
        test_set: Rows of the model input table; not modified.
        features: The ``features`` parameters.
        importance: ``max_rows`` (seeded row sample size), ``n_repeats`` and
            ``seed``.

    Returns:
        A horizontal bar chart (most important on top, +-1 std error bars) and the
        table ``feature``, ``importance_mean``, ``importance_std`` with one row per
        raw input column, most important first.

    Raises:
        ConfigError: the test set is empty, the importance config is invalid, or a
            configured column is missing.
    """
    _require_rows(test_set, "test set")
    max_rows = _positive_int(importance, "max_rows")
    n_repeats = _positive_int(importance, "n_repeats")
    seed = int(importance.get("seed", 0))
    target = features["target"]
    _require_columns(
        test_set, [*input_columns(features), target], "test set", setting="features"
    )
    sample = test_set
    if len(sample) > max_rows:
        sample = sample.sample(n=max_rows, random_state=seed)
    # Imported on use: every `kedro` command imports this module.
    from sklearn.inspection import permutation_importance  # noqa: PLC0415

    result = permutation_importance(
        model,
        model_inputs(sample, features),
        sample[target].to_numpy(dtype="float64"),
        scoring="neg_root_mean_squared_error",
        n_repeats=n_repeats,
        random_state=seed,
    )
    table = (
        pd.DataFrame(
            {
                "feature": input_columns(features),
                "importance_mean": result.importances_mean.astype("float64"),
                "importance_std": result.importances_std.astype("float64"),
            }
        )
        .sort_values("importance_mean", ascending=False, kind="stable")
        .reset_index(drop=True)
    )
    time_column = features.get("time_column")
    calendar = calendar_features(features)
    labels = [
        f"{name} (calendar)" if name == time_column and calendar else name
        for name in table["feature"]
    ]
    fig = Figure(
        figsize=(8.0, max(3.5, 1.5 + 0.4 * len(table))), dpi=DPI, layout="constrained"
    )
    ax = fig.add_subplot()
    positions = np.arange(len(table))[::-1]  # most important on top
    ax.barh(
        positions,
        table["importance_mean"],
        xerr=table["importance_std"],
        color="tab:blue",
        alpha=0.8,
        error_kw={"ecolor": "black", "capsize": 3, "linewidth": 1},
    )
    ax.set_yticks(positions, labels)
    ax.axvline(0.0, color="black", linewidth=1)
    ax.set_xlabel("Increase in RMSE when the column is shuffled")
    covers = f"; '{time_column}' covers all calendar features" if calendar else ""
    ax.set_title(
        f"Permutation importance on the test set\n({len(sample):,} rows, "
        f"{n_repeats} repeats{covers})"
    )
    ax.grid(alpha=0.3, axis="x")
    return fig, table


def _positive_int(importance: Mapping[str, Any], key: str) -> int:
    """``importance[key]`` as an int >= 1, else a ConfigError."""
    value = importance.get(key)
    try:
        number = int(value)
    except (TypeError, ValueError) as err:
        raise ConfigError(
            f"importance.{key} is {value!r}; expected a positive integer.\n"
            f"Hint: fix {EVALUATION_CONF}."
        ) from err
    if number < 1:
        raise ConfigError(
            f"importance.{key} is {value!r}; expected a positive integer.\n"
            f"Hint: fix {EVALUATION_CONF}."
        )
    return number


# --- shared checks ----------------------------------------------------------------


def _identity_columns(features: Mapping[str, Any]) -> list[str]:
    """Key columns, plus the time column when it is not a key (plots need it)."""
    time_column = [features["time_column"]] if features.get("time_column") else []
    return list(dict.fromkeys([*features["key_columns"], *time_column]))


def _require_rows(frame: pd.DataFrame, what: str) -> None:
    """Raise ConfigError when ``frame`` (the train or test set) has no rows."""
    if frame.empty:
        raise ConfigError(
            f"The {what} is empty (0 rows), so there is nothing to evaluate.\nHint: "
            f"widen the split in {SPLIT_CONF} (or the source window in "
            f"conf/base/parameters_data_processing.yml) so the {what} gets rows."
        )


def _require_columns(
    frame: pd.DataFrame,
    names: Sequence[str],
    what: str,
    hint: str | None = None,
    *,
    setting: str = "features",
) -> None:
    """Raise ConfigError naming the columns of ``names`` missing from ``frame``.

    The hint is ``hint`` if given, else to fix ``setting`` in conf/base/use_case.yml.
    """
    missing = [name for name in dict.fromkeys(names) if name not in frame.columns]
    if missing:
        raise ConfigError(
            f"Column(s) {missing} are not in the {what} (columns: "
            f"{list(frame.columns)}).\nHint: "
            f"{hint or f'fix {use_case_key(setting)}'}."
        )
