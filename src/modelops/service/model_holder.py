"""The served model: the version a registry alias points to, loaded verified, swapped atomically.

:class:`ModelHolder` keeps what serves as one immutable :class:`LoadedModel` (the
:class:`modelops.model_artifacts.ServedModel` and what it is). A daemon thread asks
the registry every ``poll_seconds`` where the alias points; when it moved (promotion
or rollback) the version is loaded through ``load_served_model`` (which checks every
artifact file against the hashes recorded on the version and never unpickles), warmed
up on the last request's rows off the request path, then swapped in with one
reference assignment. A request reads the reference once, so requests in flight
finish on the model they started with and none fails. A version that fails to load
(a hash mismatch included) or to score is counted in ``/metrics`` and refused; the
old one keeps serving.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import threading
import time
from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np

from modelops.errors import ModelopsError
from modelops.service.metrics import ServiceMetrics
from modelops.service.request_validation import RequestValidator, ValidatedBatch

logger = logging.getLogger(__name__)
INLINE_MAX_ROWS = 64  # ONNX requests up to this many rows are scored on the event loop
GIT_COMMIT_TAG = "modelops.git_commit"
GIT_DIRTY_TAG = "modelops.git_dirty"

# (client, model name, version) -> a ServedModel
Loader = Callable[[Any, str, int], Any]


class ServingError(ModelopsError):
    """The service cannot do what was asked (no model for the alias, a load failed)."""


@dataclasses.dataclass(frozen=True)
class ModelInfo:
    """What a loaded model is: /model shows this, every response names the version."""

    name: str
    version: int
    alias: str
    run_id: str | None
    git_commit: str | None
    git_dirty: str | None
    loaded_since: str
    model_uri: str
    form: str
    sha256: str | None = None

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready fields."""
        return dataclasses.asdict(self)


class LoadedModel(NamedTuple):
    """The model and what it is, swapped as one reference (never half-updated)."""

    served: Any  # a modelops.model_artifacts.ServedModel (or any object like it)
    info: ModelInfo
    version_header: str
    identity: tuple[str, int, str | None]  # model name, version, run id (the log's)
    inline: bool  # ONNX: small requests are scored on the event loop

    def predict(self, batch: ValidatedBatch) -> np.ndarray:
        """Predictions for checked rows: ONNX on the JSON values, sklearn on a frame."""
        if self.info.form == "onnx":
            return np.asarray(self.served.predict_values(batch.values), np.float64)
        return np.asarray(self.served.predict_frame(batch.frame()), np.float64)


def model_info(served: Any, alias: str) -> ModelInfo:
    """The :class:`ModelInfo` of a served model (its version's tags name the commit)."""
    tags = dict(getattr(served, "tags", None) or {})
    return ModelInfo(
        name=str(served.name),
        version=int(served.version),
        alias=alias,
        run_id=served.run_id,
        git_commit=tags.get(GIT_COMMIT_TAG),
        git_dirty=tags.get(GIT_DIRTY_TAG),
        loaded_since=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        model_uri=f"models:/{served.name}/{served.version}",
        form=str(served.form),
        sha256=getattr(served, "sha256", None),
    )


class RefreshOutcome(NamedTuple):
    """What a registry check did."""

    changed: bool
    previous_version: int | None
    version: int | None


def registry_loader(
    tracking_uri: str, *, form: str = "onnx", intra_op_threads: int = 1
) -> Loader:
    """Load versions with ``modelops.model_artifacts.load_served_model`` (verified)."""

    def load(client: Any, model_name: str, version: int) -> Any:
        from modelops.model_artifacts import load_served_model  # noqa: PLC0415

        return load_served_model(
            client,
            model_name,
            version,
            tracking_uri=tracking_uri,
            prefer=form,
            intra_op_threads=intra_op_threads,
        )

    return load


def _failure_reason(err: BaseException) -> str:
    try:
        from modelops.model_artifacts import ArtifactIntegrityError  # noqa: PLC0415
    except ImportError:  # pragma: no cover (the module ships with the package)
        return "load"
    return "integrity" if isinstance(err, ArtifactIntegrityError) else "load"


class ModelHolder:
    """The model ``models:/<name>@<alias>`` points to, kept current.

    ``current`` is one immutable :class:`LoadedModel` (or None before the first load);
    readers take the reference once. ``refresh`` asks the registry where the alias
    points and, when it moved, loads that version (by number, so a move during the
    load cannot mix two versions), warms it up, then swaps it in.
    """

    def __init__(  # noqa: PLR0913
        self,
        model_name: str,
        alias: str,
        tracking_uri: str,
        validator: RequestValidator,
        *,
        loader: Loader | None = None,
        metrics: ServiceMetrics | None = None,
        client: Any = None,
    ) -> None:
        self.model_name = model_name
        self.alias = alias
        self.tracking_uri = tracking_uri
        self.validator = validator
        self.loader = loader or registry_loader(tracking_uri)
        self.metrics = metrics or ServiceMetrics()
        self._current: LoadedModel | None = None
        self._swap_lock = threading.Lock()
        self._load_lock = threading.Lock()
        self._stop = threading.Event()
        self._poller: threading.Thread | None = None
        self._client: Any = client  # an MlflowClient on the registry (made on use)
        self.last_batch: ValidatedBatch | None = None  # last scored input (not logged)
        self.last_error: str | None = None

    @property
    def current(self) -> LoadedModel | None:
        """The model serving now (read it once per request)."""
        return self._current

    def prepare(self, served: Any, info: ModelInfo | None = None) -> LoadedModel:
        """Wrap a loaded model for serving and warm it up on the last request's rows.

        Raises:
            ServingError: the model needs a column the contract lacks, or fails on
                the last request served (it is kept out).
        """
        info = info or model_info(served, self.alias)
        missing = [c for c in served.columns if c not in self.validator.columns]
        if missing:
            raise ServingError(
                f"Version {info.version} reads column(s) {missing} that requests do not "
                f"carry (the data contract minus the target); it is not served."
            )
        loaded = LoadedModel(
            served,
            info,
            str(info.version),
            (info.name, info.version, info.run_id),
            info.form == "onnx",
        )
        batch = self.last_batch
        if batch is not None:  # score real input once before any request does
            try:
                loaded.predict(batch)
            except Exception as err:
                self.metrics.load_failures.labels(reason="warm_up").inc()
                raise ServingError(
                    f"Version {info.version} failed on the last request's rows "
                    f"({type(err).__name__}); it is not served."
                ) from err
        return loaded

    def swap(self, loaded: LoadedModel) -> LoadedModel | None:
        """Serve ``loaded`` from the next request on; returns what served before."""
        with self._swap_lock:
            previous, self._current = self._current, loaded
        if previous is not None and previous.info.version != loaded.info.version:
            self.metrics.swaps.inc()
        info = loaded.info
        self.metrics.served(info.name, info.alias, info.version, info.form)
        return previous

    def install(self, served: Any, info: ModelInfo | None = None) -> LoadedModel:
        """Prepare and swap in an already loaded model (tests, warm starts)."""
        loaded = self.prepare(served, info)
        self.swap(loaded)
        return loaded

    def _registry(self) -> Any:
        from mlflow.tracking import MlflowClient  # noqa: PLC0415 (loaded when needed)

        if self._client is None:
            self._client = MlflowClient(self.tracking_uri, self.tracking_uri)
        return self._client

    def refresh(self, timeout: float = 300.0) -> RefreshOutcome:
        """Load the version the alias points to now, if it is not the one served.

        Raises:
            ServingError: no version has the alias, another load holds the lock
                longer than ``timeout``, or the new version fails to load, to pass
                its hash check or to score the last request's rows (the old model
                keeps serving).
        """
        if not self._load_lock.acquire(timeout=timeout):
            raise ServingError(
                f"Another model load is still running after {timeout} s."
            )
        try:
            return self._refresh()
        finally:
            self._load_lock.release()

    def _refresh(self) -> RefreshOutcome:
        from modelops.registry import alias_version  # noqa: PLC0415 (imports mlflow)

        client = self._registry()
        try:
            found = alias_version(client, self.model_name, self.alias)
        except Exception as err:
            self.metrics.load_failures.labels(reason="no_alias").inc()
            raise ServingError(
                f"Asking the registry where '{self.model_name}@{self.alias}' points "
                f"failed: {type(err).__name__}."
            ) from err
        current = self._current
        previous = current.info.version if current else None
        if found is None:
            self.metrics.load_failures.labels(reason="no_alias").inc()
            raise ServingError(
                f"No version of registered model '{self.model_name}' has the alias "
                f"'{self.alias}'.\nHint: promote one (`kedro run --env ...`) or check "
                f"MLFLOW_TRACKING_URI."
            )
        version = int(found.version)
        if version == previous:
            return RefreshOutcome(False, previous, version)
        started = time.perf_counter()
        uri = f"models:/{self.model_name}/{version}"
        try:
            served = self.loader(client, self.model_name, version)
        except Exception as err:
            self.metrics.load_failures.labels(reason=_failure_reason(err)).inc()
            raise ServingError(f"Loading {uri} failed: {err}") from err
        loaded = self.prepare(served)
        self.swap(loaded)
        self.last_error = None
        logger.info(
            "Serving %s@%s: version %s -> %s (run %s, %s form, sha256 %s, ready in "
            "%.1f s)",
            self.model_name,
            self.alias,
            previous,
            version,
            loaded.info.run_id,
            loaded.info.form,
            (loaded.info.sha256 or "-")[:12],
            time.perf_counter() - started,
        )
        return RefreshOutcome(True, previous, version)

    def load_first(self, attempts: int, interval: float) -> LoadedModel:
        """Load the first model: ``attempts`` tries, ``interval`` seconds apart.

        Raises:
            ServingError: every attempt failed (the last error says why).
        """
        for attempt in range(1, attempts + 1):
            try:
                self.refresh()
            except ServingError as err:
                self.last_error = str(err)
                logger.warning("Load attempt %d/%d: %s", attempt, attempts, err)
                if attempt < attempts and self._stop.wait(interval):
                    break
            else:
                break
        current = self._current
        if current is None:
            raise ServingError(
                f"No model to serve after {attempts} attempt(s): {self.last_error}"
            )
        return current

    def start_polling(self, interval: float) -> None:
        """Check the alias every ``interval`` seconds in a daemon thread."""
        if self._poller is not None:
            return
        self._stop.clear()
        self._poller = threading.Thread(
            target=self._poll,
            args=(interval,),
            name="modelops-alias-poller",
            daemon=True,
        )
        self._poller.start()

    def _poll(self, interval: float) -> None:
        while not self._stop.wait(interval):
            try:
                self.refresh(timeout=interval)
            except ServingError as err:
                self.last_error = str(err)
                logger.warning("Alias check failed, serving what was loaded: %s", err)
            except Exception as err:
                self.last_error = type(err).__name__
                logger.exception("Alias check failed: %s", type(err).__name__)

    def stop(self, timeout: float = 5.0) -> None:
        """Stop polling (waits for a check in progress up to ``timeout``)."""
        self._stop.set()
        if self._poller is not None:
            self._poller.join(timeout)
            self._poller = None
