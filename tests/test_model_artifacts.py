"""Tests of the registered model's artifacts: forms, tags, hashes and the verified loader."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import mlflow
import numpy as np
import pytest
import skops.io
from mlflow.tracking import MlflowClient
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.pipeline import Pipeline

from modelops import model_artifacts, onnx_model
from modelops.errors import ConfigError
from modelops.model_artifacts import (
    ARTIFACT_SHA_PREFIX,
    FORM_REASON_TAG,
    FORM_TAG,
    MANIFEST_SHA_TAG,
    ONNX_FILE,
    ONNX_TAG_PREFIX,
    SKLEARN_FILE,
    TRUSTED_TYPES,
    ArtifactIntegrityError,
    ModelArtifacts,
    ServedModel,
    build_artifacts,
    check_settings,
    file_hashes,
    hash_tags,
    load_served_model,
    manifest_sha256,
)
from modelops.modeling import build_model, model_inputs
from modelops.pipelines.training.nodes import split_model_input, train_model
from modelops.registry import pip_requirements
from tests.conftest import new_mlflow_store

RIDGE = {"class": "sklearn.linear_model.Ridge", "kwargs": {}, "seed": 0}
SMALL_HGB = {
    "class": "sklearn.ensemble.HistGradientBoostingRegressor",
    "kwargs": {"max_iter": 40, "early_stopping": False},
    "seed": 0,
}
SETTINGS = {
    "onnx": True,
    "tolerance": 1e-9,
    "verify_rows": 100_000,
    "trusted_types": [],
}
NAME = "bikes"
PIP = pip_requirements()  # explicit: MLflow's inference runs a slow subprocess


class Clip(TransformerMixin, BaseEstimator):
    """A custom step: no ONNX converter, and a type skops does not trust."""

    def fit(self, X, y=None):
        return self

    def transform(self, X):
        return np.clip(X, -1e6, 1e6)


@pytest.fixture(scope="module")
def features(data_processing_params) -> dict[str, Any]:
    return data_processing_params["features"]


@pytest.fixture(scope="module")
def split(model_input_table, training_params, features):
    train, test, _ = split_model_input(
        model_input_table, training_params["split"], features
    )
    return train, test


@pytest.fixture(scope="module")
def held_out(split, features):
    return model_inputs(split[1], features)


@pytest.fixture(scope="module")
def hgb(split, features, training_params):
    """The default model (conf/base/parameters_training.yml), trained on the fixture."""
    return train_model(split[0], features, training_params["model"])


@pytest.fixture(scope="module")
def hgb_artifacts(hgb, held_out, features) -> ModelArtifacts:
    return build_artifacts(hgb, held_out, features, SETTINGS)


@pytest.fixture(scope="module")
def ridge(split, features):
    return train_model(split[0], features, RIDGE)


@pytest.fixture(scope="module")
def native_categorical(split, features):
    """HGB with native categorical splits: skl2onnx converts it silently wrong."""
    kwargs = {**SMALL_HGB["kwargs"], "categorical_features": [0, 1, 2]}
    return train_model(split[0], features, {**SMALL_HGB, "kwargs": kwargs})


@pytest.fixture(scope="module")
def clipped(split, features):
    steps = build_model(features, RIDGE).steps
    model = Pipeline([*steps[:-1], ("clip", Clip()), steps[-1]])
    return model.fit(model_inputs(split[0], features), split[0][features["target"]])


# --- build_artifacts: the ONNX form, or the sklearn form and why -------------------------


def test_default_hgb_is_served_as_verified_bit_exact_onnx(hgb_artifacts, held_out):
    tags = hgb_artifacts.tags()

    assert hgb_artifacts.form == "onnx"
    assert hgb_artifacts.reason is None
    assert hgb_artifacts.onnx_bytes is not None
    assert tags[FORM_TAG] == "onnx"
    assert FORM_REASON_TAG not in tags
    assert tags[f"{ONNX_TAG_PREFIX}passed"] == "true"
    assert tags[f"{ONNX_TAG_PREFIX}exact"] == "true"
    assert tags[f"{ONNX_TAG_PREFIX}max_abs_diff"] == "0"
    assert tags[f"{ONNX_TAG_PREFIX}tolerance"] == "1e-09"
    assert int(tags[f"{ONNX_TAG_PREFIX}held_out_rows"]) == len(held_out)
    rows = int(tags[f"{ONNX_TAG_PREFIX}rows_checked"])
    assert rows > len(held_out)  # plus the synthetic edge rows
    assert tags[f"{ONNX_TAG_PREFIX}agreement"] == f"bit-exact on {rows} rows"
    assert (
        tags[f"{ONNX_TAG_PREFIX}onnx_sha256"]
        == hashlib.sha256(hgb_artifacts.onnx_bytes).hexdigest()
    )
    assert all(isinstance(value, str) for value in tags.values())


def test_tolerance_and_verified_rows_come_from_the_settings(hgb, held_out, features):
    settings = {**SETTINGS, "tolerance": 1e-3, "verify_rows": 50}

    tags = build_artifacts(hgb, held_out, features, settings).tags()

    assert tags[f"{ONNX_TAG_PREFIX}tolerance"] == "0.001"
    assert tags[f"{ONNX_TAG_PREFIX}held_out_rows"] == "50"


def test_native_categorical_splits_are_refused_and_served_as_sklearn(
    native_categorical, held_out, features
):
    artifacts = build_artifacts(native_categorical, held_out, features, SETTINGS)

    assert artifacts.form == "sklearn"
    assert artifacts.onnx_bytes is None
    assert "categorical" in artifacts.reason
    assert artifacts.reason.startswith("Cannot export the model to ONNX: step ")
    assert artifacts.reason.endswith("The model will be served in its sklearn form.")
    tags = artifacts.tags()
    assert tags[FORM_TAG] == "sklearn"
    assert tags[FORM_REASON_TAG] == artifacts.reason
    assert tags[f"{ONNX_TAG_PREFIX}exported"] == "false"


def test_a_silently_wrong_conversion_is_caught_at_registration(
    native_categorical, held_out, features, monkeypatch
):
    # Bypass the refusal: skl2onnx then converts native categorical splits wrongly...
    monkeypatch.setattr(onnx_model, "check_exportable", lambda layout: None)

    artifacts = build_artifacts(native_categorical, held_out, features, SETTINGS)

    # ...and the registered form is sklearn, with the disagreement as the reason.
    assert artifacts.form == "sklearn"
    assert artifacts.onnx_bytes is None
    assert artifacts.reason.startswith("ONNX disagrees with sklearn: held-out rows: ")
    assert artifacts.verification["max_abs_diff"] > 1.0
    tags = artifacts.tags()
    assert tags[FORM_TAG] == "sklearn"
    assert tags[f"{ONNX_TAG_PREFIX}exported"] == "true"
    assert tags[f"{ONNX_TAG_PREFIX}passed"] == "false"
    assert tags[f"{ONNX_TAG_PREFIX}agreement"].startswith("failed on ")


def test_an_onnx_model_of_another_model_fails_verification(
    hgb, ridge, held_out, features, monkeypatch
):
    wrong = onnx_model.export_onnx(ridge, features)  # a valid graph, wrong numbers
    monkeypatch.setattr(model_artifacts, "export_onnx", lambda model, feats: wrong)

    artifacts = build_artifacts(hgb, held_out, features, SETTINGS)

    assert artifacts.form == "sklearn"
    assert artifacts.reason.startswith("ONNX disagrees with sklearn")


def test_a_step_without_converter_is_served_as_sklearn(clipped, held_out, features):
    extra = [f"{Clip.__module__}.Clip"]
    settings = {**SETTINGS, "trusted_types": extra}

    artifacts = build_artifacts(clipped, held_out, features, settings)

    assert artifacts.form == "sklearn"
    assert "step 'clip' (Clip) has no ONNX converter" in artifacts.reason
    assert artifacts.trusted_types == (*TRUSTED_TYPES, *extra)


def test_onnx_switched_off_serves_sklearn_and_says_so(hgb, held_out, features):
    artifacts = build_artifacts(hgb, held_out, features, {**SETTINGS, "onnx": False})

    assert artifacts.form == "sklearn"
    assert artifacts.reason == (
        "ONNX export is switched off (model_artifacts.onnx: false in "
        "conf/base/parameters_deployment.yml)."
    )
    assert artifacts.verification == {}


def test_a_type_outside_the_trusted_list_is_refused_naming_it(
    clipped, held_out, features
):
    with pytest.raises(
        ConfigError,
        match=r"^The model holds type\(s\) \['[\w.]*Clip'\] outside the trusted types "
        r"its sklearn form \(skops\) may construct.*Nothing was registered\.\n"
        r"Hint: .*add them to model_artifacts\.trusted_types in "
        r"conf/base/parameters_deployment\.yml",
    ):
        build_artifacts(clipped, held_out, features, SETTINGS)


@pytest.mark.parametrize("config", ["default", "ridge", "native_categorical"])
def test_the_trusted_list_covers_the_projects_own_pipelines(
    config, hgb, ridge, native_categorical
):
    model = {"default": hgb, "ridge": ridge, "native_categorical": native_categorical}
    data = skops.io.dumps(model[config])

    assert set(skops.io.get_untrusted_types(data=data)) <= set(TRUSTED_TYPES)
    assert not set(TRUSTED_TYPES) & {"builtins.eval", "builtins.exec", "os.system"}


# --- settings ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("onnx", "yes", "true or false"),
        ("tolerance", -1.0, "a finite number >= 0"),
        ("tolerance", True, "a finite number >= 0"),
        ("tolerance", "1e-9", "a finite number >= 0"),
        ("verify_rows", 0, "an integer >= 1"),
        ("verify_rows", 10.5, "an integer >= 1"),
        ("trusted_types", "x.Y", "a list of fully qualified type names"),
        ("trusted_types", ["Clip"], "fully qualified type names"),
    ],
)
def test_invalid_settings_are_refused_naming_key_and_file(key, value, expected):
    with pytest.raises(
        ConfigError,
        match=rf"^model_artifacts\.{key} is .*; expected {expected}.*\nHint: fix "
        rf"model_artifacts\.{key} in conf/base/parameters_deployment\.yml\.$",
    ):
        check_settings({**SETTINGS, key: value})


def test_unknown_settings_keys_are_refused():
    with pytest.raises(
        ConfigError,
        match=r"^Unknown key\(s\) \['tolerence'\] under model_artifacts in "
        r"conf/base/parameters_deployment\.yml",
    ):
        check_settings({"tolerence": 1e-9})


def test_absent_settings_take_the_defaults():
    assert check_settings({"tolerance": 0.5}) == {**SETTINGS, "tolerance": 0.5}


def test_the_shipped_conf_holds_valid_settings(base_parameters):
    assert check_settings(base_parameters["model_artifacts"]) == SETTINGS


# --- hashes ------------------------------------------------------------------------------


def test_hash_tags_record_every_file_and_a_manifest(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "a.txt").write_bytes(b"a")
    (tmp_path / "sub" / "b.bin").write_bytes(b"b")

    hashes = file_hashes(tmp_path)
    tags = hash_tags(hashes)

    assert hashes == {
        "a.txt": hashlib.sha256(b"a").hexdigest(),
        "sub/b.bin": hashlib.sha256(b"b").hexdigest(),
    }
    assert tags[f"{ARTIFACT_SHA_PREFIX}sub/b.bin"] == hashes["sub/b.bin"]
    assert tags[MANIFEST_SHA_TAG] == manifest_sha256(hashes)
    changed = {**hashes, "a.txt": hashlib.sha256(b"A").hexdigest()}
    assert manifest_sha256(changed) != manifest_sha256(hashes)


# --- registered versions: the loader ----------------------------------------------------


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """A module's own MLflow store, pinned as the global URIs while the module runs."""
    uri = new_mlflow_store(tmp_path_factory.mktemp("store") / "mlruns")
    before = mlflow.get_tracking_uri(), mlflow.get_registry_uri()
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    # The active experiment is global too: another module's run may have left one
    # that this store does not have.
    mlflow.set_experiment("model-artifacts-tests")
    yield uri
    mlflow.set_tracking_uri(before[0])
    mlflow.set_registry_uri(before[1])


def register(store: str, model: Any, artifacts: ModelArtifacts, **log: Any) -> str:
    """Log and register ``model`` the way the registry dataset does; its version."""
    with mlflow.start_run():
        uri, hashes = model_artifacts.log_model(
            model, artifacts, name="model", pip_requirements=PIP, **log
        )
    tags = {**artifacts.tags(), **hashes}
    return str(mlflow.register_model(uri, NAME, tags=tags).version)


def stored_dir(client: MlflowClient, version: str) -> Path:
    """Where the version's files lie in the artifact store (a local folder here)."""
    return Path(urlparse(client.get_model_version_download_uri(NAME, version)).path)


@pytest.fixture(scope="module")
def client(store) -> MlflowClient:
    return MlflowClient(tracking_uri=store, registry_uri=store)


@pytest.fixture
def onnx_version(store, hgb, hgb_artifacts) -> str:
    return register(store, hgb, hgb_artifacts)


@pytest.fixture(scope="module")
def sklearn_version(store, native_categorical, held_out, features) -> str:
    artifacts = build_artifacts(native_categorical, held_out, features, SETTINGS)
    return register(store, native_categorical, artifacts)


def json_values(frame) -> dict[str, list[Any]]:
    """A frame as a request's JSON columns (ISO timestamps, plain numbers/strings)."""
    return {
        column: [
            value.isoformat() if hasattr(value, "isoformat") else value
            for value in frame[column].astype(object).tolist()
        ]
        for column in frame.columns
    }


def test_the_registered_version_carries_its_hashes_and_form(
    client, onnx_version, hgb_artifacts
):
    tags = client.get_model_version(NAME, onnx_version).tags
    stored = file_hashes(stored_dir(client, onnx_version))

    assert tags[FORM_TAG] == "onnx"
    assert {ONNX_FILE, SKLEARN_FILE, "MLmodel"} <= set(stored)
    for path, sha in stored.items():
        assert tags[f"{ARTIFACT_SHA_PREFIX}{path}"] == sha
    assert tags[MANIFEST_SHA_TAG] == manifest_sha256(stored)
    assert stored[ONNX_FILE] == tags[f"{ONNX_TAG_PREFIX}onnx_sha256"]


def test_the_onnx_form_predicts_like_the_model_bit_exact(
    client, onnx_version, hgb, held_out
):
    served = load_served_model(client, NAME, onnx_version)

    assert served.form == "onnx"
    assert (served.name, served.version) == (NAME, int(onnx_version))
    assert served.columns == list(held_out.columns)
    assert served.sha256 == served.tags[f"{ONNX_TAG_PREFIX}onnx_sha256"]
    expected = hgb.predict(held_out)
    predicted = served.predict_frame(held_out)
    assert predicted.dtype == np.float64
    np.testing.assert_array_equal(predicted, expected)
    rows = held_out.head(5)
    np.testing.assert_array_equal(
        served.predict_values(json_values(rows)), expected[:5]
    )


def test_the_sklearn_form_loads_with_skops_and_predicts_like_the_model(
    client, onnx_version, hgb, held_out
):
    served = load_served_model(client, NAME, onnx_version, prefer="sklearn")

    assert served.form == "sklearn"
    stored = stored_dir(client, onnx_version) / SKLEARN_FILE
    assert served.sha256 == hashlib.sha256(stored.read_bytes()).hexdigest()
    assert isinstance(served.sklearn_model, Pipeline)
    np.testing.assert_array_equal(served.predict_frame(held_out), hgb.predict(held_out))
    rows = held_out.head(3)
    np.testing.assert_array_equal(
        served.predict_values(json_values(rows)), hgb.predict(rows)
    )


def test_a_version_registered_as_sklearn_is_served_as_sklearn(
    client, sklearn_version, native_categorical, held_out
):
    served = load_served_model(client, NAME, sklearn_version)

    assert served.form == "sklearn"
    assert "categorical" in served.tags[FORM_REASON_TAG]
    assert ONNX_FILE not in file_hashes(stored_dir(client, sklearn_version))
    np.testing.assert_array_equal(
        served.predict_frame(held_out), native_categorical.predict(held_out)
    )


def test_the_sklearn_model_of_an_onnx_version_is_loaded_lazily(
    client, onnx_version, hgb, held_out
):
    served = load_served_model(client, NAME, onnx_version)

    np.testing.assert_array_equal(
        served.sklearn_model.predict(held_out), hgb.predict(held_out)
    )
    assert served.sklearn_model is served.sklearn_model


@pytest.mark.parametrize("path", [ONNX_FILE, SKLEARN_FILE, "MLmodel"])
def test_a_tampered_file_is_refused_naming_it(client, onnx_version, path):
    target = stored_dir(client, onnx_version) / path
    expected = hashlib.sha256(target.read_bytes()).hexdigest()
    target.write_bytes(target.read_bytes() + b"\0")
    found = hashlib.sha256(target.read_bytes()).hexdigest()

    with pytest.raises(
        ArtifactIntegrityError,
        match=rf"^Model 'bikes' version {onnx_version}: file '{path}' does not match "
        rf"its recorded sha256 \(expected {expected[:12]}, found {found[:12]}\): the "
        rf"artifact was changed after registration\. Nothing was loaded\.\nHint: ",
    ):
        load_served_model(client, NAME, onnx_version, prefer="sklearn")


def test_an_added_file_is_refused(client, onnx_version):
    (stored_dir(client, onnx_version) / "extra_files" / "evil.py").write_text("1")

    with pytest.raises(
        ArtifactIntegrityError,
        match=r"file 'extra_files/evil\.py' in the artifact store has no recorded hash",
    ):
        load_served_model(client, NAME, onnx_version)


def test_a_removed_file_is_refused(client, onnx_version):
    (stored_dir(client, onnx_version) / ONNX_FILE).unlink()

    with pytest.raises(
        ArtifactIntegrityError,
        match=rf"file '{ONNX_FILE}' recorded in its hash tags is missing",
    ):
        load_served_model(client, NAME, onnx_version)


def test_a_version_without_hash_tags_is_refused(client, onnx_version):
    tags = client.get_model_version(NAME, onnx_version).tags
    client.delete_model_version_tag(NAME, onnx_version, MANIFEST_SHA_TAG)
    for key in tags:
        if key.startswith(ARTIFACT_SHA_PREFIX):
            client.delete_model_version_tag(NAME, onnx_version, key)

    with pytest.raises(
        ArtifactIntegrityError,
        match=rf"^Model 'bikes' version {onnx_version}: has no artifact hash tags",
    ):
        load_served_model(client, NAME, onnx_version)


def test_an_edited_hash_tag_is_refused(client, onnx_version):
    key = f"{ARTIFACT_SHA_PREFIX}{SKLEARN_FILE}"
    client.set_model_version_tag(NAME, onnx_version, key, "0" * 64)

    with pytest.raises(
        ArtifactIntegrityError, match=r"per-file hash tags do not match"
    ):
        load_served_model(client, NAME, onnx_version)


def test_a_pickled_model_is_never_loaded(store, client, hgb, held_out):
    with mlflow.start_run():
        info = mlflow.sklearn.log_model(
            hgb, name="model", serialization_format="cloudpickle", pip_requirements=PIP
        )
    stored = mlflow.get_logged_model(info.model_id).artifact_location
    hashes = file_hashes(urlparse(stored).path)
    version = mlflow.register_model(info.model_uri, NAME, tags=hash_tags(hashes))

    with pytest.raises(
        ArtifactIntegrityError,
        match=r"has no model\.skops \(a pickled model\?\); modelops never unpickles",
    ):
        load_served_model(client, NAME, version.version, prefer="sklearn")


def test_a_type_outside_the_trusted_list_is_refused_at_load(
    store, client, clipped, held_out, features
):
    extra = [f"{Clip.__module__}.Clip"]
    artifacts = build_artifacts(
        clipped, held_out, features, {**SETTINGS, "trusted_types": extra}
    )
    version = register(store, clipped, artifacts)

    with pytest.raises(
        ArtifactIntegrityError,
        match=r"model\.skops holds type\(s\) \['[\w.]*Clip'\] outside the trusted "
        r"list; it was not loaded\.\nHint: .*"
        r"model_artifacts\.trusted_types",
    ):
        load_served_model(client, NAME, version)
    served = load_served_model(client, NAME, version, extra_trusted_types=extra)
    np.testing.assert_array_equal(
        served.predict_frame(held_out), clipped.predict(held_out)
    )


def test_mlflow_pyfunc_still_loads_the_registered_version(
    client, onnx_version, hgb, held_out
):
    loaded = mlflow.pyfunc.load_model(f"models:/{NAME}/{onnx_version}")

    np.testing.assert_allclose(loaded.predict(held_out), hgb.predict(held_out))
    # MLflow notes the name/version (registered_model_meta) into a local store's model
    # directory when it loads a models:/ URI: not a tampered artifact.
    assert load_served_model(client, NAME, onnx_version).form == "onnx"


def test_served_model_can_be_built_from_bytes(hgb_artifacts, hgb, held_out):
    served = ServedModel(
        name=NAME,
        version=1,
        run_id=None,
        tags={},
        skops_bytes=skops.io.dumps(hgb),
        onnx_bytes=hgb_artifacts.onnx_bytes,
    )

    np.testing.assert_array_equal(served.predict_frame(held_out), hgb.predict(held_out))
