"""The monitoring HTML report: one self-contained page from a result and its history."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import jinja2

from modelops import __version__

# Categories drawn per distribution (the rest are summed into OTHER_LABEL).
TOP_CATEGORIES = 15
# Earlier runs drawn in the trends (the monitoring job already bounds the history).
MAX_RUNS = 60
OTHER_LABEL = "(other)"
NEW_LABEL = "(new)"
# The statistic that decides each kind of column, the test beside it, and their names.
MAIN_SCORE = {"numeric": "wasserstein_norm", "categorical": "jensen_shannon"}
TEST_PVALUE = {"numeric": "ks_pvalue", "categorical": "chi2_pvalue"}
SCORE_TITLE = {
    "wasserstein_norm": "Wasserstein / ref. std",
    "jensen_shannon": "Jensen-Shannon distance",
    "ks_pvalue": "KS p-value",
    "chi2_pvalue": "χ² p-value",
    "psi": "PSI",
}
SHA_CHARS = 12
LABEL_CHARS = 16  # characters of a category or bin label drawn under a bar
HEATMAP_RED_AT = 4.0  # daily PSI / threshold drawn at full red
DASH = "\u2013"


def render_report(
    result: Mapping[str, Any], history: Sequence[Mapping[str, Any]]
) -> str:
    """Render a monitoring result and the env's earlier results as one HTML page.

    The page is self-contained (inline CSS and SVG charts, no script, no network) and
    every value coming from user data is escaped. Missing or NaN statistics are shown
    as "—" rather than failing, so a partial or older result still renders.

    Args:
        result: The monitoring result (schema in ``modelops.drift``).
        history: Earlier results of the same env, oldest first.

    Returns:
        The HTML document.
    """
    runs = [*list(history)[-(MAX_RUNS - 1) :], result]
    features = [_column_view(entry) for entry in result.get("features") or []]
    features.sort(
        key=lambda view: (not view["drifted"], view["report_only"], -view["rank"])
    )
    prediction_entry = result.get("prediction")
    prediction = _column_view(prediction_entry) if prediction_entry else None
    # Charts: drifted columns first (a drifted prediction leads), then the prediction,
    # then the rest.
    drifted = [view for view in features if view["drifted"]]
    steady = [view for view in features if not view["drifted"]]
    if prediction is None:
        columns = [*drifted, *steady]
    elif prediction["drifted"]:
        columns = [prediction, *drifted, *steady]
    else:
        columns = [*drifted, prediction, *steady]
    window = result.get("window") or {}
    days = list(window.get("days") or [])
    context = {
        "title": _title(result),
        "verdict": _verdict_view(result, features, prediction),
        "features": features,
        "prediction": prediction,
        "columns": columns,
        "window": window,
        "days": days,
        "heatmap": _heatmap(columns, days),
        "trends": _trends(columns, runs),
        "runs": [_run_view(run, run is result) for run in runs],
        "earlier_runs": len(runs) - 1,
        "performance": _performance_view(result.get("performance") or {}),
        "lineage": _lineage_view(result),
        "version": __version__,
    }
    return _TEMPLATE.render(context)


# --- formatting ----------------------------------------------------------------


def _number(value: Any) -> float | None:
    """A finite float, or None for None/NaN/infinite/non-numbers."""
    if isinstance(value, bool) or value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _fmt(value: Any, digits: int = 3) -> str:
    number = _number(value)
    if number is None:
        return "—"
    if number == 0:
        return "0"
    if abs(number) < 1e-3 or abs(number) >= 1e6:  # noqa: PLR2004
        return f"{number:.{max(digits - 1, 1)}e}"
    return f"{number:.{digits}g}"


def _pct(value: Any, digits: int = 1) -> str:
    number = _number(value)
    return "—" if number is None else f"{number:.{digits}%}"


def _short(text: Any, size: int = LABEL_CHARS) -> str:
    text = str(text)
    return text if len(text) <= size else text[: size - 1] + "…"


# --- views of the result -------------------------------------------------------


def _title(result: Mapping[str, Any]) -> str:
    model = result.get("model") or {}
    name = model.get("name") or "model"
    return (
        f"Monitoring — {name} v{model.get('version', '?')} ({result.get('env', '?')})"
    )


def _statistic(
    entry: Mapping[str, Any], name: str, higher_is_worse: bool
) -> dict[str, Any]:
    value = _number((entry.get("statistics") or {}).get(name))
    limit = _number((entry.get("thresholds") or {}).get(name))
    over = None
    if value is not None and limit is not None:
        over = value > limit if higher_is_worse else value < limit
    return {
        "name": name,
        "title": SCORE_TITLE.get(name, name),
        "value": _fmt(value),
        "limit": _fmt(limit),
        "over": over,
        "sign": ">" if higher_is_worse else "<",
    }


def _main_score(entry: Mapping[str, Any]) -> tuple[float | None, float | None]:
    name = MAIN_SCORE.get(str(entry.get("kind")), "psi")
    stats, limits = entry.get("statistics") or {}, entry.get("thresholds") or {}
    return _number(stats.get(name)), _number(limits.get(name))


def _column_view(entry: Mapping[str, Any]) -> dict[str, Any]:
    """What the table, the distribution and the trend need of one column."""
    kind = str(entry.get("kind") or "numeric")
    stats = entry.get("statistics") or {}
    thresholds = entry.get("thresholds") or {}
    main = MAIN_SCORE.get(kind, "psi")
    score, limit = _main_score(entry)
    ratio = score / limit if score is not None and limit else 0.0
    statistics = [
        _statistic(entry, main, higher_is_worse=True),
        _statistic(entry, TEST_PVALUE.get(kind, "ks_pvalue"), higher_is_worse=False),
        _statistic(entry, "psi", higher_is_worse=True),
    ]
    new_count = _number(stats.get("new_categories"))
    new_share = _number(stats.get("new_category_share"))
    new_limit = _number(thresholds.get("new_category_share"))
    psi_limit = _number(thresholds.get("psi"))
    daily = [day for day in entry.get("daily") or [] if isinstance(day, Mapping)]
    over_days = [
        str(day.get("day"))
        for day in daily
        if (psi_limit is not None and (_number(day.get("psi")) or 0) > psi_limit)
        or (
            new_limit is not None
            and (_number(day.get("new_category_share")) or 0) > new_limit
        )
    ]
    drifted = bool(entry.get("drifted"))
    return {
        "column": str(entry.get("column", "?")),
        "kind": kind,
        "drifted": drifted,
        "report_only": bool(entry.get("report_only")),
        "reason": str(entry.get("reason") or ""),
        "main": main,
        "main_title": SCORE_TITLE.get(main, main),
        "score": score,
        "limit": limit,
        "ratio": ratio,
        "rank": ratio if math.isfinite(ratio) else 0.0,
        "statistics": statistics,
        "new": {
            "count": int(new_count or 0),
            "share": _pct(new_share),
            "limit": _pct(new_limit),
            "over": new_share is not None
            and new_limit is not None
            and new_share > new_limit,
            "examples": [
                str(label) for label in entry.get("new_category_examples") or []
            ],
        }
        if kind == "categorical"
        else None,
        "missing": entry.get("missing"),
        "first_day": over_days[0] if over_days else None,
        "daily": {str(day.get("day")): _number(day.get("psi")) for day in daily},
        "psi_limit": psi_limit,
        "chart": _bar_chart(entry.get("distribution") or {}, drifted),
    }


def _verdict_view(
    result: Mapping[str, Any],
    features: Sequence[Mapping[str, Any]],
    prediction: Mapping[str, Any] | None,
) -> dict[str, Any]:
    verdict = result.get("verdict") or {}
    performance = result.get("performance") or {}
    window = result.get("window") or {}
    model = result.get("model") or {}
    drifted = [view for view in features if view["drifted"]]
    monitored = [view for view in features if not view["report_only"]]
    findings = bool(
        drifted
        or verdict.get("prediction_drift")
        or verdict.get("performance_degraded")
        or verdict.get("new_categories")
    )
    if verdict.get("retrain_recommended"):
        state, headline = "bad", "Retraining recommended"
    elif findings:
        state, headline = (
            "warn",
            "Drift found — retraining not recommended by the rules",
        )
    else:
        state, headline = "good", "No drift — no retraining needed"
    days = list(window.get("days") or [])
    first = verdict.get("first_drift_day")
    since = None
    if first:
        position = days.index(first) + 1 if first in days else None
        since = {"day": str(first), "position": position, "of": len(days)}
    ignored = window.get("ignored_rows") or {}
    rmse, reference = (
        _number(performance.get("rmse")),
        _number(performance.get("reference_rmse")),
    )
    return {
        "state": state,
        "headline": headline,
        "reason": str(verdict.get("reason") or ""),
        "model": {
            "name": str(model.get("name") or "?"),
            "version": str(model.get("version") or "?"),
            "alias": model.get("alias"),
            "serving_form": model.get("serving_form"),
        },
        "env": result.get("env"),
        "start": window.get("start"),
        "end": window.get("end"),
        "day_count": len(days),
        "rows": _count(window.get("rows")),
        "ignored": {key: _count(value) for key, value in ignored.items() if value},
        "since": since,
        "drifted": drifted,
        "monitored": len(monitored),
        "drift_share": _pct(verdict.get("drift_share"), 0),
        "prediction": prediction,
        "prediction_drift": bool(verdict.get("prediction_drift")),
        "labels": bool(performance.get("available")),
        "degraded": bool(
            verdict.get("performance_degraded") or performance.get("degraded")
        ),
        "rmse": _fmt(rmse, 4),
        "reference_rmse": _fmt(reference, 4),
        "degradation": _signed_pct(performance.get("degradation")),
    }


def _signed_pct(value: Any) -> str:
    number = _number(value)
    return "—" if number is None else f"{number:+.0%}"


def _count(value: Any) -> str:
    number = _number(value)
    return "—" if number is None else f"{int(number):,}"


def _run_view(run: Mapping[str, Any], current: bool) -> dict[str, Any]:
    verdict = run.get("verdict") or {}
    window = run.get("window") or {}
    return {
        "label": str(window.get("end") or str(run.get("computed_at") or "?")[:10]),
        "title": f"{run.get('computed_at', '?')}: window {window.get('start', '?')} {DASH} "
        f"{window.get('end', '?')}; {verdict.get('reason', '')}",
        "retrain": bool(verdict.get("retrain_recommended")),
        "current": current,
    }


def _performance_view(performance: Mapping[str, Any]) -> dict[str, Any]:
    daily = [day for day in performance.get("daily") or [] if isinstance(day, Mapping)]
    reference = _number(performance.get("reference_rmse"))
    threshold = _number(performance.get("threshold"))
    limit = (
        reference * (1 + threshold)
        if reference is not None and threshold is not None
        else None
    )
    lines = [
        ("RMSE", [_number(day.get("rmse")) for day in daily], "l-rmse"),
        ("MAE", [_number(day.get("mae")) for day in daily], "l-mae"),
    ]
    hlines = [
        (reference, f"test RMSE {_fmt(reference, 4)}", "h-ref"),
        (limit, f"limit {_fmt(limit, 4)} (+{_pct(threshold, 0)})", "h-limit"),
    ]
    available = bool(performance.get("available")) and bool(daily)
    return {
        "available": available,
        "labelled_rows": _count(performance.get("labelled_rows")),
        "rmse": _fmt(performance.get("rmse"), 4),
        "mae": _fmt(performance.get("mae"), 4),
        "reference_rmse": _fmt(reference, 4),
        "degradation": _signed_pct(performance.get("degradation")),
        "threshold": _pct(threshold, 0),
        "degraded": bool(performance.get("degraded")),
        "chart": _line_chart(
            [str(day.get("day")) for day in daily], lines, hlines, 880, 220
        )
        if available
        else None,
    }


def _lineage_view(result: Mapping[str, Any]) -> dict[str, Any]:
    reference = result.get("reference") or {}
    model = result.get("model") or {}
    feature_rows = reference.get("feature_rows") or {}
    return {
        "train_sha": str(reference.get("train_sha256") or "—")[:SHA_CHARS],
        "test_sha": str(reference.get("test_sha256") or "—")[:SHA_CHARS],
        "train_sha_full": str(reference.get("train_sha256") or ""),
        "test_sha_full": str(reference.get("test_sha256") or ""),
        "train_rows": _count(reference.get("train_rows")),
        "test_rows": _count(reference.get("test_rows")),
        "reference_days": feature_rows.get("first_day")
        and f"{feature_rows.get('first_day')} {DASH} {feature_rows.get('last_day')}",
        "run_id": str(model.get("run_id") or "—"),
        "monitoring_run_id": result.get("run_id"),
        "computed_at": str(result.get("computed_at") or "—"),
    }


# --- charts (inline SVG drawn by the template from these numbers) ---------------


def _nice_step(span: float, ticks: int) -> float:
    raw = span / max(ticks, 1)
    magnitude = 10 ** math.floor(math.log10(raw))
    for factor in (1, 2, 2.5, 5, 10):
        if raw <= factor * magnitude:
            return factor * magnitude
    return 10 * magnitude


def _axis(values: Sequence[float | None], ticks: int = 3) -> tuple[float, list[float]]:
    """A 0-based axis top and its tick values, for the finite values given."""
    top = max([value for value in values if value is not None] + [0.0])
    if top <= 0:
        return 1.0, [0.0, 0.5, 1.0]
    step = _nice_step(top, ticks)
    count = math.ceil(top / step - 1e-9)
    return step * count, [step * index for index in range(count + 1)]


def _top_categories(
    labels: list[str], reference: list[float | None], current: list[float | None]
) -> tuple[list[str], list[float], list[float]]:
    """At most TOP_CATEGORIES bars: the largest, then OTHER_LABEL, then NEW_LABEL."""
    rows = [
        (label, max(ref or 0.0, 0.0), max(cur or 0.0, 0.0))
        for label, ref, cur in zip(labels, reference, current, strict=False)
    ]
    if len(rows) <= TOP_CATEGORIES:
        return [r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows]
    fixed = [row for row in rows if row[0] == NEW_LABEL]
    other = [row for row in rows if row[0] == OTHER_LABEL]
    ranked = sorted(
        (row for row in rows if row[0] not in {NEW_LABEL, OTHER_LABEL}),
        key=lambda row: -max(row[1], row[2]),
    )
    keep = TOP_CATEGORIES - 1 - len(fixed)
    rest = ranked[keep:] + other
    shown = [
        *ranked[:keep],
        (
            f"{OTHER_LABEL} {len(ranked) - keep}",
            sum(row[1] for row in rest),
            sum(row[2] for row in rest),
        ),
        *fixed,
    ]
    return [r[0] for r in shown], [r[1] for r in shown], [r[2] for r in shown]


def _bar_chart(distribution: Mapping[str, Any], drifted: bool) -> dict[str, Any] | None:
    """Reference vs current shares as side-by-side bars (None when there is nothing)."""
    labels = [str(label) for label in distribution.get("labels") or []]
    reference = [_number(value) for value in distribution.get("reference") or []]
    current = [_number(value) for value in distribution.get("current") or []]
    if not labels or len(reference) != len(labels) or len(current) != len(labels):
        return None
    labels, reference_shares, current_shares = _top_categories(
        labels, reference, current
    )
    width, height, left, bottom, top = 330, 170, 34, 58, 8
    plot_w, plot_h = width - left - 6, height - bottom - top
    y_top, ticks = _axis([*reference_shares, *current_shares])
    slot = plot_w / len(labels)
    bar_w = max(min(slot * 0.4, 22), 1.0)
    bars, xlabels = [], []
    for index, (label, ref, cur) in enumerate(
        zip(labels, reference_shares, current_shares, strict=True)
    ):
        center = left + slot * (index + 0.5)
        new = label == NEW_LABEL
        for offset, share, css, who in (
            (-bar_w, ref, "ref", "reference"),
            (
                0.0,
                cur,
                "new" if new else ("cur drift" if drifted else "cur"),
                "current",
            ),
        ):
            bar_h = plot_h * share / y_top
            bars.append(
                {
                    "x": round(center + offset, 1),
                    "y": round(top + plot_h - bar_h, 1),
                    "w": round(bar_w, 1),
                    "h": round(bar_h, 1),
                    "css": css,
                    "title": f"{label} — {who} {share:.1%}",
                }
            )
        xlabels.append(
            {"x": round(center, 1), "y": top + plot_h + 9, "text": _short(label)}
        )
    step = max(1, math.ceil(len(labels) / 16))
    return {
        "width": width,
        "height": height,
        "left": left,
        "right": width - 6,
        "base": top + plot_h,
        "bars": bars,
        "xlabels": xlabels[::step],
        "yticks": [
            {"y": round(top + plot_h - plot_h * tick / y_top, 1), "text": f"{tick:.0%}"}
            for tick in ticks
        ],
    }


def _line_chart(
    x_labels: Sequence[str],
    lines: Sequence[tuple[str, Sequence[float | None], str]],
    hlines: Sequence[tuple[float | None, str, str]],
    width: int,
    height: int,
) -> dict[str, Any] | None:
    """Lines over categorical x positions, with labelled horizontal reference lines."""
    if not x_labels:
        return None
    left, right, top, bottom = 40, 8, 10, 22
    plot_w, plot_h = width - left - right, height - top - bottom
    values = [value for _, series, _ in lines for value in series]
    y_top, ticks = _axis([*values, *(value for value, _, _ in hlines)])
    count = len(x_labels)

    def x_of(index: int) -> float:
        return round(left + (plot_w * (index + 0.5) / count), 1)

    def y_of(value: float) -> float:
        return round(top + plot_h - plot_h * min(value, y_top) / y_top, 1)

    drawn = []
    for name, series, css in lines:
        segments, points, dots = [], [], []
        for index, value in enumerate(series):
            if value is None:
                if points:
                    segments.append(" ".join(points))
                points = []
                continue
            points.append(f"{x_of(index)},{y_of(value)}")
            dots.append(
                {
                    "x": x_of(index),
                    "y": y_of(value),
                    "title": f"{x_labels[index]}: {name} {_fmt(value, 4)}",
                    "last": index == count - 1,
                }
            )
        if points:
            segments.append(" ".join(points))
        drawn.append({"name": name, "css": css, "segments": segments, "dots": dots})
    label_step = max(1, math.ceil(count / max(plot_w // 70, 1)))
    shown = sorted(range(count - 1, -1, -label_step))  # the newest always labelled
    return {
        "width": width,
        "height": height,
        "left": left,
        "right": width - right,
        "base": top + plot_h,
        "lines": drawn,
        "hlines": [
            {"y": y_of(value), "label": label, "css": css}
            for value, label, css in hlines
            if value is not None
        ],
        "yticks": [{"y": y_of(tick), "text": _fmt(tick, 3)} for tick in ticks],
        "xlabels": [
            {"x": x_of(index), "text": _short(x_labels[index], 11)} for index in shown
        ],
    }


def _trends(
    columns: Sequence[Mapping[str, Any]], runs: Sequence[Mapping[str, Any]]
) -> list[dict[str, Any]]:
    """Per column, its main score in each run (this one last) against its threshold."""
    labels = [_run_view(run, False)["label"] for run in runs]
    by_run = []
    for run in runs:
        entries = {
            str(entry.get("column")): entry
            for entry in [*(run.get("features") or []), run.get("prediction") or {}]
            if isinstance(entry, Mapping)
        }
        by_run.append(entries)
    trends = []
    for view in columns:
        scores = [
            _main_score(entries[view["column"]])[0]
            if view["column"] in entries
            else None
            for entries in by_run
        ]
        chart = _line_chart(
            labels,
            [
                (
                    view["main_title"],
                    scores,
                    "l-score drift" if view["drifted"] else "l-score",
                )
            ],
            [(view["limit"], f"threshold {_fmt(view['limit'])}", "h-limit")],
            330,
            130,
        )
        trends.append({"view": view, "chart": chart})
    return trends


def _heat_color(ratio: float | None) -> tuple[str, str]:
    """Background and text colour of a daily PSI cell from PSI / threshold."""
    if ratio is None:
        return "#f3f4f6", "#6b7280"
    if ratio < 1:
        # white -> amber below the threshold
        level = max(ratio, 0.0)
        red, green, blue = 255, round(255 - 60 * level), round(255 - 170 * level)
        return f"rgb({red},{green},{blue})", "#111827"
    level = min((ratio - 1) / (HEATMAP_RED_AT - 1), 1.0)
    red, green, blue = (
        round(239 - 90 * level),
        round(110 - 90 * level),
        round(90 - 70 * level),
    )
    return f"rgb({red},{green},{blue})", "#ffffff"


def _heatmap(
    columns: Sequence[Mapping[str, Any]], days: Sequence[str]
) -> dict[str, Any]:
    """Daily PSI of every column over the window's days, coloured by PSI / threshold."""
    all_days = list(days) or sorted({day for view in columns for day in view["daily"]})
    rows = []
    for view in columns:
        cells = []
        for day in all_days:
            value = view["daily"].get(day)
            ratio = (
                value / view["psi_limit"]
                if value is not None and view["psi_limit"]
                else None
            )
            background, color = _heat_color(ratio)
            cells.append(
                {
                    "text": _fmt(value, 2),
                    "style": f"background:{background};color:{color}",
                    "title": f"{view['column']} {day}: PSI {_fmt(value, 4)} "
                    f"(threshold {_fmt(view['psi_limit'])})",
                }
            )
        rows.append({"view": view, "cells": cells})
    return {"days": all_days, "rows": rows}


_TEMPLATE = jinja2.Environment(
    autoescape=True,
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
).from_string(
    """\
{% macro bars(c) %}
{% if c %}
<svg class="chart" viewBox="0 0 {{ c.width }} {{ c.height }}" width="{{ c.width }}" height="{{ c.height }}" role="img">
{% for t in c.yticks %}<line class="grid" x1="{{ c.left }}" x2="{{ c.right }}" y1="{{ t.y }}" y2="{{ t.y }}"/><text class="yt" x="{{ c.left - 4 }}" y="{{ t.y + 3 }}">{{ t.text }}</text>
{% endfor %}
{% for b in c.bars %}<rect class="{{ b.css }}" x="{{ b.x }}" y="{{ b.y }}" width="{{ b.w }}" height="{{ b.h }}"><title>{{ b.title }}</title></rect>
{% endfor %}
<line class="axis" x1="{{ c.left }}" x2="{{ c.right }}" y1="{{ c.base }}" y2="{{ c.base }}"/>
{% for l in c.xlabels %}<text class="xt" transform="translate({{ l.x }},{{ l.y }}) rotate(-40)">{{ l.text }}</text>
{% endfor %}
</svg>
{% else %}<p class="muted">No distribution in the result.</p>
{% endif %}
{% endmacro %}
{% macro lines(c) %}
{% if c %}
<svg class="chart" viewBox="0 0 {{ c.width }} {{ c.height }}" width="{{ c.width }}" height="{{ c.height }}" role="img">
{% for t in c.yticks %}<line class="grid" x1="{{ c.left }}" x2="{{ c.right }}" y1="{{ t.y }}" y2="{{ t.y }}"/><text class="yt" x="{{ c.left - 4 }}" y="{{ t.y + 3 }}">{{ t.text }}</text>
{% endfor %}
{% for h in c.hlines %}<line class="{{ h.css }}" x1="{{ c.left }}" x2="{{ c.right }}" y1="{{ h.y }}" y2="{{ h.y }}"/><text class="hl {{ h.css }}" x="{{ c.right - 2 }}" y="{{ h.y - 3 }}">{{ h.label }}</text>
{% endfor %}
{% for line in c.lines %}
{% for s in line.segments %}<polyline class="{{ line.css }}" points="{{ s }}"/>
{% endfor %}
{% for d in line.dots %}<circle class="{{ line.css }}{{ ' last' if d.last }}" cx="{{ d.x }}" cy="{{ d.y }}" r="{{ 4 if d.last else 2.2 }}"><title>{{ d.title }}</title></circle>
{% endfor %}
{% endfor %}
<line class="axis" x1="{{ c.left }}" x2="{{ c.right }}" y1="{{ c.base }}" y2="{{ c.base }}"/>
{% for l in c.xlabels %}<text class="xl" x="{{ l.x }}" y="{{ c.base + 14 }}">{{ l.text }}</text>
{% endfor %}
</svg>
{% endif %}
{% endmacro %}
{% macro stat(s) %}<span class="stat{{ ' over' if s.over }}" title="{{ s.title }}: {{ s.value }} (flag when {{ s.sign }} {{ s.limit }})">{{ s.value }}<small> {{ s.sign }} {{ s.limit }}</small></span>{% endmacro %}
{% macro badge(v) %}{% if v.drifted %}<span class="badge b-drift">DRIFT</span>{% elif v.report_only %}<span class="badge b-info">report only</span>{% else %}<span class="badge b-ok">ok</span>{% endif %}{% endmacro %}
<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="generator" content="modelops {{ version }}">
<title>{{ title }}</title>
<style>
*{box-sizing:border-box}
body{margin:0;font:14px/1.4 system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif;color:#111827;background:#f9fafb}
main{max-width:1400px;margin:0 auto;padding:16px 20px 32px}
h1{font-size:18px;margin:0 0 10px;font-weight:600;color:#374151}
h2{font-size:16px;margin:26px 0 8px;border-bottom:1px solid #e5e7eb;padding-bottom:4px}
h3{font-size:13px;margin:0 0 4px;overflow-wrap:anywhere}
.muted{color:#6b7280}.bad{color:#b91c1c}
.verdict{border-radius:8px;padding:14px 18px;color:#fff}
.verdict.bad{background:#b91c1c}.verdict.warn{background:#b45309}.verdict.good{background:#15803d}
.verdict .head{font-size:26px;font-weight:700;margin:0}
.verdict .reason{font-size:15px;margin:4px 0 10px;overflow-wrap:anywhere}
.facts{display:flex;flex-wrap:wrap;gap:8px}
.fact{background:rgba(255,255,255,.16);border-radius:6px;padding:6px 10px;min-width:130px;max-width:100%}
.fact b{display:block;font-size:11px;text-transform:uppercase;letter-spacing:.04em;opacity:.85;font-weight:600}
.fact span{font-size:15px;font-weight:600;overflow-wrap:anywhere}
.fact small{font-weight:400;opacity:.9}
.fact.col{background:#fff;color:#991b1b}.fact.col b{opacity:1;text-transform:none;font-size:12px}
table{border-collapse:collapse;width:100%;background:#fff;font-size:13px}
th,td{border-bottom:1px solid #e5e7eb;padding:5px 8px;text-align:left;vertical-align:top}
th{background:#f3f4f6;font-weight:600;font-size:12px}
td.col{font-weight:600;overflow-wrap:anywhere;max-width:260px}
tr.drifted td{background:#fef2f2}
tr.report-only td{color:#6b7280}tr.report-only .stat.over{color:#6b7280;font-weight:400}
tr.sep td{background:#f3f4f6;font-size:11px;color:#6b7280;text-transform:uppercase;padding:3px 8px}
.stat{white-space:nowrap}.stat small{color:#6b7280}
.stat.over{color:#b45309}tr.drifted .stat.over{color:#b91c1c;font-weight:700}
.badge{display:inline-block;border-radius:4px;padding:1px 6px;font-size:11px;font-weight:700}
.b-drift{background:#dc2626;color:#fff}.b-ok{background:#dcfce7;color:#166534}.b-info{background:#e0e7ff;color:#3730a3}
.ex{color:#6b7280;font-size:12px;overflow-wrap:anywhere}
.grid-cards{display:grid;grid-template-columns:repeat(auto-fill,minmax(320px,1fr));gap:10px}
.card{background:#fff;border:1px solid #e5e7eb;border-radius:6px;padding:8px 8px 4px}
.card.drifted{border:2px solid #dc2626}
.card .sub{font-size:12px;color:#4b5563;margin-bottom:2px}
svg.chart{display:block;max-width:100%;height:auto;font-size:9px;font-family:inherit}
svg .grid{stroke:#e5e7eb}svg .axis{stroke:#9ca3af}
svg .yt{text-anchor:end;fill:#6b7280}svg .xt{text-anchor:end;fill:#4b5563}svg .xl{text-anchor:middle;fill:#4b5563}
svg rect.ref{fill:#9ca3af}svg rect.cur{fill:#2563eb}svg rect.drift{fill:#dc2626}svg rect.new{fill:#f59e0b}
svg polyline{fill:none;stroke-width:2}svg circle{stroke:none}
svg polyline.l-score{stroke:#2563eb}svg circle.l-score{fill:#2563eb}
svg polyline.l-score.drift{stroke:#dc2626}svg circle.l-score.drift{fill:#dc2626}
svg polyline.l-rmse{stroke:#7c3aed}svg circle.l-rmse{fill:#7c3aed}
svg polyline.l-mae{stroke:#0891b2;stroke-dasharray:4 2}svg circle.l-mae{fill:#0891b2}
svg line.h-limit{stroke:#dc2626;stroke-dasharray:5 3}svg line.h-ref{stroke:#374151;stroke-dasharray:2 2}
svg text.hl{text-anchor:end;font-size:9px}svg text.h-limit{fill:#b91c1c}svg text.h-ref{fill:#374151}
.legend{font-size:12px;color:#4b5563;margin:2px 0 8px}
.sw{display:inline-block;width:10px;height:10px;border-radius:2px;vertical-align:-1px;margin:0 3px 0 10px}
table.heat td,table.heat th{text-align:center;padding:3px 4px;font-size:11px;border:1px solid #fff;white-space:nowrap}
table.heat td.col,table.heat th.col{text-align:left;max-width:220px;overflow:hidden;text-overflow:ellipsis}
.runs{display:flex;flex-wrap:wrap;gap:3px;margin:4px 0 10px}
.run{font-size:10px;padding:2px 5px;border-radius:3px;background:#dcfce7;color:#166534}
.run.retrain{background:#fee2e2;color:#991b1b}.run.current{outline:2px solid #111827}
.two{display:grid;grid-template-columns:minmax(340px,1fr) minmax(340px,2fr);gap:10px}
.box{background:#fff;border:1px solid #e5e7eb;border-radius:6px;padding:10px}
.box.na{background:#fffbeb;border-color:#f59e0b;font-size:15px}
footer{margin-top:26px;font-size:12px;color:#4b5563;border-top:1px solid #e5e7eb;padding-top:8px}
footer code{background:#f3f4f6;padding:0 3px;border-radius:3px}
</style>
</head>
<body>
<main>
<h1>{{ title }}</h1>
{% set v = verdict %}
<section class="verdict {{ v.state }}" id="verdict">
<p class="head">{{ v.headline }}</p>
<p class="reason">{{ v.reason }}</p>
<div class="facts">
<div class="fact"><b>Model</b><span>{{ v.model.name }} v{{ v.model.version }}</span>{% if v.model.alias %} <small>@{{ v.model.alias }}</small>{% endif %}{% if v.model.serving_form %} <small>({{ v.model.serving_form }})</small>{% endif %}</div>
<div class="fact"><b>Window{% if v.env %} · {{ v.env }}{% endif %}</b><span>{{ v.start or "?" }} &ndash; {{ v.end or "?" }}</span> <small>{{ v.day_count }} days · {{ v.rows }} rows{% for key, value in v.ignored.items() %} · {{ value }} {{ key|replace("_", " ") }} ignored{% endfor %}</small></div>
<div class="fact"><b>Drift since</b><span>{% if v.since %}{{ v.since.day }}</span>{% if v.since.position %} <small>day {{ v.since.position }} of {{ v.since.of }}</small>{% endif %}{% else %}—</span> <small>nothing off</small>{% endif %}</div>
<div class="fact"><b>Drifted features</b><span>{{ v.drifted|length }} of {{ v.monitored }}</span> <small>({{ v.drift_share }})</small></div>
{% for d in v.drifted %}
<div class="fact col"><b>{{ d.column }}</b><span>{{ d.main_title }} {{ d.statistics[0].value }}</span> <small>threshold {{ d.statistics[0].limit }}{% if d.ratio and d.ratio < 1e5 %} · &times;{{ "%.1f"|format(d.ratio) }}{% endif %}{% if d.new and d.new.over %} · {{ d.new.count }} new categories, {{ d.new.share }} of rows{% endif %}</small></div>
{% endfor %}
<div class="fact"><b>Predictions</b><span>{{ "drifted" if v.prediction_drift else "stable" }}</span>{% if v.prediction %} <small>{{ v.prediction.main_title }} {{ v.prediction.statistics[0].value }} (threshold {{ v.prediction.statistics[0].limit }})</small>{% endif %}</div>
<div class="fact"><b>Performance</b>{% if v.labels %}<span>RMSE {{ v.rmse }} ({{ v.degradation }})</span> <small>vs test {{ v.reference_rmse }}{{ " · degraded" if v.degraded }}</small>{% else %}<span>labels not available yet</span>{% endif %}</div>
</div>
</section>

<h2>Drift per column</h2>
<table id="drift-table">
<thead><tr><th>Column</th><th>Kind</th><th>Status</th><th>Effect size (flag when &gt;)</th><th>Test p-value (flag when &lt;)</th><th>PSI</th><th>New categories</th><th>First day over PSI limit</th><th>Missing</th></tr></thead>
{% macro row(f) %}
<tr class="{{ 'drifted' if f.drifted }}{{ ' report-only' if f.report_only }}"><td class="col">{{ f.column }}</td><td>{{ f.kind }}</td><td title="{{ f.reason }}">{{ badge(f) }}</td>
<td><small class="muted">{{ f.statistics[0].title }}</small><br>{{ stat(f.statistics[0]) }}</td>
<td><small class="muted">{{ f.statistics[1].title }}</small><br>{{ stat(f.statistics[1]) }}</td>
<td>{{ stat(f.statistics[2]) }}</td>
<td>{% if f.new %}{% if f.new.count %}<span class="stat{{ ' over' if f.new.over }}">{{ f.new.count }} · {{ f.new.share }}<small> &gt; {{ f.new.limit }}</small></span>{% if f.new.examples %}<div class="ex">{{ f.new.examples|join(", ") }}</div>{% endif %}{% else %}0{% endif %}{% else %}<span class="muted">n/a</span>{% endif %}</td>
<td>{{ f.first_day or "—" }}</td><td>{{ f.missing if f.missing is not none else "—" }}</td></tr>
{% endmacro %}
<tbody>
{% for f in features %}{{ row(f) }}{% endfor %}
{% if not features %}<tr><td colspan="9" class="muted">The result lists no feature.</td></tr>{% endif %}
</tbody>
{% if prediction %}
<tbody><tr class="sep"><td colspan="9">model output</td></tr>{{ row(prediction) }}</tbody>
{% endif %}
</table>

<h2>Distributions: reference vs current</h2>
<div class="legend"><span class="sw" style="background:#9ca3af"></span>reference (test time)<span class="sw" style="background:#2563eb"></span>current window<span class="sw" style="background:#dc2626"></span>current, drifted column<span class="sw" style="background:#f59e0b"></span>new categories</div>
<div class="grid-cards">
{% for f in columns %}
<div class="card{{ ' drifted' if f.drifted }}"><h3>{{ f.column }} {{ badge(f) }}</h3>
<div class="sub">{{ f.main_title }} {{ f.statistics[0].value }} (threshold {{ f.statistics[0].limit }}) · PSI {{ f.statistics[2].value }}</div>
{{ bars(f.chart) }}</div>
{% endfor %}
</div>

<h2>Daily PSI in this window</h2>
<p class="legend">Each cell is one day's PSI against the reference; red from the column's PSI threshold on.</p>
{% if heatmap.days %}
<table class="heat" id="daily-heatmap">
<thead><tr><th class="col">column</th>{% for d in heatmap.days %}<th>{{ d[5:] if d|length == 10 else d }}</th>{% endfor %}</tr></thead>
<tbody>
{% for r in heatmap.rows %}<tr><td class="col" title="{{ r.view.column }}">{{ r.view.column }}{% if r.view.drifted %} ●{% endif %}</td>{% for c in r.cells %}<td style="{{ c.style }}" title="{{ c.title }}">{{ c.text }}</td>{% endfor %}</tr>
{% endfor %}
</tbody></table>
{% else %}<p class="muted">The result has no daily scores.</p>
{% endif %}

<h2>Drift over the recent runs</h2>
<div class="legend">Main score of each column per monitoring run (by window end), this run last and larger; dashed red: threshold.</div>
<div class="runs">{% for r in runs %}<span class="run{{ ' retrain' if r.retrain }}{{ ' current' if r.current }}" title="{{ r.title }}">{{ r.label }}</span>{% endfor %}</div>
{% if not earlier_runs %}<p class="muted">No earlier runs yet: the trends start with the next run.</p>{% endif %}
<div class="grid-cards">
{% for t in trends %}
<div class="card{{ ' drifted' if t.view.drifted }}"><h3>{{ t.view.column }} {{ badge(t.view) }}</h3><div class="sub">{{ t.view.main_title }}</div>{{ lines(t.chart) }}</div>
{% endfor %}
</div>

<h2>Performance</h2>
{% set p = performance %}
{% if p.available %}
<div class="two">
<div class="box"><p><b>RMSE {{ p.rmse }}</b> vs test-time {{ p.reference_rmse }} <b class="{{ 'bad' if p.degraded }}">({{ p.degradation }})</b>, limit +{{ p.threshold }}{% if p.degraded %} — <span class="badge b-drift">DEGRADED</span>{% endif %}</p>
<p>MAE {{ p.mae }} · {{ p.labelled_rows }} labelled rows</p></div>
<div class="box"><div class="legend"><span class="sw" style="background:#7c3aed"></span>daily RMSE<span class="sw" style="background:#0891b2"></span>daily MAE<span class="sw" style="background:#374151"></span>test-time RMSE<span class="sw" style="background:#dc2626"></span>degradation limit</div>{{ lines(p.chart) }}</div>
</div>
{% else %}
<div class="box na" id="no-labels"><b>Labels not available yet</b> — the window's source partitions do not carry the actuals yet{% if p.reference_rmse != "—" %} (test-time RMSE {{ p.reference_rmse }}){% endif %}. Performance is judged once they arrive.</div>
{% endif %}

{% set l = lineage %}
<footer id="lineage">
<b>Lineage</b> · reference train <code title="{{ l.train_sha_full }}">{{ l.train_sha }}</code> ({{ l.train_rows }} rows) · test <code title="{{ l.test_sha_full }}">{{ l.test_sha }}</code> ({{ l.test_rows }} rows){% if l.reference_days %} · features compared with {{ l.reference_days }}{% endif %}
· model run <code>{{ l.run_id }}</code>{% if l.monitoring_run_id %} · monitoring run <code>{{ l.monitoring_run_id }}</code>{% endif %}
· computed {{ l.computed_at }} · modelops {{ version }}
</footer>
</main>
</body>
</html>
"""
)
