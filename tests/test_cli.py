"""Project commands in-process: the project root from any folder, explicit env, JSON."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from modelops import cli
from modelops.errors import ConfigError
from modelops.registry import AliasMove
from modelops.tracking import tracking_uri


@pytest.fixture
def project(tmp_path) -> Path:
    """A bare Kedro project layout: what Kedro looks for to find a project root."""
    root = tmp_path / "project"
    (root / "conf" / "base").mkdir(parents=True)
    (root / "src" / "modelops").mkdir(parents=True)
    (root / "pyproject.toml").write_text('[tool.kedro]\npackage_name = "modelops"\n')
    return root


def test_the_project_root_is_found_from_any_folder_inside(project, monkeypatch):
    for folder in (project, project / "conf", project / "src" / "modelops"):
        monkeypatch.chdir(folder)
        assert cli.project_root() == project.resolve()


def test_outside_a_project_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match=r"No Kedro project at or above .*\nHint: cd"):
        cli.project_root()
    with pytest.raises(ConfigError, match="No Kedro project"):
        cli.enter_project()
    assert cli.enter_project(required=False) == tmp_path  # a packaged run stays put
    assert Path.cwd() == tmp_path


def test_enter_project_moves_to_the_root_and_applies_its_logging(project, monkeypatch):
    applied: list[Path] = []
    monkeypatch.setattr(cli, "apply_logging", applied.append)
    monkeypatch.delenv("KEDRO_LOGGING_CONFIG", raising=False)
    monkeypatch.chdir(project / "src" / "modelops")
    assert cli.enter_project() == project.resolve()
    assert Path.cwd() == project.resolve()
    assert applied == [project.resolve() / "conf" / "logging.yml"]

    # KEDRO_LOGGING_CONFIG wins, relative to where the command was started
    monkeypatch.chdir(project / "conf")
    monkeypatch.setenv("KEDRO_LOGGING_CONFIG", "base/mine.yml")
    cli.enter_project()
    assert applied[-1] == project.resolve() / "conf" / "base" / "mine.yml"


def test_the_mlflow_store_is_at_the_project_root_from_a_subfolder(project, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.chdir(project / "conf")
    assert tracking_uri() == f"sqlite:///{project.resolve() / 'mlruns' / 'mlflow.db'}"
    assert not (project / "conf" / "mlruns").exists()


def test_rollback_requires_the_env_to_be_said(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(cli.cli, ["rollback"])
    assert result.exit_code == 2  # click's usage error: nothing was attempted
    assert "Missing option '--env' / '-e'" in result.output
    result = CliRunner().invoke(cli.cli, ["rollback", "--help"])
    assert "[required]" in result.output


def _move(seq: int, to_version: str) -> AliasMove:
    return AliasMove(
        seq=seq,
        alias="champion",
        from_version=None if seq == 1 else "1",
        to_version=to_version,
        at="2025-03-01T00:00:00+00:00",
        env="prod",
        run_id=None,
        kind="promotion",
        reason="approved",
    )


@pytest.mark.parametrize("moves", [[], [_move(1, "1"), _move(2, "2")]])
def test_history_json_is_one_json_array(moves, monkeypatch, tmp_path):
    monkeypatch.setattr(cli, "enter_project", lambda **_: tmp_path)
    monkeypatch.setattr(cli, "models_history", lambda *_: moves)
    result = CliRunner().invoke(
        cli.cli, ["models", "history", "--env", "prod", "--json"]
    )
    assert result.exit_code == 0, result.output
    parsed = json.loads(result.output)
    assert [move["to_version"] for move in parsed] == [m.to_version for m in moves]
