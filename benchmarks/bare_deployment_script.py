"""The deployment job's work by hand: plain pandas + scikit-learn + MLflow, no Kedro.

The floor that ``bench_deployment_job.py`` compares ``kedro run --env acceptance``
against: what a careful engineer would write without the framework and without the
``modelops`` package. Same inputs, same model (same hyperparameters and seed), same
metrics and baseline, same plots and permutation importance, and the model logged,
registered and aliased in an MLflow SQLite store of its own.

Usage: ``python benchmarks/bare_deployment_script.py DATA_DIR [--out DIR]``, where
DATA_DIR holds the daily ``YYYY-MM-DD.parquet`` partitions ``kedro simulate`` writes.
Prints one JSON line with the metrics and where things were written.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import tempfile
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import mlflow
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from mlflow.models import infer_signature
from mlflow.tracking import MlflowClient
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingRegressor
from sklearn.inspection import permutation_importance
from sklearn.metrics import (
    mean_absolute_error,
    r2_score,
    root_mean_squared_error,
)
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer, OrdinalEncoder

TIME = "timestamp"
KEYS = [TIME, "station_id"]
TARGET = "rentals"
CATEGORICAL = ["station_id", "station_zone", "weather"]
NUMERIC = [
    "station_capacity",
    "temperature_c",
    "humidity_pct",
    "wind_speed_kmh",
    "precipitation_mm",
    "is_holiday",
]
CALENDAR = ["hour", "day_of_week", "month", "is_weekend"]
INPUTS = [TIME, *NUMERIC, *CATEGORICAL]  # raw columns the logged model reads
RANGES = {
    "station_capacity": (1, 500),
    "temperature_c": (-40.0, 55.0),
    "humidity_pct": (0.0, 100.0),
    "wind_speed_kmh": (0.0, 200.0),
    "precipitation_mm": (0.0, 300.0),
    "rentals": (0, 100_000),
}
ALLOWED = {
    "station_zone": {"center", "business", "residential", "park", "university"},
    "weather": {"clear", "cloudy", "rain", "snow", "fog"},
}
TEST_DAYS = 14
MODEL_NAME = "bare-bike-demand"
ALIAS = "challenger"
REQUIREMENTS = ("mlflow", "scikit-learn", "pandas", "numpy", "cloudpickle")


def add_calendar(frame: pd.DataFrame) -> pd.DataFrame:
    """The frame with hour, day_of_week, month and is_weekend derived from TIME."""
    ts = pd.to_datetime(frame[TIME]).dt
    return frame.assign(
        hour=ts.hour.astype("int64"),
        day_of_week=ts.day_of_week.astype("int64"),
        month=ts.month.astype("int64"),
        is_weekend=(ts.day_of_week >= 5).astype("int64"),
    )


def load(data_dir: Path) -> pd.DataFrame:
    """Every daily partition, checked with a few vectorised rules, one row per key."""
    files = sorted(data_dir.glob("*.parquet"))
    if not files:
        raise SystemExit(f"no parquet files in {data_dir}")
    data = pd.concat([pd.read_parquet(f) for f in files], ignore_index=True)
    columns = [*KEYS, *NUMERIC, *CATEGORICAL, TARGET]
    missing = sorted(set(columns) - set(data.columns))
    if missing:
        raise ValueError(f"missing columns {missing}")
    data = data[list(dict.fromkeys(columns))]
    nulls = data.isna().sum()
    if nulls.any():
        raise ValueError(f"null values: {nulls[nulls > 0].to_dict()}")
    for column, (low, high) in RANGES.items():
        values = data[column]
        if not values.between(low, high).all():
            raise ValueError(f"{column} outside [{low}, {high}]")
    for column, allowed in ALLOWED.items():
        if not data[column].isin(allowed).all():
            raise ValueError(f"{column} has values outside {sorted(allowed)}")
    if not pd.api.types.is_datetime64_any_dtype(data[TIME]):
        raise ValueError(f"{TIME} is not a datetime column")
    data = data.drop_duplicates(subset=KEYS, keep="last")
    return add_calendar(data.sort_values(KEYS, kind="stable").reset_index(drop=True))


def build_model() -> Pipeline:
    """Calendar features, ordinal codes (unseen -> NaN), HistGradientBoosting."""
    prepare = ColumnTransformer(
        [
            (
                "categorical",
                OrdinalEncoder(
                    handle_unknown="use_encoded_value",
                    unknown_value=np.nan,
                    encoded_missing_value=np.nan,
                ),
                CATEGORICAL,
            ),
            ("numeric", "passthrough", [*NUMERIC, *CALENDAR]),
        ],
        remainder="drop",
        verbose_feature_names_out=False,
    )
    model = HistGradientBoostingRegressor(
        max_iter=200,
        learning_rate=0.1,
        max_leaf_nodes=31,
        early_stopping=False,
        random_state=42,
    )
    return Pipeline(
        [
            ("calendar", FunctionTransformer(add_calendar)),
            ("prepare", prepare),
            ("model", model),
        ]
    )


def baseline(train: pd.DataFrame, test: pd.DataFrame) -> np.ndarray:
    """Per-station hour-of-week training mean; else station mean; else global mean."""
    grains = ["station_id", "day_of_week", "hour"]
    fine = train.groupby(grains)[TARGET].mean().rename("fine")
    station = train.groupby("station_id")[TARGET].mean().rename("station")
    merged = test[grains].join(fine, on=grains).join(station, on="station_id")
    result = merged["fine"].fillna(merged["station"]).fillna(train[TARGET].mean())
    return result.to_numpy(dtype="float64")


def scores(actual: np.ndarray, predicted: np.ndarray, prefix: str = "") -> dict:
    """RMSE, MAE and R2."""
    return {
        f"{prefix}rmse": float(root_mean_squared_error(actual, predicted)),
        f"{prefix}mae": float(mean_absolute_error(actual, predicted)),
        f"{prefix}r2": float(r2_score(actual, predicted)),
    }


def plot_predicted_vs_actual(actual: np.ndarray, predicted: np.ndarray) -> Figure:
    """Scatter of at most 20,000 seeded test rows with the y = x line."""
    shown = np.arange(len(actual))
    if len(shown) > 20_000:
        shown = np.sort(np.random.default_rng(0).choice(shown, 20_000, replace=False))
    fig = Figure(figsize=(8.0, 6.0), dpi=100, layout="constrained")
    ax = fig.add_subplot()
    ax.scatter(
        actual[shown],
        predicted[shown],
        s=6,
        alpha=0.1,
        edgecolors="none",
        rasterized=True,
    )
    low = float(min(actual.min(), predicted.min()))
    high = float(max(actual.max(), predicted.max()))
    ax.plot([low, high], [low, high], color="black", linestyle="--", linewidth=1)
    ax.set_xlabel("Actual")
    ax.set_ylabel("Predicted")
    ax.set_title("Predicted vs actual on the test set")
    ax.grid(alpha=0.3)
    return fig


def plot_residuals(predictions: pd.DataFrame) -> Figure:
    """Mean residual over time (+-1 std) and residual boxplots per hour of day."""
    times = pd.to_datetime(predictions[TIME])
    frame = pd.DataFrame(
        {
            "time": times.to_numpy(),
            "hour": times.dt.hour.to_numpy(),
            "residual": (predictions["predicted"] - predictions["actual"]).to_numpy(),
        }
    )
    if frame["time"].nunique() > 500:
        frame["time"] = frame["time"].dt.floor("D")
    over_time = frame.groupby("time")["residual"].agg(["mean", "std"])
    spread = over_time["std"].fillna(0.0)
    fig = Figure(figsize=(10.0, 8.0), dpi=100, layout="constrained")
    top, bottom = fig.subplots(2, 1)
    top.fill_between(
        over_time.index.to_numpy(),
        over_time["mean"] - spread,
        over_time["mean"] + spread,
        alpha=0.2,
        linewidth=0,
    )
    top.plot(over_time.index.to_numpy(), over_time["mean"], linewidth=1)
    top.axhline(0.0, color="black", linestyle="--", linewidth=1)
    top.set_title("Residual over time")
    hours = sorted(frame["hour"].unique())
    groups = [frame.loc[frame["hour"] == h, "residual"].to_numpy() for h in hours]
    bottom.boxplot(groups, positions=hours, showfliers=False, patch_artist=True)
    bottom.plot(hours, [g.mean() for g in groups], "o", color="tab:red")
    bottom.set_title("Residual by hour of day")
    return fig


def plot_importance(table: pd.DataFrame) -> Figure:
    """Horizontal bars of permutation importance, most important on top."""
    fig = Figure(figsize=(8.0, 5.5), dpi=100, layout="constrained")
    ax = fig.add_subplot()
    positions = np.arange(len(table))[::-1]
    ax.barh(positions, table["importance_mean"], xerr=table["importance_std"])
    ax.set_yticks(positions, table["feature"])
    ax.set_title("Permutation importance on the test set")
    return fig


def main() -> None:
    """Load, check, split, fit, evaluate, plot, log and register; print a summary."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data_dir", type=Path, help="folder of daily parquet files")
    parser.add_argument("--out", type=Path, help="output folder (default: a temp dir)")
    args = parser.parse_args()
    out = args.out or Path(tempfile.mkdtemp(prefix="bare-deployment-"))
    out.mkdir(parents=True, exist_ok=True)

    data = load(args.data_dir)
    cutoff = data[TIME].max().normalize() - pd.Timedelta(days=TEST_DAYS - 1)
    is_test = (data[TIME] >= cutoff).to_numpy()
    train = data.loc[~is_test].reset_index(drop=True)
    test = data.loc[is_test].reset_index(drop=True)
    if train.empty:
        raise SystemExit(f"no training rows: the source spans <= {TEST_DAYS} days")

    model = build_model().fit(train[INPUTS], train[TARGET])
    actual = test[TARGET].to_numpy(dtype="float64")
    predicted = model.predict(test[INPUTS]).astype("float64")
    metrics = {
        **scores(actual, predicted),
        **scores(actual, baseline(train, test), prefix="baseline_"),
        "rows": float(len(test)),
    }
    metrics["improvement_over_baseline"] = (
        1.0 - metrics["rmse"] / metrics["baseline_rmse"]
    )
    predictions = test[KEYS].assign(actual=actual, predicted=predicted)
    predictions.to_parquet(out / "test_predictions.parquet", index=False)

    sample = test.sample(n=min(5000, len(test)), random_state=0)
    result = permutation_importance(
        model,
        sample[INPUTS],
        sample[TARGET].to_numpy(dtype="float64"),
        scoring="neg_root_mean_squared_error",
        n_repeats=3,
        random_state=0,
    )
    importance = pd.DataFrame(
        {
            "feature": INPUTS,
            "importance_mean": result.importances_mean,
            "importance_std": result.importances_std,
        }
    ).sort_values("importance_mean", ascending=False, kind="stable")
    importance.to_csv(out / "feature_importance.csv", index=False)
    plots = {
        "predicted_vs_actual.png": plot_predicted_vs_actual(actual, predicted),
        "residuals.png": plot_residuals(predictions),
        "feature_importance.png": plot_importance(importance),
    }
    for name, fig in plots.items():
        fig.savefig(out / name)

    if metrics["rmse"] >= 8.0:  # the business threshold of the deployment gate
        raise SystemExit(f"gate rejected: rmse {metrics['rmse']:.4f} >= 8.0")
    store = out / "mlruns"
    store.mkdir(exist_ok=True)
    mlflow.set_tracking_uri(f"sqlite:///{store / 'mlflow.db'}")
    mlflow.set_experiment("bare-acceptance")
    with mlflow.start_run() as run:
        mlflow.log_params(
            {**model.named_steps["model"].get_params(), "test_days": TEST_DAYS}
        )
        mlflow.log_metrics(metrics)
        for name in [*plots, "test_predictions.parquet", "feature_importance.csv"]:
            mlflow.log_artifact(str(out / name), artifact_path="evaluation")
        example = train[INPUTS].sample(n=min(1000, len(train)), random_state=0)
        info = mlflow.sklearn.log_model(
            model,
            name="model",
            signature=infer_signature(example, model.predict(example)),
            serialization_format="cloudpickle",
            pip_requirements=[
                f"{name}=={importlib.metadata.version(name)}" for name in REQUIREMENTS
            ],
        )
        version = mlflow.register_model(info.model_uri, MODEL_NAME)
        MlflowClient().set_registered_model_alias(MODEL_NAME, ALIAS, version.version)
    print(
        json.dumps(
            {
                "metrics": metrics,
                "train_rows": len(train),
                "test_rows": len(test),
                "run_id": run.info.run_id,
                "model_version": version.version,
                "out": str(out),
            }
        )
    )


if __name__ == "__main__":
    main()
