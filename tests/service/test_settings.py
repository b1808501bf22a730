"""The service's settings: the serving_api conf block, checked by its pydantic model."""

from __future__ import annotations

from pathlib import Path

import pytest

from modelops.errors import ConfigError
from modelops.service.settings import SERVING_CONF, ServingConfig, parse_settings
from tests.conftest import load_base_config
from tests.service.conftest import MODEL_NAME

GLOBALS = {"registered_model_name": MODEL_NAME, "alias": "challenger"}


def test_config_reads_conf_and_token_from_the_environment(data_processing_params):
    params = {
        **data_processing_params,
        "serving_api": {"poll_seconds": 3, "max_rows": 10, "token_env": "MY_TOKEN"},
    }
    config = ServingConfig.from_conf(
        params, GLOBALS, "sqlite:///x.db", {"MY_TOKEN": "t"}
    )
    assert (config.alias, config.settings.poll_seconds) == ("challenger", 3)
    assert config.settings.max_rows == 10
    assert config.token == "t"  # noqa: S105 (a test value)
    assert "rentals" not in config.contract.column_names
    assert "token='" not in repr(config)  # the token never shows in logs or reprs
    no_token = ServingConfig.from_conf(params, GLOBALS, "sqlite:///x.db", {})
    assert no_token.token is None
    with pytest.raises(ConfigError, match="alias"):
        ServingConfig.from_conf(params, {**GLOBALS, "alias": "none"}, "u", {})


def test_the_shipped_conf_parses_and_logs_under_the_env_zone(tmp_path):
    parameters = load_base_config("parameters")
    # base has no alias (alias: none); every env sets one
    parameters["serving_api"] = {**parameters["serving_api"], "alias": "champion"}
    config = ServingConfig.from_conf(
        parameters, GLOBALS, "sqlite:///x.db", {}, project_path=tmp_path
    )
    settings = config.settings
    assert settings.form == "onnx"
    assert settings.limit_concurrency > 3000  # the slow-client test holds 3,000
    assert config.prediction_column == parameters["serving"]["prediction_column"]
    assert config.log_path == tmp_path / (
        "data/_unset_env/07_model_output/rest_prediction_log"
    )


@pytest.mark.parametrize(
    ("block", "key"),
    [
        ({"compile_model": True}, "serving_api.compile_model"),
        (
            {"prediction_log": {"queue_size": 3}},
            "serving_api.prediction_log.queue_size",
        ),
    ],
)
def test_unknown_keys_are_refused_naming_key_and_file(block, key):
    with pytest.raises(ConfigError) as info:
        parse_settings({"model_name": "m", "alias": "a", **block})
    message = str(info.value)
    assert message.startswith(f"Unknown key {key} in {SERVING_CONF}.")
    assert "Hint:" in message


@pytest.mark.parametrize(
    ("block", "key"),
    [
        ({"poll_seconds": -1}, "serving_api.poll_seconds"),
        ({"poll_seconds": True}, "serving_api.poll_seconds"),
        ({"max_rows": "10"}, "serving_api.max_rows"),
        ({"form": "pickle"}, "serving_api.form"),
        (
            {"prediction_log": {"flush_seconds": 0}},
            "serving_api.prediction_log.flush_seconds",
        ),
    ],
)
def test_bad_values_are_refused_naming_key_and_file(block, key):
    with pytest.raises(
        ConfigError, match=rf"(?s)^{key} is .* in {SERVING_CONF}: .*Hint: fix {key} in"
    ):
        parse_settings({"model_name": "m", "alias": "a", **block})


def test_the_service_refuses_features_the_contract_lacks(data_processing_params):
    parameters = {
        **data_processing_params,
        "features": {
            **data_processing_params["features"],
            "numeric": ["station_capacity", "gusts_kmh"],
        },
    }
    with pytest.raises(
        ConfigError,
        match=r"\['gusts_kmh'\](.|\n)*use_case\.contract\.columns in "
        r"conf/base/use_case\.yml",
    ):
        ServingConfig.from_conf(parameters, GLOBALS, "sqlite:///unused.db", {})


def test_a_prediction_column_named_like_an_input_is_refused(data_processing_params):
    parameters = {**data_processing_params, "serving": {"prediction_column": "weather"}}
    with pytest.raises(ConfigError, match=r"serving\.prediction_column is 'weather'"):
        ServingConfig.from_conf(parameters, GLOBALS, "sqlite:///unused.db", {})


def test_the_service_imports_neither_the_cli_nor_kedros_cli(tmp_path):
    import subprocess  # noqa: PLC0415
    import sys  # noqa: PLC0415

    code = (
        "import sys, modelops.service.server, modelops.service.app; "
        "print(sorted(m for m in sys.modules if m == 'modelops.cli' "
        "or m.startswith('kedro.framework.cli') or m == 'modelops.serving'))"
    )
    src = Path(__file__).resolve().parents[2] / "src"
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={"PYTHONPATH": str(src), "PATH": "/usr/bin:/bin"},
        cwd=tmp_path,
    )
    assert result.stdout.strip() == "[]"
