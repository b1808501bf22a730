"""Catalog datasets: content-addressed storage and the MLflow tracking/registry entries."""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
from kedro.io import AbstractDataset, DatasetError
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from modelops import model_artifacts, registry
from modelops.lineage import code_state, content_hash
from modelops.model_artifacts import ModelArtifacts, ServedModel, load_served_model

logger = logging.getLogger(__name__)


class ContentAddressedParquetDataset(AbstractDataset[pd.DataFrame, pd.DataFrame]):
    """Parquet files named by the sha256 of their content: the same data is stored once.

    ``save`` writes ``<directory>/<sha256>.parquet`` unless it already exists (so
    re-running on the same data writes nothing and never overwrites) and appends the
    hash to ``index.jsonl``. ``load`` returns what this process saved last (kept in
    memory, so a run never re-reads what it just wrote), else the newest entry of the
    index.
    """

    def __init__(self, directory: str, metadata: dict[str, Any] | None = None) -> None:
        self._directory = Path(directory).absolute()
        self._last_hash: str | None = None
        self._last_data: pd.DataFrame | None = None
        self.metadata = metadata

    @property
    def last_path(self) -> Path | None:
        """Where the last saved (or loaded) frame lies."""
        return self._path(self._last_hash) if self._last_hash else None

    def _path(self, sha: str) -> Path:
        return self._directory / f"{sha}.parquet"

    def _save(self, data: pd.DataFrame) -> None:
        sha = content_hash(data)
        target = self._path(sha)
        if not target.exists():
            self._directory.mkdir(parents=True, exist_ok=True)
            partial = target.with_name(f".{target.name}.{os.getpid()}.tmp")
            data.to_parquet(partial, index=False)
            os.replace(partial, target)
        with (self._directory / "index.jsonl").open("a") as index:
            index.write(json.dumps({"sha256": sha, "rows": len(data)}) + "\n")
        self._last_hash = sha
        self._last_data = data

    def _load(self) -> pd.DataFrame:
        if self._last_data is not None:
            return self._last_data.copy(deep=False)  # nodes never mutate their inputs
        if self._last_hash is None:
            index = self._directory / "index.jsonl"
            if not index.exists():
                raise DatasetError(
                    f"Nothing saved yet in {self._directory}: run the pipeline that "
                    f"writes it first."
                )
            lines = index.read_text().splitlines()
            self._last_hash = json.loads(lines[-1])["sha256"]
        return pd.read_parquet(self._path(self._last_hash))

    def _exists(self) -> bool:
        return (self._directory / "index.jsonl").exists()

    def _describe(self) -> dict[str, Any]:
        return {"directory": str(self._directory), "last_path": str(self.last_path)}


class _ActiveRunDataset(AbstractDataset[Any, Any]):
    """Base for datasets that write into the active MLflow run and cache what they saved."""

    def __init__(self, metadata: dict[str, Any] | None = None) -> None:
        self._data: Any = None
        self._access_policy: registry.AliasPolicy | None = None
        self.metadata = metadata

    def bind_access_policy(self, policy: registry.AliasPolicy) -> None:
        """Receive the env's access policy (from the access hook) for alias moves."""
        self._access_policy = policy

    def _policy(self) -> registry.AliasPolicy:
        if self._access_policy is None:
            raise DatasetError(
                f"{type(self).__name__} has no access policy to check alias moves "
                f"against.\nHint: keep modelops.access.AccessPolicyHooks in HOOKS "
                f"(src/modelops/settings.py)."
            )
        return self._access_policy

    @staticmethod
    def _active_run_id() -> str:
        run = mlflow.active_run()
        if run is None:
            raise DatasetError(
                "No active MLflow run: this dataset logs into the run that kedro-mlflow "
                "opens.\nHint: do not list this pipeline under "
                "tracking.disable_tracking.pipelines in conf/base/mlflow.yml."
            )
        return run.info.run_id

    def _load(self) -> Any:
        if self._data is None:
            raise DatasetError(
                f"{type(self).__name__} holds nothing saved in this run."
            )
        return self._data

    def _describe(self) -> dict[str, Any]:
        return {"type": type(self).__name__}


class MlflowMetricsDataset(_ActiveRunDataset):
    """A flat ``{name: number}`` dict logged as metrics of the active run."""

    def __init__(
        self, prefix: str = "", metadata: dict[str, Any] | None = None
    ) -> None:
        super().__init__(metadata)
        self._prefix = prefix

    def _save(self, data: dict[str, float]) -> None:
        self._active_run_id()
        mlflow.log_metrics({f"{self._prefix}{k}": float(v) for k, v in data.items()})
        self._data = dict(data)


class MlflowJsonDataset(_ActiveRunDataset):
    """A dict logged as a JSON artifact of the active run, its scalars also as tags."""

    def __init__(
        self,
        artifact_file: str,
        tag_prefix: str | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(metadata)
        self._artifact_file = artifact_file
        self._tag_prefix = tag_prefix

    def _save(self, data: dict[str, Any]) -> None:
        self._active_run_id()
        mlflow.log_dict(data, self._artifact_file)
        if self._tag_prefix is not None:
            mlflow.set_tags(
                {
                    f"{self._tag_prefix}{key}": str(value)
                    for key, value in data.items()
                    if isinstance(value, str | int | float | bool) or value is None
                }
            )
        self._data = dict(data)


class IncumbentModelDataset(AbstractDataset[None, dict[str, Any] | None]):
    """A registered version by alias: the first alias in ``aliases`` that exists.

    Loads ``{"alias", "version", "run_id", "tags", "model"}`` or None when no alias is set
    (nothing promoted yet). ``model`` is the sklearn Pipeline, loaded from the version's
    skops file after every artifact's hash was checked
    (``modelops.model_artifacts.load_served_model``; never unpickled). With
    ``load_model: false`` only the version's metadata is read and ``model`` is None.
    Read-only.
    """

    def __init__(
        self,
        model_name: str,
        aliases: list[str],
        load_model: bool = True,
        trusted_types: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        self._model_name = model_name
        self._aliases = list(aliases)
        self._load_model = load_model
        self._trusted_types = list(trusted_types or [])
        self.metadata = metadata

    def _load(self) -> dict[str, Any] | None:
        client = MlflowClient()
        for alias in self._aliases:
            version = registry.alias_version(client, self._model_name, alias)
            if version is None:
                continue
            model = (
                load_served_model(
                    client,
                    self._model_name,
                    version.version,
                    prefer="sklearn",
                    extra_trusted_types=self._trusted_types,
                ).sklearn_model
                if self._load_model
                else None
            )
            return {
                "alias": alias,
                "version": int(version.version),
                "run_id": version.run_id,
                "tags": dict(version.tags),
                "model": model,
            }
        return None

    def _save(self, data: None) -> None:
        raise DatasetError("IncumbentModelDataset is read-only.")

    def _describe(self) -> dict[str, Any]:
        return {
            "model_name": self._model_name,
            "aliases": self._aliases,
            "load_model": self._load_model,
        }


class ServedModelDataset(AbstractDataset[None, dict[str, Any] | None]):
    """The served model by alias: the first alias in ``aliases`` that exists.

    Loads ``{"alias", "version", "run_id", "tags", "model"}`` where ``model`` is a
    ``modelops.model_artifacts.ServedModel`` (the verified ONNX form where the version
    has one and ``prefer`` is ``onnx``, else the skops form), or None when no alias is
    set. Every artifact's sha256 is checked against the version's tags first; a
    mismatch raises ``ArtifactIntegrityError``. Read-only.

    ``intra_op_threads`` are onnxruntime's threads inside one run; ``row_threads``
    runs of the ONNX session at once, each on a share of a large batch's rows
    (``OnnxPredictor``; bit-equal predictions). Both default to 1: see the
    measurements in conf/base/catalog_serving.yml.
    """

    def __init__(  # noqa: PLR0913
        self,
        model_name: str,
        aliases: list[str],
        intra_op_threads: int = 1,
        prefer: str = "onnx",
        *,
        row_threads: int = 1,
        trusted_types: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        if prefer not in model_artifacts.FORMS:
            raise DatasetError(
                f"ServedModelDataset '{model_name}': prefer is {prefer!r}; expected "
                f"one of {list(model_artifacts.FORMS)}.\nHint: fix the catalog entry "
                f"(conf/base/catalog_serving.yml)."
            )
        self._model_name = model_name
        self._aliases = list(aliases)
        self._threads = int(intra_op_threads)
        self._row_threads = int(row_threads)
        self._prefer = prefer
        self._trusted_types = list(trusted_types or [])
        self.metadata = metadata

    def _load(self) -> dict[str, Any] | None:
        client = MlflowClient()
        for alias in self._aliases:
            version = registry.alias_version(client, self._model_name, alias)
            if version is None:
                continue
            served: ServedModel = load_served_model(
                client,
                self._model_name,
                version.version,
                prefer=self._prefer,
                intra_op_threads=self._threads,
                row_threads=self._row_threads,
                extra_trusted_types=self._trusted_types,
            )
            return {
                "alias": alias,
                "version": served.version,
                "run_id": served.run_id,
                "tags": dict(served.tags),
                "model": served,
            }
        return None

    def _save(self, data: None) -> None:
        raise DatasetError("ServedModelDataset is read-only.")

    def _describe(self) -> dict[str, Any]:
        return {
            "model_name": self._model_name,
            "aliases": self._aliases,
            "intra_op_threads": self._threads,
            "row_threads": self._row_threads,
            "prefer": self._prefer,
        }


class CodeStateDataset(AbstractDataset[None, dict[str, str]]):
    """The code a run executes: ``{git_commit, git_dirty, code_sha256}``. Read-only.

    ``project_dir`` is the git checkout to ask (the working directory, which is the
    project root for ``kedro run``); outside a checkout the commit is ``unknown``
    and the package's source hash still identifies the code.
    """

    def __init__(
        self, project_dir: str = ".", metadata: dict[str, Any] | None = None
    ) -> None:
        self._project_dir = project_dir
        self.metadata = metadata

    def _load(self) -> dict[str, str]:
        return code_state(Path(self._project_dir).absolute())

    def _save(self, data: None) -> None:
        raise DatasetError("CodeStateDataset is read-only.")

    def _describe(self) -> dict[str, Any]:
        # Not a data location: the access policy's path keys are left out on purpose.
        return {"project_dir": self._project_dir}


class RegisteredModelDataset(_ActiveRunDataset):
    """Register an approved model once and point the env's alias at it.

    ``save`` takes ``{"model", "input_example", "tags", "fingerprint", "reason",
    "artifacts"}`` (``model`` None: the gate found nothing new, nothing is
    registered; ``artifacts``: ``modelops.model_artifacts.build_artifacts``). Registration
    is idempotent and safe under concurrent runs: holding the registration claim of
    the candidate's fingerprint (see ``registry.registration_claim``), it reuses a
    version already registered with that fingerprint (moving the alias to it if
    needed) and registers only when there is none. The model is logged with a
    signature inferred from the small input example (never the whole training set),
    explicit pip requirements (no inference subprocess) and the project's package as
    ``code_paths`` so it loads anywhere. The sklearn form is stored with skops (its
    trusted types listed), the verified ONNX form as ``extra_files/model.onnx``; the
    version carries the serving form, the ONNX agreement and the sha256 of every file
    as stored. The outcome (``registered``, ``reused`` or
    ``unchanged``) and the version are tagged on the run.
    """

    registers = True  # the access hook refuses it in an env without access.register

    def __init__(  # noqa: PLR0913
        self,
        model_name: str,
        alias: str,
        artifact_name: str = "model",
        *,
        claim_timeout_seconds: float = registry.CLAIM_TIMEOUT_SECONDS,
        claim_poll_seconds: float = registry.CLAIM_POLL_SECONDS,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(metadata)
        self._model_name = model_name
        self._alias = alias
        self._artifact_name = artifact_name
        self._claim_timeout = float(claim_timeout_seconds)
        self._claim_poll = float(claim_poll_seconds)

    @property
    def access_aliases(self) -> tuple[str, ...]:
        """The aliases a save moves (checked by the access hook before the run)."""
        return (self._alias,)

    def _save(self, data: dict[str, Any]) -> None:
        run_id = self._active_run_id()
        policy = self._policy()  # refuse before logging anything
        check_register = getattr(policy, "check_register", None)
        if not callable(check_register):  # fail closed: no right known, no right
            raise DatasetError(
                f"The access policy bound to RegisteredModelDataset '{self._model_name}' "
                f"cannot say whether env '{policy.env}' may register model versions."
                f"\nHint: keep modelops.access.AccessPolicyHooks in HOOKS "
                f"(src/modelops/settings.py)."
            )
        check_register(None)
        if data.get("model") is None:  # the gate found nothing new to register
            self._record("unchanged", None)
            return
        fingerprint = data.get("fingerprint")
        if not fingerprint:
            raise DatasetError(
                f"The registration request for '{self._model_name}' has no candidate "
                f"fingerprint, so it cannot be registered exactly once.\nHint: "
                f"build it with the deployment pipeline's prepare_registration node."
            )
        client = MlflowClient()
        with registry.registration_claim(
            client,
            self._model_name,
            fingerprint,
            run_id=run_id,
            env=policy.env,
            timeout_seconds=self._claim_timeout,
            poll_seconds=self._claim_poll,
        ):
            outcome, version = self._register_once(
                client, data, fingerprint, run_id, policy
            )
            self._verify_alias(client, version)
        self._record(outcome, version)

    def _register_once(
        self,
        client: MlflowClient,
        data: dict[str, Any],
        fingerprint: str,
        run_id: str,
        policy: registry.AliasPolicy,
    ) -> tuple[str, str]:
        """Under the claim: reuse an identical version, else register a new one."""
        same = registry.versions_with_fingerprint(client, self._model_name, fingerprint)
        current = registry.alias_version(client, self._model_name, self._alias)
        if same:
            if current is not None and str(current.version) in {
                str(version.version) for version in same
            }:
                logger.info(
                    "%s@%s already points to version %s with this candidate's "
                    "fingerprint: nothing registered, no alias moved.",
                    self._model_name,
                    self._alias,
                    current.version,
                )
                return "unchanged", str(current.version)
            version = str(same[-1].version)
            registry.set_alias(
                client,
                self._model_name,
                self._alias,
                version,
                policy=policy,
                run_id=run_id,
                reason=(
                    f"{data['reason']} An identical candidate (fingerprint "
                    f"{fingerprint[:12]}) is already registered as version {version}: "
                    f"reused, nothing new registered."
                ),
            )
            return "reused", version
        return "registered", self._register_new(client, data, run_id, policy)

    def _register_new(
        self,
        client: MlflowClient,
        data: dict[str, Any],
        run_id: str,
        policy: registry.AliasPolicy,
    ) -> str:
        artifacts = data.get("artifacts")
        if not isinstance(artifacts, ModelArtifacts):
            raise DatasetError(
                f"The registration request for '{self._model_name}' holds no model "
                f"artifacts (ONNX/skops forms), so it cannot be registered.\nHint: "
                f"build it with the deployment pipeline's prepare_registration node."
            )
        example = data["input_example"]
        with warnings.catch_warnings():
            # MLflow warns that int columns cannot hold missing values; the data
            # contract, not the signature, is what rejects nulls here.
            warnings.filterwarnings(
                "ignore", message=".*[Ii]nteger column", category=UserWarning
            )
            signature = mlflow.models.infer_signature(
                example, data["model"].predict(example)
            )
        with tempfile.TemporaryDirectory(prefix="modelops-code-") as folder:
            package = Path(folder) / registry.package_dir().name
            shutil.copytree(
                registry.package_dir(),
                package,
                ignore=shutil.ignore_patterns("__pycache__", "*.pyc"),
            )
            model_uri, hash_tags = model_artifacts.log_model(
                data["model"],
                artifacts,
                name=self._artifact_name,
                signature=signature,
                pip_requirements=registry.pip_requirements(),
                code_paths=[str(package)],
            )
        run_tags = client.get_run(run_id).data.tags
        tags = {
            **{k: v for k, v in run_tags.items() if k.startswith("modelops.")},
            **{f"modelops.{k}": str(v) for k, v in data["tags"].items()},
            "modelops.run_id": run_id,
            registry.FINGERPRINT_TAG: data["fingerprint"],
            **artifacts.tags(),
            **hash_tags,
        }
        try:
            version = registry.register_version(
                self._model_name, model_uri, run_id, tags
            )
        except MlflowException as err:
            raise DatasetError(
                f"Registering model '{self._model_name}' failed: {err}"
            ) from err
        try:
            registry.set_alias(
                client,
                self._model_name,
                self._alias,
                version,
                policy=policy,
                run_id=run_id,
                reason=data["reason"],
            )
        except Exception:
            # Leave the registry as it was: no version without its alias.
            client.delete_model_version(self._model_name, version)
            raise
        return version

    def _verify_alias(self, client: MlflowClient, version: str) -> None:
        """Read the alias back: every registry write is checked, never assumed."""
        current = registry.alias_version(client, self._model_name, self._alias)
        found = None if current is None else str(current.version)
        if found != version:
            raise DatasetError(
                f"After registration '{self._model_name}@{self._alias}' points to "
                f"version {found}, not {version}: another run moved it at the same "
                f"time. Version {version} stays registered.\nHint: look at "
                f"`kedro models history --env <env>` and run the job again."
            )

    def _record(self, outcome: str, version: str | None) -> None:
        mlflow.set_tags(
            {
                "modelops.registered_version": version or "none",
                "modelops.registration_outcome": outcome,
                "modelops.alias": self._alias,
            }
        )
        self._data = {
            "model_name": self._model_name,
            "version": version,
            "outcome": outcome,
        }


class AliasDataset(_ActiveRunDataset):
    """Move the env's alias to an already registered version (promotion).

    ``save`` takes ``{"version", "reason"}``; a None version moves nothing.
    """

    def __init__(
        self, model_name: str, alias: str, metadata: dict[str, Any] | None = None
    ) -> None:
        super().__init__(metadata)
        self._model_name = model_name
        self._alias = alias

    @property
    def access_aliases(self) -> tuple[str, ...]:
        """The aliases a save moves (checked by the access hook before the run)."""
        return (self._alias,)

    def _save(self, data: dict[str, Any]) -> None:
        run_id = self._active_run_id()
        policy = self._policy()
        if data.get("version") is None:
            mlflow.set_tags({"modelops.promoted_version": "none"})
            self._data = dict(data)
            return
        registry.set_alias(
            MlflowClient(),
            self._model_name,
            self._alias,
            str(data["version"]),
            policy=policy,
            run_id=run_id,
            reason=data["reason"],
        )
        mlflow.set_tags(
            {
                "modelops.promoted_version": str(data["version"]),
                "modelops.alias": self._alias,
            }
        )
        self._data = dict(data)
