"""Start-up and exit of every `kedro` command: what importing the project costs."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
# Needed only to export, verify or evaluate a model, never to serve one: each costs
# 0.1-1 s of every `kedro` command's start-up when imported with the project.
EXPORT_AND_EVALUATION_ONLY = (
    "sklearn.ensemble",
    "sklearn.metrics",
    "sklearn.inspection",
    "skl2onnx",
    "onnx",
    "skops",
)


def python(code: str) -> str:
    """Run ``code`` in a fresh interpreter on this checkout's sources; its stdout."""
    env = {**os.environ, "PYTHONPATH": str(SRC), "KEDRO_DISABLE_TELEMETRY": "true"}
    result = subprocess.run(
        [sys.executable, "-c", code],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return result.stdout.strip().splitlines()[-1]


def test_importing_the_project_and_its_pipelines_leaves_export_libraries_out():
    code = (
        "import sys\n"
        "import modelops.settings\n"
        "from modelops.pipeline_registry import register_pipelines\n"
        "register_pipelines()\n"
        f"print(sorted(m for m in {EXPORT_AND_EVALUATION_ONLY!r} if m in sys.modules))"
    )

    assert python(code) == "[]"


def test_objects_are_frozen_at_exit_so_the_final_collections_skip_them():
    # Registered before the settings are imported, so it runs after their handler.
    code = (
        "import atexit, gc\n"
        "atexit.register(lambda: print('frozen', gc.get_freeze_count() > 0))\n"
        "import modelops.settings\n"
    )

    assert python(code) == "frozen True"
