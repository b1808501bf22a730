"""Request validation: the pydantic model generated from the Contract, its refusals."""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import pandas as pd
import pytest

from modelops.contracts import ValueRejected, parse_contract
from modelops.service.request_validation import RequestRejected, RequestValidator
from tests.service.conftest import records_payload, split_payload


def test_validated_frame_has_training_dtypes(contract, rows, model_input_table):
    validator = RequestValidator(contract, max_rows=1000)
    frame = validator.validate(split_payload(rows.head(4))).frame()
    assert list(frame.columns) == contract.column_names
    assert str(frame["timestamp"].dtype) == "datetime64[us]"
    assert frame["station_capacity"].dtype == np.int64
    assert frame["temperature_c"].dtype == np.float64
    assert frame["is_holiday"].dtype == bool
    assert frame["station_id"].dtype == model_input_table["station_id"].dtype
    pd.testing.assert_frame_equal(
        frame.drop(columns="timestamp"),
        rows.head(4).drop(columns="timestamp").reset_index(drop=True),
    )


@pytest.mark.parametrize("count", [1, 7, 40])
def test_split_and_records_give_the_same_values(contract, rows, count):
    validator = RequestValidator(contract, max_rows=1000)
    split = validator.validate(split_payload(rows.head(count)))
    records = validator.validate(records_payload(rows.head(count)))
    assert split.rows == records.rows == count
    assert split.values == records.values
    assert (
        split.values["station_capacity"]
        == rows["station_capacity"].head(count).tolist()
    )


def test_requests_are_checked_by_the_contract_data_processing_uses():
    """Every rule of the one Contract reaches REST; frame-level promises do not."""
    spec = {
        "min_rows": 100,  # per source partition, not per request
        "unique_key": ["station_id"],  # what a run reads, not one request
        "columns": {
            "station_id": {"dtype": "string"},
            "station_capacity": {"dtype": "int", "allowed": [10, 11, 12]},
            "temperature_c": {"dtype": "float", "allowed": [1.5, 2.5]},
            "model_config": {"dtype": "float", "nullable": True},  # any name works
        },
    }
    validator = RequestValidator(parse_contract(spec), max_rows=10)
    record = {
        "station_id": "S0001",
        "station_capacity": 11.0,  # an integral float is the integer
        "temperature_c": 2.5,
        "model_config": None,
    }
    twice = validator.validate({"dataframe_records": [record, record]})
    assert twice.rows == 2
    assert twice.values["station_capacity"] == [11, 11]
    assert type(twice.values["station_capacity"][0]) is int
    assert twice.values["model_config"] == [None, None]
    with pytest.raises(RequestRejected) as info:
        validator.validate(
            {"dataframe_records": [record, {**record, "temperature_c": 3.5}]}
        )
    assert info.value.status == 422
    assert (info.value.column, info.value.rule, info.value.row) == (
        "temperature_c",
        "allowed values [1.5, 2.5]",
        1,
    )
    assert "3.5" not in info.value.message
    with pytest.raises(RequestRejected, match="'station_capacity' breaks"):
        validator.validate({"dataframe_records": [{**record, "station_capacity": 13}]})


# Values each breaking one rule of the default contract (never echoed).
BREAKS = {
    "timestamp": ["2025-13-01T00:00:00", "2025-03-03T10:00:00Z", 17, None],
    "station_id": ["S12", "s0001", 1, None],
    "station_zone": ["harbour", 3, None],
    "station_capacity": [0, 501, 2.5, "12", True, 2**64, None],
    "temperature_c": [-41.0, 55.5, "1", False, 10**400, float("inf"), None],
    "weather": ["hail", 1.0, None],
    "is_holiday": [0, "False", None],
}


@pytest.mark.parametrize("count", [3, 40], ids=["row model", "column model"])
@pytest.mark.parametrize("column", BREAKS)
def test_refusals_say_what_the_contract_says(contract, rows, column, count):
    """Same column, rule, row and message as Contract.check_values (the one wording)."""
    validator = RequestValidator(contract, max_rows=1000)
    for bad in BREAKS[column]:
        records = records_payload(rows.head(count))["dataframe_records"]
        records[count - 1][column] = bad
        if column != "is_holiday":  # a later column broken in an earlier row
            records[count - 2]["is_holiday"] = "no"
        with pytest.raises(RequestRejected) as got:
            validator.validate({"dataframe_records": records})
        columns = {name: [r[name] for r in records] for name in contract.column_names}
        with pytest.raises(ValueRejected) as expected:
            contract.check_values(columns)
        assert got.value.status == 422
        assert (got.value.column, got.value.rule, got.value.row) == (
            expected.value.column,
            expected.value.rule,
            count - 1,
        ), bad
        assert got.value.message == expected.value.message
        if isinstance(bad, str):
            assert bad not in got.value.message


def test_one_record_is_validated_in_microseconds(contract, rows):
    """Not a timed assert: prints what a record costs (the report quotes it)."""
    validator = RequestValidator(contract, max_rows=1000)
    cases: dict[str, Any] = {
        "1 record": records_payload(rows.head(1)),
        "1000 records": records_payload(pd.concat([rows] * 4).head(1000)),
        "1000 split rows": split_payload(pd.concat([rows] * 4).head(1000)),
    }
    for name, payload in cases.items():
        body = next(iter(payload.values()))
        count = len(body["data"] if isinstance(body, dict) else body)
        repeats = max(1, 2000 // count)
        best = float("inf")
        for _ in range(5):
            started = time.perf_counter()
            for _ in range(repeats):
                validator.validate(payload)
            best = min(best, (time.perf_counter() - started) / repeats)
        print(f"{name}: {best * 1e6 / count:.2f} us/record")  # noqa: T201
