"""The model holder: follows the alias, refuses what fails to load or to score, swaps atomically."""

from __future__ import annotations

import types

import pytest

from modelops.model_artifacts import ArtifactIntegrityError
from modelops.service.metrics import ServiceMetrics
from modelops.service.model_holder import ModelHolder, ServingError
from modelops.service.request_validation import RequestValidator
from tests.service.conftest import MODEL_NAME, ConstantServed, split_payload


class Registry:
    """Where the alias points (what MlflowClient.get_model_version_by_alias answers)."""

    def __init__(self, version: int | None) -> None:
        self.version = version

    def get_model_version_by_alias(self, name: str, alias: str):
        if self.version is None:
            from mlflow.exceptions import MlflowException  # noqa: PLC0415
            from mlflow.protos.databricks_pb2 import (  # noqa: PLC0415
                RESOURCE_DOES_NOT_EXIST,
            )

            raise MlflowException("no alias", error_code=RESOURCE_DOES_NOT_EXIST)
        return types.SimpleNamespace(
            version=str(self.version), run_id=f"run-{self.version}", tags={}
        )


class Exploding(ConstantServed):
    def predict_values(self, values):
        raise ValueError("cannot score these rows")


def holder_for(contract, registry: Registry, loaded: dict) -> ModelHolder:
    def loader(client, name, version):
        result = loaded[version]
        if isinstance(result, Exception):
            raise result
        return result

    return ModelHolder(
        MODEL_NAME,
        "champion",
        "sqlite:///unused.db",
        RequestValidator(contract, max_rows=10),
        loader=loader,
        metrics=ServiceMetrics(),
        client=registry,
    )


def failures(holder: ModelHolder, reason: str) -> float:
    return holder.metrics.registry.get_sample_value(
        "modelops_model_load_failures_total", {"reason": reason}
    )


def test_refresh_loads_the_alias_version_and_swaps(contract):
    columns = contract.column_names
    registry = Registry(1)
    holder = holder_for(
        contract,
        registry,
        {1: ConstantServed(1, 1, columns), 2: ConstantServed(2, 2, columns)},
    )
    assert holder.refresh() == (True, None, 1)
    assert holder.refresh() == (False, 1, 1)  # nothing moved: nothing loaded
    registry.version = 2
    assert holder.refresh() == (True, 1, 2)
    assert holder.current.info.version == 2
    assert holder.current.info.run_id == "run-2"
    swaps = holder.metrics.registry.get_sample_value("modelops_alias_swaps_total")
    assert swaps == 1


def test_a_tampered_version_is_refused_counted_and_the_old_one_serves(contract):
    columns = contract.column_names
    registry = Registry(1)
    tampered = ArtifactIntegrityError(
        "Model 'm' version 2: 'model.skops' has sha256 0123456789ab, expected "
        "ba9876543210."
    )
    holder = holder_for(
        contract, registry, {1: ConstantServed(1, 1, columns), 2: tampered}
    )
    holder.refresh()
    registry.version = 2
    with pytest.raises(ServingError, match=r"Loading models:/.*/2 failed: .*sha256"):
        holder.refresh()
    assert holder.current.info.version == 1
    assert failures(holder, "integrity") == 1
    assert failures(holder, "load") == 0


def test_a_version_failing_on_the_last_request_is_kept_out(contract, rows):
    columns = contract.column_names
    registry = Registry(1)
    holder = holder_for(
        contract,
        registry,
        {1: ConstantServed(1, 1, columns), 2: Exploding(0, 2, columns)},
    )
    holder.refresh()
    holder.last_batch = holder.validator.validate(split_payload(rows.head(2)))
    registry.version = 2
    with pytest.raises(ServingError, match="failed on the last request's rows"):
        holder.refresh()
    assert holder.current.info.version == 1
    assert failures(holder, "warm_up") == 1


def test_no_alias_and_unknown_columns_are_refused(contract):
    holder = holder_for(contract, Registry(None), {})
    with pytest.raises(ServingError, match="has the alias 'champion'"):
        holder.refresh()
    assert failures(holder, "no_alias") == 1
    odd = ConstantServed(1, 3, [*contract.column_names, "gusts_kmh"])
    with pytest.raises(ServingError, match=r"\['gusts_kmh'\]"):
        holder.install(odd)
    assert holder.current is None
