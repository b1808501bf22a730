"""The registered model's artifacts: ONNX and skops forms, their hashes, and the verified loader."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import logging
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from modelops.errors import ConfigError, ModelopsError
from modelops.onnx_model import (
    OnnxExportError,
    OnnxPredictor,
    export_onnx,
    onnx_sha256,
    verify_onnx,
)

logger = logging.getLogger(__name__)

DEPLOYMENT_CONF = "conf/base/parameters_deployment.yml"
SETTINGS_KEY = "model_artifacts"
SKLEARN_FILE = "model.skops"  # in the registered model directory (MLflow's skops name)
ONNX_NAME = "model.onnx"
ONNX_FILE = (
    f"extra_files/{ONNX_NAME}"  # logged via mlflow.sklearn.log_model(extra_files)
)
# The types skops may construct when it loads the sklearn form, as skops names them
# (``skops.io.get_untrusted_types``). skops already trusts most scikit-learn classes
# and numpy/builtin containers; the list names what modelops' own pipelines hold
# (default HistGradientBoosting with ordinal codes, Ridge with one-hot codes, HGB with
# native categorical splits) so the trust is explicit and reviewed here. Anything else
# is refused unless conf adds it (model_artifacts.trusted_types).
TRUSTED_TYPES: tuple[str, ...] = (
    "modelops.features.CalendarFeatures",
    "sklearn.pipeline.Pipeline",
    "sklearn.compose._column_transformer.ColumnTransformer",
    "sklearn.preprocessing._function_transformer.FunctionTransformer",
    "sklearn.preprocessing._encoders.OrdinalEncoder",
    "sklearn.preprocessing._encoders.OneHotEncoder",
    "sklearn.linear_model._ridge.Ridge",
    "sklearn.ensemble._hist_gradient_boosting.gradient_boosting."
    "HistGradientBoostingRegressor",
    "sklearn.ensemble._hist_gradient_boosting.binning._BinMapper",
    "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
    "sklearn._loss.loss.HalfSquaredError",
    "sklearn._loss._loss.CyHalfSquaredError",
    "sklearn._loss.link.IdentityLink",
    "sklearn._loss.link.Interval",
    # HGB with native categorical splits (categorical_features in model.kwargs)
    # validates its categories with functools.partial(check_array, ...).
    "functools.partial",
    "sklearn.utils.validation.check_array",
)
FORM_TAG = "modelops.serving_form"  # "onnx" | "sklearn"
FORM_REASON_TAG = "modelops.serving_form_reason"  # why sklearn (absent for onnx)
ONNX_TAG_PREFIX = "modelops.onnx."
ARTIFACT_SHA_PREFIX = "modelops.artifact_sha256."  # + relative file path
MANIFEST_SHA_TAG = "modelops.artifacts_sha256"
FORMS = ("onnx", "sklearn")
# Files MLflow itself writes into a stored model directory after registration.
MLFLOW_NOTES = ("registered_model_meta",)
DEFAULT_SETTINGS: dict[str, Any] = {
    "onnx": True,
    "tolerance": 1.0e-9,
    "verify_rows": 100_000,
    "trusted_types": [],
}
MAX_TAG_TEXT = 1000  # reasons and failure lists are cut to this on the version
TRUST_HINT = (
    f"if you reviewed the type(s) and they are safe to construct, add them to "
    f"{SETTINGS_KEY}.trusted_types in {DEPLOYMENT_CONF}"
)


class ArtifactIntegrityError(ModelopsError):
    """A registered model's artifacts cannot be trusted: nothing is loaded from them.

    Raised for a hash mismatch, missing hash tags, a missing or unexpected file, a
    type outside the trusted list, or a pickled model (never unpickled).
    """


# --- settings ---------------------------------------------------------------------------


def check_settings(settings: Mapping[str, Any] | None) -> dict[str, Any]:
    """The ``model_artifacts`` parameters, checked, with defaults for absent keys.

    Raises:
        ConfigError: an unknown key or a value of the wrong kind; the message names
            the key and ``conf/base/parameters_deployment.yml``.
    """
    where = f"{SETTINGS_KEY} in {DEPLOYMENT_CONF}"
    if settings is None:
        settings = {}
    if not isinstance(settings, Mapping):
        raise ConfigError(
            f"{where} is a {type(settings).__name__}, not a mapping of settings.\n"
            f"Hint: write it as a block with the keys {sorted(DEFAULT_SETTINGS)}."
        )
    unknown = sorted(str(key) for key in settings if key not in DEFAULT_SETTINGS)
    if unknown:
        raise ConfigError(
            f"Unknown key(s) {unknown} under {where}; expected only "
            f"{sorted(DEFAULT_SETTINGS)}.\nHint: fix the spelling in {DEPLOYMENT_CONF}."
        )
    merged = {**DEFAULT_SETTINGS, **settings}

    def refuse(key: str, expected: str) -> ConfigError:
        return ConfigError(
            f"{SETTINGS_KEY}.{key} is {merged[key]!r}; expected {expected}.\n"
            f"Hint: fix {SETTINGS_KEY}.{key} in {DEPLOYMENT_CONF}."
        )

    if not isinstance(merged["onnx"], bool):
        raise refuse("onnx", "true or false")
    tolerance = merged["tolerance"]
    if (
        isinstance(tolerance, bool)
        or not isinstance(tolerance, int | float)
        or not np.isfinite(tolerance)
        or tolerance < 0
    ):
        raise refuse("tolerance", "a finite number >= 0 (e.g. 1.0e-9)")
    rows = merged["verify_rows"]
    if isinstance(rows, bool) or not isinstance(rows, int) or rows < 1:
        raise refuse("verify_rows", "an integer >= 1")
    trusted = merged["trusted_types"]
    if trusted is None:
        trusted = []
    if isinstance(trusted, str) or not isinstance(trusted, Sequence):
        raise refuse("trusted_types", "a list of fully qualified type names")
    bad = [name for name in trusted if not isinstance(name, str) or "." not in name]
    if bad:
        raise refuse(
            "trusted_types",
            f"fully qualified type names such as 'package.module.Class' (not {bad})",
        )
    return {
        "onnx": merged["onnx"],
        "tolerance": float(tolerance),
        "verify_rows": int(rows),
        "trusted_types": [str(name) for name in trusted],
    }


# --- built at registration --------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class ModelArtifacts:
    """What registration stores besides the sklearn pipeline: the verified ONNX form.

    Attributes:
        onnx_bytes: The ONNX model, verified; None when served in its sklearn form.
        form: ``"onnx"`` or ``"sklearn"``.
        reason: Why the sklearn form (export refusal, failed verification, disabled).
        verification: ``verify_onnx``'s report (empty when nothing was verified),
            plus ``seconds`` (export + verification).
        trusted_types: The types skops may construct for the sklearn form
            (``TRUSTED_TYPES`` plus conf's extras).
    """

    onnx_bytes: bytes | None = dataclasses.field(repr=False)
    form: str
    reason: str | None
    verification: dict[str, Any]
    trusted_types: tuple[str, ...] = TRUSTED_TYPES

    def tags(self) -> dict[str, str]:
        """The version's serving-form and agreement tags (string values)."""
        exported = self.onnx_bytes is not None or bool(self.verification)
        tags = {FORM_TAG: self.form, f"{ONNX_TAG_PREFIX}exported": _text(exported)}
        if self.reason is not None:
            tags[FORM_REASON_TAG] = _cut(self.reason)
        report = self.verification
        for key, value in report.items():
            if key == "failures":
                if value:
                    joined = "; ".join(map(str, value))
                    tags[f"{ONNX_TAG_PREFIX}failures"] = _cut(joined)
            elif key == "reason":
                if value is not None:
                    tags[f"{ONNX_TAG_PREFIX}reason"] = _cut(str(value))
            elif isinstance(value, str | int | float | bool) or value is None:
                tags[f"{ONNX_TAG_PREFIX}{key}"] = _text(value)
        if report:
            tags[f"{ONNX_TAG_PREFIX}agreement"] = agreement(report)
        return tags


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:.6g}"
    return "none" if value is None else str(value)


def _cut(text: str) -> str:
    return text if len(text) <= MAX_TAG_TEXT else text[: MAX_TAG_TEXT - 3] + "..."


def agreement(report: Mapping[str, Any]) -> str:
    """One line saying how ONNX and sklearn agreed (the version's agreement tag)."""
    rows = report.get("rows_checked", 0)
    if not report.get("passed"):
        return (
            f"failed on {rows} rows: max |diff| {report.get('max_abs_diff', 'n/a')} "
            f"(tolerance {report.get('tolerance')})"
        )
    if report.get("exact"):
        return f"bit-exact on {rows} rows"
    return (
        f"within tolerance {report.get('tolerance'):g} on {rows} rows: max |diff| "
        f"{report.get('max_abs_diff'):.3g}, max relative diff "
        f"{report.get('max_rel_diff'):.3g}"
    )


def untrusted_types(model: Any, trusted: Sequence[str]) -> list[str]:
    """The types in ``model``'s skops form that skops would refuse given ``trusted``."""
    import skops.io  # noqa: PLC0415 (registration-time dependency)

    found = skops.io.get_untrusted_types(data=skops.io.dumps(model))
    return sorted(set(found) - set(trusted))


def build_artifacts(
    model: Any,
    held_out: pd.DataFrame,
    features: Mapping[str, Any],
    settings: Mapping[str, Any] | None,
) -> ModelArtifacts:
    """Export ``model`` to ONNX and verify it, or say why it is served as sklearn.

    Pure: no MLflow. The ONNX form is kept only when ``verify_onnx`` passes on the
    held-out rows plus synthetic edge rows within ``settings['tolerance']``; a model
    that cannot be exported or fails verification gets the sklearn form and the
    reason — never a silently wrong ONNX.

    Args:
        model: The fitted Pipeline.
        held_out: Rows the model was not trained on (its input columns).
        features: The ``features`` parameters.
        settings: The ``model_artifacts`` parameters (``check_settings``).

    Raises:
        ConfigError: invalid settings, or the model holds a type skops would not
            load (outside ``TRUSTED_TYPES`` and ``model_artifacts.trusted_types``).
    """
    checked = check_settings(settings)
    trusted = tuple(dict.fromkeys([*TRUSTED_TYPES, *checked["trusted_types"]]))
    refused = untrusted_types(model, trusted)
    if refused:
        raise ConfigError(
            f"The model holds type(s) {refused} outside the trusted types its sklearn "
            f"form (skops) may construct, so it cannot be stored without pickle. "
            f"Nothing was registered.\nHint: {TRUST_HINT}, or train a model made of "
            f"trusted types."
        )
    if not checked["onnx"]:
        return ModelArtifacts(
            None,
            "sklearn",
            f"ONNX export is switched off ({SETTINGS_KEY}.onnx: false in "
            f"{DEPLOYMENT_CONF}).",
            {},
            trusted,
        )
    started = time.perf_counter()
    try:
        onnx_bytes = export_onnx(model, features)
    except OnnxExportError as err:
        reason = str(err).split("\nHint:")[0]
        logger.warning("%s", err)
        return ModelArtifacts(None, "sklearn", reason, {}, trusted)
    except Exception as err:  # an unexpected failure must not block registration
        logger.exception("ONNX export failed")
        return ModelArtifacts(
            None,
            "sklearn",
            f"ONNX export failed ({type(err).__name__}: {err}). The model will be "
            f"served in its sklearn form.",
            {},
            trusted,
        )
    report = verify_onnx(
        model,
        onnx_bytes,
        held_out,
        features,
        checked["tolerance"],
        max_rows=checked["verify_rows"],
    )
    report["seconds"] = round(time.perf_counter() - started, 3)
    if not report["passed"]:
        logger.warning("ONNX verification failed: %s", report["reason"])
        return ModelArtifacts(None, "sklearn", report["reason"], report, trusted)
    logger.info(
        "ONNX form verified in %.1f s: %s", report["seconds"], agreement(report)
    )
    return ModelArtifacts(onnx_bytes, "onnx", None, report, trusted)


# --- hashes -----------------------------------------------------------------------------


def model_files(directory: str | Path) -> dict[str, Path]:
    """Every file of a model directory by relative POSIX path, MLflow's own notes aside.

    MLflow writes ``registered_model_meta`` (the model's name and version) into a
    model directory whenever a ``models:/`` URI is loaded from a local artifact store,
    i.e. into the stored directory itself; modelops never reads it, so it is neither
    hashed nor refused.
    """
    root = Path(directory)
    return {
        path.relative_to(root).as_posix(): path
        for path in sorted(root.rglob("*"))
        if path.is_file() and path.relative_to(root).as_posix() not in MLFLOW_NOTES
    }


def file_hashes(directory: str | Path) -> dict[str, str]:
    """sha256 of every model file below ``directory``, keyed by relative POSIX path."""
    return {
        relpath: hashlib.sha256(path.read_bytes()).hexdigest()
        for relpath, path in model_files(directory).items()
    }


def manifest_sha256(hashes: Mapping[str, str]) -> str:
    """One sha256 over every (relative path, sha256) pair, in path order."""
    lines = "".join(f"{path}\t{hashes[path]}\n" for path in sorted(hashes))
    return hashlib.sha256(lines.encode()).hexdigest()


def hash_tags(hashes: Mapping[str, str]) -> dict[str, str]:
    """The version tags recording ``hashes``: one per file plus the manifest."""
    return {
        **{f"{ARTIFACT_SHA_PREFIX}{path}": sha for path, sha in hashes.items()},
        MANIFEST_SHA_TAG: manifest_sha256(hashes),
    }


def recorded_hashes(tags: Mapping[str, str]) -> dict[str, str]:
    """The per-file hashes a version's tags record."""
    return {
        key[len(ARTIFACT_SHA_PREFIX) :]: value
        for key, value in tags.items()
        if key.startswith(ARTIFACT_SHA_PREFIX)
    }


# --- the served model -------------------------------------------------------------------


class ServedModel:
    """A registered version, verified, in the form it is served: ONNX or sklearn.

    Attributes:
        form: ``"onnx"`` or ``"sklearn"``.
        name: The registered model name.
        version: The version number.
        run_id: The run that logged it.
        tags: The version's tags.
        columns: The model's input columns.
        sha256: Of the artifact served (the ONNX file or the skops file).
    """

    def __init__(  # noqa: PLR0913
        self,
        *,
        name: str,
        version: int,
        run_id: str | None,
        tags: Mapping[str, str],
        skops_bytes: bytes,
        onnx_bytes: bytes | None = None,
        trusted_types: Sequence[str] = TRUSTED_TYPES,
        intra_op_threads: int = 1,
        row_threads: int = 1,
    ) -> None:
        self.name = name
        self.version = int(version)
        self.run_id = run_id
        self.tags = dict(tags)
        self._skops_bytes = skops_bytes
        self._trusted = list(dict.fromkeys(trusted_types))
        self._sklearn: Any = None
        self._lock = threading.Lock()
        self._predictor: OnnxPredictor | None = None
        if onnx_bytes is not None:
            self.form = "onnx"
            self._predictor = OnnxPredictor(
                onnx_bytes, intra_op_threads=intra_op_threads, row_threads=row_threads
            )
            self.sha256 = onnx_sha256(onnx_bytes)
            self.columns: list[str] = list(self._predictor.columns)
            self._time_column: str | None = None
        else:
            self.form = "sklearn"
            self.sha256 = hashlib.sha256(skops_bytes).hexdigest()
            model = self.sklearn_model
            self.columns = [str(c) for c in getattr(model, "feature_names_in_", [])]
            first = model.steps[0][1] if hasattr(model, "steps") else None
            self._time_column = getattr(first, "time_column", None)

    @property
    def sklearn_model(self) -> Any:
        """The sklearn Pipeline from the skops file (trusted types only), loaded once."""
        if self._sklearn is None:
            with self._lock:
                if self._sklearn is None:
                    self._sklearn = self._load_sklearn()
        return self._sklearn

    def _load_sklearn(self) -> Any:
        import skops.io  # noqa: PLC0415
        from skops.io.exceptions import UntrustedTypesFoundException  # noqa: PLC0415

        try:
            return skops.io.load(io.BytesIO(self._skops_bytes), trusted=self._trusted)
        except UntrustedTypesFoundException as err:
            found = skops.io.get_untrusted_types(data=self._skops_bytes)
            refused = sorted(set(found) - set(self._trusted))
            raise ArtifactIntegrityError(
                f"Model '{self.name}' version {self.version}: {SKLEARN_FILE} holds "
                f"type(s) {refused} outside the trusted list; it was not loaded.\n"
                f"Hint: {TRUST_HINT} (the loader's extra_trusted_types)."
            ) from err

    def predict_frame(self, frame: pd.DataFrame) -> np.ndarray:
        """Predictions (float64, one per row) for a frame holding the input columns."""
        if self._predictor is not None:
            return self._predictor.predict(frame)
        predicted = self.sklearn_model.predict(frame[self.columns])
        return np.asarray(predicted, dtype=np.float64)

    def predict_values(self, values: Mapping[str, Sequence[Any]]) -> np.ndarray:
        """Predictions for JSON-style values per column (ISO timestamps, None...).

        The ONNX form scores them directly; the sklearn form builds a frame (the
        time column parsed as datetimes) — callers holding the contract's dtypes
        should build the frame themselves and call ``predict_frame``.
        """
        if self._predictor is not None:
            return self._predictor.predict_values(values)
        absent = [column for column in self.columns if column not in values]
        if absent:
            raise ValueError(f"Columns {absent} are missing from the values.")
        frame = pd.DataFrame(
            {
                column: list(value) if isinstance(value, list | tuple) else [value]
                for column, value in ((c, values[c]) for c in self.columns)
            }
        )
        if self._time_column in frame.columns:
            frame[self._time_column] = pd.to_datetime(frame[self._time_column])
        return self.predict_frame(frame)

    def __repr__(self) -> str:
        return (
            f"ServedModel({self.name!r}, version={self.version}, form={self.form!r}, "
            f"sha256={self.sha256[:12]})"
        )


def _refuse(name: str, version: Any, what: str, hint: str) -> ArtifactIntegrityError:
    return ArtifactIntegrityError(
        f"Model '{name}' version {version}: {what}. Nothing was loaded.\nHint: {hint}"
    )


REGISTER_AGAIN = (
    "register the model again with the deployment job (kedro run), which records "
    "the hashes"
)


def check_hash_tags(tags: Mapping[str, str], name: str, version: Any) -> dict[str, str]:
    """The per-file hashes the tags record, consistent with the manifest tag.

    Raises:
        ArtifactIntegrityError: no hash tags, or per-file tags that do not add up to
            the manifest tag.
    """
    expected = recorded_hashes(tags)
    if not expected or MANIFEST_SHA_TAG not in tags:
        raise _refuse(
            name,
            version,
            f"has no artifact hash tags ({ARTIFACT_SHA_PREFIX}*, {MANIFEST_SHA_TAG}), "
            f"so its files cannot be verified",
            REGISTER_AGAIN,
        )
    if manifest_sha256(expected) != tags[MANIFEST_SHA_TAG]:
        raise _refuse(
            name,
            version,
            f"its per-file hash tags do not match {MANIFEST_SHA_TAG} (expected "
            f"{tags[MANIFEST_SHA_TAG][:12]}, found {manifest_sha256(expected)[:12]})",
            "the version's tags were edited: " + REGISTER_AGAIN,
        )
    return expected


def verified_files(
    directory: str | Path, tags: Mapping[str, str], name: str, version: Any
) -> dict[str, bytes]:
    """Every file of a downloaded model directory, checked against the version's tags.

    Each file is read once and hashed from the bytes returned, so what is loaded is
    what was checked.

    Raises:
        ArtifactIntegrityError: no hash tags, a missing, extra or changed file, or a
            manifest that does not match the per-file tags.
    """
    expected = check_hash_tags(tags, name, version)
    root = Path(directory)
    found = model_files(root)
    missing = sorted(set(expected) - set(found))
    if missing:
        raise _refuse(
            name,
            version,
            f"file '{missing[0]}' recorded in its hash tags is missing from the "
            f"artifact store"
            + (f" (and {len(missing) - 1} more)" if missing[1:] else ""),
            REGISTER_AGAIN,
        )
    extra = sorted(set(found) - set(expected))
    if extra:
        raise _refuse(
            name,
            version,
            f"file '{extra[0]}' in the artifact store has no recorded hash (added "
            f"after registration)"
            + (f" (and {len(extra) - 1} more)" if extra[1:] else ""),
            "remove the file, or " + REGISTER_AGAIN,
        )
    contents: dict[str, bytes] = {}
    for relpath, path in found.items():
        data = path.read_bytes()
        sha = hashlib.sha256(data).hexdigest()
        if sha != expected[relpath]:
            raise _refuse(
                name,
                version,
                f"file '{relpath}' does not match its recorded sha256 (expected "
                f"{expected[relpath][:12]}, found {sha[:12]}): the artifact was "
                f"changed after registration",
                "restore the artifact store from a backup, or " + REGISTER_AGAIN,
            )
        contents[relpath] = data
    return contents


def load_served_model(  # noqa: PLR0913
    client: Any,
    model_name: str,
    version: int | str,
    *,
    tracking_uri: str | None = None,
    prefer: str = "onnx",
    intra_op_threads: int = 1,
    row_threads: int = 1,
    extra_trusted_types: Sequence[str] = (),
) -> ServedModel:
    """Download a registered version, verify every file's hash, load its served form.

    The ONNX form where the version's ``FORM_TAG`` is ``onnx`` and ``prefer`` is
    ``onnx``; else the sklearn form from ``model.skops`` with skops and
    ``TRUSTED_TYPES`` + ``extra_trusted_types`` (never the list recorded in the
    artifact, never pickle).

    Args:
        client: An ``MlflowClient`` on the registry.
        model_name: The registered model name.
        version: The version number.
        tracking_uri: Where to download from (default: the client's tracking URI).
        prefer: ``"onnx"`` or ``"sklearn"``.
        intra_op_threads: onnxruntime threads within an operator.
        row_threads: onnxruntime runs at once on a large batch, each on a share of
            the rows (bit-equal predictions; ``OnnxPredictor``).
        extra_trusted_types: Types skops may construct beyond ``TRUSTED_TYPES``.

    Raises:
        ArtifactIntegrityError: see ``verified_files``; also a version without
            ``model.skops`` (a pickled model is never loaded) or an ONNX file whose
            hash differs from the verified one.
        ValueError: ``prefer`` is not ``onnx`` or ``sklearn``.
    """
    import mlflow.artifacts  # noqa: PLC0415

    if prefer not in FORMS:
        raise ValueError(f"prefer must be one of {FORMS}, got {prefer!r}.")
    found = client.get_model_version(model_name, str(version))
    tags = dict(found.tags)
    check_hash_tags(tags, model_name, found.version)  # before downloading anything
    uri = client.get_model_version_download_uri(model_name, str(found.version))
    with tempfile.TemporaryDirectory(prefix="modelops-model-") as folder:
        local = mlflow.artifacts.download_artifacts(
            artifact_uri=uri,
            dst_path=folder,
            tracking_uri=tracking_uri or client.tracking_uri,
        )
        contents = verified_files(local, tags, model_name, found.version)
    if SKLEARN_FILE not in contents:
        raise _refuse(
            model_name,
            found.version,
            f"has no {SKLEARN_FILE} (a pickled model?); modelops never unpickles a "
            f"model",
            "register the model again with the deployment job (kedro run), which "
            "stores it with skops",
        )
    onnx_bytes = None
    if tags.get(FORM_TAG) == "onnx" and prefer == "onnx":
        onnx_bytes = contents.get(ONNX_FILE)
        recorded = tags.get(f"{ONNX_TAG_PREFIX}onnx_sha256")
        if onnx_bytes is None or (
            recorded is not None and onnx_sha256(onnx_bytes) != recorded
        ):
            raise _refuse(
                model_name,
                found.version,
                f"is tagged {FORM_TAG}=onnx but '{ONNX_FILE}' is absent or is not "
                f"the verified ONNX model (sha256 {str(recorded)[:12]})",
                "register the model again with the deployment job (kedro run)",
            )
    return ServedModel(
        name=model_name,
        version=int(found.version),
        run_id=found.run_id,
        tags=tags,
        skops_bytes=contents[SKLEARN_FILE],
        onnx_bytes=onnx_bytes,
        trusted_types=[*TRUSTED_TYPES, *extra_trusted_types],
        intra_op_threads=intra_op_threads,
        row_threads=row_threads,
    )


# --- logging (used by the registry dataset) -----------------------------------------------


def log_model(  # noqa: PLR0913
    model: Any,
    artifacts: ModelArtifacts,
    *,
    name: str,
    signature: Any = None,
    pip_requirements: Sequence[str] | None = None,
    code_paths: Sequence[str] | None = None,
) -> tuple[str, dict[str, str]]:
    """Log ``model`` (skops) and its ONNX form into the active run; hash them as stored.

    Returns:
        The logged model's URI and the hash tags of every file of its directory,
        downloaded back from the artifact store (what a loader will find).

    Raises:
        ArtifactIntegrityError: the stored directory lacks a file it must hold.
    """
    import mlflow  # noqa: PLC0415 (the registry dataset's side)

    with tempfile.TemporaryDirectory(prefix="modelops-log-") as folder:
        extra_files = None
        if artifacts.onnx_bytes is not None:
            onnx_path = Path(folder) / ONNX_NAME
            onnx_path.write_bytes(artifacts.onnx_bytes)
            extra_files = [str(onnx_path)]
        info = mlflow.sklearn.log_model(
            model,
            name=name,
            signature=signature,
            serialization_format="skops",
            skops_trusted_types=list(artifacts.trusted_types),
            extra_files=extra_files,
            pip_requirements=None
            if pip_requirements is None
            else list(pip_requirements),
            code_paths=None if code_paths is None else list(code_paths),
        )
    # The logged model's own storage (what the version's download URI names), not
    # models:/..., whose download adds a client-side registered_model_meta file.
    stored = mlflow.get_logged_model(info.model_id).artifact_location
    with tempfile.TemporaryDirectory(prefix="modelops-stored-") as folder:
        local = mlflow.artifacts.download_artifacts(
            artifact_uri=stored, dst_path=folder
        )
        hashes = file_hashes(local)
    needed = [SKLEARN_FILE] + ([ONNX_FILE] if artifacts.onnx_bytes is not None else [])
    absent = [path for path in needed if path not in hashes]
    if absent:
        raise ArtifactIntegrityError(
            f"The logged model {info.model_uri} lacks {absent} in the artifact store "
            f"(found {sorted(hashes)[:10]}...).\nHint: check the artifact store of "
            f"the tracking server, then run the job again."
        )
    if artifacts.onnx_bytes is not None and hashes[ONNX_FILE] != onnx_sha256(
        artifacts.onnx_bytes
    ):
        raise ArtifactIntegrityError(
            f"The stored {ONNX_FILE} of {info.model_uri} is not the verified ONNX "
            f"model (sha256 {hashes[ONNX_FILE][:12]}, verified "
            f"{onnx_sha256(artifacts.onnx_bytes)[:12]}).\nHint: check the artifact "
            f"store of the tracking server, then run the job again."
        )
    return info.model_uri, hash_tags(hashes)
