"""Retraining (`kedro retrain`): settings, the verdict switch, the steps, end to end."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from mlflow.tracking import MlflowClient

from modelops import retraining
from modelops.errors import ConfigError
from modelops.registry import RegistryError
from tests.conftest import copy_project, load_base_config, run_kedro

MODEL_NAME = "modelops-bike-demand"
RESULT_DIR = Path("data/prod/08_reporting/monitoring_result.json")


# ------------------------------------------------------------------ settings, conf


def test_base_conf_has_the_switch_off_and_valid_defaults():
    settings = retraining.RetrainingSettings.from_params(load_base_config("parameters"))
    assert settings.trigger_on_drift is False  # automatic retraining is opt-in
    split = load_base_config("globals")["use_case"]["split"]
    assert settings.window_days > split["test_days"]  # something left to train on
    assert 0 <= settings.min_improvement < 1


@pytest.mark.parametrize(
    ("block", "message"),
    [
        (None, r"no 'retraining' block.*\nHint: restore it in conf/base/parameters_re"),
        (
            {"window_days": 0, "min_improvement": 0.0, "trigger_on_drift": False},
            r"retraining.window_days is 0; .*\nHint: set retraining.window_days in "
            r"conf/base/parameters_retraining.yml",
        ),
        (
            {"window_days": 35, "min_improvement": 2, "trigger_on_drift": False},
            r"retraining.min_improvement is 2; expected a relative margin in \[0, 1\)",
        ),
        (
            {"window_days": 35, "min_improvement": 0.0, "trigger_on_drift": "yes"},
            r"retraining.trigger_on_drift is 'yes'; expected true or false",
        ),
    ],
)
def test_settings_refuse_bad_values_naming_the_key(block, message):
    params = {} if block is None else {"retraining": block}
    with pytest.raises(ConfigError, match=message):
        retraining.RetrainingSettings.from_params(params)


# ------------------------------------------------------------ a project + registry


@pytest.fixture
def project(tmp_path, monkeypatch) -> Path:
    """A project copy with 40 (empty) source partition files, run from its root."""
    project = copy_project(tmp_path / "project")
    source = project / "data" / "source" / "bike_rentals"
    source.mkdir(parents=True)
    for offset in range(40):  # 2025-03-01 .. 2025-04-09
        day = dt.date(2025, 3, 1) + dt.timedelta(days=offset)
        (source / f"{day.isoformat()}.parquet").touch()
    monkeypatch.chdir(project)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    return project


def _client(project: Path) -> MlflowClient:
    uri = f"sqlite:///{project / 'mlruns' / 'mlflow.db'}"
    return MlflowClient(uri, registry_uri=uri)


def _base_model_config() -> dict[str, Any]:
    return load_base_config("parameters")["model"]


def _add_version(project: Path, alias: str, config: dict[str, Any]) -> str:
    client = _client(project)
    if not client.search_registered_models(f"name = '{MODEL_NAME}'"):
        client.create_registered_model(MODEL_NAME)
    version = client.create_model_version(
        MODEL_NAME,
        source=str(project / "model"),
        tags={"modelops.model_config": json.dumps(config, sort_keys=True)},
    )
    client.set_registered_model_alias(MODEL_NAME, alias, version.version)
    return str(version.version)


def _aliases(project: Path) -> dict[str, str]:
    model = _client(project).get_registered_model(MODEL_NAME)
    return {alias: str(version) for alias, version in model.aliases.items()}


def _set_switch(project: Path, on: bool) -> None:
    conf = project / "conf" / "base" / "parameters_retraining.yml"
    conf.write_text(
        conf.read_text().replace(
            "trigger_on_drift: false", f"trigger_on_drift: {str(on).lower()}"
        )
    )


def _write_result(project: Path, version: str, recommended: bool, judged: str) -> None:
    folder = project / RESULT_DIR / version
    folder.mkdir(parents=True)
    reason = "performance degraded 31% > 15%" if recommended else "nothing drifted"
    (folder / "monitoring_result.json").write_text(
        json.dumps(
            {
                "computed_at": "2025-04-09T03:00:00+00:00",
                "env": "prod",
                "model": {"name": MODEL_NAME, "version": judged, "alias": "champion"},
                "verdict": {"retrain_recommended": recommended, "reason": reason},
            }
        )
    )


class FakeJobs:
    """Stands in for the Kedro runs: records them, moves aliases as a job would."""

    def __init__(self, project: Path, acceptance: str, prod: str = "approved") -> None:
        self.project = project
        self.acceptance = acceptance
        self.prod = prod
        self.calls: list[tuple[str, str, dict[str, Any]]] = []

    def __call__(self, project_path, env, pipeline, params) -> retraining.StepResult:
        self.calls.append((env, pipeline, json.loads(json.dumps(params))))
        outcome = self.acceptance if env == "acceptance" else self.prod
        step = retraining.StepResult(env=env, pipeline=pipeline, status="succeeded")
        if outcome in {"failed", "rejected"}:
            step.status = outcome
            step.error = f"{outcome} on purpose"
            return step
        gate = {"metric": "rmse", "candidate_value": "6.5", "incumbent_value": "8.0"}
        if env == "acceptance" and outcome == "approved":
            _add_version(self.project, "challenger", params["model"])
        if env == "prod" and outcome == "approved":
            challenger = _aliases(self.project)["challenger"]
            _client(self.project).set_registered_model_alias(
                MODEL_NAME, "champion", challenger
            )
        if outcome == "unchanged":
            gate["unchanged_version"] = _aliases(self.project).get("challenger")
        step.gate = {**gate, "outcome": outcome, "reason": f"gate {outcome}"}
        return step


def _window(days: int, end: str) -> dict[str, Any]:
    """The newest ``days`` daily partitions up to ``end``, as retraining pins them."""
    last = dt.date.fromisoformat(end)
    first = last - dt.timedelta(days=days - 1)
    return {"start": first.isoformat(), "end": end, "last_days": days}


def _cli_retrain(*args: str) -> tuple[int, dict[str, Any]]:
    from modelops.cli import cli  # noqa: PLC0415

    result = CliRunner().invoke(cli, ["retrain", *args, "--json"])
    return result.exit_code, json.loads(result.stdout)


# --------------------------------------------------------------- --on-verdict


def test_on_verdict_skips_while_the_switch_is_off(project):
    _add_version(project, "champion", _base_model_config())
    _write_result(project, "2025-04-09T03.00.00.000Z", True, "1")
    code, report = _cli_retrain("--on-verdict")
    assert code == 0
    assert report["outcome"] == "skipped"
    assert "retraining.trigger_on_drift is false" in report["reason"]
    assert report["steps"] == []


def test_on_verdict_skips_without_a_verdict(project):
    _set_switch(project, on=True)
    _add_version(project, "champion", _base_model_config())
    code, report = _cli_retrain("--on-verdict")
    assert code == 0
    assert report["outcome"] == "skipped"
    assert "no monitoring verdict yet" in report["reason"]


def test_on_verdict_follows_the_newest_result_only(project):
    _set_switch(project, on=True)
    champion = _add_version(project, "champion", _base_model_config())
    _write_result(project, "2025-04-08T03.00.00.000Z", True, champion)
    _write_result(project, "2025-04-09T03.00.00.000Z", False, champion)
    jobs = FakeJobs(project, acceptance="approved")
    report = retraining.retrain(project, on_verdict=True, runner=jobs)
    assert report.outcome == "skipped"
    assert "does not recommend retraining (nothing drifted" in report.reason
    assert report.verdict["file"].endswith(
        "2025-04-09T03.00.00.000Z/monitoring_result.json"
    )
    assert jobs.calls == []


def test_on_verdict_ignores_a_verdict_about_an_earlier_champion(project):
    _set_switch(project, on=True)
    _add_version(project, "champion", _base_model_config())
    champion = _add_version(project, "champion", _base_model_config())
    _write_result(project, "2025-04-09T03.00.00.000Z", True, "1")
    jobs = FakeJobs(project, acceptance="approved")
    report = retraining.retrain(project, on_verdict=True, runner=jobs)
    assert report.outcome == "skipped"
    assert f"the champion is now version {champion}" in report.reason
    assert jobs.calls == []


def test_on_verdict_retrains_when_recommended_for_the_champion(project):
    _set_switch(project, on=True)
    champion = _add_version(project, "champion", _base_model_config())
    _write_result(project, "2025-04-09T03.00.00.000Z", True, champion)
    jobs = FakeJobs(project, acceptance="approved")
    report = retraining.retrain(project, on_verdict=True, runner=jobs)
    assert report.outcome == "promoted"
    assert report.verdict["retrain_recommended"] is True
    assert [call[:2] for call in jobs.calls] == [
        ("acceptance", "__default__"),
        ("prod", "promotion_reuse"),
    ]


# ---------------------------------------------------------- the steps (faked runs)


def test_both_steps_get_the_champions_config_the_window_and_the_margin(project):
    config = {**_base_model_config(), "seed": 7}
    _add_version(project, "champion", config)
    jobs = FakeJobs(project, acceptance="approved")
    report = retraining.retrain(project, runner=jobs)
    assert report.outcome == "promoted"
    assert (report.champion_before, report.champion_after) == ("1", "2")
    assert (report.champion_value, report.candidate_value) == (8.0, 6.5)
    settings = retraining.load_settings(project)
    first = jobs.calls[0][2]
    assert first["model"] == config  # the champion's own seed, not conf's
    assert first["gate"] == {"min_improvement": settings.min_improvement}
    assert first["source"]["window"] == _window(settings.window_days, "2025-04-09")
    assert jobs.calls[1][2] == first  # prod sees exactly the same window


@pytest.mark.parametrize("outcome", ["rejected", "failed"])
def test_a_stopped_acceptance_step_promotes_nothing(project, outcome):
    _add_version(project, "champion", _base_model_config())
    jobs = FakeJobs(project, acceptance=outcome)
    report = retraining.retrain(project, runner=jobs)
    assert report.outcome == outcome
    assert report.exit_code == (1 if outcome == "failed" else 0)
    assert [call[0] for call in jobs.calls] == ["acceptance"]  # prod never ran
    assert _aliases(project) == {"champion": "1"}


def test_a_failed_promotion_step_reports_failed_and_keeps_the_champion(project):
    _add_version(project, "champion", _base_model_config())
    jobs = FakeJobs(project, acceptance="approved", prod="failed")
    report = retraining.retrain(project, runner=jobs)
    assert report.outcome == "failed"
    assert report.exit_code == 1
    assert "promotion_reuse in env 'prod' failed: failed on purpose" in report.reason
    assert _aliases(project) == {"champion": "1", "challenger": "2"}


def test_an_identical_candidate_stops_before_prod(project):
    champion = _add_version(project, "champion", _base_model_config())
    _client(project).set_registered_model_alias(MODEL_NAME, "challenger", champion)
    jobs = FakeJobs(project, acceptance="unchanged")
    report = retraining.retrain(project, runner=jobs)
    assert report.outcome == "unchanged"
    assert [call[0] for call in jobs.calls] == ["acceptance"]


def test_no_champion_is_a_clear_error(project):
    with pytest.raises(RegistryError, match=r"there is no champion to retrain"):
        retraining.retrain(project, runner=FakeJobs(project, acceptance="approved"))


def test_runtime_params_merge_key_by_key_so_a_missing_key_is_refused(project):
    # Kedro merges runtime params into conf (OmegaConf, nested): the champion's
    # config arrives whole when it has conf's keys ...
    config = {**_base_model_config(), "seed": 7}
    params = retraining.runtime_params(None, config, 0.02)
    retraining.check_model_config(project, "acceptance", params, config, "1")
    # ... but a key conf sets and the champion lacks would survive the merge.
    older = json.loads(json.dumps(config))
    del older["kwargs"]["max_leaf_nodes"]
    params = retraining.runtime_params(None, older, 0.02)
    with pytest.raises(
        ConfigError,
        match=r"not champion version 1's own .*runtime parameters can only add or "
        r"replace keys, not remove them\.\nHint: make the `model` block",
    ):
        retraining.check_model_config(project, "acceptance", params, older, "1")


# ----------------------------------------------------------------- end to end


def _retrain(project: Path) -> tuple[int, dict[str, Any]]:
    result = run_kedro(project, "retrain", "--json", check=False)
    return result.returncode, json.loads(result.stdout)  # logs go to stderr


def _versions(project: Path) -> list[str]:
    found = _client(project).search_model_versions(f"name = '{MODEL_NAME}'")
    return sorted(str(version.version) for version in found)


@pytest.mark.slow
def test_retraining_promotes_after_drift_and_nothing_without(tmp_path):
    from modelops.simulator import write_source  # noqa: PLC0415

    project = copy_project(tmp_path / "e2e")

    def simulate(start: str, days: int, **kwargs: Any) -> None:
        # What `kedro simulate` writes (it is a thin shell over write_source), without
        # a Kedro start-up per call.
        source = project / "data" / "source" / "bike_rentals"
        write_source(
            source, dt.date.fromisoformat(start), days, n_stations=20, **kwargs
        )

    # Midsummer: the simulator's seasons barely move the weather over these weeks, so
    # "no drift" is a stationary world. (From March to April its spring warming alone
    # makes a model trained on the newest weeks ~11 % better: a real change.)
    simulate("2025-06-20", 35)
    run_kedro(project, "run", "--env", "acceptance")
    run_kedro(project, "run", "--env", "prod")
    assert _aliases(project) == {"challenger": "1", "champion": "1"}

    # (a) a week more of the same world: nothing is promoted
    simulate("2025-07-25", 7)
    code, report = _retrain(project)
    assert code == 0, report
    assert report["outcome"] in {"rejected", "unchanged"}, report["reason"]
    days = retraining.load_settings(project).window_days
    assert report["window"] == {**_window(days, "2025-07-31"), "partitions": days}
    assert _aliases(project) == {"challenger": "1", "champion": "1"}
    assert _versions(project) == ["1"]

    # a broken day in the window: the run fails, the registry stays as it was
    simulate("2025-08-01", 1, corrupt="nulls")
    code, report = _retrain(project)
    assert code == 1
    assert report["outcome"] == "failed"
    assert "Nothing was promoted" in report["reason"]
    assert _aliases(project) == {"challenger": "1", "champion": "1"}
    assert _versions(project) == ["1"]

    # (b) commute peaks move (concept drift) for four weeks, so the window's train set
    # holds 14 drifted days of 21 (its test set: 14 of 14): a new champion
    simulate("2025-08-01", 28, drift="concept", overwrite=True)
    code, report = _retrain(project)
    assert code == 0, report
    assert report["outcome"] == "promoted", report["reason"]
    new = report["champion_after"]
    assert (report["champion_before"], _aliases(project)["champion"]) == ("1", new)
    assert report["candidate_value"] < report["champion_value"]
    prod_run = _client(project).get_run(report["steps"][-1]["run_id"]).data.tags
    assert prod_run["modelops.env"] == "prod"
    assert prod_run["modelops.promoted_version"] == new
    old_value = float(prod_run["modelops.gate.incumbent_value"])
    new_value = float(prod_run["modelops.gate.candidate_value"])
    assert new_value < old_value * (1 - report["min_improvement"])
    tags = _client(project).get_model_version(MODEL_NAME, new).tags
    assert float(tags["modelops.metric.rmse"]) == pytest.approx(new_value, rel=1e-5)
    assert json.loads(tags["modelops.model_config"]) == report["model_config"]

    # a retry on the same window registers nothing new
    versions = _versions(project)
    code, again = _retrain(project)
    assert code == 0
    assert again["outcome"] == "unchanged", again["reason"]
    assert _versions(project) == versions
    assert _aliases(project)["champion"] == new


@pytest.mark.slow
def test_steps_in_one_process_log_into_their_own_runs(tmp_path, monkeypatch):
    import mlflow  # noqa: PLC0415

    from modelops.simulator import write_source  # noqa: PLC0415

    project = copy_project(tmp_path / "steps")
    source = project / "data" / "source" / "bike_rentals"
    write_source(source, dt.date(2025, 7, 1), 3, seed=1, n_stations=4)
    monkeypatch.chdir(project)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    first = retraining.run_job(project, "acceptance", "data_processing", {})
    second = retraining.run_job(project, "prod", "data_processing", {})
    assert (first.status, second.status) == ("succeeded", "succeeded")
    # kedro-mlflow (run.nested: true) leaves its run open in the thread that ran the
    # session; without a thread per step prod's params went into acceptance's run.
    assert first.run_id != second.run_id
    assert (first.tags["modelops.env"], second.tags["modelops.env"]) == (
        "acceptance",
        "prod",
    )
    assert mlflow.active_run() is None

    write_source(source, dt.date(2025, 7, 4), 1, seed=1, n_stations=4, corrupt="nulls")
    broken = retraining.run_job(project, "acceptance", "data_processing", {})
    assert broken.status == "failed"
    assert broken.error.startswith("DataContractError: ")
    assert broken.run_id is not None  # its failed run is found and reported
    assert mlflow.active_run() is None
