"""End-to-end: what `kedro` commands print, for a scheduler or a script to read."""

from __future__ import annotations

import json
import re

import pytest

from tests import conftest
from tests.conftest import copy_project, run_kedro

pytestmark = pytest.mark.slow

# conf/logging.yml: "<date> <time>,<ms> <LEVEL> <logger>: <message>", one line each.
LOG_LINE = re.compile(
    r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} (DEBUG|INFO|WARNING|ERROR|CRITICAL) "
    r"[\w.]+: "
)
RICH_BOX = re.compile("[│╭╰─]")
TYPE_HINT_WARNING = "Add type hints"


@pytest.fixture(scope="module")
def ran(tmp_path_factory):
    """A project copy after one dev deployment run (registers version 1 as `dev`)."""
    project = copy_project(tmp_path_factory.mktemp("output"))
    run_kedro(
        project, "simulate", "--start", "2025-03-01", "--days", "24", "--stations", "6"
    )
    return project, run_kedro(project, "run")


@pytest.fixture(scope="module")
def answers(ran):
    """`kedro lineage --json` and `kedro models history --json`, from the root."""
    project, _ = ran
    return {
        "lineage": run_kedro(project, "lineage", "--env", "dev", "--json"),
        "history": run_kedro(project, "models", "history", "--env", "dev", "--json"),
    }


def test_a_run_logs_plain_lines_to_stderr_and_prints_only_its_summary(ran):
    _, result = ran
    out = result.stdout.splitlines()
    assert out[0] == "Run in env 'dev' wrote:", result.stdout[:2000]
    assert out[1:] and all(line.startswith("  ") and ": /" in line for line in out[1:])
    logged = [line for line in result.stderr.splitlines() if LOG_LINE.match(line)]
    assert any(
        " INFO kedro." in line and "Pipeline execution completed successfully" in line
        for line in logged
    ), result.stderr[-3000:]
    assert any(" INFO modelops." in line for line in logged)
    assert not RICH_BOX.search(result.stdout + result.stderr)


def test_json_commands_print_exactly_one_json_document(answers):
    chain = json.loads(answers["lineage"].stdout)
    assert chain["version"] == "1" and chain["aliases"] == ["dev"]
    assert len(chain["train_set"]["sha256"]) == 64
    moves = json.loads(answers["history"].stdout)
    assert [(m["alias"], m["to_version"], m["kind"]) for m in moves] == [
        ("dev", "1", "promotion")
    ]


def test_no_mlflow_type_hint_warning_anywhere(ran, answers):
    _, result = ran
    for output in (result, *answers.values()):
        assert TYPE_HINT_WARNING not in output.stdout + output.stderr


def _after_kedro_notice(from_subfolder: str, from_root: str) -> None:
    """Kedro sets up logging when it is imported, from the working directory, before
    any project code runs: from a subfolder it falls back to its rich console and
    prints its one startup notice on stdout. The project's logging applies from there
    on, and the command's own output is the same as from the root."""
    assert from_subfolder.endswith(from_root)
    notice = from_subfolder[: len(from_subfolder) - len(from_root)]
    assert "logging configuration" in notice
    assert "{" not in notice and "#1" not in notice


def test_commands_from_a_subfolder_answer_as_from_the_root(ran, answers, monkeypatch):
    project, _ = ran
    history = run_kedro(project, "models", "history", "--env", "dev")
    sub = run_kedro(project / "conf", "models", "history", "--env", "dev")
    _after_kedro_notice(sub.stdout, history.stdout)
    lineage = run_kedro(
        project / "src" / "modelops", "lineage", "--env", "dev", "--json"
    )
    _after_kedro_notice(lineage.stdout, answers["lineage"].stdout)
    for folder in (project / "conf", project / "src" / "modelops"):
        assert not (folder / "mlruns").exists() and not (folder / "data").exists()
    # With KEDRO_LOGGING_CONFIG (Kedro's own switch), stdout is the document alone.
    monkeypatch.setitem(
        conftest.CLEAN_ENVIRON,
        "KEDRO_LOGGING_CONFIG",
        str(project / "conf" / "logging.yml"),
    )
    lineage = run_kedro(project / "conf", "lineage", "--env", "dev", "--json")
    assert lineage.stdout == answers["lineage"].stdout
    assert LOG_LINE.match(lineage.stderr)
