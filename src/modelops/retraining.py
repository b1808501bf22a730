"""Retraining: the deployment job on the newest window, then prod's promotion job."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import sys
import threading
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from mlflow.tracking import MlflowClient

from modelops import registry
from modelops.errors import (
    ConfigError,
    DeploymentRejected,
    ModelopsError,
    SourceWindowError,
    modelops_cause,
)
from modelops.project_config import load_config
from modelops.tracking import tracking_uri

logger = logging.getLogger(__name__)

RETRAINING_CONF = "conf/base/parameters_retraining.yml"
# The env that trains and registers a challenger, and the env whose champion it must
# beat (and which promotes it): the deployment job and prod's default job.
TRAIN_ENV = "acceptance"
PROMOTE_ENV = "prod"
TRAIN_JOB = "__default__"
MONITORING_RESULT = "monitoring_result"
# Where monitoring writes its result when the catalog has no entry for it yet.
MONITORING_RESULT_PATH = "08_reporting/monitoring_result.json"
SESSION_TAG = "modelops.kedro_run_id"  # set on every run by modelops.hooks.LineageHooks
GATE_TAG_PREFIX = "modelops.gate."
SOURCE_DATASET = "source_partitions"


@dataclass(frozen=True)
class RetrainingSettings:
    """The ``retraining`` parameters (conf/base/parameters_retraining.yml)."""

    window_days: int
    min_improvement: float
    trigger_on_drift: bool

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> RetrainingSettings:
        """Validate the ``retraining`` block.

        Raises:
            ConfigError: a missing block or key, or a value of the wrong type or range.
        """
        block = params.get("retraining")
        if not isinstance(block, Mapping):
            raise ConfigError(
                f"The parameters have no 'retraining' block.\nHint: restore it in "
                f"{RETRAINING_CONF} (window_days, min_improvement, trigger_on_drift)."
            )
        window = block.get("window_days")
        margin = block.get("min_improvement")
        switch = block.get("trigger_on_drift")
        if isinstance(window, bool) or not isinstance(window, int) or window < 1:
            raise ConfigError(
                f"retraining.window_days is {window!r}; expected a whole number of "
                f"days >= 1.\nHint: set retraining.window_days in {RETRAINING_CONF}."
            )
        if (
            isinstance(margin, bool)
            or not isinstance(margin, int | float)
            or not 0 <= margin < 1
        ):
            raise ConfigError(
                f"retraining.min_improvement is {margin!r}; expected a relative margin "
                f"in [0, 1), e.g. 0.02 for 2 %.\nHint: set retraining.min_improvement "
                f"in {RETRAINING_CONF}."
            )
        if not isinstance(switch, bool):
            raise ConfigError(
                f"retraining.trigger_on_drift is {switch!r}; expected true or false."
                f"\nHint: set retraining.trigger_on_drift in {RETRAINING_CONF}."
            )
        return cls(int(window), float(margin), switch)


@dataclass
class StepResult:
    """One Kedro run of the retraining: which job, how it ended, its gate decision."""

    env: str
    pipeline: str
    status: str  # succeeded | rejected | failed
    session_id: str | None = None
    run_id: str | None = None
    error: str | None = None
    gate: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)

    @property
    def outcome(self) -> str:
        """The gate's verdict (approved, unchanged, rejected) or ``failed``."""
        if self.status == "failed":
            return "failed"
        if self.status == "rejected":
            return "rejected"
        return self.gate.get("outcome", "approved")

    def as_dict(self) -> dict[str, Any]:
        """JSON-able view (tags left out: they are on the MLflow run)."""
        data = asdict(self)
        data.pop("tags")
        data["outcome"] = self.outcome
        return data


@dataclass
class RetrainReport:
    """What ``retrain`` did: the outcome, the champion before and after, the steps."""

    outcome: str  # promoted | rejected | unchanged | skipped | failed
    reason: str
    model_name: str | None = None
    alias: str = "champion"
    champion_before: str | None = None
    champion_after: str | None = None
    challenger: str | None = None
    metric: str | None = None
    champion_value: float | None = None  # the old champion, scored on the new test set
    candidate_value: float | None = None  # the retrained model, same test set
    min_improvement: float | None = None
    window: dict[str, Any] | None = None
    model_config: dict[str, Any] | None = None
    verdict: dict[str, Any] | None = None
    steps: list[StepResult] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        """0 for every answer a scheduler should accept; 1 when a step failed."""
        return 1 if self.outcome == "failed" else 0

    def as_dict(self) -> dict[str, Any]:
        """JSON-able view."""
        data = asdict(self)
        data["steps"] = [step.as_dict() for step in self.steps]
        return data

    def summary(self) -> str:
        """One paragraph for a person or a scheduler log."""
        if self.outcome == "promoted":
            return (
                f"Promoted: {self.model_name}@{self.alias} {self.champion_before} -> "
                f"{self.champion_after}; {self.metric} on the new test set "
                f"{_fmt(self.champion_value)} (old champion) -> "
                f"{_fmt(self.candidate_value)} (new). {self.reason}"
            )
        return f"{self.outcome.capitalize()}: {self.reason}"


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"


# --------------------------------------------------------------------- conf and state


def load_settings(project_path: Path) -> RetrainingSettings:
    """The ``retraining`` parameters as prod sees them (base, or a prod override)."""
    return RetrainingSettings.from_params(
        load_config(project_path, PROMOTE_ENV, "parameters")
    )


def monitoring_result_dir(project_path: Path, env: str = PROMOTE_ENV) -> Path:
    """Where ``env``'s versioned monitoring results lie (the catalog's filepath)."""
    catalog = load_config(project_path, env, "catalog")
    entry = catalog.get(MONITORING_RESULT)
    if isinstance(entry, Mapping) and entry.get("filepath"):
        path = Path(str(entry["filepath"]))
    else:
        zone = load_config(project_path, env, "globals")["zone_root"]
        path = Path(zone) / MONITORING_RESULT_PATH
    return path if path.is_absolute() else project_path / path


def latest_monitoring_result(
    project_path: Path, env: str = PROMOTE_ENV
) -> tuple[Path, dict[str, Any]] | None:
    """The newest monitoring result of ``env`` and its file, or None if there is none.

    Kedro's versioned layout is ``<filepath>/<version>/<file name>``; versions are
    timestamps that sort as text, so the newest is the last folder holding the file.

    Raises:
        ConfigError: the newest result file is not a JSON object.
    """
    folder = monitoring_result_dir(project_path, env)
    if not folder.is_dir():
        return None
    candidates = sorted(
        version / folder.name
        for version in folder.iterdir()
        if (version / folder.name).is_file()
    )
    if not candidates:
        return None
    newest = candidates[-1]
    try:
        result = json.loads(newest.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise ConfigError(
            f"The newest monitoring result '{newest}' cannot be read as JSON: {err}."
            f"\nHint: run `kedro run --env {env} --pipelines monitoring` again."
        ) from err
    if not isinstance(result, dict):
        raise ConfigError(
            f"The newest monitoring result '{newest}' is not a JSON object.\nHint: "
            f"run `kedro run --env {env} --pipelines monitoring` again."
        )
    return newest, result


def verdict_allows(
    settings: RetrainingSettings,
    latest: tuple[Path, Mapping[str, Any]] | None,
    champion_version: str | None,
) -> tuple[bool, str, dict[str, Any] | None]:
    """Whether ``--on-verdict`` may retrain: the switch, then the newest verdict.

    Returns:
        ``(go, why, verdict)``; ``verdict`` is what the newest result said (with its
        file and the version it judged), or None when there is none.
    """
    if not settings.trigger_on_drift:
        return (
            False,
            f"retraining.trigger_on_drift is false: a monitoring verdict does not "
            f"trigger retraining (set it to true in {RETRAINING_CONF}; a plain "
            f"`kedro retrain` always retrains).",
            None,
        )
    if latest is None:
        return (
            False,
            f"no monitoring verdict yet: run `kedro run --env {PROMOTE_ENV} "
            f"--pipelines monitoring` first.",
            None,
        )
    path, result = latest
    verdict = dict(result.get("verdict") or {})
    judged = (result.get("model") or {}).get("version")
    seen = {
        "file": str(path),
        "computed_at": result.get("computed_at"),
        "model_version": None if judged is None else str(judged),
        "retrain_recommended": bool(verdict.get("retrain_recommended")),
        "reason": verdict.get("reason"),
    }
    if judged is not None and champion_version is not None:
        if str(judged) != str(champion_version):
            return (
                False,
                f"the newest monitoring verdict ({path}) judged version {judged}, "
                f"but the champion is now version {champion_version}: wait for "
                f"monitoring to judge the new champion.",
                seen,
            )
    if not seen["retrain_recommended"]:
        return (
            False,
            f"the newest monitoring verdict does not recommend retraining "
            f"({seen['reason'] or 'no reason given'}; {path}).",
            seen,
        )
    return True, f"monitoring recommends retraining: {seen['reason']}", seen


def champion_state(
    client: MlflowClient, model_name: str, alias: str
) -> tuple[str, dict[str, Any]]:
    """The champion's version and its own model config (class, kwargs, seed).

    Raises:
        registry.RegistryError: no version has the alias, or it carries no config.
    """
    version = registry.alias_version(client, model_name, alias)
    if version is None:
        raise registry.RegistryError(
            f"No version of '{model_name}' has the alias '{alias}': there is no "
            f"champion to retrain.\nHint: deploy a first model: `kedro run --env "
            f"{TRAIN_ENV}` then `kedro run --env {PROMOTE_ENV}`."
        )
    raw = (version.tags or {}).get("modelops.model_config")
    if not raw:
        raise registry.RegistryError(
            f"Champion version {version.version} of '{model_name}' carries no "
            f"'modelops.model_config' tag, so its config and seed are unknown.\nHint: "
            f"promote a version registered by the deployment job (`kedro run --env "
            f"{TRAIN_ENV}`), which tags its config."
        )
    return str(version.version), json.loads(raw)


def newest_window(
    project_path: Path, days: int, env: str = TRAIN_ENV
) -> dict[str, Any] | None:
    """The newest ``days`` source partitions as an explicit window, or None.

    Both steps get the same ``start``/``end``, so a partition that lands between
    them cannot shift prod's window. None when the source is a single file (the
    window does not apply to it).

    Raises:
        SourceWindowError: the partitioned source holds no partition.
    """
    params = load_config(project_path, env, "parameters")
    entry = load_config(project_path, env, "catalog").get(SOURCE_DATASET) or {}
    if "path" not in entry:
        return None
    suffix = str(entry.get("filename_suffix") or "")
    folder = Path(str(entry["path"]))
    folder = folder if folder.is_absolute() else project_path / folder
    fmt = params["source"]["partition_date_format"]
    dated = []
    for item in folder.glob(f"*{suffix}") if folder.is_dir() else []:
        name = item.name[: len(item.name) - len(suffix)] if suffix else item.stem
        try:
            dated.append(dt.datetime.strptime(name, fmt).date())
        except ValueError:
            continue
    if not dated:
        raise SourceWindowError(
            f"The production source '{folder}' holds no partition to retrain on.\n"
            f"Hint: wait for the upstream feed (here: `kedro simulate`)."
        )
    chosen = sorted(set(dated))[-days:]
    return {  # source.window takes YYYY-MM-DD, whatever the file names' format
        "start": chosen[0].isoformat(),
        "end": chosen[-1].isoformat(),
        "last_days": days,
        "partitions": len(chosen),
    }


def runtime_params(
    window: Mapping[str, Any] | None,
    model_config: Mapping[str, Any],
    min_improvement: float,
) -> dict[str, Any]:
    """The ``--params`` of both steps: window, the champion's config, the margin."""
    params: dict[str, Any] = {
        "model": json.loads(json.dumps(dict(model_config))),
        "gate": {"min_improvement": min_improvement},
    }
    if window is not None:
        params["source"] = {
            "window": {
                "start": window["start"],
                "end": window["end"],
                "last_days": window["last_days"],
            }
        }
    return params


def check_model_config(
    project_path: Path,
    env: str,
    params: Mapping[str, Any],
    champion_config: Mapping[str, Any],
    champion_version: str,
) -> None:
    """Check that the run's ``model`` parameters are exactly the champion's.

    Kedro merges runtime parameters into conf key by key (OmegaConf), so a key the
    champion's config lacks but conf sets would survive and change the model.

    Raises:
        ConfigError: the merged ``model`` parameters differ from the champion's.
    """
    from kedro.framework.project import settings  # noqa: PLC0415

    loader = settings.CONFIG_LOADER_CLASS(
        conf_source=str(project_path / settings.CONF_SOURCE),
        env=env,
        runtime_params=json.loads(json.dumps(dict(params))),
        **settings.CONFIG_LOADER_ARGS,
    )
    merged = loader["parameters"].get("model")
    expected = json.loads(json.dumps(dict(champion_config)))
    if merged != expected:
        raise ConfigError(
            f"Retraining would train with model parameters {merged}, not champion "
            f"version {champion_version}'s own {expected}: conf sets keys the "
            f"champion's config does not have, and runtime parameters can only add "
            f"or replace keys, not remove them.\nHint: make the `model` block in "
            f"conf/base/parameters_training.yml hold the champion's keys (see `kedro "
            f"lineage --env {PROMOTE_ENV}`), or deploy a new champion first."
        )


# ---------------------------------------------------------------------- the steps


def run_job(
    project_path: Path, env: str, pipeline: str, params: Mapping[str, Any]
) -> StepResult:
    """One Kedro session in this process: ``pipeline`` in ``env`` with ``params``.

    The session runs in a thread of its own. MLflow keeps the active-run stack per
    thread, and kedro-mlflow with ``tracking.run.nested: true`` (conf/base/mlflow.yml)
    re-opens the pipeline's run at every node but closes it once at the end: in the
    calling thread the finished step's run would stay active and swallow the next
    step's logging (measured: prod's params were logged into acceptance's run). A
    fresh thread per step starts with an empty stack and takes the leftovers with it.

    What the run printed on stdout goes to stderr (stdout is the report's). A
    ``DeploymentRejected`` (the gate said no) is a ``rejected`` step, any other error
    a ``failed`` one; both leave the registry as the job's datasets guarantee.
    """
    from kedro.framework.startup import bootstrap_project  # noqa: PLC0415

    bootstrap_project(project_path)
    step = StepResult(env=env, pipeline=pipeline, status="succeeded")
    logger.info("Retraining: running '%s' in env '%s'", pipeline, env)
    failure: list[BaseException] = []

    def target() -> None:
        try:
            _run_session(project_path, env, pipeline, params, step)
        except BaseException as err:  # handed to the calling thread
            failure.append(err)

    worker = threading.Thread(target=target, name=f"retrain-{env}", daemon=False)
    with contextlib.redirect_stdout(sys.stderr):
        worker.start()
        worker.join()
    if failure:
        err = failure[0]
        if not isinstance(err, Exception):  # KeyboardInterrupt, SystemExit
            raise err
        cause = modelops_cause(err)
        step.status = "rejected" if isinstance(cause, DeploymentRejected) else "failed"
        shown = cause if cause is not None else err
        step.error = f"{type(shown).__name__}: {shown}"
        logger.warning(
            "Retraining step '%s' in env '%s' %s", pipeline, env, step.status
        )
    _read_run(project_path, env, step)
    return step


def _run_session(
    project_path: Path,
    env: str,
    pipeline: str,
    params: Mapping[str, Any],
    step: StepResult,
) -> None:
    from kedro.framework.session import KedroSession  # noqa: PLC0415

    with KedroSession.create(
        project_path=project_path,
        env=env,
        runtime_params=json.loads(json.dumps(dict(params))),
    ) as session:
        step.session_id = str(session.store["session_id"])
        session.run(pipeline_names=[pipeline])


def _read_run(project_path: Path, env: str, step: StepResult) -> None:
    """Fill the step's MLflow run id, tags and gate decision (by its session id)."""
    if step.session_id is None:
        return
    name = load_config(project_path, env, "mlflow")["tracking"]["experiment"]["name"]
    client = _client()
    experiment = client.get_experiment_by_name(name)
    if experiment is None:
        return
    runs = client.search_runs(
        [experiment.experiment_id],
        filter_string=f"tags.`{SESSION_TAG}` = '{step.session_id}'",
        max_results=1,
    )
    if not runs:
        return
    step.run_id = runs[0].info.run_id
    step.tags = dict(runs[0].data.tags)
    step.gate = {
        key[len(GATE_TAG_PREFIX) :]: value
        for key, value in step.tags.items()
        if key.startswith(GATE_TAG_PREFIX)
    }


def _client() -> MlflowClient:
    """A client on the project's store, its registry URI pinned (never the global)."""
    uri = tracking_uri()
    return MlflowClient(uri, registry_uri=uri)


def _float(value: str | None) -> float | None:
    try:
        return None if value in {None, "None"} else float(value)  # type: ignore[arg-type]
    except ValueError:
        return None


# ---------------------------------------------------------------------- the command

Runner = Callable[[Path, str, str, Mapping[str, Any]], StepResult]


def retrain(
    project_path: Path, *, on_verdict: bool = False, runner: Runner = run_job
) -> RetrainReport:
    """Retrain the champion's config on the newest window; promote only on a pass.

    1. Reads prod's champion and its own model config and seed (version tag
       ``modelops.model_config``).
    2. Runs acceptance's deployment job on the newest ``retraining.window_days``
       source partitions with that config and ``gate.min_improvement =
       retraining.min_improvement``: it registers a challenger only if it beats the
       champion on the same new test set; an identical candidate is ``unchanged``.
    3. If acceptance approved a challenger that is not the champion, runs prod's
       default job (promotion) on the same window: it re-gates the challenger
       against the champion on prod's test set and moves ``champion`` on a pass.
    4. Reads the champion back from the registry and reports.

    With ``on_verdict`` it retrains only when ``retraining.trigger_on_drift`` is true
    and prod's newest monitoring verdict recommends it for the current champion;
    otherwise it returns ``skipped`` and why.

    Args:
        project_path: The project root.
        on_verdict: Retrain only on a monitoring verdict (see above).
        runner: Runs one job (tests replace it); default: an in-process session.

    Returns:
        The report; ``outcome`` is promoted, rejected, unchanged, skipped or failed.
    """
    settings = load_settings(project_path)
    client = _client()
    globals_ = load_config(project_path, PROMOTE_ENV, "globals")
    model_name = str(globals_["registered_model_name"])
    champion_alias = str(globals_["alias"])
    challenger_alias = str(load_config(project_path, TRAIN_ENV, "globals")["alias"])
    report = RetrainReport(
        outcome="skipped",
        reason="",
        model_name=model_name,
        alias=champion_alias,
        min_improvement=settings.min_improvement,
    )
    current = registry.alias_version(client, model_name, champion_alias)
    if on_verdict:
        go, why, report.verdict = verdict_allows(
            settings,
            latest_monitoring_result(project_path),
            None if current is None else str(current.version),
        )
        if not go:
            report.reason = f"Not retraining: {why}"
            report.champion_before = report.champion_after = (
                None if current is None else str(current.version)
            )
            return report
        logger.info("Retraining: %s", why)
    before, config = champion_state(client, model_name, champion_alias)
    report.champion_before = report.champion_after = before
    report.model_config = config
    report.window = newest_window(project_path, settings.window_days)
    params = runtime_params(report.window, config, settings.min_improvement)
    check_model_config(project_path, TRAIN_ENV, params, config, before)

    trained = runner(project_path, TRAIN_ENV, TRAIN_JOB, params)
    report.steps.append(trained)
    _take_values(report, trained)
    challenger = registry.alias_version(client, model_name, challenger_alias)
    report.challenger = None if challenger is None else str(challenger.version)
    if trained.outcome in {"failed", "rejected"}:
        return _finish(report, client, trained.outcome, _step_reason(trained))
    identical = trained.gate.get("unchanged_version")
    if trained.outcome == "unchanged" and (
        report.challenger is None
        or identical != report.challenger
        or report.challenger == before
    ):
        return _finish(
            report,
            client,
            "unchanged",
            f"{trained.gate.get('reason', 'the candidate is identical')} Champion "
            f"version {before} stays.",
        )
    if report.challenger == before:
        return _finish(
            report,
            client,
            "unchanged",
            f"The challenger is already champion version {before}.",
        )
    job = str(globals_.get("default_pipeline", "__default__"))
    promoted = runner(project_path, PROMOTE_ENV, job, params)
    report.steps.append(promoted)
    _take_values(report, promoted)
    if promoted.outcome in {"failed", "rejected"}:
        return _finish(report, client, promoted.outcome, _step_reason(promoted))
    return _finish(report, client, "promoted", promoted.gate.get("reason", ""))


def _take_values(report: RetrainReport, step: StepResult) -> None:
    """The gate's metric, the old champion's and the candidate's value on the test set."""
    if "metric" in step.gate:
        report.metric = step.gate["metric"]
        report.candidate_value = _float(step.gate.get("candidate_value"))
        report.champion_value = _float(step.gate.get("incumbent_value"))


def _step_reason(step: StepResult) -> str:
    where = f"{step.pipeline} in env '{step.env}'"
    if step.outcome == "rejected":
        return f"{where}: {step.error} Champion unchanged."
    return f"{where} failed: {step.error} Nothing was promoted."


def _finish(
    report: RetrainReport, client: MlflowClient, outcome: str, reason: str
) -> RetrainReport:
    """Read the champion back (every registry write is checked) and settle."""
    after = registry.alias_version(client, str(report.model_name), report.alias)
    report.champion_after = None if after is None else str(after.version)
    moved = report.champion_after != report.champion_before
    if outcome == "promoted" and not moved:
        outcome = "unchanged"
        reason = f"{reason} The champion did not move (still {report.champion_after})."
    elif outcome != "promoted" and moved:
        # Never expected: say it loudly rather than report a quiet outcome.
        outcome = "failed"
        reason = (
            f"{reason} Yet the champion moved {report.champion_before} -> "
            f"{report.champion_after}: check `kedro models history --env "
            f"{PROMOTE_ENV}`."
        )
    report.outcome = outcome
    report.reason = reason.strip()
    logger.info("Retraining %s", report.summary())
    return report


def report_error(error: ModelopsError) -> RetrainReport:
    """A report for an error raised before any step ran (config, no champion)."""
    return RetrainReport(outcome="failed", reason=f"{type(error).__name__}: {error}")
