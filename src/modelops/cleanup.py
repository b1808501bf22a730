"""Cleanup: remove stored data of an env's zone that no needed model version refers to."""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import re
import shutil
import time
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from modelops import registry
from modelops.access import AccessPolicy
from modelops.batch_datasets import STAGING_SUFFIX
from modelops.errors import ConfigError
from modelops.prediction_log import MODEL_VERSION
from modelops.project_config import load_config
from modelops.registry import RegistryError
from modelops.tracking import tracking_uri

logger = logging.getLogger(__name__)

CONF_FILE = "conf/base/parameters_cleanup.yml"
# A Kedro save version, e.g. 2025-03-24T10.15.00.123Z (kedro.io.core.VERSION_FORMAT).
SAVE_VERSION = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}\.\d{2}\.\d{2}\.\d{3}Z$")
SHA256_NAME = re.compile(r"^[0-9a-f]{64}$")
REST_DAY = re.compile(r"^\d{4}-\d{2}-\d{2}$")
SAVED_TAG_PREFIX = "modelops.saved."
TRASH_DIR = ".cleanup-trash"
TMP_SUFFIX = ".tmp"
DETAIL_CHARS = 240  # of a registry error quoted in ours
VERSIONED_KINDS = frozenset({"versioned", "prediction_log"})
LINEAGE_KINDS = frozenset({"content_addressed", "versioned"})


def parse_save_version(name: str) -> dt.datetime | None:
    """The UTC time of a Kedro save version name, or None if it is not one."""
    if not SAVE_VERSION.match(name):
        return None
    return dt.datetime.strptime(name, "%Y-%m-%dT%H.%M.%S.%fZ").replace(tzinfo=dt.UTC)


def save_versions_in(path: str) -> set[str]:
    """The Kedro save versions named by the components of ``path``."""
    return {part for part in Path(path).parts if SAVE_VERSION.match(part)}


# --- settings ----------------------------------------------------------------------


@dataclass(frozen=True)
class CleanupSettings:
    """The ``cleanup`` block of conf/base/parameters_cleanup.yml."""

    retention_days: float = 30.0
    staging_max_age_hours: float = 24.0
    content_addressed: tuple[str, ...] = ("train_set", "test_set")
    versioned: tuple[str, ...] = (
        "model_input_table",
        "trained_model",
        "test_predictions",
    )
    prediction_logs: tuple[str, ...] = ("batch_prediction_log", "batch_predictions")
    rest_prediction_log: str | None = "serving_api.prediction_log.path"

    @classmethod
    def from_params(cls, params: Mapping[str, Any] | None) -> CleanupSettings:
        """Validate the ``cleanup`` parameters.

        Raises:
            ConfigError: a key is unknown or a value has the wrong type.
        """
        if params is None:
            raise ConfigError(
                f"No cleanup parameters: the env's parameters have no 'cleanup' "
                f"block.\nHint: restore {CONF_FILE}."
            )
        known = {f for f in cls.__dataclass_fields__}
        unknown = sorted(set(params) - known)
        if unknown:
            raise ConfigError(
                f"Unknown key(s) {unknown} under cleanup: in {CONF_FILE}; expected "
                f"only {sorted(known)}.\nHint: is this a typo?"
            )
        values: dict[str, Any] = {}
        for key in ("retention_days", "staging_max_age_hours"):
            if key in params:
                value = params[key]
                if (
                    isinstance(value, bool)
                    or not isinstance(value, int | float)
                    or value < 0
                ):
                    raise ConfigError(
                        f"cleanup.{key} in {CONF_FILE} must be a number >= 0, got "
                        f"{value!r}.\nHint: e.g. {key}: 30."
                    )
                values[key] = float(value)
        for key in ("content_addressed", "versioned", "prediction_logs"):
            if key in params:
                value = params[key]
                if isinstance(value, str) or not isinstance(value, Iterable):
                    raise ConfigError(
                        f"cleanup.{key} in {CONF_FILE} must be a list of catalog "
                        f"entry names, got {value!r}.\nHint: write it as [name, ...]."
                    )
                values[key] = tuple(str(item) for item in value)
        if "rest_prediction_log" in params:
            value = params["rest_prediction_log"]
            values["rest_prediction_log"] = None if value in {None, ""} else str(value)
        return cls(**values)


# --- what the registry says ----------------------------------------------------------


@dataclass
class RegistryFacts:
    """What the registry says must be kept, by version; built once per cleanup.

    Attributes:
        kept_versions: version number -> why it is kept (alias, approval date).
        shas: train/test set sha256 -> why it is kept.
        save_versions: Kedro save version -> why its folders are kept.
        unknown_lineage: kept versions whose tags name none of their files.
    """

    kept_versions: dict[str, str] = field(default_factory=dict)
    shas: dict[str, str] = field(default_factory=dict)
    save_versions: dict[str, str] = field(default_factory=dict)
    unknown_lineage: list[str] = field(default_factory=list)

    def keep_run_tags(self, tags: Mapping[str, str], why: str) -> bool:
        """Keep what a run (or version) with these tags saved; True if it names any."""
        found = False
        for key in ("modelops.train_sha256", "modelops.test_sha256"):
            sha = tags.get(key)
            if sha:
                self.shas.setdefault(sha, why)
                found = True
        for key, value in tags.items():
            if not key.startswith(SAVED_TAG_PREFIX):
                continue
            stem = Path(value).stem
            if SHA256_NAME.match(stem):  # a content-addressed train/test set
                self.shas.setdefault(stem, why)
                found = True
            for version in save_versions_in(value):
                self.save_versions.setdefault(version, why)
                found = True
        run_version = tags.get("modelops.kedro_run_id", "")
        if SAVE_VERSION.match(run_version):  # Kedro's save version = session id
            self.save_versions.setdefault(run_version, why)
        return found


def _ms(moment: dt.datetime) -> int:
    return int(moment.timestamp() * 1000)


def _at(ms: int | None) -> str:
    if ms is None:
        return "unknown time"
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).isoformat(timespec="seconds")


def registry_facts(
    client: MlflowClient,
    model_name: str,
    *,
    retention_days: float,
    now: dt.datetime,
) -> RegistryFacts:
    """Which versions, data hashes and run save versions the registry still needs.

    A version is kept if an alias points to it now, or it was registered or an alias
    moved to it within ``retention_days``. For each kept version, its own tags and
    those of the runs that trained it or moved an alias to it name the files to
    keep. Runs started within the retention window, or still running, keep what they
    saved too.

    Raises:
        RegistryError: the registry cannot be read, or holds no such model (a wrong
            tracking URI must never make everything look unneeded).
    """
    uri = str(client.tracking_uri)
    cutoff = now - dt.timedelta(days=retention_days)
    try:
        model = client.get_registered_model(model_name)
    except MlflowException as err:
        if err.error_code == "RESOURCE_DOES_NOT_EXIST":
            raise RegistryError(
                f"The registry at '{uri}' holds no model named '{model_name}', so "
                f"cleanup cannot tell what the lineage of its versions needs and "
                f"removes nothing.\nHint: check MLFLOW_TRACKING_URI (default: "
                f"mlruns/mlflow.db in the project) and registered_model_name in "
                f"conf/base/use_case.yml; run the deployment job first if nothing is "
                f"registered yet."
            ) from err
        raise _unreachable(uri, err) from err
    except Exception as err:
        raise _unreachable(uri, err) from err
    try:
        return _facts(client, model_name, dict(model.aliases or {}), cutoff)
    except MlflowException as err:
        raise _unreachable(uri, err) from err


def _unreachable(uri: str, err: BaseException) -> RegistryError:
    detail = (str(err).splitlines() or [""])[0]
    if len(detail) > DETAIL_CHARS:
        detail = f"{detail[:DETAIL_CHARS]}..."
    return RegistryError(
        f"Cannot read the model registry at '{uri}' ({type(err).__name__}: "
        f"{detail}), so cleanup removes nothing.\nHint: start the tracking "
        f"server or point MLFLOW_TRACKING_URI at it (default: mlruns/mlflow.db in the "
        f"project), then run `kedro cleanup` again."
    )


def _facts(
    client: MlflowClient,
    model_name: str,
    aliases: Mapping[str, Any],
    cutoff: dt.datetime,
) -> RegistryFacts:
    facts = RegistryFacts()
    aliased: dict[str, list[str]] = {}
    for alias, number in aliases.items():
        aliased.setdefault(str(number), []).append(str(alias))
    quoted = model_name.replace("'", "''")
    versions = {
        str(version.version): version
        for version in client.search_model_versions(f"name = '{quoted}'")
    }
    moves = registry.alias_history(client, model_name)
    for number, version in sorted(versions.items(), key=lambda item: int(item[0])):
        reasons = []
        if number in aliased:
            reasons.append(f"alias {', '.join(sorted(aliased[number]))}")
        created = version.creation_timestamp
        if created is not None and created >= _ms(cutoff):
            reasons.append(f"registered {_at(created)}")
        recent_moves = [
            move
            for move in moves
            if move.to_version == number
            and dt.datetime.fromisoformat(move.at) >= cutoff
        ]
        reasons += [f"{move.alias} moved to it {move.at}" for move in recent_moves]
        if not reasons:
            continue
        why = f"version {number} ({'; '.join(reasons)})"
        facts.kept_versions[number] = why
        tags = client.get_model_version(model_name, number).tags  # search omits some
        named = facts.keep_run_tags({**version.tags, **tags}, f"lineage of {why}")
        run_ids = {version.run_id} | {
            move.run_id for move in moves if move.to_version == number
        }
        for run_id in sorted(filter(None, run_ids)):
            tags = _run_tags(client, run_id)
            named = (
                facts.keep_run_tags(tags, f"saved by run {run_id} of {why}") or named
            )
        if not named:
            facts.unknown_lineage.append(number)
    for run in _recent_runs(client, cutoff):
        facts.keep_run_tags(
            run.data.tags,
            f"saved by run {run.info.run_id} ({run.info.status}, started "
            f"{_at(run.info.start_time)}, within the retention window)",
        )
    return facts


def _run_tags(client: MlflowClient, run_id: str) -> dict[str, str]:
    try:
        return dict(client.get_run(run_id).data.tags)
    except MlflowException as err:
        if err.error_code == "RESOURCE_DOES_NOT_EXIST":
            return {}
        raise


def _recent_runs(client: MlflowClient, cutoff: dt.datetime) -> list[Any]:
    """Runs started after ``cutoff`` or still running, in every experiment."""
    experiment_ids = [e.experiment_id for e in client.search_experiments()]
    if not experiment_ids:
        return []
    found: dict[str, Any] = {}
    for query in (
        f"attributes.start_time >= {_ms(cutoff)}",
        "attributes.status = 'RUNNING'",
    ):
        token = None
        while True:
            page = client.search_runs(
                experiment_ids, query, max_results=1000, page_token=token
            )
            found.update({run.info.run_id: run for run in page})
            token = page.token
            if not token:
                break
    return list(found.values())


# --- what the zone holds -------------------------------------------------------------


@dataclass
class Candidate:
    """One removable unit of stored data (a file or a whole version folder)."""

    path: Path
    kind: str  # content_addressed | versioned | prediction_log | rest_log | staging
    dataset: str
    bytes: int
    written_at: dt.datetime
    save_version: str | None = None
    sha256: str | None = None
    model_versions: set[str] | None = None
    unreadable: str | None = None
    newest: bool = False


@dataclass(frozen=True)
class Decision:
    """What cleanup does with one candidate, and why."""

    path: str
    kind: str
    dataset: str
    bytes: int
    action: str  # "remove" | "keep"
    reason: str


@dataclass
class CleanupPlan:
    """Every candidate of the env's zone and the decision on it."""

    env: str
    zone_root: str
    retention_days: float
    computed_at: str
    kept_versions: dict[str, str]
    decisions: list[Decision]
    applied: bool = False
    removed: list[str] = field(default_factory=list)

    @property
    def to_remove(self) -> list[Decision]:
        """The decisions that remove."""
        return [d for d in self.decisions if d.action == "remove"]

    @property
    def bytes_freed(self) -> int:
        """Bytes the removals free (or would free, in a dry run)."""
        return sum(d.bytes for d in self.to_remove)

    def as_dict(self) -> dict[str, Any]:
        """The plan as one JSON-able document."""
        return {
            "env": self.env,
            "zone_root": self.zone_root,
            "retention_days": self.retention_days,
            "computed_at": self.computed_at,
            "dry_run": not self.applied,
            "kept_versions": self.kept_versions,
            "remove": [asdict(d) for d in self.to_remove],
            "keep": [asdict(d) for d in self.decisions if d.action == "keep"],
            "bytes_freed": self.bytes_freed,
            "removed": self.removed,
        }


def _size(path: Path) -> int:
    if path.is_symlink() or path.is_file():
        return path.lstat().st_size
    total = 0
    for folder, _dirs, files in os.walk(path):
        total += sum((Path(folder) / name).lstat().st_size for name in files)
    return total


def _mtime(path: Path) -> dt.datetime:
    """The newest modification time of ``path`` or anything below it."""
    newest = path.lstat().st_mtime
    if path.is_dir() and not path.is_symlink():
        for folder, dirs, files in os.walk(path):
            for name in (*dirs, *files):
                newest = max(newest, (Path(folder) / name).lstat().st_mtime)
    return dt.datetime.fromtimestamp(newest, dt.UTC)


def _model_versions(files: list[Path]) -> set[str]:
    """The ``model_version`` values of parquet files, from footers where possible."""
    found: set[str] = set()
    for path in files:
        metadata = pq.ParquetFile(path).metadata
        names = metadata.schema.names
        if MODEL_VERSION not in names:
            raise ValueError(f"'{path.name}' has no column '{MODEL_VERSION}'")
        column = names.index(MODEL_VERSION)
        stats = [
            metadata.row_group(i).column(column).statistics
            for i in range(metadata.num_row_groups)
        ]
        if stats and all(s is not None and s.has_min_max for s in stats):
            if all(s.min == s.max for s in stats):
                found.update(str(s.min) for s in stats)
                continue
        table = pq.read_table(path, columns=[MODEL_VERSION])
        found.update(str(v) for v in table.column(0).unique().to_pylist())
    return found


def _parquet_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*.parquet") if not p.name.startswith("."))


@dataclass
class ZoneScanner:
    """Lists the candidates of an env's zone from its catalog and parameters.

    Attributes:
        project_path: The project root (relative catalog paths start there).
        env: The env whose zone is scanned.
        policy: Its access policy: every path scanned must be writable by it.
        settings: The cleanup settings.
        catalog: The env's resolved catalog config.
        params: The env's resolved parameters.
        zone_root: The env's own zone (globals zone_root), absolute.
    """

    project_path: Path
    env: str
    policy: AccessPolicy
    settings: CleanupSettings
    catalog: Mapping[str, Any]
    params: Mapping[str, Any]
    zone_root: Path

    def _entry_path(self, name: str, key: str) -> Path:
        entry = self.catalog.get(name)
        if not isinstance(entry, Mapping) or key not in entry:
            raise ConfigError(
                f"Catalog entry '{name}' (listed in cleanup in {CONF_FILE}) has no "
                f"'{key}' in the '{self.env}' catalog.\nHint: remove it from cleanup "
                f"in {CONF_FILE}, or declare it in conf/base/catalog*.yml."
            )
        return self._own(name, str(entry[key]))

    def _own(self, name: str, path: str) -> Path:
        """The path, refused unless the env's policy lets it write there."""
        self.policy.check_write(name, path)  # AccessPolicyError names the fix
        local = Path(path)
        return local if local.is_absolute() else self.project_path / local

    def rest_log_path(self) -> Path | None:
        """The REST prediction log folder, from the parameter cleanup names."""
        key = self.settings.rest_prediction_log
        if not key:
            return None
        value: Any = self.params
        for part in key.split("."):
            if not isinstance(value, Mapping) or part not in value:
                raise ConfigError(
                    f"Parameter '{key}' (cleanup.rest_prediction_log in {CONF_FILE}) "
                    f"is not in the '{self.env}' parameters.\nHint: point it at the "
                    f"parameter holding the REST prediction-log path, or set it to "
                    f"null."
                )
            value = value[part]
        return self._own("rest_prediction_log", str(value))

    def scan(self) -> list[Candidate]:
        """Every candidate, oldest first within each dataset."""
        found: list[Candidate] = []
        for name in self.settings.content_addressed:
            found += self._content_addressed(name, self._entry_path(name, "directory"))
        for name in self.settings.versioned:
            found += self._versioned(name, self._entry_path(name, "filepath"))
        for name in self.settings.prediction_logs:
            found += self._batch_outputs(name, self._entry_path(name, "path"))
        rest = self.rest_log_path()
        if rest is not None:
            found += self._rest_logs(rest)
        trash = self.zone_root / TRASH_DIR
        if trash.is_dir():
            found += [
                Candidate(p, "trash", TRASH_DIR, _size(p), _mtime(p))
                for p in sorted(trash.iterdir())
            ]
        return found

    def _staging(self, path: Path, dataset: str) -> Candidate:
        written = _mtime(path)
        version = parse_save_version(path.name.lstrip(".").split(".partial")[0])
        if version is not None:
            written = max(written, version)
        return Candidate(path, "staging", dataset, _size(path), written)

    def _content_addressed(self, name: str, folder: Path) -> list[Candidate]:
        if not folder.is_dir():
            return []
        newest = None
        index = folder / "index.jsonl"
        if index.is_file():
            lines = index.read_text(encoding="utf-8").splitlines()
            newest = _json_sha(lines[-1]) if lines else None
        found = []
        for path in sorted(folder.iterdir()):
            if path.name.startswith(".") and path.name.endswith(TMP_SUFFIX):
                found.append(self._staging(path, name))
            elif path.suffix == ".parquet" and SHA256_NAME.match(path.stem):
                found.append(
                    Candidate(
                        path,
                        "content_addressed",
                        name,
                        _size(path),
                        _mtime(path),
                        sha256=path.stem,
                        newest=path.stem == newest,
                    )
                )
        return found

    def _versioned(self, name: str, filepath: Path) -> list[Candidate]:
        if not filepath.is_dir():
            return []
        found = []
        for path in sorted(filepath.iterdir()):
            created = parse_save_version(path.name)
            if created is None or not path.is_dir():
                continue  # not a version folder: never touched
            found.append(
                Candidate(
                    path,
                    "versioned",
                    name,
                    _size(path),
                    max(created, _mtime(path)),
                    save_version=path.name,
                )
            )
        if found:
            found[-1].newest = True
        return found

    def _batch_outputs(self, name: str, root: Path) -> list[Candidate]:
        if not root.is_dir():
            return []
        found = []
        for path in sorted(root.iterdir()):
            if path.name.startswith(".") and path.name.endswith(STAGING_SUFFIX):
                found.append(self._staging(path, name))
                continue
            created = parse_save_version(path.name)
            if created is None or not path.is_dir():
                continue
            candidate = Candidate(
                path,
                "prediction_log",
                name,
                _size(path),
                max(created, _mtime(path)),
                save_version=path.name,
            )
            files = _parquet_files(path)
            try:  # one run scores with one model: one file's footer says which
                candidate.model_versions = _model_versions(files[:1])
            except Exception as err:  # any unreadable file is kept
                candidate.unreadable = f"{type(err).__name__}: {err}"
            found.append(candidate)
        committed = [c for c in found if c.kind == "prediction_log"]
        if committed:
            committed[-1].newest = True
        return found

    def _rest_logs(self, root: Path) -> list[Candidate]:
        if not root.is_dir():
            return []
        found = []
        for path in sorted(root.iterdir()):
            if not path.is_dir() or not REST_DAY.match(path.name):
                continue
            candidate = Candidate(
                path, "rest_log", "rest_prediction_log", _size(path), _mtime(path)
            )
            try:  # a day may span an alias move: every file's footer is read
                candidate.model_versions = _model_versions(_parquet_files(path))
            except Exception as err:  # any unreadable file is kept
                candidate.unreadable = f"{type(err).__name__}: {err}"
            found.append(candidate)
        return found


def _json_sha(line: str) -> str | None:
    try:
        return str(json.loads(line)["sha256"])
    except (ValueError, KeyError, TypeError):
        return None


# --- the decision ------------------------------------------------------------------


def decide(
    candidates: list[Candidate],
    facts: RegistryFacts,
    settings: CleanupSettings,
    now: dt.datetime,
) -> list[tuple[Candidate, str, str]]:
    """Keep or remove each candidate, with the reason: ``(candidate, action, why)``.

    Pure: reads only its arguments. Folders of the same run (save version) as a kept
    versioned folder are kept with it.
    """
    cutoff = now - dt.timedelta(days=settings.retention_days)
    staging_cutoff = now - dt.timedelta(hours=settings.staging_max_age_hours)
    first = [
        (c, *_decide_one(c, facts, settings, cutoff, staging_cutoff))
        for c in candidates
    ]
    kept_runs = {
        c.save_version: c
        for c, action, _ in first
        if action == "keep" and c.save_version and c.kind in VERSIONED_KINDS
    }
    decided = []
    for candidate, action, why in first:
        partner = kept_runs.get(candidate.save_version or "")
        if (
            action == "remove"
            and partner is not None
            and candidate.kind in VERSIONED_KINDS
        ):
            decided.append(
                (
                    candidate,
                    "keep",
                    f"same run (save version {candidate.save_version}) as the kept "
                    f"'{partner.dataset}' folder: a run's folders are kept together",
                )
            )
        else:
            decided.append((candidate, action, why))
    return decided


def _decide_one(  # noqa: PLR0911 (one return per rule, in order)
    c: Candidate,
    facts: RegistryFacts,
    settings: CleanupSettings,
    cutoff: dt.datetime,
    staging_cutoff: dt.datetime,
) -> tuple[str, str]:
    written = c.written_at.isoformat(timespec="seconds")
    if c.kind == "trash":
        return "remove", "left over by an interrupted cleanup (already unlinked data)"
    if c.path.is_symlink():
        return "keep", "a symbolic link: cleanup never follows or removes links"
    if c.kind == "staging":
        if c.written_at < staging_cutoff:
            return "remove", (
                f"staging of a run that never committed, untouched since {written} "
                f"(older than staging_max_age_hours={settings.staging_max_age_hours:g})"
            )
        return "keep", f"staging of a run that may still be in progress ({written})"
    if c.written_at >= cutoff:
        return "keep", (
            f"written {written}, within the retention window "
            f"(retention_days={settings.retention_days:g}): a run in progress or "
            f"about to be promoted may need it"
        )
    needed = _needed_by(c, facts)
    if needed is not None:
        return "keep", needed
    kept = ", ".join(sorted(facts.kept_versions, key=_version_key)) or "none"
    if c.kind in {"prediction_log", "rest_log"}:
        scored = ", ".join(sorted(c.model_versions or (), key=_version_key)) or "none"
        what = f"scored only by version(s) {scored}, none of them kept"
    else:
        what = "named by the lineage of no kept version"
    return "remove", (
        f"{what} (kept versions: {kept}); written {written}, older than "
        f"retention_days={settings.retention_days:g}"
    )


def _needed_by(c: Candidate, facts: RegistryFacts) -> str | None:  # noqa: PLR0911
    """Why a candidate older than the retention window is still needed, or None."""
    if c.kind == "content_addressed":
        if c.sha256 in facts.shas:
            return f"{c.dataset} {c.sha256[:12]}: {facts.shas[c.sha256]}"
    elif c.save_version in facts.save_versions:
        return f"run {c.save_version}: {facts.save_versions[c.save_version]}"
    if c.kind in {"prediction_log", "rest_log"}:
        if c.unreadable:
            return f"cannot tell which model scored it ({c.unreadable})"
        scored = sorted(c.model_versions or (), key=_version_key)
        needed = [v for v in scored if v in facts.kept_versions]
        if needed:
            return "scored by " + "; ".join(facts.kept_versions[v] for v in needed)
    if c.kind in LINEAGE_KINDS and facts.unknown_lineage:
        return (
            f"kept version(s) {', '.join(facts.unknown_lineage)} carry no lineage "
            f"tags naming their files, so any file may be theirs"
        )
    if c.newest:
        return (
            f"newest {c.dataset}: what a run loads when it does not produce it itself"
        )
    return None


def _version_key(version: str) -> tuple[int, str]:
    return (int(version), "") if version.isdigit() else (0, version)


# --- running it ----------------------------------------------------------------------


def _relative(path: Path, project_path: Path) -> str:
    try:
        return str(path.relative_to(project_path))
    except ValueError:
        return str(path)


def remove(path: Path, policy: AccessPolicy, trash: Path) -> bool:
    """Remove one candidate so that readers see it whole or not at all.

    A folder is first renamed into the zone's trash folder (one os-level rename,
    atomic on one filesystem), then deleted; a failure while deleting leaves it in
    the trash, which the next cleanup empties. A file is unlinked.

    Returns:
        False if it was gone already (another cleanup removed it meanwhile).
    """
    policy.check_write("cleanup", path)
    try:
        if path.is_symlink() or not path.is_dir():
            path.unlink()
            return True
        if not path.resolve().is_relative_to(trash.resolve()):
            trash.mkdir(parents=True, exist_ok=True)
            target = trash / f"{path.parent.name}--{path.name}--{time.time_ns()}"
            os.replace(path, target)
            path = target
    except FileNotFoundError:
        return False
    shutil.rmtree(path)
    return True


def plan_cleanup(
    project_path: Path,
    env: str,
    *,
    facts: RegistryFacts | None = None,
    client: MlflowClient | None = None,
    now: dt.datetime | None = None,
) -> tuple[CleanupPlan, AccessPolicy]:
    """Decide what to keep and remove in ``env``'s zone; touches nothing.

    Args:
        project_path: The Kedro project's root.
        env: The env whose own zone is cleaned (dev, acceptance, prod).
        facts: What the registry says (default: asked of ``client``).
        client: The MLflow client (default: the project's tracking store).
        now: The time the retention window ends (default: now, UTC).

    Raises:
        ConfigError: unknown env, or the cleanup settings are wrong.
        AccessPolicyError: a path cleanup would touch lies outside the zones the
            env may write.
        RegistryError: the registry cannot be read or holds no such model.
    """
    project_path = Path(project_path).resolve()
    now = now or dt.datetime.now(dt.UTC)
    _check_env(project_path, env)
    globals_ = load_config(project_path, env, "globals")
    params = load_config(project_path, env, "parameters")
    catalog = load_config(project_path, env, "catalog")
    settings = CleanupSettings.from_params(params.get("cleanup"))
    policy = _policy(project_path, env)
    zone_root = str(globals_.get("zone_root", ""))
    policy.check_write("zone_root", zone_root)  # globals zone_root: the env's own
    scanner = ZoneScanner(
        project_path=project_path,
        env=env,
        policy=policy,
        settings=settings,
        catalog=catalog,
        params=params,
        zone_root=project_path / zone_root,
    )
    candidates = scanner.scan()
    if facts is None:
        client = client or MlflowClient(tracking_uri(), registry_uri=tracking_uri())
        facts = registry_facts(
            client,
            str(globals_["registered_model_name"]),
            retention_days=settings.retention_days,
            now=now,
        )
    decisions = [
        Decision(
            path=_relative(c.path, project_path),
            kind=c.kind if c.kind in {"staging", "trash"} else c.dataset,
            dataset=c.dataset,
            bytes=c.bytes,
            action=action,
            reason=why,
        )
        for c, action, why in decide(candidates, facts, settings, now)
    ]
    plan = CleanupPlan(
        env=env,
        zone_root=zone_root,
        retention_days=settings.retention_days,
        computed_at=now.isoformat(timespec="seconds"),
        kept_versions=dict(facts.kept_versions),
        decisions=decisions,
    )
    return plan, policy


def run_cleanup(  # noqa: PLR0913 (keyword-only options)
    project_path: Path,
    env: str,
    *,
    apply: bool = False,
    facts: RegistryFacts | None = None,
    client: MlflowClient | None = None,
    now: dt.datetime | None = None,
) -> CleanupPlan:
    """Plan the cleanup of ``env``'s zone and, with ``apply``, remove what it lists.

    Each candidate is removed whole (see ``remove``); a failure stops the cleanup
    with everything not yet removed in place, and running it again finishes it.
    """
    project_path = Path(project_path).resolve()
    plan, policy = plan_cleanup(project_path, env, facts=facts, client=client, now=now)
    for decision in plan.to_remove:
        logger.info(
            "%s %s (%s, %d bytes): %s",
            "Removing" if apply else "Would remove",
            decision.path,
            decision.kind,
            decision.bytes,
            decision.reason,
        )
    if not apply:
        logger.info(
            "Dry run: %d item(s), %d bytes would be freed; nothing removed (add "
            "--apply to remove).",
            len(plan.to_remove),
            plan.bytes_freed,
        )
        return plan
    trash = project_path / plan.zone_root / TRASH_DIR
    for decision in plan.to_remove:
        if remove(project_path / decision.path, policy, trash):
            plan.removed.append(decision.path)
        else:
            logger.info("%s was removed meanwhile (another cleanup?)", decision.path)
    if trash.is_dir() and not any(trash.iterdir()):
        trash.rmdir()
    plan.applied = True
    logger.info(
        "Removed %d item(s), %d bytes freed.", len(plan.removed), plan.bytes_freed
    )
    return plan


def _check_env(project_path: Path, env: str) -> None:
    conf = project_path / "conf"
    envs = (
        sorted(
            p.name
            for p in conf.iterdir()
            if p.is_dir()
            and p.name not in {"base", "local"}
            and not p.name.startswith(".")
        )
        if conf.is_dir()
        else []
    )
    if env not in envs:
        raise ConfigError(
            f"Unknown env '{env}': cleanup runs in one of the project's envs "
            f"{envs} (folders of conf/ other than base and local).\nHint: run "
            f"`kedro cleanup --env <one of {envs}>`."
        )


def _policy(project_path: Path, env: str) -> AccessPolicy:
    from kedro.framework.project import settings  # noqa: PLC0415
    from kedro.framework.startup import bootstrap_project  # noqa: PLC0415

    from modelops.access import load_policy  # noqa: PLC0415

    bootstrap_project(project_path)
    loader = settings.CONFIG_LOADER_CLASS(
        conf_source=str(project_path / settings.CONF_SOURCE),
        env=env,
        **settings.CONFIG_LOADER_ARGS,
    )
    return load_policy(loader, env, project_path)
