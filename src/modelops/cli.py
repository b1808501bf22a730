"""Project commands (`kedro simulate`, ...): thin shells over functions tests can call."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
from kedro.framework.cli.project import run as kedro_run
from kedro.framework.project import settings
from kedro.framework.startup import bootstrap_project

from modelops import simulator
from modelops.errors import ConfigError, ModelopsError

SOURCE_DATASET = "source_partitions"


def load_config(project_path: Path, env: str, key: str) -> dict[str, Any]:
    """Read one kind of config (catalog, parameters, ...) as an env sees it.

    No session is created, so no hook runs and nothing is written.
    """
    bootstrap_project(project_path)
    loader = settings.CONFIG_LOADER_CLASS(
        conf_source=str(project_path / settings.CONF_SOURCE),
        env=env,
        **settings.CONFIG_LOADER_ARGS,
    )
    return dict(loader[key])


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


def with_clean_errors(command: click.Command) -> click.Command:
    """The same command, printing a ModelopsError as a plain message, not a traceback.

    A contract violation or a config mistake is the user's to fix: the message says
    what and where; a stack trace through Kedro and pandas would only bury it.
    """
    callback: Callable[..., object] = command.callback  # type: ignore[assignment]

    def clean_callback(**kwargs: object) -> object:
        try:
            return callback(**kwargs)
        except ModelopsError as err:
            raise click.ClickException(f"{type(err).__name__}: {err}") from None

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
run = with_clean_errors(kedro_run)
cli.add_command(run)


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
