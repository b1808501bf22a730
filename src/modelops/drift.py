"""Drift statistics: reference profiles, bounded window accumulators, scipy tests, verdicts."""

from __future__ import annotations

import itertools
import logging
import math
import sys
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from scipy.spatial.distance import jensenshannon
from scipy.special import rel_entr
from scipy.stats import chi2_contingency, ks_2samp, wasserstein_distance

from modelops.errors import ConfigError, ModelopsError

logger = logging.getLogger(__name__)

MONITORING_CONF = "conf/base/parameters_monitoring.yml"
PROFILE_SCHEMA = 1
NUMERIC = "numeric"
CATEGORICAL = "categorical"
NEW_LABEL = "(new)"
OTHER_LABEL = "(other)"
MISSING_LABEL = "(missing)"
MAX_NEW_EXAMPLES = 10
MAX_RATIO = 1e6  # a normalised distance over a zero spread is reported as this
_HASH_KEY_LENGTH = 16


class MonitoringError(ModelopsError):
    """Monitoring cannot compare the window with the reference (no rows, no profile...)."""


# --- row keys and values ---------------------------------------------------------


def row_keys(frame: pd.DataFrame, key_columns: Sequence[str], seed: int) -> np.ndarray:
    """A deterministic pseudo-random uint64 per row, from its key columns and the seed.

    The same row gets the same key whichever chunk it arrives in, so the bottom-k
    sample it selects does not depend on how the rows were chunked.

    Args:
        frame: The rows; not modified.
        key_columns: Columns identifying a row (every column when empty).
        seed: Seed of the hash.

    Returns:
        One uint64 per row.
    """
    columns = [name for name in key_columns if name in frame.columns] or list(
        frame.columns
    )
    hash_key = f"modelops{int(seed):08d}"[-_HASH_KEY_LENGTH:].rjust(
        _HASH_KEY_LENGTH, "0"
    )
    return pd.util.hash_pandas_object(
        frame[columns], index=False, hash_key=hash_key
    ).to_numpy(dtype=np.uint64)


def numeric_values(series: pd.Series) -> np.ndarray:
    """A column as float64 (bools as 0/1, missing values as NaN)."""
    return pd.to_numeric(series, errors="coerce").to_numpy(
        dtype=np.float64, na_value=np.nan
    )


def day_labels(times: pd.Series) -> tuple[np.ndarray, list[str]]:
    """Day codes per row and the ISO day of each code, from a datetime column."""
    days = pd.to_datetime(times).to_numpy().astype("datetime64[D]")
    codes, uniques = pd.factorize(days, sort=True)
    return codes, [str(day) for day in np.asarray(uniques, dtype="datetime64[D]")]


def _bottom_k(keys: np.ndarray, size: int) -> np.ndarray:
    """Positions of the ``size`` smallest keys (all positions when fewer)."""
    if len(keys) <= size:
        return np.arange(len(keys))
    return np.argpartition(keys, size - 1)[:size]


# --- the reference profile ---------------------------------------------------------


def numeric_reference(
    values: np.ndarray, keys: np.ndarray, bins: int, sample_size: int
) -> dict[str, Any]:
    """The reference of one numeric column: quantile bins, counts, sample, mean, std.

    Args:
        values: The column (NaN = missing).
        keys: ``row_keys`` of the same rows (selects the sample).
        bins: Quantile bins wanted (fewer when values repeat).
        sample_size: Rows kept for KS and Wasserstein (bottom-k of the keys).

    Returns:
        JSON-able ``edges`` (inner bin edges: bin i holds values <= edges[i]),
        ``counts``, ``missing``, ``rows``, ``mean``, ``std`` and ``sample``.
    """
    present = ~np.isnan(values)
    clean = values[present]
    if clean.size:
        quantiles = np.quantile(clean, np.linspace(0.0, 1.0, bins + 1)[1:-1])
        edges = np.unique(quantiles)
    else:
        edges = np.array([], dtype=np.float64)
    counts = np.bincount(np.searchsorted(edges, clean), minlength=len(edges) + 1)
    chosen = _bottom_k(keys[present], sample_size)
    return {
        "edges": [float(edge) for edge in edges],
        "counts": [int(count) for count in counts],
        "missing": int((~present).sum()),
        "rows": int(values.size),
        "mean": float(clean.mean()) if clean.size else None,
        "std": float(clean.std()) if clean.size else None,
        "sample": [float(value) for value in np.sort(clean[chosen])],
    }


def categorical_reference(
    series: pd.Series, seen: pd.Series | None = None
) -> dict[str, Any]:
    """The reference of one categorical column: its category counts (missing apart).

    Args:
        series: The reference rows of the column.
        seen: Every value the model saw (its whole train and test data): a current
            category is *new* only when it is not among them. Default: ``series``.

    Returns:
        JSON-able ``counts``, ``missing``, ``rows`` and ``seen`` (sorted categories).
    """
    counts = series.astype("str").value_counts(dropna=True, sort=False)
    known = series if seen is None else seen
    return {
        "counts": {str(key): int(value) for key, value in sorted(counts.items())},
        "missing": int(series.isna().sum()),
        "rows": len(series),
        "seen": sorted({str(value) for value in known.dropna().unique()}),
    }


def build_profile(  # noqa: PLR0913
    reference: pd.DataFrame,
    predictions: np.ndarray,
    prediction_keys: np.ndarray,
    *,
    numeric: Sequence[str],
    categorical: Sequence[str],
    key_columns: Sequence[str],
    settings: Mapping[str, Any],
    seen: pd.DataFrame | None = None,
) -> dict[str, Any]:
    """Profile the reference rows and the reference predictions (JSON-able).

    Args:
        reference: The reference rows (model inputs); not modified.
        predictions: The version's test predictions.
        prediction_keys: ``row_keys`` of the test prediction rows.
        numeric: Numeric feature columns.
        categorical: Categorical feature columns.
        key_columns: Columns identifying a row (for the sample keys).
        settings: ``monitoring.reference``: ``bins``, ``sample_size``, ``seed``.
        seen: All rows the model saw (categories outside them are *new*); default
            ``reference``.

    Returns:
        ``{"schema", "bins", "sample_size", "seed", "numeric": {column: ...},
        "categorical": {column: ...}, "prediction": {...}}``.
    """
    bins, size, seed = _reference_settings(settings)
    keys = row_keys(reference, key_columns, seed)
    return {
        "schema": PROFILE_SCHEMA,
        "bins": bins,
        "sample_size": size,
        "seed": seed,
        "numeric": {
            name: numeric_reference(numeric_values(reference[name]), keys, bins, size)
            for name in numeric
        },
        "categorical": {
            name: categorical_reference(
                reference[name], None if seen is None else seen[name]
            )
            for name in categorical
        },
        "prediction": numeric_reference(
            np.asarray(predictions, dtype=np.float64), prediction_keys, bins, size
        ),
    }


def _reference_settings(settings: Mapping[str, Any]) -> tuple[int, int, int]:
    values = []
    for name in ("bins", "sample_size", "seed"):
        value = settings.get(name)
        minimum = 0 if name == "seed" else 2
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise ConfigError(
                f"monitoring.reference.{name} is {value!r}; expected an integer >= "
                f"{minimum}.\nHint: fix {MONITORING_CONF}."
            )
        values.append(value)
    return values[0], values[1], values[2]


# --- the current window, accumulated chunk by chunk --------------------------------


class WindowAccumulator:
    """Counts and bounded samples of a window, fed chunk by chunk.

    Memory does not grow with rows: per day and column a histogram over the reference
    bins (numeric) or category counts (categorical), one bottom-k sample of rows for
    KS and Wasserstein (the ``sample_size`` smallest ``row_keys``), and per-day error
    sums for performance. Feeding the same rows in any chunking gives the same state.
    """

    def __init__(
        self,
        profile: Mapping[str, Any],
        prediction_column: str,
        key_columns: Sequence[str],
    ) -> None:
        """Prepare empty counts for the profile's columns.

        Args:
            profile: The reference profile (``build_profile``).
            prediction_column: The prediction column of the log.
            key_columns: Columns identifying a row (sample keys).
        """
        self.profile = profile
        self.prediction_column = prediction_column
        self.key_columns = list(key_columns)
        self.numeric = [*profile["numeric"], prediction_column]
        self.categorical = list(profile["categorical"])
        self._edges = {
            name: np.asarray(profile["numeric"][name]["edges"], dtype=np.float64)
            for name in profile["numeric"]
        }
        self._edges[prediction_column] = np.asarray(
            profile["prediction"]["edges"], dtype=np.float64
        )
        self.sample_size = int(profile["sample_size"])
        self.seed = int(profile["seed"])
        self.rows_per_day: dict[str, int] = {}
        self.hist: dict[str, dict[str, np.ndarray]] = {
            name: {} for name in self.numeric
        }
        self.missing: dict[str, int] = dict.fromkeys(self.numeric, 0)
        self.categories: dict[str, dict[str, dict[str, int]]] = {
            name: {} for name in self.categorical
        }
        self.sample_keys = np.empty(0, dtype=np.uint64)
        self.sample_values = {
            name: np.empty(0, dtype=np.float64) for name in self.numeric
        }
        self.errors: dict[str, list[float]] = {}  # day -> [rows, sum sq, sum abs]

    @property
    def rows(self) -> int:
        """Rows fed so far."""
        return sum(self.rows_per_day.values())

    def add(
        self, chunk: pd.DataFrame, codes: np.ndarray, uniques: Sequence[str]
    ) -> None:
        """Count one chunk of log rows.

        Args:
            chunk: Rows with the profile's columns and the prediction column.
            codes: Per row, the index of its day in ``uniques`` (``day_labels``).
            uniques: ISO days.
        """
        if chunk.empty:
            return
        codes = np.asarray(codes, dtype=np.int64)
        n_days = len(uniques)
        for code, day in enumerate(uniques):
            self.rows_per_day[day] = self.rows_per_day.get(day, 0) + int(
                np.count_nonzero(codes == code)
            )
        keys = row_keys(chunk, self.key_columns, self.seed)
        self._add_sample(chunk, keys)
        for name in self.numeric:
            values = numeric_values(chunk[name])
            present = ~np.isnan(values)
            self.missing[name] += int((~present).sum())
            edges = self._edges[name]
            width = len(edges) + 1
            bins = np.searchsorted(edges, values[present])
            counts = np.bincount(
                codes[present] * width + bins, minlength=n_days * width
            ).reshape(n_days, width)
            per_day = self.hist[name]
            for code, day in enumerate(uniques):
                if day in per_day:
                    per_day[day] = per_day[day] + counts[code]
                else:
                    per_day[day] = counts[code].copy()
        for name in self.categorical:
            cat_codes, cats = pd.factorize(chunk[name], use_na_sentinel=True)
            width = len(cats) + 1  # the last slot counts missing values
            slots = np.where(cat_codes < 0, len(cats), cat_codes)
            counts = np.bincount(
                codes * width + slots, minlength=n_days * width
            ).reshape(n_days, width)
            labels = [sys.intern(str(cat)) for cat in cats] + [MISSING_LABEL]
            per_day = self.categories[name]
            for code, day in enumerate(uniques):
                day_counts = per_day.setdefault(day, {})
                for slot in np.flatnonzero(counts[code]):
                    label = labels[slot]
                    day_counts[label] = day_counts.get(label, 0) + int(
                        counts[code, slot]
                    )

    def _add_sample(self, chunk: pd.DataFrame, keys: np.ndarray) -> None:
        size = self.sample_size
        if len(self.sample_keys) >= size:  # only rows that can enter the bottom-k
            limit = self.sample_keys.max()
            candidates = np.flatnonzero(keys < limit)
        else:
            candidates = np.arange(len(keys))
        if candidates.size == 0:
            return
        merged_keys = np.concatenate([self.sample_keys, keys[candidates]])
        chosen = _bottom_k(merged_keys, size)
        self.sample_keys = merged_keys[chosen]
        for name in self.numeric:
            values = numeric_values(chunk[name].iloc[candidates])
            merged = np.concatenate([self.sample_values[name], values])
            self.sample_values[name] = merged[chosen]

    def add_errors(
        self,
        codes: np.ndarray,
        uniques: Sequence[str],
        actual: np.ndarray,
        predicted: np.ndarray,
    ) -> None:
        """Add labelled rows: per day the rows, squared and absolute error sums.

        Args:
            codes: Per row, the index of its day in ``uniques``.
            uniques: ISO days.
            actual: The labels (NaN = not labelled yet).
            predicted: The logged predictions.
        """
        actual = np.asarray(actual, dtype=np.float64)
        predicted = np.asarray(predicted, dtype=np.float64)
        present = ~(np.isnan(actual) | np.isnan(predicted))
        codes = np.asarray(codes, dtype=np.int64)[present]
        error = predicted[present] - actual[present]
        if not error.size:
            return
        rows = np.bincount(codes, minlength=len(uniques))
        squared = np.bincount(codes, weights=error**2, minlength=len(uniques))
        absolute = np.bincount(codes, weights=np.abs(error), minlength=len(uniques))
        for code, day in enumerate(uniques):
            total = self.errors.setdefault(str(day), [0.0, 0.0, 0.0])
            total[0] += float(rows[code])
            total[1] += float(squared[code])
            total[2] += float(absolute[code])

    def sample(self, name: str) -> np.ndarray:
        """The column's bounded sample, missing values dropped."""
        values = self.sample_values[name]
        return values[~np.isnan(values)]

    def numeric_counts(self, name: str) -> np.ndarray:
        """The column's histogram over the whole window."""
        width = len(self._edges[name]) + 1
        total = np.zeros(width, dtype=np.int64)
        for counts in self.hist[name].values():
            total += counts
        return total

    def category_counts(self, name: str) -> dict[str, int]:
        """The column's category counts over the whole window (missing apart)."""
        total: dict[str, int] = {}
        for counts in self.categories[name].values():
            for label, count in counts.items():
                total[label] = total.get(label, 0) + count
        total.pop(MISSING_LABEL, None)
        return total


# --- statistics ------------------------------------------------------------------


def shares(counts: np.ndarray | Sequence[float]) -> np.ndarray:
    """Counts as shares summing to 1 (all zero stays zero)."""
    array = np.asarray(counts, dtype=np.float64)
    total = array.sum()
    return array / total if total > 0 else array


def psi(
    reference: np.ndarray | Sequence[float],
    current: np.ndarray | Sequence[float],
    epsilon: float,
) -> float:
    """Population stability index of two count vectors over the same bins.

    ``sum((c - r) * ln(c / r))`` = KL(c||r) + KL(r||c), via ``scipy.special.rel_entr``,
    with shares floored at ``epsilon`` (then renormalised) so an empty bin is finite.
    """
    ref = np.maximum(shares(reference), epsilon)
    cur = np.maximum(shares(current), epsilon)
    ref, cur = ref / ref.sum(), cur / cur.sum()
    return float(np.sum(rel_entr(cur, ref) + rel_entr(ref, cur)))


def _finite(value: float) -> float:
    """A statistic as a finite float (NaN stays NaN only where the test gave none)."""
    if math.isinf(value):
        return MAX_RATIO if value > 0 else -MAX_RATIO
    return float(value)


def numeric_statistics(
    reference: Mapping[str, Any],
    current_counts: np.ndarray,
    current_sample: np.ndarray,
    epsilon: float,
) -> dict[str, float]:
    """Wasserstein (normalised by the reference std), KS and PSI of one numeric column.

    Args:
        reference: The column's profile entry (``numeric_reference``).
        current_counts: Current histogram over the reference bins.
        current_sample: Current bounded sample (no NaN).
        epsilon: PSI's floor for empty bins.

    Returns:
        ``wasserstein``, ``wasserstein_norm``, ``ks_statistic``, ``ks_pvalue``, ``psi``.
    """
    ref_sample = np.asarray(reference["sample"], dtype=np.float64)
    if ref_sample.size == 0 or current_sample.size == 0:
        distance, ks_stat, ks_p = 0.0, 0.0, 1.0
    else:
        distance = float(wasserstein_distance(ref_sample, current_sample))
        test = ks_2samp(ref_sample, current_sample)
        ks_stat, ks_p = float(test.statistic), float(test.pvalue)
    # A constant reference (e.g. no holiday in it) has no spread: the distance is then
    # reported in the column's own units.
    spread = float(reference.get("std") or 0.0)
    normalised = distance / spread if spread > 0 else distance
    return {
        "wasserstein": distance,
        "wasserstein_norm": _finite(normalised),
        "ks_statistic": ks_stat,
        "ks_pvalue": ks_p,
        "psi": psi(reference["counts"], current_counts, epsilon),
    }


def categorical_statistics(
    reference: Mapping[str, int],
    current: Mapping[str, int],
    epsilon: float,
    seen: Sequence[str] | None = None,
) -> dict[str, float]:
    """Jensen-Shannon distance, chi-squared p-value, PSI and new categories.

    Args:
        reference: Reference category counts.
        current: Current category counts.
        epsilon: PSI's floor for empty categories.
        seen: Categories the model saw (default: those of ``reference``).

    Returns:
        ``jensen_shannon`` (base 2, 0..1), ``chi2_pvalue``, ``psi``,
        ``new_categories`` (categories never seen in the reference) and
        ``new_category_share`` (share of current rows in them).
    """
    labels = sorted(set(reference) | set(current))
    ref = np.array([reference.get(label, 0) for label in labels], dtype=np.float64)
    cur = np.array([current.get(label, 0) for label in labels], dtype=np.float64)
    known = set(reference) if seen is None else set(seen)
    new = [label for label in labels if label not in known]
    cur_total = cur.sum()
    new_rows = float(sum(current[label] for label in new))
    if ref.sum() == 0 or cur_total == 0:
        return {
            "jensen_shannon": 0.0,
            "chi2_pvalue": 1.0,
            "psi": 0.0,
            "new_categories": len(new),
            "new_category_share": new_rows / cur_total if cur_total else 0.0,
        }
    js = float(jensenshannon(shares(ref), shares(cur), base=2))
    used = (ref + cur) > 0
    if used.sum() < 2:  # noqa: PLR2004 - one category: nothing to test
        p_value = 1.0
    else:
        p_value = float(chi2_contingency(np.stack([ref[used], cur[used]]))[1])
    return {
        "jensen_shannon": 0.0 if math.isnan(js) else js,
        "chi2_pvalue": p_value,
        "psi": psi(ref, cur, epsilon),
        "new_categories": len(new),
        "new_category_share": new_rows / float(cur_total),
    }


# --- the result ------------------------------------------------------------------


def _bin_labels(edges: Sequence[float]) -> list[str]:
    if not edges:
        return ["all"]
    labels = [f"≤ {edges[0]:.4g}"]
    labels += [f"({low:.4g}, {high:.4g}]" for low, high in itertools.pairwise(edges)]
    labels.append(f"> {edges[-1]:.4g}")
    return labels


def _round(values: np.ndarray) -> list[float]:
    return [round(float(value), 6) for value in values]


def _thresholds(settings: Mapping[str, Any], names: Sequence[str]) -> dict[str, float]:
    missing = [name for name in names if name not in settings]
    if missing:
        raise ConfigError(
            f"Drift thresholds {missing} are missing from {dict(settings)}.\nHint: "
            f"set them in {MONITORING_CONF}."
        )
    return {name: float(settings[name]) for name in names}


def numeric_entry(  # noqa: PLR0913
    column: str,
    reference: Mapping[str, Any],
    acc: WindowAccumulator,
    settings: Mapping[str, Any],
    epsilon: float,
    *,
    report_only: bool = False,
) -> dict[str, Any]:
    """The result entry of one numeric column (or the prediction).

    Flagged only when the effect size (``wasserstein_norm``) passes its threshold
    and the KS test is significant (``ks_pvalue`` below its threshold).
    """
    thresholds = _thresholds(settings, ["wasserstein_norm", "ks_pvalue", "psi"])
    counts = acc.numeric_counts(column)
    stats = numeric_statistics(reference, counts, acc.sample(column), epsilon)
    effect = stats["wasserstein_norm"] > thresholds["wasserstein_norm"]
    significant = stats["ks_pvalue"] < thresholds["ks_pvalue"]
    drifted = effect and significant and not report_only
    reason = (
        f"wasserstein_norm {stats['wasserstein_norm']:.3g} "
        f"{'>' if effect else '≤'} {thresholds['wasserstein_norm']:g} and ks p "
        f"{stats['ks_pvalue']:.3g} {'<' if significant else '≥'} "
        f"{thresholds['ks_pvalue']:g}"
    )
    if report_only:
        reason += " (report only: monitoring.report_only)"
    daily = [
        {
            "day": day,
            "psi": round(psi(reference["counts"], day_counts, epsilon), 6),
            "rows": int(day_counts.sum()),
        }
        for day, day_counts in sorted(acc.hist[column].items())
    ]
    return {
        "column": column,
        "kind": NUMERIC,
        "drifted": bool(drifted),
        "report_only": bool(report_only),
        "reason": reason,
        "statistics": {name: round(value, 10) for name, value in stats.items()},
        "thresholds": thresholds,
        "distribution": {
            "labels": _bin_labels(reference["edges"]),
            "reference": _round(shares(reference["counts"])),
            "current": _round(shares(counts)),
        },
        "daily": daily,
        "missing": int(acc.missing[column]),
    }


def categorical_entry(  # noqa: PLR0913
    column: str,
    reference: Mapping[str, Any],
    acc: WindowAccumulator,
    settings: Mapping[str, Any],
    epsilon: float,
    *,
    max_categories: int,
    report_only: bool = False,
) -> dict[str, Any]:
    """The result entry of one categorical column.

    Flagged when the effect size (``jensen_shannon``) passes its threshold and the
    chi-squared test is significant, or when the share of rows in categories the
    reference never saw passes ``new_category_share``.
    """
    thresholds = _thresholds(
        settings, ["jensen_shannon", "chi2_pvalue", "psi", "new_category_share"]
    )
    ref_counts = reference["counts"]
    seen = set(reference.get("seen") or ref_counts)
    current = acc.category_counts(column)
    stats = categorical_statistics(ref_counts, current, epsilon, sorted(seen))
    effect = stats["jensen_shannon"] > thresholds["jensen_shannon"]
    significant = stats["chi2_pvalue"] < thresholds["chi2_pvalue"]
    new_share = stats["new_category_share"] > thresholds["new_category_share"]
    drifted = ((effect and significant) or new_share) and not report_only
    reason = (
        f"jensen_shannon {stats['jensen_shannon']:.3g} "
        f"{'>' if effect else '≤'} {thresholds['jensen_shannon']:g} and chi2 p "
        f"{stats['chi2_pvalue']:.3g} {'<' if significant else '≥'} "
        f"{thresholds['chi2_pvalue']:g}; {stats['new_categories']} new categories "
        f"({stats['new_category_share']:.1%} of rows, threshold "
        f"{thresholds['new_category_share']:.1%})"
    )
    if report_only:
        reason += " (report only: monitoring.report_only)"
    new = sorted(
        (label for label in current if label not in seen),
        key=lambda label: (-current[label], label),
    )
    ranked = sorted(
        set(ref_counts) | (set(current) & seen),
        key=lambda label: (-ref_counts.get(label, 0), -current.get(label, 0), label),
    )
    shown = ranked[:max_categories]
    ref_total = max(sum(ref_counts.values()), 1)
    cur_total = max(sum(current.values()), 1)
    labels = list(shown)
    ref_shares = [ref_counts.get(label, 0) / ref_total for label in shown]
    cur_shares = [current.get(label, 0) / cur_total for label in shown]
    rest = ranked[max_categories:]
    if rest:
        labels.append(OTHER_LABEL)
        ref_shares.append(sum(ref_counts.get(label, 0) for label in rest) / ref_total)
        cur_shares.append(sum(current.get(label, 0) for label in rest) / cur_total)
    if new:
        labels.append(NEW_LABEL)
        ref_shares.append(0.0)
        cur_shares.append(sum(current[label] for label in new) / cur_total)
    daily = []
    for day, counts in sorted(acc.categories[column].items()):
        day_counts = {k: v for k, v in counts.items() if k != MISSING_LABEL}
        union = sorted(set(ref_counts) | set(day_counts))
        day_total = sum(day_counts.values())
        day_new = sum(count for label, count in day_counts.items() if label not in seen)
        day_psi = psi(
            [ref_counts.get(label, 0) for label in union],
            [day_counts.get(label, 0) for label in union],
            epsilon,
        )
        daily.append(
            {
                "day": day,
                "psi": round(day_psi, 6),
                "rows": int(sum(counts.values())),
                "new_category_share": round(day_new / day_total, 6)
                if day_total
                else 0.0,
            }
        )
    return {
        "column": column,
        "kind": CATEGORICAL,
        "drifted": bool(drifted),
        "report_only": bool(report_only),
        "reason": reason,
        "statistics": {
            name: round(value, 10) if isinstance(value, float) else value
            for name, value in stats.items()
        },
        "new_category_examples": new[:MAX_NEW_EXAMPLES],
        "thresholds": thresholds,
        "distribution": {
            "labels": labels,
            "reference": _round(np.asarray(ref_shares)),
            "current": _round(np.asarray(cur_shares)),
        },
        "daily": daily,
        "missing": int(
            sum(
                counts.get(MISSING_LABEL, 0)
                for counts in acc.categories[column].values()
            )
        ),
    }


def performance_entry(
    acc: WindowAccumulator, reference_rmse: float | None, settings: Mapping[str, Any]
) -> dict[str, Any]:
    """RMSE/MAE per day and overall against the version's test-time RMSE.

    ``degradation`` is ``rmse / reference_rmse - 1`` over the whole window;
    ``median_daily_degradation`` the same for the median day's RMSE. Degraded when
    the statistic ``performance.aggregate`` names (``median_day``, default: a single
    odd day such as a holiday the model never saw does not recommend retraining, a
    lasting change does; or ``window``) passes ``performance.degradation`` over at
    least ``performance.min_labelled_rows`` labelled rows.
    """
    threshold = float(settings["degradation"])
    aggregate = settings.get("aggregate", "median_day")
    if aggregate not in {"median_day", "window"}:
        raise ConfigError(
            f"monitoring.performance.aggregate is {aggregate!r}; expected median_day "
            f"or window.\nHint: fix {MONITORING_CONF}."
        )
    min_rows = int(settings["min_labelled_rows"])
    daily = []
    total = [0.0, 0.0, 0.0]
    for day, (rows, squared, absolute) in sorted(acc.errors.items()):
        if rows <= 0:
            continue
        daily.append(
            {
                "day": day,
                "rows": int(rows),
                "rmse": round(math.sqrt(squared / rows), 6),
                "mae": round(absolute / rows, 6),
            }
        )
        total = [total[0] + rows, total[1] + squared, total[2] + absolute]
    labelled = int(total[0])
    if labelled == 0:
        return {
            "available": False,
            "labelled_rows": 0,
            "rmse": None,
            "mae": None,
            "reference_rmse": reference_rmse,
            "degradation": None,
            "median_daily_degradation": None,
            "aggregate": aggregate,
            "degraded": False,
            "threshold": threshold,
            "min_labelled_rows": min_rows,
            "daily": [],
        }
    rmse = math.sqrt(total[1] / total[0])
    degradation = rmse / reference_rmse - 1.0 if reference_rmse else None
    median_day = float(np.median([day["rmse"] for day in daily]))
    median_degradation = median_day / reference_rmse - 1.0 if reference_rmse else None
    decisive = median_degradation if aggregate == "median_day" else degradation
    degraded = decisive is not None and decisive > threshold and labelled >= min_rows
    return {
        "available": True,
        "labelled_rows": labelled,
        "rmse": round(rmse, 6),
        "mae": round(total[2] / total[0], 6),
        "reference_rmse": reference_rmse,
        "degradation": None if degradation is None else round(degradation, 6),
        "median_daily_degradation": (
            None if median_degradation is None else round(median_degradation, 6)
        ),
        "aggregate": aggregate,
        "degraded": bool(degraded),
        "threshold": threshold,
        "min_labelled_rows": min_rows,
        "daily": daily,
    }


def _first_drift_day(
    entries: Sequence[Mapping[str, Any]],
    performance: Mapping[str, Any],
) -> str | None:
    """The first day on which a flagged column (or performance) already looked off."""
    days = []
    for entry in entries:
        if not entry["drifted"]:
            continue
        limit = entry["thresholds"]["psi"]
        new_limit = entry["thresholds"].get("new_category_share")
        hits = [
            day["day"]
            for day in entry["daily"]
            if day["psi"] > limit
            or (new_limit is not None and day.get("new_category_share", 0) > new_limit)
        ]
        days.append(hits[0] if hits else entry["daily"][0]["day"])
    if performance.get("degraded") and performance.get("reference_rmse"):
        limit = performance["reference_rmse"] * (1 + performance["threshold"])
        hits = [day["day"] for day in performance["daily"] if day["rmse"] > limit]
        days.append(hits[0] if hits else performance["daily"][0]["day"])
    return min(days) if days else None


def verdict(
    features: Sequence[Mapping[str, Any]],
    prediction: Mapping[str, Any],
    performance: Mapping[str, Any],
    settings: Mapping[str, Any],
) -> dict[str, Any]:
    """The dataset-level verdict and the retraining recommendation with its reason.

    Args:
        features: The feature entries.
        prediction: The prediction entry.
        performance: The performance entry.
        settings: ``monitoring.verdict``: ``dataset_drift_share`` and ``retrain_on``
            (which findings recommend retraining).

    Returns:
        The ``verdict`` block of the monitoring result.
    """
    monitored = [entry for entry in features if not entry.get("report_only")]
    drifted = [entry["column"] for entry in monitored if entry["drifted"]]
    share = len(drifted) / len(monitored) if monitored else 0.0
    dataset_drift = bool(drifted) and share >= float(settings["dataset_drift_share"])
    new_categories = any(
        entry["kind"] == CATEGORICAL
        and entry["drifted"]
        and entry["statistics"]["new_category_share"]
        > entry["thresholds"]["new_category_share"]
        for entry in monitored
    )
    findings = {
        "dataset_drift": dataset_drift,
        "prediction_drift": bool(prediction["drifted"]),
        "performance_degraded": bool(performance["degraded"]),
        "new_categories": new_categories,
    }
    retrain_on = settings.get("retrain_on") or {}
    unknown = sorted(set(retrain_on) - set(findings))
    if unknown:
        raise ConfigError(
            f"monitoring.verdict.retrain_on has unknown key(s) {unknown}; expected "
            f"some of {sorted(findings)}.\nHint: fix {MONITORING_CONF}."
        )
    reasons = []
    if dataset_drift:
        reasons.append(
            f"{len(drifted)} of {len(monitored)} features drifted ({share:.0%} ≥ "
            f"{float(settings['dataset_drift_share']):.0%}): {', '.join(drifted)}"
        )
    elif drifted:
        reasons.append(
            f"{len(drifted)} of {len(monitored)} features drifted ({share:.0%} < "
            f"{float(settings['dataset_drift_share']):.0%}, below the dataset "
            f"threshold): {', '.join(drifted)}"
        )
    if findings["prediction_drift"]:
        reasons.append(
            f"predictions drifted (wasserstein_norm "
            f"{prediction['statistics']['wasserstein_norm']:.3g})"
        )
    if findings["new_categories"]:
        columns = [
            entry["column"]
            for entry in monitored
            if entry["kind"] == CATEGORICAL
            and entry["statistics"]["new_category_share"]
            > entry["thresholds"]["new_category_share"]
        ]
        reasons.append(f"unseen categories in {', '.join(columns)}")
    if findings["performance_degraded"]:
        median = performance["median_daily_degradation"]
        reasons.append(
            f"RMSE {performance['rmse']:.4g} is {performance['degradation']:.0%} above "
            f"the test-time {performance['reference_rmse']:.4g}, the median day's "
            f"{median:.0%} (threshold {performance['threshold']:.0%} on the "
            f"{performance['aggregate'].replace('_', ' ')})"
        )
    triggers = [
        name for name, found in findings.items() if found and retrain_on.get(name)
    ]
    recommended = bool(triggers)
    if recommended:
        reason = "Retraining recommended: " + "; ".join(reasons) + "."
    elif reasons:
        reason = (
            "No retraining recommended (findings not in monitoring.verdict.retrain_on): "
            + "; ".join(reasons)
            + "."
        )
    else:
        performance_note = (
            f"RMSE {performance['rmse']:.4g} vs test-time "
            f"{performance['reference_rmse']:.4g} (median day "
            f"{performance['median_daily_degradation']:+.0%}, "
            f"{'window' if performance['aggregate'] == 'window' else 'median day'} "
            f"threshold +{performance['threshold']:.0%})"
            if performance.get("available") and performance.get("reference_rmse")
            else "no labels yet"
        )
        reason = (
            f"No drift: no feature or prediction drift, {performance_note}; no "
            "retraining needed."
        )
    return {
        "drifted_columns": drifted,
        "drift_share": round(share, 6),
        **findings,
        "first_drift_day": _first_drift_day([*features, prediction], performance),
        "retrain_recommended": recommended,
        "reason": reason,
    }


def evaluate_window(
    profile: Mapping[str, Any],
    acc: WindowAccumulator,
    settings: Mapping[str, Any],
) -> dict[str, Any]:
    """Features, prediction, performance and verdict blocks of the monitoring result.

    Args:
        profile: The reference profile.
        acc: The window's accumulated counts and samples.
        settings: The ``monitoring`` parameters (``numeric``, ``categorical``,
            ``prediction``, ``performance``, ``verdict``, ``report_only``, ``psi``).

    Returns:
        ``{"features", "prediction", "performance", "verdict"}``.
    """
    epsilon = float(settings["psi_epsilon"])
    report_only = set(settings.get("report_only") or [])
    max_categories = int(settings.get("max_categories", 20))
    overrides = settings.get("columns") or {}
    unknown = sorted(
        set(overrides) - set(profile["numeric"]) - set(profile["categorical"])
    )
    if unknown:  # the defaults name the default use case's columns: not an error
        logger.warning(
            "monitoring.columns names %s, which are not features of this model "
            "(numeric %s, categorical %s): their thresholds are not used (%s)",
            unknown,
            list(profile["numeric"]),
            list(profile["categorical"]),
            MONITORING_CONF,
        )

    def limits(kind: str, name: str) -> dict[str, Any]:
        return {**settings[kind], **(overrides.get(name) or {})}

    features = [
        numeric_entry(
            name,
            reference,
            acc,
            limits("numeric", name),
            epsilon,
            report_only=name in report_only,
        )
        for name, reference in profile["numeric"].items()
    ]
    features += [
        categorical_entry(
            name,
            reference,
            acc,
            limits("categorical", name),
            epsilon,
            max_categories=max_categories,
            report_only=name in report_only,
        )
        for name, reference in profile["categorical"].items()
    ]
    prediction = numeric_entry(
        acc.prediction_column,
        profile["prediction"],
        acc,
        settings["prediction"],
        epsilon,
    )
    prediction["column"] = "prediction"
    performance = performance_entry(
        acc, profile.get("test_rmse"), settings["performance"]
    )
    return {
        "features": features,
        "prediction": prediction,
        "performance": performance,
        "verdict": verdict(features, prediction, performance, settings["verdict"]),
    }


def drift_scores_frame(result: Mapping[str, Any]) -> pd.DataFrame:
    """One row per column (features, then the prediction) of a monitoring result."""
    rows = []
    for entry in [*result["features"], result["prediction"]]:
        stats = entry["statistics"]
        rows.append(
            {
                "column": entry["column"],
                "kind": entry["kind"],
                "drifted": bool(entry["drifted"]),
                "report_only": bool(entry.get("report_only", False)),
                "wasserstein_norm": stats.get("wasserstein_norm", np.nan),
                "ks_statistic": stats.get("ks_statistic", np.nan),
                "ks_pvalue": stats.get("ks_pvalue", np.nan),
                "jensen_shannon": stats.get("jensen_shannon", np.nan),
                "chi2_pvalue": stats.get("chi2_pvalue", np.nan),
                "psi": stats.get("psi", np.nan),
                "new_categories": int(stats.get("new_categories", 0)),
                "new_category_share": float(stats.get("new_category_share", 0.0)),
                "reason": entry["reason"],
            }
        )
    return pd.DataFrame(rows)


def monitoring_metrics(result: Mapping[str, Any]) -> dict[str, float]:
    """Flat metrics of a result for MLflow (prefix added by the catalog entry)."""
    metrics: dict[str, float] = {
        "rows": float(result["window"]["rows"]),
        "drift_share": float(result["verdict"]["drift_share"]),
        "drifted_columns": float(len(result["verdict"]["drifted_columns"])),
        "retrain_recommended": float(result["verdict"]["retrain_recommended"]),
    }
    for entry in [*result["features"], result["prediction"]]:
        stats = entry["statistics"]
        for name in ("wasserstein_norm", "ks_pvalue", "jensen_shannon", "psi"):
            if name in stats and stats[name] is not None:
                metrics[f"{entry['column']}.{name}"] = float(stats[name])
        if "new_category_share" in stats:
            metrics[f"{entry['column']}.new_category_share"] = float(
                stats["new_category_share"]
            )
        metrics[f"{entry['column']}.drifted"] = float(entry["drifted"])
    performance = result["performance"]
    for name in ("rmse", "mae", "degradation", "median_daily_degradation"):
        if performance.get(name) is not None:
            metrics[f"performance.{name}"] = float(performance[name])
    metrics["performance.labelled_rows"] = float(performance["labelled_rows"])
    return metrics
