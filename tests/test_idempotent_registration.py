"""End-to-end: re-runs, concurrent runs and retries register a candidate once; prod
never registers; a deployed model that misses the business threshold fails the run."""

from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import yaml
from mlflow.tracking import MlflowClient

from modelops.registry import claim_name, release_claim, try_claim
from tests.conftest import CLEAN_ENVIRON, copy_project, files_under, run_kedro

pytestmark = pytest.mark.slow

MODEL_NAME = "modelops-bike-demand"
# Small models keep these runs short; a larger one is the better challenger.
SMALL, LARGER = "model.kwargs.max_iter=20", "model.kwargs.max_iter=60"


@pytest.fixture(scope="module")
def source_days(tmp_path_factory) -> Path:
    """24 simulated days for 6 stations, written once for the module."""
    project = copy_project(tmp_path_factory.mktemp("source"))
    run_kedro(
        project, "simulate", "--start", "2025-03-01", "--days", "24", "--stations", "6"
    )
    return project / "data" / "source"


@pytest.fixture
def project(tmp_path, source_days) -> Path:
    """A project copy under git (the commit is part of the fingerprint)."""
    project = copy_project(tmp_path / "project")
    shutil.copytree(source_days, project / "data" / "source")
    (project / ".gitignore").write_text("data/\nmlruns/\n.viz/\n*.py[co]\n")
    for command in (
        ["git", "init", "-q"],
        ["git", "add", "-A"],
        ["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "x"],
    ):
        subprocess.run(command, cwd=project, check=True)
    return project


def _client(project: Path) -> MlflowClient:
    uri = f"sqlite:///{project / 'mlruns' / 'mlflow.db'}"
    return MlflowClient(uri, registry_uri=uri)


def _versions(project: Path) -> list[int]:
    found = _client(project).search_model_versions(f"name='{MODEL_NAME}'")
    return sorted(int(version.version) for version in found)


def _aliases(project: Path) -> dict[str, int]:
    model = _client(project).get_registered_model(MODEL_NAME)
    return {alias: int(version) for alias, version in model.aliases.items()}


def _registered_models(project: Path) -> list[str]:
    """Every registered model name: no claim may be left behind."""
    return sorted(m.name for m in _client(project).search_registered_models())


def _outcomes(project: Path, env: str, tag: str = "registration_outcome") -> list[str]:
    """A tag of each run of ``env``'s experiment, oldest first ("-" where absent)."""
    client = _client(project)
    experiment = client.get_experiment_by_name(f"modelops-{env}")
    runs = client.search_runs(
        [experiment.experiment_id], order_by=["attributes.start_time ASC"]
    )
    return [run.data.tags.get(f"modelops.{tag}", "-") for run in runs]


def _kedro(project: Path, *args: str) -> subprocess.Popen:
    """Start `kedro` in ``project`` without waiting (for runs at the same moment)."""
    env = {**CLEAN_ENVIRON, "KEDRO_DISABLE_TELEMETRY": "true", "COLUMNS": "200"}
    env.pop("MLFLOW_TRACKING_URI", None)
    return subprocess.Popen(
        [str(Path(sys.executable).parent / "kedro"), *args],
        cwd=project,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_reruns_with_a_challenger_waiting_register_nothing(project):
    run_kedro(project, "run", "--env", "acceptance", "--params", SMALL)
    run_kedro(project, "run", "--env", "prod")
    run_kedro(project, "run", "--env", "acceptance", "--params", LARGER)
    assert _aliases(project) == {"challenger": 2, "champion": 1}  # one waiting
    moves = len(_client(project).get_registered_model(MODEL_NAME).tags)
    for _ in range(3):  # e.g. a scheduler re-running the job on unchanged data
        rerun = run_kedro(project, "run", "--env", "acceptance", "--params", LARGER)
        assert "Deployment gate unchanged" in rerun.stdout + rerun.stderr
        assert "The candidate is challenger version 2 (same train and test data" in (
            rerun.stdout + rerun.stderr
        )
    assert _versions(project) == [1, 2]
    assert _aliases(project) == {"challenger": 2, "champion": 1}
    assert len(_client(project).get_registered_model(MODEL_NAME).tags) == moves
    assert _outcomes(project, "acceptance")[-3:] == ["unchanged"] * 3
    assert _registered_models(project) == [MODEL_NAME]


def _wait_for_gates(project: Path, runs: int, timeout: float = 900) -> None:
    """Until the newest ``runs`` acceptance runs have all logged a gate decision."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if "-" not in _outcomes(project, "acceptance", "gate.outcome")[-runs:]:
            return
        time.sleep(2)
    raise AssertionError("the concurrent runs never reached the deployment gate")


def test_two_runs_started_at_the_same_moment_register_once(project):
    # The first run creates the store and the experiment (both race when created
    # by two processes at once); the candidate then changes (LARGER).
    run_kedro(project, "run", "--env", "acceptance", "--params", SMALL)
    # The LARGER candidate's fingerprint, from a run that stops at the gate.
    run_kedro(
        project,
        "run",
        "--env",
        "acceptance",
        "--params",
        LARGER,
        "--to-nodes",
        "decide_deployment_node",
    )
    client = _client(project)
    experiment = client.get_experiment_by_name("modelops-acceptance")
    newest = client.search_runs(
        [experiment.experiment_id], order_by=["attributes.start_time DESC"]
    )[0]
    fingerprint = newest.data.tags["modelops.gate.fingerprint"]
    # Someone is registering this candidate right now: both runs pass the gate
    # (nothing registered yet) and reach registration while the claim is held.
    held = try_claim(client, claim_name(MODEL_NAME, fingerprint))
    assert held is not None
    runs = [_kedro(project, "run", "--env", "acceptance", "--params", LARGER)]
    runs.append(_kedro(project, "run", "--env", "acceptance", "--params", LARGER))
    try:
        _wait_for_gates(project, runs=2)
        time.sleep(10)  # both now wait for the claim
    finally:
        release_claim(client, held)
    results = [run.communicate(timeout=900) for run in runs]
    for run, (out, err) in zip(runs, results, strict=True):
        assert run.returncode == 0, (out + err)[-4000:]
    assert _versions(project) == [1, 2]
    assert _aliases(project) == {"challenger": 2}
    gates = _outcomes(project, "acceptance", "gate.outcome")[-2:]
    assert gates == ["approved", "approved"]  # the gate alone could not stop one
    registrations = _outcomes(project, "acceptance")[-2:]
    assert sorted(registrations) == ["registered", "unchanged"]
    assert any("Waiting for registration claim" in out + err for out, err in results)
    assert _registered_models(project) == [MODEL_NAME]  # every claim released


KILLED_AT_REGISTRATION = textwrap.dedent(
    """
    import os
    from pathlib import Path

    from kedro.framework.session import KedroSession
    from kedro.framework.startup import bootstrap_project

    from modelops import registry

    def killed(*args, **kwargs):
        os._exit(137)  # the worker dies after registering, before the alias is set

    registry.set_alias = killed
    project = Path.cwd()
    bootstrap_project(project)
    with KedroSession.create(project_path=project, env="acceptance") as session:
        session.run(pipeline_names=["__default__"])
    """
)


def test_a_retry_after_a_run_killed_at_registration_registers_once(project):
    """The scheduled-retry case: version registered, alias not set, claim left held."""
    # The dead run's claim is taken over after this timeout (the default is 900 s).
    catalog = yaml.safe_load((project / "conf/base/catalog.yml").read_text())
    entry = {**catalog["registered_model"], "claim_timeout_seconds": 5}
    (project / "conf/acceptance/catalog.yml").write_text(
        yaml.safe_dump({"registered_model": entry})
    )
    (project / "conf/acceptance/parameters_speed.yml").write_text(
        yaml.safe_dump({"model": {"kwargs": {"max_iter": 20}}})
    )
    script = project / "killed_at_registration.py"
    script.write_text(KILLED_AT_REGISTRATION)
    # The environment the test session started with: in-process tests before this one
    # may have set MLFLOW_TRACKING_URI (mlflow.set_tracking_uri exports it), and the
    # script must track into this project's own store.
    env = {k: v for k, v in CLEAN_ENVIRON.items() if k != "MLFLOW_TRACKING_URI"}
    killed = subprocess.run(  # a real session; its global state stays out of pytest
        [sys.executable, str(script)],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert killed.returncode == 137, killed.stderr[-4000:]
    assert _versions(project) == [1]  # registered, never aliased
    assert _client(project).get_registered_model(MODEL_NAME).aliases == {}
    assert len(_registered_models(project)) == 2  # the dead run's claim is still held

    retry = run_kedro(project, "run", "--env", "acceptance")
    assert "Taking over registration claim" in retry.stdout + retry.stderr
    assert _versions(project) == [1]  # the identical version is reused
    assert _aliases(project) == {"challenger": 1}
    assert _outcomes(project, "acceptance")[-1] == "reused"
    assert _registered_models(project) == [MODEL_NAME]
    again = run_kedro(project, "run", "--env", "acceptance")  # retried once more
    assert "Deployment gate unchanged" in again.stdout + again.stderr
    assert _versions(project) == [1]


def test_prod_may_not_run_a_registering_pipeline(project):
    before = files_under(project / "data")
    result = run_kedro(
        project, "run", "--env", "prod", "--pipelines", "__default__", check=False
    )
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "Traceback" not in output, output[-4000:]
    assert (
        "AccessPolicyError: Access policy of env 'prod' forbids registering model "
        "versions (dataset 'registered_model'): env 'prod' has no access.register: "
        "true (conf/prod/access.yml, rule access.register; absent means false)."
    ) in output
    assert "`kedro run --env prod` (its default job runs promotion)" in output
    assert "Running node" not in output  # refused before the first node
    assert files_under(project / "data") == before  # nothing written
    if (project / "mlruns" / "mlflow.db").exists():  # kedro-mlflow's experiment only
        client = _client(project)
        assert _registered_models(project) == []
        experiments = [e.experiment_id for e in client.search_experiments()]
        assert client.search_runs(experiments) == []


def test_a_deployed_model_that_misses_a_raised_threshold_fails_the_run(project):
    run_kedro(project, "run", "--params", LARGER)  # dev
    assert _aliases(project) == {"dev": 1}
    strict = run_kedro(
        project,
        "run",
        "--params",
        f"{LARGER},gate.business_threshold=0.000001",
        check=False,
    )
    output = strict.stdout + strict.stderr
    assert strict.returncode == 1, output[-4000:]
    assert "Deployment gate unchanged" not in output
    flat = " ".join(output.split())  # log lines may wrap
    assert (
        "Deployment gate rejected: the deployed model itself misses the business "
        "requirement: the candidate is dev version 1 (same train and test data"
    ) in flat
    assert "not below the business threshold 1e-06 (gate.business_threshold)" in flat
    assert "change use_case.gate.business_threshold in conf/base/use_case.yml" in flat
    assert _versions(project) == [1]
    assert _aliases(project) == {"dev": 1}
