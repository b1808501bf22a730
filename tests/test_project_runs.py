"""End-to-end: real `kedro` commands in a temporary copy of the project."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from tests.conftest import files_under, run_kedro

pytestmark = pytest.mark.slow


def _outputs(project, env):
    table = sorted((project / "data" / env).glob("05_model_input/*/*/*.parquet"))
    manifest = sorted((project / "data" / env).glob("08_reporting/*/*/*.json"))
    return table, manifest


def test_bare_run_is_dev_and_writes_only_the_dev_zone(project):
    source_before = files_under(project / "data" / "source")
    source_bytes = {
        f: (project / "data" / "source" / f).read_bytes() for f in source_before
    }
    result = run_kedro(project, "run")
    data_files = files_under(project / "data")
    assert all(f.startswith(("dev/", "source/")) for f in data_files), data_files
    assert files_under(project / "data" / "source") == source_before
    assert all(
        (project / "data" / "source" / f).read_bytes() == b
        for f, b in source_bytes.items()
    )
    tables, manifests = _outputs(project, "dev")
    assert len(tables) == 1 and len(manifests) == 1
    assert "Run in env 'dev' wrote:" in result.stdout + result.stderr
    table = pd.read_parquet(tables[0])
    source_rows = 21 * 8 * 24
    assert 0.15 * source_rows < len(table) < 0.35 * source_rows  # dev samples 25 %
    manifest = json.loads(manifests[0].read_text())
    assert manifest["first_partition"] == "2025-03-01"
    assert manifest["last_partition"] == "2025-03-21"
    assert manifest["rows"] == source_rows


def test_commands_from_a_subfolder_use_the_projects_data_and_store(project):
    conf = project / "conf"
    result = run_kedro(conf, "run", "--pipelines", "data_processing")
    tables, manifests = _outputs(project, "dev")
    assert len(tables) == 1 and len(manifests) == 1
    assert f"model_input_table: {project / 'data' / 'dev'}" in result.stdout
    # the project's logging (conf/logging.yml) applies although Kedro started in conf/
    done = "INFO kedro.runner.sequential_runner: Pipeline execution completed"
    assert done in result.stderr
    assert "Pipeline execution completed" not in result.stdout
    assert (project / "mlruns" / "mlflow.db").is_file()
    history = run_kedro(conf, "models", "history", "--env", "dev")
    assert history.stdout.strip().endswith("No alias has been set yet.")
    for stray in ("data", "mlruns"):
        assert not (conf / stray).exists(), stray


def test_acceptance_reads_everything_and_writes_only_its_zone(project):
    run_kedro(project, "run", "--env", "acceptance")
    data_files = files_under(project / "data")
    assert all(f.startswith(("acceptance/", "source/")) for f in data_files), data_files
    tables, _ = _outputs(project, "acceptance")
    assert len(pd.read_parquet(tables[0])) == 21 * 8 * 24


def test_rerun_keeps_earlier_versions_and_same_content(project):
    run_kedro(project, "run")
    run_kedro(project, "run")
    tables, _ = _outputs(project, "dev")
    assert len(tables) == 2  # versioned: the second run never overwrote the first
    first, second = (pd.read_parquet(t) for t in tables)
    pd.testing.assert_frame_equal(first, second)  # deterministic sample


@pytest.mark.parametrize(
    ("corrupt", "expected"),
    [
        ("missing_column", "column 'temperature_c': rule 'required column'"),
        ("wrong_type", "column 'humidity_pct': rule 'dtype float64' failed"),
        ("nulls", "column 'temperature_c': rule 'not null' failed"),
        ("out_of_range", "column 'humidity_pct': rule 'max 100.0' failed"),
        ("empty", "rule 'min_rows 1' failed: it has 0 rows"),
    ],
)
def test_contract_violation_stops_the_run_and_writes_nothing(
    project, corrupt, expected
):
    run_kedro(
        project,
        "simulate",
        "--start",
        "2025-03-22",
        "--days",
        "1",
        "--stations",
        "8",
        "--corrupt",
        corrupt,
    )
    result = run_kedro(project, "run", check=False)
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "Data contract violated in source partition '2025-03-22'" in output
    assert expected in output
    assert not (project / "data" / "dev").exists() or not any(
        (project / "data" / "dev").rglob("*.parquet")
    )
