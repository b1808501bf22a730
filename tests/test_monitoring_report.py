"""The monitoring HTML report: content, order, escaping, edge cases, and a real browser."""

from __future__ import annotations

import copy
import datetime as dt
import html as html_lib
import itertools
import math
import re
from pathlib import Path
from typing import Any

import matplotlib.image
import numpy as np
import pytest

from modelops.monitoring_report import TOP_CATEGORIES, render_report
from tests.browser import CHROMIUM, chromium_available, dump_dom, screenshot

NUMERIC = [
    "temperature_c",
    "humidity_pct",
    "wind_speed_kmh",
    "precipitation_mm",
    "station_capacity",
    "hour_of_day",
    "day_of_week",
]
CATEGORICAL = ["station_id", "station_zone", "weather"]
DRIFTED = ["temperature_c", "station_id"]
NUMERIC_LIMITS = {"wasserstein_norm": 0.5, "ks_pvalue": 0.01, "psi": 0.25}
CATEGORICAL_LIMITS = {
    "jensen_shannon": 0.1,
    "chi2_pvalue": 0.01,
    "psi": 0.25,
    "new_category_share": 0.01,
}
VERDICT_REASON = (
    "Retraining recommended: 2 of 10 features drifted (20% ≥ 10%): temperature_c, "
    "station_id; unseen categories in station_id; RMSE 9.1 is 57% above the "
    "test-time 5.8 (threshold 50%)."
)


def _shares(values: np.ndarray) -> list[float]:
    return [round(float(value), 6) for value in values / values.sum()]


def _days(end: dt.date, count: int = 7) -> list[str]:
    return [(end - dt.timedelta(days=count - 1 - i)).isoformat() for i in range(count)]


def numeric_entry(
    column: str, drifted: bool, days: list[str], rng: np.random.Generator
) -> dict[str, Any]:
    """A numeric column's entry as modelops.drift writes it."""
    edges = np.round(np.linspace(0, 30, 9), 2)
    labels = [f"≤ {edges[0]:g}"]
    labels += [f"({a:g}, {b:g}]" for a, b in itertools.pairwise(edges)]
    labels.append(f"> {edges[-1]:g}")
    reference = np.full(len(labels), 1.0)
    current = reference + rng.uniform(0, 0.2, len(labels))
    if drifted:
        current = np.linspace(0.2, 3.0, len(labels))
    score = 1.4 if drifted else float(rng.uniform(0.02, 0.3))
    pvalue = 1e-30 if drifted else float(rng.uniform(0.02, 0.9))
    psi = 0.9 if drifted else float(rng.uniform(0.01, 0.1))
    return {
        "column": column,
        "kind": "numeric",
        "drifted": drifted,
        "report_only": False,
        "reason": f"wasserstein_norm {score:.3g} {'>' if drifted else '≤'} 0.5",
        "statistics": {
            "wasserstein": score * 4,
            "wasserstein_norm": score,
            "ks_statistic": 0.4 if drifted else 0.05,
            "ks_pvalue": pvalue,
            "psi": psi,
        },
        "thresholds": dict(NUMERIC_LIMITS),
        "distribution": {
            "labels": labels,
            "reference": _shares(reference),
            "current": _shares(current),
        },
        "daily": [
            {
                "day": day,
                "psi": round((0.1 + 0.3 * i) if drifted else psi, 6),
                "rows": 576,
            }
            for i, day in enumerate(days)
        ],
        "missing": 0,
    }


def categorical_entry(
    column: str, drifted: bool, days: list[str], categories: list[str]
) -> dict[str, Any]:
    """A categorical column's entry as modelops.drift writes it."""
    reference = np.linspace(2.0, 1.0, len(categories))
    labels, ref, cur = list(categories), _shares(reference), _shares(reference)
    statistics = {
        "jensen_shannon": 0.05,
        "chi2_pvalue": 0.4,
        "psi": 0.02,
        "new_categories": 0,
        "new_category_share": 0.0,
    }
    examples: list[str] = []
    if drifted:
        labels.append("(new)")
        ref.append(0.0)
        cur = [*(share * 0.8 for share in cur), 0.2]
        statistics = {
            "jensen_shannon": 0.31,
            "chi2_pvalue": 1e-40,
            "psi": 1.7,
            "new_categories": 3,
            "new_category_share": 0.2,
        }
        examples = ["S0041", "S0042", "S0043"]
    return {
        "column": column,
        "kind": "categorical",
        "drifted": drifted,
        "report_only": False,
        "reason": f"jensen_shannon {statistics['jensen_shannon']}",
        "statistics": statistics,
        "new_category_examples": examples,
        "thresholds": dict(CATEGORICAL_LIMITS),
        "distribution": {"labels": labels, "reference": ref, "current": cur},
        "daily": [
            {
                "day": day,
                "psi": 1.7 if drifted and i >= 2 else 0.02,
                "rows": 576,
                "new_category_share": 0.3 if drifted and i >= 2 else 0.0,
            }
            for i, day in enumerate(days)
        ],
        "missing": 0,
    }


def make_result(
    end: dt.date = dt.date(2025, 5, 7), drift: bool = True, seed: int = 0
) -> dict[str, Any]:
    """A realistic monitoring result (ISSUE10.md schema): 10 features, 2 drifted."""
    rng = np.random.default_rng(seed)
    days = _days(end)
    features = [
        numeric_entry(name, drift and name in DRIFTED, days, rng) for name in NUMERIC
    ]
    categories = {
        "station_id": [f"S{i:04d}" for i in range(12)],
        "station_zone": ["center", "park", "residential", "university", "business"],
        "weather": ["clear", "cloudy", "rain", "fog"],
    }
    features += [
        categorical_entry(name, drift and name in DRIFTED, days, categories[name])
        for name in CATEGORICAL
    ]
    prediction = numeric_entry("prediction", False, days, rng)
    rmse = [6.1, 6.4, 8.8, 9.9, 10.4, 10.9, 11.2] if drift else [5.9] * 7
    return {
        "computed_at": f"{(end + dt.timedelta(days=1)).isoformat()}T03:00:00+00:00",
        "env": "prod",
        "model": {
            "name": "modelops-bike-demand",
            "version": "3",
            "alias": "champion",
            "run_id": "672e55e6077842839e2df40cd4fb1887",
            "serving_form": "onnx",
        },
        "window": {
            "start": days[0],
            "end": days[-1],
            "days": days,
            "rows": 4032,
            "ignored_rows": {"other_versions": 120, "rescored": 0},
        },
        "reference": {
            "train_sha256": "f9fe21a6dd97b6133dd3fc474a7a990493cc83b7f2f034d3abe4c2b65675f8ac",
            "test_sha256": "6fa193037061f5e6c0b10ff4ebdee5ca9e9e1e1fa2ce649e861df16eed27b7e4",
            "train_rows": 22080,
            "test_rows": 6720,
            "metric": "rmse",
            "test_rmse": 5.8,
        },
        "features": features,
        "prediction": prediction,
        "performance": {
            "available": True,
            "labelled_rows": 4032,
            "rmse": 9.1 if drift else 5.9,
            "mae": 6.2 if drift else 4.1,
            "reference_rmse": 5.8,
            "degradation": (9.1 if drift else 5.9) / 5.8 - 1,
            "degraded": drift,
            "threshold": 0.5,
            "daily": [
                {"day": day, "rows": 576, "rmse": value, "mae": value * 0.68}
                for day, value in zip(days, rmse, strict=True)
            ],
        },
        "verdict": {
            "drifted_columns": list(DRIFTED) if drift else [],
            "drift_share": 0.2 if drift else 0.0,
            "dataset_drift": drift,
            "prediction_drift": False,
            "performance_degraded": drift,
            "new_categories": drift,
            "first_drift_day": days[1] if drift else None,
            "retrain_recommended": drift,
            "reason": VERDICT_REASON
            if drift
            else "No drift: no feature or prediction drift, RMSE 5.9 vs test-time 5.8; "
            "no retraining needed.",
        },
    }


def make_history(runs: int = 5) -> list[dict[str, Any]]:
    """Earlier weekly results without drift, oldest first."""
    end = dt.date(2025, 5, 7)
    return [
        make_result(end - dt.timedelta(days=7 * (runs - i)), drift=False, seed=i + 1)
        for i in range(runs)
    ]


def _text(html: str) -> str:
    """The visible text of the page (tags removed), to assert on what a person reads."""
    return re.sub(r"\s+", " ", html_lib.unescape(re.sub(r"<[^>]+>", " ", html)))


def test_report_shows_verdict_model_window_and_since_when() -> None:
    result = make_result()
    html = render_report(result, make_history())
    verdict = html[html.index('id="verdict"') : html.index('id="drift-table"')]
    text = _text(verdict)
    assert "Retraining recommended" in text
    assert "2 of 10 features drifted (20% ≥ 10%): temperature_c, station_id" in text
    assert "modelops-bike-demand v3" in text
    assert "@champion" in text
    assert "2025-05-01 \u2013 2025-05-07" in text
    assert "7 days · 4,032 rows · 120 other versions ignored" in text
    assert "2025-05-02" in text
    assert "day 2 of 7" in text
    assert "RMSE 9.1 (+57%)" in text
    # How much: each drifted column with its score and threshold.
    assert "temperature_c Wasserstein / ref. std 1.4 threshold 0.5 · \u00d72.8" in text
    assert "3 new categories, 20.0% of rows" in text


def test_drift_table_lists_drifted_columns_first_with_thresholds() -> None:
    html = render_report(make_result(), make_history())
    table = html[html.index('id="drift-table"') : html.index("</table>")]
    rows = re.findall(r'<td class="col">([^<]+)</td>', table)
    # drifted first, the furthest over its threshold first (JS 0.31/0.1 > W 1.4/0.5)
    assert rows[:2] == ["station_id", "temperature_c"]
    assert sorted(rows[2:-1]) == sorted(
        name for name in NUMERIC + CATEGORICAL if name not in DRIFTED
    )
    assert rows[-1] == "prediction"
    text = _text(table)
    assert "DRIFT" in text
    assert "1.4 > 0.5" in text  # the statistic beside its threshold
    assert "3 · 20.0% > 1.0% S0041, S0042, S0043" in text


def test_distributions_and_trends_come_drifted_first() -> None:
    html = render_report(make_result(), make_history())
    cards = re.findall(r'<div class="card[^"]*"><h3>([^<]+?) <span', html)
    distributions, trends = cards[:11], cards[11:]
    assert distributions[:2] == ["station_id", "temperature_c"]
    assert trends[:2] == ["station_id", "temperature_c"]
    # six runs (5 earlier + this one) on every trend, this one drawn larger
    trend = html[html.index("Drift over the recent runs") :]
    first_card = trend[trend.index("<h3>temperature_c") :]
    first_card = first_card[: first_card.index("</svg>")]
    assert first_card.count("<circle") == 6
    assert 'r="4"' in first_card
    assert "threshold 0.5" in first_card


def test_performance_chart_and_lineage_footer() -> None:
    html = render_report(make_result(), make_history())
    performance = _text(html[html.index("<h2>Performance") : html.index("<footer")])
    assert "RMSE 9.1 vs test-time 5.8 (+57%)" in performance
    assert "DEGRADED" in performance
    assert "test RMSE 5.8" in performance
    assert "limit 8.7 (+50%)" in performance
    footer = _text(html[html.index("<footer") :])
    assert "f9fe21a6dd97" in footer
    assert "6fa193037061" in footer
    assert "672e55e6077842839e2df40cd4fb1887" in footer
    assert "2025-05-08T03:00:00+00:00" in footer


def test_report_is_self_contained() -> None:
    html = render_report(make_result(), make_history())
    assert html.startswith("<!doctype html>")
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", html)
    assert "<script" not in html
    assert "@import" not in html


def test_user_data_is_escaped() -> None:
    result = make_result()
    evil_column = "<script>alert('column')</script>"
    evil_category = '<img src=x onerror="alert(1)">'
    result["features"][0]["column"] = evil_column
    result["features"][7]["new_category_examples"] = [evil_category]
    result["features"][7]["distribution"]["labels"][0] = evil_category
    result["verdict"]["reason"] = f"drifted: {evil_column}"
    html = render_report(result, make_history())
    assert "<script" not in html
    assert "<img" not in html
    assert "&lt;script&gt;alert(&#39;column&#39;)&lt;/script&gt;" in html
    assert "&lt;img src=x onerror=&#34;alert(1)&#34;&gt;" in html


def test_no_drift_empty_history_and_no_labels() -> None:
    result = make_result(drift=False)
    performance = result["performance"]
    performance.update(
        available=False,
        labelled_rows=0,
        rmse=None,
        mae=None,
        degradation=None,
        daily=[],
    )
    html = render_report(result, [])
    text = _text(html)
    assert "No drift — no retraining needed" in text
    assert "Retraining recommended" not in text
    assert "0 of 10" in text
    assert "labels not available yet" in text
    assert "Labels not available yet" in text
    assert "No earlier runs yet" in text
    assert 'id="no-labels"' in html


def test_findings_below_the_retraining_rule_are_not_a_recommendation() -> None:
    result = make_result(drift=False)
    prediction = result["prediction"]
    prediction.update(drifted=True)
    prediction["statistics"]["wasserstein_norm"] = 0.9
    result["verdict"].update(
        prediction_drift=True,
        retrain_recommended=False,
        first_drift_day="2025-05-03",
        reason="No retraining recommended (findings not in "
        "monitoring.verdict.retrain_on): predictions drifted.",
    )
    html = render_report(result, make_history(1))
    verdict = _text(html[html.index('id="verdict"') : html.index('id="drift-table"')])
    assert "Drift found — retraining not recommended by the rules" in verdict
    assert "Retraining recommended" not in verdict
    assert "Predictions drifted" in verdict
    assert "2025-05-03 day 3 of 7" in verdict
    # a drifted prediction leads the charts
    cards = re.findall(r'<div class="card[^"]*"><h3>([^<]+?) <span', html)
    assert cards[0] == "prediction"


def test_edge_cases_do_not_crash() -> None:
    result = make_result()
    features = result["features"]
    # NaN and None statistics, a missing threshold, a single category
    features[1]["statistics"].update(wasserstein_norm=math.nan, ks_pvalue=None)
    del features[2]["thresholds"]["psi"]
    features[8]["distribution"] = {
        "labels": ["only"],
        "reference": [1.0],
        "current": [1.0],
    }
    # hundreds of categories, with the new ones last
    labels = [f"C{i:04d}" for i in range(400)]
    weights = np.linspace(3, 1, 400)
    features[9]["distribution"] = {
        "labels": [*labels, "(new)"],
        "reference": [*_shares(weights), 0.0],
        "current": [*_shares(weights), 0.05],
    }
    # a very long column name and a daily entry without psi
    long_name = "a_really_long_column_name_" * 8
    features[3]["column"] = long_name
    features[3]["daily"][0]["psi"] = None
    result["verdict"]["first_drift_day"] = "1999-01-01"  # outside the window
    html = render_report(result, [{}, *make_history(2)])
    assert long_name in html
    assert "—" in _text(html)
    weather_card = html[html.index("<h3>weather") :]
    weather_card = weather_card[: weather_card.index("</svg>")]
    # top categories, then "(other) N", then "(new)"
    assert weather_card.count("<rect") == 2 * TOP_CATEGORIES
    assert "(other) 387" in weather_card
    assert "(new)" in weather_card


def test_render_does_not_mutate_its_inputs() -> None:
    result, history = make_result(), make_history()
    before = copy.deepcopy((result, history))
    render_report(result, history)
    assert (result, history) == before


def _png_size_and_variance(path: Path) -> tuple[int, int, float]:
    """Width, height and pixel variance of a PNG (matplotlib reads it with Pillow)."""
    pixels = matplotlib.image.imread(path)
    height, width = pixels.shape[:2]
    return width, height, float(pixels[..., :3].var())


@pytest.mark.slow
@pytest.mark.skipif(
    not chromium_available(),
    reason=f"Chromium is not installed at {CHROMIUM}: run `make browser`",
)
def test_report_renders_in_chromium(tmp_path: Path) -> None:
    page = tmp_path / "report.html"
    page.write_text(render_report(make_result(), make_history()), encoding="utf-8")
    png = screenshot(page, tmp_path / "report.png", width=1400, height=1600)
    width, height, variance = _png_size_and_variance(png)
    assert (width, height) == (1400, 1600)
    assert variance > 0.01  # pixels in 0..1: a blank page is 0

    blank = tmp_path / "blank.html"
    blank.write_text("<!doctype html><body></body>", encoding="utf-8")
    assert _png_size_and_variance(screenshot(blank, tmp_path / "blank.png"))[2] < 1e-6

    dom = _text(dump_dom(page))
    assert "Retraining recommended" in dom
    assert "temperature_c" in dom
    assert "day 2 of 7" in dom
