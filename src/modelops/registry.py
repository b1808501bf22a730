"""The MLflow Model Registry: versions, policy-checked alias moves, their history, rollback."""

from __future__ import annotations

import datetime as dt
import importlib.metadata
import json
import logging
import os
import socket
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

import mlflow
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from modelops.errors import ModelopsError
from modelops.lineage import FINGERPRINT_TAG

logger = logging.getLogger(__name__)

SERVING_REQUIREMENTS = ("mlflow", "scikit-learn", "pandas", "numpy", "skops")
HISTORY_TAG_PREFIX = "modelops.alias_history."
CLAIM_INFIX = ".claim."
CLAIM_KEY_LENGTH = 32
CLAIM_TIMEOUT_SECONDS = 900.0
CLAIM_POLL_SECONDS = 2.0


class RegistryError(ModelopsError):
    """A registry action cannot be done as asked (unknown version, nothing to roll back)."""


class AliasPolicy(Protocol):
    """What alias moves need from an env's access policy."""

    env: str

    def check_alias(self, alias: str) -> None:
        """Raise if the env may not set ``alias``."""


@dataclass(frozen=True)
class AliasMove:
    """One alias change, as recorded in the append-only history."""

    seq: int
    alias: str
    from_version: str | None
    to_version: str
    at: str
    env: str
    run_id: str | None
    kind: str
    reason: str


def package_dir() -> Path:
    """The installed ``modelops`` package folder (shipped with the model as code)."""
    return Path(__file__).resolve().parent


def pip_requirements() -> list[str]:
    """Exact pins of what the logged model needs to load (no inference subprocess)."""
    return [
        f"{name}=={importlib.metadata.version(name)}" for name in SERVING_REQUIREMENTS
    ]


def alias_version(
    client: MlflowClient, model_name: str, alias: str
) -> ModelVersion | None:
    """The version an alias points to, or None if the model or the alias is absent."""
    try:
        return client.get_model_version_by_alias(model_name, alias)
    except MlflowException as err:
        if err.error_code in {"RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"}:
            return None
        raise


def register_version(
    model_name: str, model_uri: str, run_id: str, tags: dict[str, str]
) -> str:
    """Register a logged model as a new version of ``model_name`` with lineage tags."""
    version = mlflow.register_model(model_uri, model_name, tags=tags)
    logger.info(
        "Registered %s version %s from run %s", model_name, version.version, run_id
    )
    return str(version.version)


def alias_history(client: MlflowClient, model_name: str) -> list[AliasMove]:
    """Every recorded alias move of a registered model, oldest first."""
    try:
        tags = client.get_registered_model(model_name).tags
    except MlflowException as err:
        if err.error_code == "RESOURCE_DOES_NOT_EXIST":
            return []
        raise
    moves = [
        AliasMove(**json.loads(value))
        for key, value in tags.items()
        if key.startswith(HISTORY_TAG_PREFIX)
    ]
    return sorted(moves, key=lambda move: move.seq)


def set_alias(  # noqa: PLR0913
    client: MlflowClient,
    model_name: str,
    alias: str,
    version: str,
    *,
    policy: AliasPolicy,
    run_id: str | None,
    reason: str,
    kind: str = "promotion",
) -> AliasMove:
    """Point ``alias`` at ``version``: the one function through which aliases move.

    Checks the env's access policy first, then moves the alias and appends the move
    to the registered model's history (MLflow keeps none). If recording fails the
    alias is put back, so the registry never shows an unrecorded move.

    Raises:
        AccessPolicyError: the env may not set this alias.
    """
    policy.check_alias(alias)
    previous = alias_version(client, model_name, alias)
    from_version = str(previous.version) if previous else None
    client.set_registered_model_alias(model_name, alias, str(version))
    move = AliasMove(
        seq=len(alias_history(client, model_name)) + 1,
        alias=alias,
        from_version=from_version,
        to_version=str(version),
        at=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        env=policy.env,
        run_id=run_id,
        kind=kind,
        reason=reason,
    )
    try:
        client.set_registered_model_tag(
            model_name, f"{HISTORY_TAG_PREFIX}{move.seq:06d}", json.dumps(asdict(move))
        )
    except Exception:
        if from_version is None:
            client.delete_registered_model_alias(model_name, alias)
        else:
            client.set_registered_model_alias(model_name, alias, from_version)
        raise
    logger.info(
        "Alias %s@%s: %s -> %s (%s by env %s): %s",
        model_name,
        alias,
        from_version,
        version,
        kind,
        policy.env,
        reason,
    )
    return move


def approved_versions(
    client: MlflowClient, model_name: str, approving_aliases: list[str]
) -> set[str]:
    """Versions that any of ``approving_aliases`` ever pointed to."""
    return {
        move.to_version
        for move in alias_history(client, model_name)
        if move.alias in approving_aliases
    }


def rollback(  # noqa: PLR0913
    client: MlflowClient,
    model_name: str,
    alias: str,
    *,
    policy: AliasPolicy,
    approving_aliases: list[str],
    to_version: str | None = None,
) -> AliasMove:
    """Move ``alias`` back to the version it pointed to before (or to ``to_version``).

    Raises:
        RegistryError: nothing to roll back to, or the target was never approved.
    """
    policy.check_alias(alias)
    current = alias_version(client, model_name, alias)
    current_version = str(current.version) if current else None
    if to_version is None:
        previous = [
            move.from_version
            for move in alias_history(client, model_name)
            if move.alias == alias and move.to_version == current_version
        ]
        to_version = previous[-1] if previous else None
        if to_version is None:
            raise RegistryError(
                f"'{model_name}@{alias}' has no previous version to roll back to "
                f"(now: {current_version}).\nHint: name one with --to-version N."
            )
    to_version = str(to_version)
    approved = approved_versions(client, model_name, approving_aliases)
    if to_version not in approved:
        raise RegistryError(
            f"Version {to_version} of '{model_name}' was never approved (never set as "
            f"any of {approving_aliases}); approved versions: "
            f"{sorted(approved, key=int) or 'none'}.\nHint: roll back to an approved "
            f"version, or promote this one through acceptance first."
        )
    if to_version == current_version:
        raise RegistryError(f"'{model_name}@{alias}' already points to {to_version}.")
    return set_alias(
        client,
        model_name,
        alias,
        to_version,
        policy=policy,
        run_id=None,
        reason=f"rollback from version {current_version} to {to_version}",
        kind="rollback",
    )


def version_lineage(
    client: MlflowClient, model_name: str, version: str
) -> dict[str, Any]:
    """The lineage chain of one registered version, from its tags and its run."""
    try:
        model_version = client.get_model_version(model_name, str(version))
    except MlflowException as err:
        raise RegistryError(
            f"Version {version} of '{model_name}' is not in the registry."
        ) from err
    tags = model_version.tags
    run = client.get_run(model_version.run_id) if model_version.run_id else None

    def tag(name: str) -> str | None:
        return tags.get(f"modelops.{name}")

    return {
        "model_name": model_name,
        "version": str(model_version.version),
        "aliases": list(model_version.aliases),
        "run_id": model_version.run_id,
        "env": tag("env"),
        "git_commit": tag("git_commit"),
        "git_dirty": tag("git_dirty"),
        "model_class": tag("model_class"),
        "model_config": json.loads(tag("model_config") or "{}"),
        "params": dict(run.data.params) if run else {},
        "metrics": dict(run.data.metrics) if run else {},
        "train_set": {"sha256": tag("train_sha256"), "path": tag("saved.train_set")},
        "test_set": {"sha256": tag("test_sha256"), "path": tag("saved.test_set")},
        "split": json.loads(tag("split") or "{}"),
        "source": {
            "first_partition": tag("source_first_partition"),
            "last_partition": tag("source_last_partition"),
            "partition_count": tag("source_partition_count"),
            "rows": tag("source_rows"),
            "manifest": tag("saved.source_manifest"),
        },
        "libraries": {
            key.removeprefix("modelops.lib."): value
            for key, value in tags.items()
            if key.startswith("modelops.lib.")
        },
    }


def versions_with_fingerprint(
    client: MlflowClient, model_name: str, fingerprint: str
) -> list[ModelVersion]:
    """Registered, ready versions of ``model_name`` tagged with ``fingerprint``.

    Oldest first. Searched on the registry side (a tag filter); a registry that
    refuses the filter is answered by listing the model's versions instead.
    """
    quoted = model_name.replace("'", "''")
    try:
        found = client.search_model_versions(
            f"name = '{quoted}' AND tags.`{FINGERPRINT_TAG}` = '{fingerprint}'"
        )
    except MlflowException as err:
        if err.error_code != "INVALID_PARAMETER_VALUE":
            raise
        found = [
            version
            for version in client.search_model_versions(f"name = '{quoted}'")
            if version.tags.get(FINGERPRINT_TAG) == fingerprint
        ]
    ready = [
        version
        for version in found
        if version.tags.get(FINGERPRINT_TAG) == fingerprint
        and str(version.status) == "READY"
    ]
    return sorted(ready, key=lambda version: int(version.version))


@dataclass(frozen=True)
class Claim:
    """A held registration claim: the registered model ``name``, created at ``created_ms``."""

    name: str
    created_ms: int


def claim_name(model_name: str, fingerprint: str) -> str:
    """The registered-model name whose creation claims ``fingerprint`` for ``model_name``."""
    return f"{model_name}{CLAIM_INFIX}{fingerprint[:CLAIM_KEY_LENGTH]}"


def try_claim(
    client: MlflowClient, name: str, tags: Mapping[str, str] | None = None
) -> Claim | None:
    """Create the registered model ``name``: the claim, or None if someone holds it.

    Registered-model names are unique in every MLflow store (SQLite or a server on
    PostgreSQL), so of several creators exactly one succeeds.
    """
    try:
        model = client.create_registered_model(
            name,
            tags=dict(tags or {}),
            description="modelops registration claim: deleted when the holder is done.",
        )
    except MlflowException as err:
        if err.error_code == "RESOURCE_ALREADY_EXISTS":
            return None
        raise
    return Claim(name=name, created_ms=int(model.creation_timestamp))


def claim_holder(client: MlflowClient, name: str) -> tuple[int, dict[str, str]] | None:
    """``(created_ms, tags)`` of the claim ``name``, or None if nobody holds it."""
    try:
        model = client.get_registered_model(name)
    except MlflowException as err:
        if err.error_code == "RESOURCE_DOES_NOT_EXIST":
            return None
        raise
    return int(model.creation_timestamp), dict(model.tags)


def release_claim(client: MlflowClient, claim: Claim) -> None:
    """Delete the claim, unless it is no longer ours (taken over as stale)."""
    held = claim_holder(client, claim.name)
    if held is None or held[0] != claim.created_ms:
        logger.warning(
            "Registration claim %s was taken over while held (it outlived the claim "
            "timeout); leaving the new holder's claim in place.",
            claim.name,
        )
        return
    try:
        client.delete_registered_model(claim.name)
    except MlflowException as err:
        if err.error_code != "RESOURCE_DOES_NOT_EXIST":
            raise


def _take_over(
    client: MlflowClient, name: str, stale_ms: int, tags: Mapping[str, str]
) -> Claim | None:
    """Replace the stale claim created at ``stale_ms``; None if another waiter does.

    Waiters first race for a marker named after this stale claim (one wins); the
    winner deletes the stale claim only if it is still the same one, then races
    for the claim like anyone else.
    """
    marker = try_claim(client, f"{name}.takeover.{stale_ms}", tags)
    if marker is None:
        return None
    try:
        held = claim_holder(client, name)
        if held is not None and held[0] == stale_ms:
            logger.warning(
                "Taking over registration claim %s: held by %s since %s without "
                "release (its holder died or outlived the claim timeout).",
                name,
                held[1].get("modelops.claim.run_id", "unknown run"),
                dt.datetime.fromtimestamp(stale_ms / 1000, dt.UTC).isoformat(),
            )
            try:
                client.delete_registered_model(name)
            except MlflowException as err:
                if err.error_code != "RESOURCE_DOES_NOT_EXIST":
                    raise
        return try_claim(client, name, tags)
    finally:
        release_claim(client, marker)


def acquire_claim(  # noqa: PLR0913
    client: MlflowClient,
    name: str,
    *,
    tags: Mapping[str, str] | None = None,
    timeout_seconds: float = CLAIM_TIMEOUT_SECONDS,
    poll_seconds: float = CLAIM_POLL_SECONDS,
    clock: Callable[[], float] = time.time,
    sleep: Callable[[float], None] = time.sleep,
) -> Claim:
    """Hold the claim ``name``: create it, or wait until its holder releases it.

    A claim held longer than ``timeout_seconds`` (by the store's creation time, or
    as long as this waiter has watched it) belongs to a holder that died; it is
    taken over.
    """
    tags = dict(tags or {})
    watched_since: dict[int, float] = {}
    announced: set[int] = set()
    while True:
        claim = try_claim(client, name, tags)
        if claim is not None:
            return claim
        held = claim_holder(client, name)
        if held is None:  # released between our create and our look
            continue
        created_ms, holder = held
        now = clock()
        watched = now - watched_since.setdefault(created_ms, now)
        age = max(now - created_ms / 1000, watched)
        if age >= timeout_seconds:
            claim = _take_over(client, name, created_ms, tags)
            if claim is not None:
                return claim
        elif created_ms not in announced:
            announced.add(created_ms)
            logger.info(
                "Waiting for registration claim %s, held by run %s (env %s); an "
                "identical candidate is being registered.",
                name,
                holder.get("modelops.claim.run_id", "unknown"),
                holder.get("modelops.claim.env", "unknown"),
            )
        sleep(poll_seconds)


@contextmanager
def registration_claim(  # noqa: PLR0913
    client: MlflowClient,
    model_name: str,
    fingerprint: str,
    *,
    run_id: str | None,
    env: str,
    timeout_seconds: float = CLAIM_TIMEOUT_SECONDS,
    poll_seconds: float = CLAIM_POLL_SECONDS,
) -> Iterator[Claim]:
    """Hold the registration claim of ``fingerprint`` while the block runs.

    MLflow has no compare-and-set; registered-model name uniqueness is the one
    atomic primitive on every store. Only one run at a time registers a given
    candidate: the others wait, then find its version. The claim is released
    whatever happens in the block.
    """
    tags = {
        "modelops.claim.run_id": str(run_id),
        "modelops.claim.env": env,
        "modelops.claim.model": model_name,
        "modelops.claim.fingerprint": fingerprint,
        "modelops.claim.host": socket.gethostname(),
        "modelops.claim.pid": str(os.getpid()),
        "modelops.claim.at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }
    claim = acquire_claim(
        client,
        claim_name(model_name, fingerprint),
        tags=tags,
        timeout_seconds=timeout_seconds,
        poll_seconds=poll_seconds,
    )
    try:
        yield claim
    finally:
        release_claim(client, claim)
