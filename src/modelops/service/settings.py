"""The service's settings: the `serving_api` block of conf, checked by a pydantic model."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import pydantic
from pydantic import BaseModel, ConfigDict, Field

from modelops.contracts import Contract, parse_contract, use_case_key
from modelops.errors import ConfigError
from modelops.modeling import check_inputs_in_contract

SERVING_CONF = "conf/base/parameters_serving_api.yml"
BATCH_SERVING_CONF = "conf/base/parameters_serving.yml"
CONF_KEY = "serving_api"
DEFAULT_TOKEN_ENV = "MODELOPS_SERVING_TOKEN"  # noqa: S105 (a variable name)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class PredictionLogSettings(_Strict):
    """``serving_api.prediction_log``: where and how scored requests are appended."""

    enabled: bool = True
    path: str = "data/_unset_env/07_model_output/rest_prediction_log"
    queue_rows: int = Field(100_000, ge=1)
    batch_rows: int = Field(10_000, ge=1)
    flush_seconds: float = Field(5.0, gt=0, allow_inf_nan=False)


class ServingSettings(_Strict):
    """``serving_api`` in conf/base/parameters_serving_api.yml (unknown keys refused)."""

    model_name: str = Field(min_length=1)
    alias: str = Field(min_length=1)
    poll_seconds: float = Field(10.0, ge=0.1, allow_inf_nan=False)
    startup_attempts: int = Field(30, ge=1)
    startup_interval_seconds: float = Field(2.0, ge=0, allow_inf_nan=False)
    max_rows: int = Field(1000, ge=1)
    max_body_bytes: int = Field(1_048_576, ge=2)
    body_timeout_seconds: float = Field(10.0, gt=0, allow_inf_nan=False)
    idle_timeout_seconds: float = Field(60.0, gt=0, allow_inf_nan=False)
    limit_concurrency: int = Field(4096, ge=1)
    backlog: int = Field(2048, ge=1)
    token_env: str = Field(DEFAULT_TOKEN_ENV, min_length=1)
    form: Literal["onnx", "sklearn"] = "onnx"
    intra_op_threads: int = Field(1, ge=1)
    model_threads: int = Field(2, ge=1)
    prediction_log: PredictionLogSettings = PredictionLogSettings()


@dataclasses.dataclass(frozen=True)
class ServingConfig:
    """What the service needs, read once from an env's conf (see ``SERVING_CONF``)."""

    settings: ServingSettings
    contract: Contract
    tracking_uri: str
    prediction_column: str = "prediction"
    project_path: Path | None = None
    token: str | None = dataclasses.field(default=None, repr=False)

    @property
    def model_name(self) -> str:
        """The registered model served."""
        return self.settings.model_name

    @property
    def alias(self) -> str:
        """The registry alias followed."""
        return self.settings.alias

    @property
    def log_path(self) -> Path | None:
        """The REST prediction log's folder (None when the log is off)."""
        if not self.settings.prediction_log.enabled:
            return None
        path = Path(self.settings.prediction_log.path)
        if not path.is_absolute() and self.project_path is not None:
            path = self.project_path / path
        return path

    def replace(self, **changes: Any) -> ServingConfig:
        """A copy with some settings changed (``token`` and fields too)."""
        fields = {k: changes.pop(k) for k in list(changes) if k in _CONFIG_FIELDS}
        settings = self.settings
        if changes:
            settings = parse_settings(
                {**settings.model_dump(), **changes}, where="overrides"
            )
        return dataclasses.replace(self, settings=settings, **fields)

    @classmethod
    def from_conf(
        cls,
        parameters: Mapping[str, Any],
        globals_: Mapping[str, Any],
        tracking_uri: str,
        environ: Mapping[str, str] | None = None,
        project_path: Path | None = None,
    ) -> ServingConfig:
        """Build from an env's parameters and globals; the token from the environment.

        Raises:
            ConfigError: a setting is missing, unknown or out of range.
        """
        environ = os.environ if environ is None else environ
        try:
            contract_spec = parameters["source"]["contract"]
            target = parameters["features"]["target"]
        except (KeyError, TypeError) as err:
            raise ConfigError(
                "The service validates requests against the data contract minus "
                "the target, and one of them is missing.\nHint: see "
                f"{use_case_key('contract')} and "
                f"{use_case_key('features.target')}."
            ) from err
        contract = parse_contract(contract_spec)
        if target:
            contract = contract.without([target])
        check_inputs_in_contract(parameters["features"], contract.column_names)
        raw = dict(parameters.get(CONF_KEY) or {})
        raw.setdefault("model_name", globals_.get("registered_model_name"))
        raw.setdefault("alias", globals_.get("alias"))
        if not raw.get("model_name") or raw.get("alias") in {None, "", "none"}:
            raise ConfigError(
                f"The service needs a registered model name and an alias to follow; "
                f"got {raw.get('model_name')!r} and {raw.get('alias')!r}.\nHint: serve "
                f"an env that sets globals `alias` (dev, acceptance, prod), or set "
                f"{CONF_KEY}.model_name and {CONF_KEY}.alias in {SERVING_CONF}."
            )
        settings = parse_settings(raw)
        prediction_column = str(
            (parameters.get("serving") or {}).get("prediction_column") or "prediction"
        )
        if prediction_column in contract.column_names:
            raise ConfigError(
                f"serving.prediction_column is '{prediction_column}', a column of the "
                f"data contract: the prediction log would overwrite it.\nHint: rename "
                f"serving.prediction_column in {BATCH_SERVING_CONF}."
            )
        return cls(
            settings=settings,
            contract=contract,
            tracking_uri=tracking_uri,
            prediction_column=prediction_column,
            project_path=project_path,
            token=environ.get(settings.token_env) or None,
        )


_CONFIG_FIELDS = {f.name for f in dataclasses.fields(ServingConfig)}


def parse_settings(
    raw: Mapping[str, Any], where: str = SERVING_CONF
) -> ServingSettings:
    """``serving_api`` as a :class:`ServingSettings`.

    Raises:
        ConfigError: naming the first key that is unknown, missing or out of range,
            and the file to fix.
    """
    try:
        return ServingSettings.model_validate(dict(raw))
    except pydantic.ValidationError as err:
        first = err.errors(include_url=False)[0]
        key = ".".join([CONF_KEY, *(str(part) for part in first["loc"])])
        if first["type"] == "extra_forbidden":
            raise ConfigError(
                f"Unknown key {key} in {where}.\nHint: remove it or fix its spelling "
                f"(the keys are listed and explained in {SERVING_CONF})."
            ) from None
        if first["type"] == "missing":
            raise ConfigError(
                f"Key {key} is missing in {where}.\nHint: set it in {SERVING_CONF}."
            ) from None
        raise ConfigError(
            f"{key} is {first.get('input')!r} in {where}: {first['msg'].lower()}.\n"
            f"Hint: fix {key} in {SERVING_CONF}."
        ) from None


def load_serving_config(
    project_path: Path, env: str, overrides: Mapping[str, Any] | None = None
) -> ServingConfig:
    """The service's settings as ``env`` sees them, tracking where the project tracks.

    ``overrides`` replaces keys of ``serving_api`` (e.g. ``{"poll_seconds": 1}``).
    """
    from modelops.project_config import load_config  # noqa: PLC0415 (imports kedro)
    from modelops.tracking import tracking_uri  # noqa: PLC0415

    project_path = Path(project_path)
    parameters = load_config(project_path, env, "parameters")
    if overrides:
        parameters[CONF_KEY] = {**(parameters.get(CONF_KEY) or {}), **overrides}
    globals_ = load_config(project_path, env, "globals")
    return ServingConfig.from_conf(
        parameters, globals_, tracking_uri(), project_path=project_path
    )
