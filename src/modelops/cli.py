"""Project commands (`kedro simulate`, ...): thin shells over functions tests can call."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
import mlflow
import yaml
from kedro.framework.cli.project import run as kedro_run
from kedro.framework.project import LOGGING, settings
from kedro.framework.startup import bootstrap_project
from kedro.utils import find_kedro_project
from mlflow.tracking import MlflowClient

from modelops import registry, simulator
from modelops.errors import ConfigError, ModelopsError, modelops_cause
from modelops.project_config import load_config
from modelops.tracking import tracking_uri

SOURCE_DATASET = "source_partitions"
LOGGING_FILE = Path("conf") / "logging.yml"


def project_root(start: Path | None = None) -> Path:
    """The root of the Kedro project holding ``start`` (default: the working dir).

    Found as Kedro finds it (``kedro.utils.find_kedro_project``): ``start`` itself or
    the nearest parent with a pyproject.toml that has a ``[tool.kedro]`` section.

    Raises:
        ConfigError: no folder at or above ``start`` is a Kedro project.
    """
    start = (start or Path.cwd()).resolve()
    root = find_kedro_project(start)
    if root is None:
        raise ConfigError(
            f"No Kedro project at or above '{start}': project commands run inside the "
            f"project, in its root or any folder below it (the root holds the "
            f"pyproject.toml with a [tool.kedro] section).\nHint: cd into the modelops "
            f"project and run the command again."
        )
    return Path(root)


def apply_logging(config_file: Path) -> bool:
    """Apply a logging config file through Kedro's LOGGING; capture warnings into it.

    Returns:
        False if the file does not exist (the logging in force is left as it is).
    """
    if not config_file.is_file():
        return False
    LOGGING.configure(yaml.safe_load(config_file.read_text(encoding="utf-8")))
    logging.captureWarnings(True)
    return True


def enter_project(*, required: bool = True) -> Path:
    """Make the project root the working directory and apply the project's logging.

    Kedro resolves the catalog's relative paths (``data/<env>/...``) and this project
    its MLflow store (``mlruns/``) against the working directory, and Kedro reads
    ``conf/logging.yml`` relative to it when it is imported, before any project code
    runs. So every project command starts here: it moves to the root, found from any
    folder inside the project as Kedro's own commands find it, and applies the logging
    file again (KEDRO_LOGGING_CONFIG if set, else ``conf/logging.yml``). A command
    started in ``conf/`` or ``src/modelops/`` then reads, writes and logs exactly as
    from the root. Re-applying also undoes what imports did meanwhile (MLflow attaches
    its own log handler when imported).

    Args:
        required: Refuse to run outside a project. ``kedro run`` passes False: the
            packaged project (``python -m modelops``) runs without one, from its conf
            archive (``--conf-source``), in the working directory.

    Raises:
        ConfigError: ``required`` and no project holds the working directory.
    """
    chosen = os.environ.get("KEDRO_LOGGING_CONFIG")
    # Resolved before moving: a relative KEDRO_LOGGING_CONFIG is meant from here.
    user_file = Path(chosen).resolve() if chosen else None
    try:
        root = project_root()
    except ConfigError:
        if required:
            raise
        return Path.cwd()
    os.chdir(root)
    apply_logging(user_file or root / LOGGING_FILE)
    return root


def source_path(project_path: Path, env: str, dataset: str = SOURCE_DATASET) -> Path:
    """Where the production source partitions lie, as the env's catalog says."""
    catalog = load_config(project_path, env, "catalog")
    if dataset not in catalog or "path" not in catalog[dataset]:
        raise ConfigError(
            f"Dataset '{dataset}' with a 'path' is not in the '{env}' catalog.\n"
            f"Hint: declare it as a PartitionedDataset in conf/base/catalog.yml."
        )
    path = Path(catalog[dataset]["path"])
    return path if path.is_absolute() else project_path / path


def simulate(  # noqa: PLR0913
    project_path: Path,
    *,
    start: dt.date,
    days: int,
    seed: int = 42,
    stations: int = 50,
    drift: str = "none",
    corrupt: str = "none",
    overwrite: bool = False,
    env: str = "dev",
) -> simulator.SimulationSummary:
    """Write simulated production-source partitions where the catalog reads them."""
    return simulator.write_source(
        source_path(project_path, env),
        start,
        days,
        seed=seed,
        n_stations=stations,
        drift=drift,
        corrupt=corrupt,
        overwrite=overwrite,
    )


def default_pipeline(project_path: Path, env: str | None) -> str:
    """The job a bare `kedro run --env X` runs: ``default_pipeline`` in X's globals."""
    env = env or settings.CONFIG_LOADER_ARGS["default_run_env"]
    return str(
        load_config(project_path, env, "globals").get("default_pipeline", "__default__")
    )


def registry_client(
    project_path: Path, env: str
) -> tuple[MlflowClient, dict[str, Any]]:
    """An MLflow client on the project's store, and the env's globals."""
    globals_ = load_config(project_path, env, "globals")
    uri = tracking_uri()
    mlflow.set_tracking_uri(uri)
    return MlflowClient(uri), globals_


def env_policy(project_path: Path, env: str) -> registry.AliasPolicy:
    """The env's access policy, as the run hooks load it."""
    from modelops.access import load_policy  # noqa: PLC0415 (cli stays importable alone)

    bootstrap_project(project_path)
    loader = settings.CONFIG_LOADER_CLASS(
        conf_source=str(project_path / settings.CONF_SOURCE),
        env=env,
        **settings.CONFIG_LOADER_ARGS,
    )
    return load_policy(loader, env, project_path)


def models_history(project_path: Path, env: str) -> list[registry.AliasMove]:
    """Every alias move of the env's registered model, oldest first."""
    client, globals_ = registry_client(project_path, env)
    return registry.alias_history(client, globals_["registered_model_name"])


def rollback_alias(
    project_path: Path, env: str, to_version: str | None
) -> registry.AliasMove:
    """Move the env's alias back to its previous (or the given) approved version."""
    client, globals_ = registry_client(project_path, env)
    return registry.rollback(
        client,
        globals_["registered_model_name"],
        globals_["alias"],
        policy=env_policy(project_path, env),
        approving_aliases=list(globals_["approving_aliases"]),
        to_version=to_version,
    )


def lineage(
    project_path: Path, env: str, *, alias: str | None, version: str | None
) -> dict[str, Any]:
    """The lineage chain of a registered version, named by alias or number."""
    client, globals_ = registry_client(project_path, env)
    name = globals_["registered_model_name"]
    if version is None:
        alias = alias or globals_["alias"]
        found = registry.alias_version(client, name, alias)
        if found is None:
            raise registry.RegistryError(
                f"No version of '{name}' has the alias '{alias}'.\nHint: see `kedro "
                f"models history`, or ask for one with --version N."
            )
        version = str(found.version)
    return registry.version_lineage(client, name, version)


def with_clean_errors(
    command: click.Command, *, default_job: bool = False
) -> click.Command:
    """The same command, printing a ModelopsError as a plain message, not a traceback.

    A contract violation or a config mistake is the user's to fix: the message says
    what and where; a stack trace through Kedro and pandas would only bury it. With
    ``default_job``, a run without --pipelines runs the env's ``default_pipeline``.
    """
    callback: Callable[..., object] = command.callback  # type: ignore[assignment]

    def clean_callback(**kwargs: Any) -> object:
        try:
            enter_project(required=False)  # from any folder of the project
            if (
                default_job
                and not kwargs.get("pipelines")
                and not kwargs.get("pipeline")
            ):
                job = default_pipeline(Path.cwd(), kwargs.get("env"))
                if job != "__default__":
                    click.echo(f"Running the env's default job: {job}")
                kwargs["pipelines"] = [job]
            return callback(**kwargs)
        except Exception as err:
            cause = modelops_cause(err)
            if cause is None:
                raise
            raise click.ClickException(f"{type(cause).__name__}: {cause}") from None

    return click.Command(
        name=command.name,
        params=command.params,
        callback=clean_callback,
        help=command.help,
        short_help=command.short_help,
        context_settings=command.context_settings,
    )


@click.group(name="modelops")
def cli() -> None:
    """modelops project commands."""


# `kedro run` (and the packaged `modelops` entry point, which looks for `run` here).
run = with_clean_errors(kedro_run, default_job=True)
cli.add_command(run)


def _clean(function: Callable[..., Any]) -> Callable[..., Any]:
    """A project command: run from the project root; a ModelopsError is a plain message.

    The command runs with the project root as working directory (``enter_project``),
    whichever folder of the project it was started in, so ``Path.cwd()`` in it is the
    root. A ModelopsError becomes its message and exit code 1.
    """

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            enter_project()
            return function(*args, **kwargs)
        except ModelopsError as err:
            raise click.ClickException(f"{type(err).__name__}: {err}") from None

    wrapper.__name__ = function.__name__
    wrapper.__doc__ = function.__doc__
    return wrapper


# Read-only registry questions default to prod's view.
env_option = click.option(
    "--env",
    "-e",
    default="prod",
    show_default=True,
    help="Env whose registry view to use.",
)
# Commands that change state say the env explicitly: no default, a missing --env is
# a usage error, so a typo or a forgotten flag can never move prod's alias.
required_env_option = click.option(
    "--env",
    "-e",
    required=True,
    help="Env whose alias to move (prod: champion); required, no default.",
)


@cli.group("models")
def models_group() -> None:
    """Questions about the registered model."""


@models_group.command("history")
@env_option
@click.option(
    "--json", "as_json", is_flag=True, help="Print one JSON array, oldest first."
)
@_clean
def history_command(env: str, as_json: bool) -> None:
    """Every alias move (promotion, rollback): which, from, to, when, by whom, why."""
    moves = models_history(Path.cwd(), env)
    if as_json:  # exactly one JSON document on stdout (logs go to stderr)
        click.echo(json.dumps([dataclasses.asdict(move) for move in moves], indent=2))
        return
    if not moves:
        click.echo("No alias has been set yet.")
    for move in moves:
        click.echo(
            f"#{move.seq} {move.at} {move.alias}: {move.from_version or '-'} -> "
            f"{move.to_version} [{move.kind} by env {move.env}, run "
            f"{move.run_id or '-'}] {move.reason}"
        )


@cli.command("rollback")
@required_env_option
@click.option(
    "--to-version", default=None, help="Version to return to (default: previous)."
)
@_clean
def rollback_command(env: str, to_version: str | None) -> None:
    """Move the env's alias (prod: champion) back to its previous approved version."""
    move = rollback_alias(Path.cwd(), env, to_version)
    click.echo(
        f"{move.alias}: {move.from_version} -> {move.to_version} (recorded as history "
        f"#{move.seq}). Services that follow @{move.alias} pick it up on their next poll."
    )


@cli.command("lineage")
@env_option
@click.option("--alias", default=None, help="Version by alias (default: the env's).")
@click.option("--version", "version", default=None, help="Version by number.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@_clean
def lineage_command(
    env: str, alias: str | None, version: str | None, as_json: bool
) -> None:
    """The chain behind a model version: code, data, parameters, metrics."""
    chain = lineage(Path.cwd(), env, alias=alias, version=version)
    if as_json:
        click.echo(json.dumps(chain, indent=2, sort_keys=True))
        return
    click.echo(f"{chain['model_name']} version {chain['version']} {chain['aliases']}")
    click.echo(f"  git commit   {chain['git_commit']} (dirty: {chain['git_dirty']})")
    click.echo(f"  env / run    {chain['env']} / {chain['run_id']}")
    click.echo(
        f"  model        {chain['model_class']} {json.dumps(chain['model_config'])}"
    )
    for part in ("train_set", "test_set"):
        click.echo(
            f"  {part:<12} sha256 {chain[part]['sha256']}\n{'':15}at {chain[part]['path']}"
        )
    source = chain["source"]
    click.echo(
        f"  source       {source['first_partition']} .. {source['last_partition']} "
        f"({source['partition_count']} partitions, {source['rows']} rows)"
    )
    metrics = ", ".join(f"{k}={v:.4g}" for k, v in sorted(chain["metrics"].items()))
    click.echo(f"  metrics      {metrics}")
    click.echo(f"  parameters   {len(chain['params'])} logged on the run (see --json)")


@cli.command("simulate")
@click.option(
    "--start",
    required=True,
    type=click.DateTime(formats=["%Y-%m-%d"]),
    help="First day to write (YYYY-MM-DD); drift and corruption start here.",
)
@click.option("--days", required=True, type=click.IntRange(min=1), help="Days.")
@click.option("--seed", default=42, show_default=True, type=int, help="RNG seed.")
@click.option("--stations", default=50, show_default=True, type=click.IntRange(1))
@click.option(
    "--drift",
    default="none",
    show_default=True,
    type=click.Choice(simulator.DRIFT_KINDS),
    help="Change the data this way from --start on.",
)
@click.option(
    "--corrupt",
    default="none",
    show_default=True,
    type=click.Choice(simulator.CORRUPT_KINDS),
    help="Write broken partitions that the data contract must catch.",
)
@click.option("--overwrite", is_flag=True, help="Replace partitions that exist.")
@click.option(
    "--if-missing",
    is_flag=True,
    help="Do nothing if the source already holds partitions (used by `make run`).",
)
@click.option(
    "--env",
    "-e",
    default="dev",
    show_default=True,
    help="Env whose catalog says where the source lies (all envs share it).",
)
def simulate_command(  # noqa: PLR0913, PLR0917
    start: dt.datetime,
    days: int,
    seed: int,
    stations: int,
    drift: str,
    corrupt: str,
    overwrite: bool,
    if_missing: bool,
    env: str,
) -> None:
    """Write production-source partitions (stand-in for the upstream feed)."""
    try:
        enter_project()  # from any folder of the project
        if if_missing:
            existing = sorted(source_path(Path.cwd(), env).glob("*.parquet"))
            if existing:
                click.echo(
                    f"Production source exists ({len(existing)} partitions, "
                    f"{existing[0].stem} .. {existing[-1].stem}); not simulating."
                )
                return
        summary = simulate(
            Path.cwd(),
            start=start.date(),
            days=days,
            seed=seed,
            stations=stations,
            drift=drift,
            corrupt=corrupt,
            overwrite=overwrite,
            env=env,
        )
    except (ModelopsError, simulator.SimulatorError) as err:
        raise click.ClickException(str(err)) from err
    click.echo(
        f"Wrote {summary.partitions} partitions ({summary.first_day} .. "
        f"{summary.last_day}, {summary.rows} rows) to {summary.output_dir}"
    )


@cli.command("serve")
@click.option(
    "--env",
    "-e",
    default="prod",
    show_default=True,
    help="Env whose registry alias to serve (globals `alias`).",
)
@click.option(
    "--host", default="127.0.0.1", show_default=True, help="Address to listen on."
)
@click.option("--port", default=8000, show_default=True, type=click.IntRange(0, 65535))
@_clean
def serve_command(env: str, host: str, port: int) -> None:
    """The REST service: /invocations, /health, /model, /reload; follows the env's alias."""
    from modelops.service.server import serve  # noqa: PLC0415 (OMP_NUM_THREADS first)

    serve(Path.cwd(), env, host, port)


# --- kedro cleanup (issue #10): remove stored data no needed model version refers to.
@cli.command("cleanup")
@click.option(
    "--env",
    "-e",
    required=True,
    help="Env whose own zone (data/<env>) to clean; required, no default.",
)
@click.option(
    "--apply",
    "apply_changes",
    is_flag=True,
    help="Remove what is listed (default: a dry run that removes nothing).",
)
@click.option(
    "--json", "as_json", is_flag=True, help="Print one JSON document on stdout."
)
@_clean
def cleanup_command(env: str, apply_changes: bool, as_json: bool) -> None:
    """List (or, with --apply, remove) stored data no needed model version refers to.

    Kept: the lineage of every version holding an alias or approved within
    cleanup.retention_days (conf/base/parameters_cleanup.yml), prediction logs it
    scored, and anything newer than that window.
    """
    from modelops.cleanup import run_cleanup  # noqa: PLC0415 (cli stays light)

    plan = run_cleanup(Path.cwd(), env, apply=apply_changes)
    if as_json:  # exactly one JSON document on stdout (logs go to stderr)
        click.echo(json.dumps(plan.as_dict(), indent=2))
        return
    verb = "Removed" if plan.applied else "Would remove"
    for item in plan.to_remove:
        click.echo(
            f"{verb} {item.path} [{item.kind}, {item.bytes} bytes]: {item.reason}"
        )
    kept = [item for item in plan.decisions if item.action == "keep"]
    for item in kept:
        click.echo(f"Keep {item.path} [{item.kind}, {item.bytes} bytes]: {item.reason}")
    click.echo(
        f"{verb} {len(plan.to_remove)} item(s), {plan.bytes_freed} bytes, from "
        f"{plan.zone_root}; kept {len(kept)} (versions kept: "
        f"{', '.join(plan.kept_versions) or 'none'})."
        + ("" if plan.applied else " Dry run: nothing removed; add --apply.")
    )


# --- `kedro retrain` (issue #10): acceptance's deployment job on the newest window,
# then prod's promotion job; the logic is modelops.retraining.retrain.
@cli.command("retrain")
@click.option(
    "--on-verdict",
    is_flag=True,
    help="Retrain only if retraining.trigger_on_drift is true and prod's newest "
    "monitoring verdict recommends it; otherwise exit 0 saying why not.",
)
@click.option(
    "--json", "as_json", is_flag=True, help="Print one JSON document on stdout."
)
def retrain_command(on_verdict: bool, as_json: bool) -> None:
    """Retrain the champion's config on the newest window; promote only on a pass."""
    from modelops import retraining  # noqa: PLC0415 (imports Kedro's session on use)

    try:
        enter_project()  # from any folder of the project
        report = retraining.retrain(Path.cwd(), on_verdict=on_verdict)
    except ModelopsError as err:
        if not as_json:
            raise click.ClickException(f"{type(err).__name__}: {err}") from None
        report = retraining.report_error(err)
    if as_json:  # exactly one JSON document on stdout (logs go to stderr)
        click.echo(json.dumps(report.as_dict(), indent=2, sort_keys=True))
    else:
        click.echo(report.summary())
    if report.exit_code:
        raise SystemExit(report.exit_code)
