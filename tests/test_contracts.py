"""Tests of the data contract: each rule gives a clear error naming where and what."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from modelops.contracts import (
    ValueRejected,
    column_array,
    contract_violations,
    parse_contract,
    validate_frame,
)
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


# --- unique_key --------------------------------------------------------------------


def test_unique_key_repeats_name_the_key_values_and_rows(contract, source_frame):
    assert contract.unique_key == ("timestamp", "station_id")
    repeated = pd.concat([source_frame, source_frame.iloc[[4, 9]]], ignore_index=True)
    message = _error(repeated, contract)
    assert (
        "frame: rule 'unique_key ['timestamp', 'station_id']' failed: 4 of 74 rows "
        "repeat a key, e.g. (timestamp=Timestamp('2025-03-03 01:00:00'), "
        "station_id='S0002') at rows 4, 72; (timestamp=Timestamp('2025-03-03 "
        "03:00:00'), station_id='S0001') at rows 9, 73"
    ) in message
    assert "edit use_case.contract in conf/base/use_case.yml" in message


def test_unique_key_is_optional_and_dropped_with_its_columns(source_frame):
    spec = {
        "columns": {"station_id": {"dtype": "string"}, "rentals": {"dtype": "int"}},
        "unique_key": [],
    }
    repeated = pd.concat([source_frame, source_frame], ignore_index=True)
    assert contract_violations(repeated, parse_contract(spec)) == []
    keyed = parse_contract({**spec, "unique_key": ["station_id"]})
    assert keyed.without(["rentals"]).unique_key == ("station_id",)
    assert keyed.without(["station_id"]).unique_key == ()


# --- a contract in conf is parsed strictly -------------------------------------------


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        (
            {"columns": {"a": {"dtype": "int"}}, "uniq_key": ["a"]},
            r"unknown key\(s\) \['uniq_key'\]; expected some of \['columns', "
            r"'min_rows', 'unique_key'\].\nHint: fix use_case\.contract in "
            r"conf/base/use_case\.yml",
        ),
        (
            {"columns": {"a": {"dtype": "int"}}, "unique_key": ["b"]},
            r"\['b'\] of the data contract's unique_key are not contract columns"
            r"(.|\n)*Hint: fix use_case\.contract\.unique_key in conf/base/use_case",
        ),
        (
            {"columns": {"a": {"dtype": "float", "pattern": "^x"}}},
            r"column 'a' \(dtype float\) has rule\(s\) \['pattern'\]",
        ),
        (
            {"columns": {"a": {"dtype": "string", "min": 3}}},
            r"column 'a' \(dtype string\) has rule\(s\) \['min'\]",
        ),
        (
            {"columns": {"a": {"dtype": "int"}}, "min_rows": -1},
            r"min_rows is -1(.|\n)*use_case\.contract\.min_rows",
        ),
        ({"columns": {"a": "float"}}, r"column 'a' is 'float'; expected a mapping"),
        (
            {"columns": {"a": {"dtype": "bool", "nullable": "yes"}}},
            "nullable 'yes'",
        ),
    ],
)
def test_unknown_or_misplaced_contract_keys_are_refused(spec, expected):
    with pytest.raises(ConfigError, match=expected):
        parse_contract(spec)


# --- one contract, two forms: pandera on frames, check_values on JSON ----------------

# (column rule, a JSON value, whether the contract accepts it)
VALUE_CASES = [
    ({"dtype": "float", "min": 0.0, "max": 10.0}, 5.5, True),
    ({"dtype": "float", "min": 0.0, "max": 10.0}, 10.5, False),
    ({"dtype": "float", "allowed": [1.0, 2.0]}, 2.0, True),
    ({"dtype": "float", "allowed": [1.0, 2.0]}, 3.0, False),
    ({"dtype": "int", "min": 1, "allowed": [1, 2, 3]}, 3, True),
    ({"dtype": "int", "min": 1, "allowed": [1, 2, 3]}, 0, False),
    ({"dtype": "int", "allowed": [1, 2, 3]}, 4, False),
    ({"dtype": "string", "allowed": ["a", "b"]}, "b", True),
    ({"dtype": "string", "allowed": ["a", "b"]}, "c", False),
    ({"dtype": "string", "pattern": "^S\\d{2}"}, "S12x", True),
    ({"dtype": "string", "pattern": "^S\\d{2}"}, "xS12", False),
    ({"dtype": "bool"}, True, True),
    ({"dtype": "float", "nullable": True}, None, True),
    ({"dtype": "float"}, None, False),
    ({"dtype": "datetime", "min": "2025-01-01"}, "2025-02-01T10:00:00", True),
    ({"dtype": "datetime", "min": "2025-01-01"}, "2024-12-31T23:00:00", False),
]


@pytest.mark.parametrize(("rule", "value", "accepted"), VALUE_CASES)
def test_frames_and_json_values_get_the_same_verdict(rule, value, accepted):
    contract = parse_contract({"columns": {"x": rule}})
    frame_value = pd.Timestamp(value) if rule["dtype"] == "datetime" else value
    frame = pd.DataFrame({"x": column_array(rule["dtype"], [frame_value, frame_value])})
    assert (contract_violations(frame, contract) == []) is accepted
    if accepted:
        assert contract.check_values({"x": [value]})["x"] == [
            pd.Timestamp(value).to_pydatetime()
            if rule["dtype"] == "datetime"
            else value
        ]
    else:
        with pytest.raises(ValueRejected) as info:
            contract.check_values({"x": [value]})
        assert info.value.column == "x"
        assert info.value.row == 0


def test_json_rejections_name_column_rule_and_row_never_the_value(contract):
    values = {name: [] for name in contract.column_names}
    good = {
        "timestamp": "2025-03-03T08:00:00",
        "station_id": "S0001",
        "station_zone": "park",
        "station_capacity": 20,
        "temperature_c": 12.5,
        "humidity_pct": 50.0,
        "wind_speed_kmh": 3.0,
        "precipitation_mm": 0.0,
        "weather": "clear",
        "is_holiday": False,
        "rentals": 4,
    }
    for _ in range(3):
        for name in contract.column_names:
            values[name].append(good[name])
    values["humidity_pct"][2] = 123.456
    with pytest.raises(ValueRejected) as info:
        contract.check_values(values)
    assert str(info.value) == (
        "column 'humidity_pct' breaks rule 'max 100.0' at row 2: expects <= 100.0"
    )
    assert (info.value.column, info.value.rule, info.value.row) == (
        "humidity_pct",
        "max 100.0",
        2,
    )
    with pytest.raises(ValueRejected, match="'weather' breaks rule 'required column'"):
        contract.check_names([n for n in contract.column_names if n != "weather"])
    with pytest.raises(ValueRejected, match=r"'x{64}\.\.\.' breaks rule 'no extra"):
        contract.check_names([*contract.column_names, "x" * 100], record=1)
