"""Tests of the data contract: each rule gives a clear error naming where and what."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from modelops.contracts import contract_violations, parse_contract, validate_frame
from modelops.errors import ConfigError, DataContractError


@pytest.fixture
def contract(data_processing_params):
    return parse_contract(data_processing_params["source"]["contract"])


def test_valid_frame_passes(contract, source_frame):
    assert contract_violations(source_frame, contract) == []
    validate_frame(source_frame, contract, where="partition 'x'")


def _error(frame: pd.DataFrame, contract) -> str:
    with pytest.raises(DataContractError) as info:
        validate_frame(frame, contract, where="source partition '2025-03-03'")
    return str(info.value)


def test_missing_column_names_partition_column_and_rule(contract, source_frame):
    message = _error(source_frame.drop(columns="temperature_c"), contract)
    assert "source partition '2025-03-03'" in message
    assert "column 'temperature_c': rule 'required column'" in message
    assert "Hint:" in message


def test_wrong_type_reports_dtype_once_with_examples(contract, source_frame):
    frame = source_frame.assign(
        humidity_pct=source_frame["humidity_pct"].map(lambda v: f"{v:.1f}%")
    )
    message = _error(frame, contract)
    assert "column 'humidity_pct': rule 'dtype float64' failed" in message
    assert "%'" in message  # an offending value is shown
    assert message.count("humidity_pct") == 1  # value rules are not piled on top


def test_nulls_are_counted_with_rows(contract, source_frame):
    temperature = source_frame["temperature_c"].copy()
    temperature.iloc[[2, 5]] = np.nan
    message = _error(source_frame.assign(temperature_c=temperature), contract)
    assert "column 'temperature_c': rule 'not null' failed for 2 of 72 rows" in message
    assert "at rows 2, 5" in message


def test_out_of_range_names_bound_and_values(contract, source_frame):
    humidity = source_frame["humidity_pct"].copy()
    humidity.iloc[7] = 140.0
    rentals = source_frame["rentals"].copy()
    rentals.iloc[3] = -3
    frame = source_frame.assign(humidity_pct=humidity, rentals=rentals)
    message = _error(frame, contract)
    assert "column 'humidity_pct': rule 'max 100.0' failed for 1 of 72" in message
    assert "140.0" in message
    assert "column 'rentals': rule 'min 0' failed" in message


def test_unknown_category_and_pattern(contract, source_frame):
    frame = source_frame.assign(
        weather=["hail", *source_frame["weather"].tolist()[1:]],
        station_id=["station-1", *source_frame["station_id"].tolist()[1:]],
    )
    message = _error(frame, contract)
    assert "column 'weather': rule 'allowed values" in message
    assert "'hail'" in message
    assert "column 'station_id': rule 'pattern" in message


def test_empty_frame_breaks_min_rows(contract, source_frame):
    message = _error(source_frame.iloc[0:0], contract)
    assert "rule 'min_rows 1' failed: it has 0 rows" in message


def test_validation_does_not_modify_input(contract, source_frame):
    before = source_frame.copy()
    contract_violations(source_frame.drop(columns="weather"), contract)
    pd.testing.assert_frame_equal(source_frame, before)


def test_without_drops_columns(contract, source_frame):
    serving = contract.without(["rentals"])
    assert "rentals" not in serving.column_names
    assert contract_violations(source_frame.drop(columns="rentals"), serving) == []


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ({"columns": {}}, "declares no columns"),
        ({"columns": {"a": {"dtype": "decimal"}}}, "dtype 'decimal'"),
        ({"columns": {"a": {"dtype": "int", "maximum": 3}}}, "unknown rule"),
        ({"columns": {"a": {"dtype": "string", "pattern": "("}}}, "invalid pattern"),
    ],
)
def test_malformed_contract_is_a_config_error(spec, expected):
    with pytest.raises(ConfigError, match=expected):
        parse_contract(spec)
