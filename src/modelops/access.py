"""Per-env access policy (conf/<env>/access.yml): which zones a run reads and writes."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from os import PathLike
from pathlib import Path
from typing import Any

from kedro.config import MissingConfigException
from kedro.framework.hooks import hook_impl

from modelops.errors import AccessPolicyError

logger = logging.getLogger(__name__)

SOURCE_ZONE = "source"
ACCESS_KEYS = ("read", "write", "aliases", "register")
LIST_KEYS = ("read", "write", "aliases")
# Keys of a dataset's ``_describe()`` that name where it reads and writes.
PATH_KEYS = ("filepath", "path", "directory")
LOCAL_PROTOCOLS = frozenset({"file", "local"})
# Mapping values of ``_describe()`` that are arguments, not wrapped datasets.
NOT_DESCRIPTIONS = frozenset({"dataset_config", "credentials", "metadata"})
ZONES_FILE = "conf/base/globals.yml"


def _listing(names: Iterable[str]) -> str:
    return "[" + ", ".join(names) + "]"


def _split_protocol(path: str) -> tuple[str | None, str]:
    """``("s3", "bucket/key")`` for ``s3://bucket/key``; ``(None, path)`` if plain."""
    head, sep, rest = path.partition("://")
    if sep and head and head.replace("+", "").replace("-", "").isalnum():
        return head.lower(), rest
    return None, path


@dataclass(frozen=True)
class AccessPolicy:
    """What one env may read, write, which registry aliases it may set, and whether
    it may register model versions (``register``; absent in the file means no).

    ``zones`` maps each zone name to its absolute, resolved root. Writable zones are
    readable too (a run reads back what it wrote). Relative paths are taken relative
    to ``project_path``; a path that is not local (``s3://...``) lies outside every
    zone, so no policy lets a run touch it.
    """

    env: str
    zones: dict[str, Path]
    read: tuple[str, ...]
    write: tuple[str, ...]
    aliases: tuple[str, ...]
    project_path: Path = field(default_factory=Path.cwd)
    register: bool = False

    @property
    def conf_file(self) -> str:
        """The file that declares this policy."""
        return f"conf/{self.env}/access.yml"

    @property
    def readable(self) -> tuple[str, ...]:
        """Zones the env may read: those listed under read, then those under write."""
        return tuple(dict.fromkeys((*self.read, *self.write)))

    def resolve(self, path: str | PathLike[str]) -> Path | None:
        """The absolute, resolved local path, or None if ``path`` is not local."""
        protocol, rest = _split_protocol(str(path))
        if protocol is not None and protocol not in LOCAL_PROTOCOLS:
            return None
        local = Path(rest)
        if not local.is_absolute():
            local = self.project_path / local
        return local.resolve()

    def zone_of(self, path: str | PathLike[str]) -> str | None:
        """The zone ``path`` lies in (the one with the longest root), or None."""
        local = self.resolve(path)
        if local is None:
            return None
        matches = [
            (len(root.parts), name)
            for name, root in self.zones.items()
            if local.is_relative_to(root)
        ]
        return max(matches)[1] if matches else None

    def _shown(self, path: str | PathLike[str]) -> str:
        local = self.resolve(path)
        return str(path) if local is None else str(local)

    def _where(self, path: str | PathLike[str], zone: str | None) -> str:
        if zone is not None:
            return f"it lies in zone '{zone}'"
        if self.resolve(path) is None:
            return "it is not a local path, so it lies outside every zone"
        return "it lies outside every zone"

    def check_read(self, dataset_name: str, path: str | PathLike[str]) -> None:
        """Raise AccessPolicyError unless the env may read ``path``."""
        zone = self.zone_of(path)
        if zone is not None and zone in self.readable:
            return
        if zone is None:
            hint = (
                f"every path a run touches must lie in a zone declared under zones: "
                f"in {ZONES_FILE}; move the data into one (or declare its zone there "
                f"and list it under access.read in {self.conf_file})."
            )
        else:
            hint = (
                f"point the catalog entry of '{dataset_name}' into a zone env "
                f"'{self.env}' may read, or, if this env really must read zone "
                f"'{zone}', list it under access.read in {self.conf_file}."
            )
        raise AccessPolicyError(
            f"Access policy of env '{self.env}' forbids reading dataset "
            f"'{dataset_name}' at '{self._shown(path)}': {self._where(path, zone)}, "
            f"and env '{self.env}' may read only {_listing(self.readable)} "
            f"({self.conf_file}, rule access.read).\nHint: {hint}"
        )

    def check_write(self, dataset_name: str, path: str | PathLike[str]) -> None:
        """Raise AccessPolicyError unless the env may write ``path``."""
        zone = self.zone_of(path)
        if zone is not None and zone != SOURCE_ZONE and zone in self.write:
            return
        allowed = f"env '{self.env}' may write only {_listing(self.write)}"
        if zone == SOURCE_ZONE:
            reason = (
                f"it lies in zone '{SOURCE_ZONE}', the production source, which is "
                f"read-only for every env (rule: source is read-only; {allowed}, "
                f"{self.conf_file}, rule access.write)"
            )
            hint = (
                "only the upstream feed (here `kedro simulate`) writes the source; "
                f"point the catalog entry of '{dataset_name}' into the env's own zone "
                "(a path under ${globals:zone_root})."
            )
        else:
            reason = (
                f"{self._where(path, zone)}, and {allowed} "
                f"({self.conf_file}, rule access.write)"
            )
            hint = (
                f"point the catalog entry of '{dataset_name}' into a zone env "
                f"'{self.env}' may write (a path under ${{globals:zone_root}}); no env "
                "writes into another env's zone or the source."
            )
        raise AccessPolicyError(
            f"Access policy of env '{self.env}' forbids writing dataset "
            f"'{dataset_name}' at '{self._shown(path)}': {reason}.\nHint: {hint}"
        )

    def check_alias(self, alias: str, dataset_name: str | None = None) -> None:
        """Raise AccessPolicyError unless the env may set registry alias ``alias``."""
        if alias in self.aliases:
            return
        by = f" (dataset '{dataset_name}')" if dataset_name else ""
        raise AccessPolicyError(
            f"Access policy of env '{self.env}' forbids setting registry alias "
            f"'{alias}'{by}: env '{self.env}' may set only {_listing(self.aliases)} "
            f"({self.conf_file}, rule access.aliases).\nHint: an alias is moved only "
            f"by the env whose access.aliases lists it; run this in that env "
            f"(`kedro run --env ...`)."
        )

    def check_register(self, dataset_name: str | None = None) -> None:
        """Raise AccessPolicyError unless the env may register model versions."""
        if self.register:
            return
        by = f" (dataset '{dataset_name}')" if dataset_name else ""
        raise AccessPolicyError(
            f"Access policy of env '{self.env}' forbids registering model versions"
            f"{by}: env '{self.env}' has no access.register: true ({self.conf_file}, "
            f"rule access.register; absent means false).\nHint: prod promotes what "
            f"acceptance approved instead of registering its own: run `kedro run "
            f"--env acceptance`, then `kedro run --env prod` (its default job runs "
            f"promotion); pipelines that register run in an env whose access.yml says "
            f"register: true."
        )


def _string_list(value: Any, key: str, conf_file: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str) or not isinstance(value, Iterable):
        raise AccessPolicyError(
            f"access.{key} in {conf_file} must be a list of names, got {value!r}.\n"
            f"Hint: write it as a YAML list, e.g. {key}: [name, ...]."
        )
    items = tuple(value)
    if not all(isinstance(item, str) and item for item in items):
        raise AccessPolicyError(
            f"access.{key} in {conf_file} must list names (strings), got {value!r}."
        )
    return items


def _conf_envs(config_loader: Any) -> set[str]:
    """Names of the conf env folders, when conf is a local folder (else empty)."""
    conf_source = getattr(config_loader, "conf_source", None)
    if conf_source is None or not Path(str(conf_source)).is_dir():
        return set()
    return {entry.name for entry in Path(str(conf_source)).iterdir() if entry.is_dir()}


def _has_own_policy_file(config_loader: Any, env: str) -> bool:
    """False only if conf is a local folder and ``conf/<env>/`` holds no access file.

    The merged config alone cannot tell an env's own policy from one inherited from
    conf/base, and an env must declare its own.
    """
    conf_source = getattr(config_loader, "conf_source", None)
    if conf_source is None or not Path(str(conf_source)).is_dir():
        return True
    return any((Path(str(conf_source)) / env).glob("access*"))


def _missing_policy(env: str, conf_file: str, detail: str) -> AccessPolicyError:
    return AccessPolicyError(
        f"Env '{env}' has no access policy: {conf_file} {detail}, so env '{env}' "
        f"refuses to run.\nHint: create {conf_file} with access: {{read: [zones], "
        f"write: [its own zone], aliases: [...]}}; zones are named under zones: in "
        f"{ZONES_FILE}."
    )


def load_policy(config_loader: Any, env: str, project_path: Path) -> AccessPolicy:
    """The access policy of ``env`` from its conf/<env>/access.yml and the zones.

    Raises:
        AccessPolicyError: the env has no policy of its own, the policy names an
            unknown zone, lets the env write the source or another env's zone.
    """
    conf_file = f"conf/{env}/access.yml"
    try:
        access_conf = config_loader["access"]
    except (MissingConfigException, KeyError) as err:
        raise _missing_policy(env, conf_file, "is missing") from err
    if not _has_own_policy_file(config_loader, env):
        raise _missing_policy(env, conf_file, "is missing")
    access = (access_conf or {}).get("access")
    if not access:
        raise _missing_policy(env, conf_file, "declares no access: section")
    if not isinstance(access, Mapping):
        raise AccessPolicyError(
            f"access: in {conf_file} must be a mapping with keys "
            f"{_listing(ACCESS_KEYS)}, got {access!r}."
        )
    unknown_keys = sorted(set(access) - set(ACCESS_KEYS))
    if unknown_keys:
        raise AccessPolicyError(
            f"access: in {conf_file} has unknown key(s) {_listing(unknown_keys)}; "
            f"expected only {_listing(ACCESS_KEYS)}.\nHint: is this a typo?"
        )
    read, write, aliases = (
        _string_list(access.get(key), key, conf_file) for key in LIST_KEYS
    )
    register = access.get("register", False)
    if not isinstance(register, bool):
        raise AccessPolicyError(
            f"access.register in {conf_file} must be true or false, got "
            f"{register!r}.\nHint: write register: true if env '{env}' may register "
            f"model versions, else register: false (absent means false)."
        )

    zones_conf = config_loader["globals"].get("zones")
    if not isinstance(zones_conf, Mapping) or not zones_conf:
        raise AccessPolicyError(
            f"No zones declared: {ZONES_FILE} needs zones: {{name: path, ...}} "
            f"for the access policy of env '{env}' to refer to."
        )
    project_path = Path(project_path).resolve()
    zones = {
        str(name): (
            root if (root := Path(str(path))).is_absolute() else project_path / root
        ).resolve()
        for name, path in zones_conf.items()
    }
    for key, names in (("read", read), ("write", write)):
        unknown = [name for name in names if name not in zones]
        if unknown:
            raise AccessPolicyError(
                f"access.{key} in {conf_file} names unknown zone(s) "
                f"{_listing(unknown)}; the zones are {_listing(zones)} "
                f"(zones: in {ZONES_FILE}).\nHint: is this a typo?"
            )
    if SOURCE_ZONE in write:
        raise AccessPolicyError(
            f"access.write in {conf_file} lists zone '{SOURCE_ZONE}', but the "
            f"production source is read-only for every env (rule: source is "
            f"read-only).\nHint: remove '{SOURCE_ZONE}' from access.write; only the "
            f"upstream feed writes the source."
        )
    other_envs = sorted(
        zone for zone in write if zone != env and zone in _conf_envs(config_loader)
    )
    if other_envs:
        raise AccessPolicyError(
            f"access.write in {conf_file} lists zone(s) {_listing(other_envs)} of "
            f"another env, but no env writes into another env's zone.\nHint: env "
            f"'{env}' writes only its own zone: write: [{env}]."
        )
    return AccessPolicy(
        env=env,
        zones=zones,
        read=read,
        write=write,
        aliases=aliases,
        project_path=project_path,
        register=register,
    )


def dataset_paths(dataset: Any) -> list[str]:
    """The local or remote locations a dataset reads and writes, from ``_describe()``.

    Datasets without a location (in memory, MLflow runs, the registry, parameters)
    give ``[]``. fsspec-based datasets report the path without its protocol, so the
    protocol is put back (``memory://...``, ``s3://...``) unless it is local.
    """
    describe = getattr(dataset, "_describe", None)
    if describe is None:
        return []
    return _paths_in(describe())


def _paths_in(description: Mapping[str, Any]) -> list[str]:
    protocol = description.get("protocol")
    paths = []
    for key in PATH_KEYS:
        value = description.get(key)
        if value is None or str(value) in {"", "None"}:
            continue
        text = str(value)
        if (
            isinstance(protocol, str)
            and protocol not in LOCAL_PROTOCOLS
            and _split_protocol(text)[0] is None
        ):
            text = f"{protocol}://{text.lstrip('/')}"
        paths.append(text)
    for key, value in description.items():  # wrapped datasets, e.g. CachedDataset
        if (
            isinstance(value, Mapping)
            and key not in NOT_DESCRIPTIONS
            and not str(key).endswith("_args")
        ):
            paths.extend(_paths_in(value))
    return paths


def check_dataset(policy: AccessPolicy, name: str, dataset: Any, mode: str) -> None:
    """Check every location of ``dataset`` for ``mode`` ("read" or "write")."""
    check = policy.check_write if mode == "write" else policy.check_read
    for path in dataset_paths(dataset):
        check(name, path)


def check_catalog(policy: AccessPolicy, catalog: Any, pipeline: Any) -> None:
    """Check the pipeline's outputs for write rights, then the whole catalog for read.

    Every catalog entry counts, used by this pipeline or not, plus the pipeline's
    datasets that only a dataset factory pattern declares. An output that registers
    model versions (``registers`` is true) needs access.register; one that moves
    registry aliases (it has ``access_aliases``) is checked for alias rights too.
    """
    for name in sorted(pipeline.all_outputs()):
        dataset = catalog.get(name) if name in catalog else None
        if dataset is not None:
            check_dataset(policy, name, dataset, "write")
            if getattr(dataset, "registers", False) is True:
                policy.check_register(name)
            for alias in getattr(dataset, "access_aliases", None) or ():
                policy.check_alias(alias, dataset_name=name)
    names = dict.fromkeys([*catalog.keys(), *sorted(pipeline.datasets())])
    for name in names:
        dataset = catalog.get(name) if name in catalog else None
        if dataset is not None:
            check_dataset(policy, name, dataset, "read")


def run_env(config_loader: Any) -> str:
    """The env whose conf folder is in force (a bare `kedro run` passes none)."""
    env = getattr(config_loader, "env", None) or getattr(
        config_loader, "default_run_env", None
    )
    return str(env or config_loader["globals"]["env"])


class AccessPolicyHooks:
    """Enforce the env's access policy: before the first node runs, and on every I/O."""

    def __init__(self) -> None:
        self.policy: AccessPolicy | None = None
        self._catalog: Any = None

    @hook_impl(tryfirst=True)  # refuse before any plugin sets anything up
    def after_context_created(self, context: Any) -> None:
        """Load the env's policy; an env without one refuses to run."""
        self.policy = None
        self._catalog = None
        loader = context.config_loader
        self.policy = load_policy(loader, run_env(loader), Path(context.project_path))

    @hook_impl
    def after_catalog_created(self, catalog: Any) -> None:
        """Hand the policy to every dataset that moves registry aliases."""
        if self.policy is None:
            return
        for name in catalog.keys():
            self._bind(catalog.get(name))

    def _bind(self, dataset: Any) -> None:
        bind = getattr(dataset, "bind_access_policy", None)
        if callable(bind):
            bind(self.policy)

    @hook_impl(tryfirst=True)  # before kedro-mlflow opens a run
    def before_pipeline_run(
        self, run_params: dict[str, Any], pipeline: Any, catalog: Any
    ) -> None:
        """Refuse the run before any node runs if it breaks the policy."""
        self._catalog = catalog
        if self.policy is None:  # fail closed: never run unchecked
            raise AccessPolicyError(
                "No access policy was loaded for this run, so it refuses to start.\n"
                "Hint: run through a KedroSession (`kedro run`), whose context "
                "creation loads conf/<env>/access.yml."
            )
        check_catalog(self.policy, catalog, pipeline)
        logger.info(
            "Access policy of env '%s' (%s): the catalog and the pipeline's outputs "
            "comply.",
            self.policy.env,
            self.policy.conf_file,
        )

    @hook_impl
    def before_node_run(self, catalog: Any) -> None:
        """Follow the catalog the runner really uses."""
        self._catalog = catalog

    @hook_impl(tryfirst=True)
    def before_dataset_loaded(self, dataset_name: str) -> None:
        """Check again at load time: the catalog may have changed since the start."""
        self._check_live(dataset_name, "read")

    @hook_impl(tryfirst=True)
    def before_dataset_saved(self, dataset_name: str) -> None:
        """Check again at save time: a dataset added at run time must not slip by."""
        self._check_live(dataset_name, "write")

    def _check_live(self, dataset_name: str, mode: str) -> None:
        if self.policy is None or self._catalog is None:
            return
        if dataset_name not in self._catalog:
            return
        dataset = self._catalog.get(dataset_name)
        if dataset is not None:
            check_dataset(self.policy, dataset_name, dataset, mode)
            self._bind(dataset)  # a registry dataset added at run time checks too
