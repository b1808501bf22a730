"""Placeholder of the monitoring HTML report (replaced by wp-report's render_report)."""

from __future__ import annotations

import html
import json
from typing import Any


def render_report(result: dict[str, Any], history: list[dict[str, Any]]) -> str:
    """A minimal HTML page: the verdict and the result as JSON.

    Args:
        result: The monitoring result.
        history: Earlier results of the env, oldest first.

    Returns:
        A self-contained HTML page.
    """
    verdict = result.get("verdict", {})
    body = html.escape(json.dumps(result, indent=2, default=str))
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>Monitoring</title>"
        f"</head><body><h1>{html.escape(str(verdict.get('reason', '')))}</h1>"
        f"<p>{len(history)} earlier runs</p><pre>{body}</pre></body></html>"
    )
