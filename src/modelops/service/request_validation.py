"""Request validation: MLflow's scoring payloads checked by a pydantic model built from the Contract.

The payload's shape (``dataframe_split`` / ``dataframe_records``, row limits, names)
is checked in plain Python; the values by a pydantic model generated from the one
:class:`modelops.contracts.Contract` (``use_case.contract`` minus the target): one
list field per contract column whose item type carries the column's rules (dtype,
nullable, min, max, allowed, pattern), so the rules data processing enforces with
pandera are the rules a request meets here. A refusal names the column, the rule and
the row in the contract's own words; pydantic's error objects hold the offending
input, so they never leave this module: only names and the contract's bounds do.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable, Sequence
from http import HTTPStatus
from typing import Annotated, Any, Literal

import pandas as pd
import pydantic
from pydantic import AfterValidator, BeforeValidator, ConfigDict, Field
from pydantic_core import PydanticCustomError
from typing_extensions import TypedDict

from modelops.contracts import (
    ColumnRule,
    Contract,
    ValueRejected,
    column_array,
)

INPUT_FORMATS = ("dataframe_split", "dataframe_records")
_INT64 = (-(2**63), 2**63 - 1)
_DATETIME_EXPECTED = "expects an ISO 8601 date-time string without a time zone"
# What each dtype says when a value has the wrong type or is null (as the contract).
_TYPE_EXPECTED = {
    "float": "expects a number",
    "int": "expects an integer",
    "bool": "expects true or false",
    "string": "expects a string",
    "datetime": _DATETIME_EXPECTED,
}
_NULL_EXPECTED = {
    "float": "expects a number, not null",
    "int": "expects an integer, not null",
    "bool": "expects true or false",
    "string": "expects a string",
    "datetime": _DATETIME_EXPECTED,
}
_CONTRACT_ERROR = "contract"
_MODEL_CONFIG = ConfigDict(extra="forbid", strict=True)
# Up to this many rows a batch is checked one dict per row; beyond, one list per column.
ROW_MODEL_MAX_ROWS = 16


class RequestRejected(Exception):
    """A request the service refuses: HTTP status, a short message, column and rule."""

    def __init__(  # noqa: PLR0913
        self,
        status: int,
        message: str,
        *,
        column: str | None = None,
        rule: str | None = None,
        row: int | None = None,
        close: bool = False,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.column = column
        self.rule = rule
        self.row = row
        self.close = close


class ValidatedBatch:
    """Rows that passed the contract: Python values per column, the frame on demand."""

    __slots__ = ("_dtypes", "_frame", "rows", "values")

    def __init__(
        self, values: dict[str, list[Any]], dtypes: dict[str, str], rows: int
    ) -> None:
        self.values = values
        self.rows = rows
        self._dtypes = dtypes
        self._frame: pd.DataFrame | None = None

    def frame(self) -> pd.DataFrame:
        """The DataFrame the model reads: contract column order, training dtypes."""
        if self._frame is None:
            self._frame = pd.DataFrame(
                {
                    name: column_array(dtype, self.values[name])
                    for name, dtype in self._dtypes.items()
                },
                copy=False,
            )
        return self._frame


# --- the pydantic model generated from the contract ----------------------------------


def _contract_error(rule: str, expected: str) -> PydanticCustomError:
    return PydanticCustomError(
        _CONTRACT_ERROR, "{rule}: {expected}", {"rule": rule, "expected": expected}
    )


def _allowed(rule: ColumnRule, expected: str) -> Callable[[Any], Any]:
    allowed = frozenset(rule.allowed or ())
    name = f"allowed values {list(rule.allowed or ())}"

    def check(value: Any) -> Any:
        if value not in allowed:
            raise _contract_error(name, expected)
        return value

    return check


def _pattern(rule: ColumnRule) -> Callable[[str], str]:
    # re.match, as pandera's str_matches on source frames.
    match = re.compile(str(rule.pattern)).match
    name = f"pattern {rule.pattern}"

    def check(value: str) -> str:
        if match(value) is None:
            raise _contract_error(name, "the value does not match")
        return value

    return check


def _integral(value: Any) -> Any:
    """26.0 is the integer 26; integers must fit in 64 bits (before the int check)."""
    if type(value) is float and value.is_integer():
        value = int(value)
    if type(value) is int and not _INT64[0] <= value <= _INT64[1]:
        raise _contract_error("dtype int", "expects a 64-bit integer")
    return value


def _datetime(rule: ColumnRule) -> Callable[[str], dt.datetime]:
    low = None if rule.min is None else pd.Timestamp(rule.min).to_pydatetime()
    high = None if rule.max is None else pd.Timestamp(rule.max).to_pydatetime()
    parse = dt.datetime.fromisoformat

    def check(value: str) -> dt.datetime:
        try:
            moment = parse(value)
        except ValueError:
            raise _contract_error("dtype datetime", _DATETIME_EXPECTED) from None
        if moment.tzinfo is not None:  # training data is naive: no silent shift
            raise _contract_error("dtype datetime", _DATETIME_EXPECTED)
        if low is not None and moment < low:
            raise _contract_error(f"min {rule.min}", f"expects >= {low}")
        if high is not None and moment > high:
            raise _contract_error(f"max {rule.max}", f"expects <= {high}")
        return moment

    return check


def column_type(rule: ColumnRule) -> Any:
    """The pydantic type of one value of a contract column (its rules attached)."""
    bounds = {"ge": rule.min, "le": rule.max}
    if rule.dtype == "float":
        item: Any = Annotated[float, Field(strict=True, allow_inf_nan=False, **bounds)]
        if rule.allowed is not None:
            item = Annotated[
                item, AfterValidator(_allowed(rule, "the value is not allowed"))
            ]
    elif rule.dtype == "int":
        item = Annotated[int, BeforeValidator(_integral), Field(strict=True, **bounds)]
        if rule.allowed is not None:
            item = Annotated[
                item, AfterValidator(_allowed(rule, "the value is not allowed"))
            ]
    elif rule.dtype == "bool":
        item = Annotated[bool, Field(strict=True)]
    elif rule.dtype == "string":
        item = Annotated[str, Field(strict=True)]
        if rule.allowed is not None:
            item = Literal[tuple(rule.allowed)]  # strings, compared exactly
        if rule.pattern is not None:
            item = Annotated[item, AfterValidator(_pattern(rule))]
    else:  # datetime: ISO 8601 strings, as MLflow's clients send them
        item = Annotated[str, Field(strict=True), AfterValidator(_datetime(rule))]
    return item | None if rule.nullable else item


def contract_row_model(contract: Contract) -> pydantic.TypeAdapter[list[Any]]:
    """The pydantic model of a batch of rows: a list of one typed dict per row.

    Each key is a contract column whose value type carries the column's rules; any
    column name works (the row is a ``TypedDict`` built from the contract).
    """
    row = pydantic.with_config(_MODEL_CONFIG)(
        TypedDict(  # type: ignore[misc]
            "ContractRow", {rule.name: column_type(rule) for rule in contract.columns}
        )
    )
    return pydantic.TypeAdapter(list[row])


def contract_columns_model(contract: Contract) -> pydantic.TypeAdapter[Any]:
    """The same rules as :func:`contract_row_model`, on one list per column.

    Cheaper per row than one dict per row once a batch has more than a few rows.
    """
    columns = pydantic.with_config(_MODEL_CONFIG)(
        TypedDict(  # type: ignore[misc]
            "ContractColumns",
            {rule.name: list[column_type(rule)] for rule in contract.columns},  # type: ignore[misc]
        )
    )
    return pydantic.TypeAdapter(columns)


def _rejection(
    error: Any, rules: dict[str, ColumnRule], *, columnar: bool = False
) -> ValueRejected:
    """One pydantic error as the contract's refusal (the input is never shown)."""
    first, second = error["loc"][0], error["loc"][1]
    row, column = (int(second), str(first)) if columnar else (int(first), str(second))
    rule = rules[column]
    kind = error["type"]
    if kind == _CONTRACT_ERROR:
        name, expected = error["ctx"]["rule"], error["ctx"]["expected"]
    elif kind == "greater_than_equal":
        name, expected = f"min {rule.min}", f"expects >= {rule.min}"
    elif kind == "less_than_equal":
        name, expected = f"max {rule.max}", f"expects <= {rule.max}"
    elif kind == "literal_error" and type(error.get("input")) is str:
        name = f"allowed values {list(rule.allowed or ())}"
        expected = "the value is not an allowed category"
    elif kind == "finite_number":
        name, expected = "finite", "expects a finite number"
    elif error.get("input", 0) is None:
        name, expected = "not null", _NULL_EXPECTED[rule.dtype]
    elif rule.dtype == "float" and type(error.get("input")) is int:
        name, expected = "finite", "expects a finite number"  # beyond float64
    else:
        name, expected = f"dtype {rule.dtype}", _TYPE_EXPECTED[rule.dtype]
    return ValueRejected(
        f"column '{column}' breaks rule '{name}' at row {row}: {expected}",
        column=column,
        rule=name,
        row=row,
    )


# --- the validator -------------------------------------------------------------------


class RequestValidator:
    """Checks a parsed MLflow scoring payload against a contract.

    :meth:`validate` raises :class:`RequestRejected` naming the first column (in
    contract order) and rule a request breaks, and the first row that breaks it.
    """

    def __init__(self, contract: Contract, max_rows: int) -> None:
        self.contract = contract
        self.columns = contract.column_names
        self.max_rows = max_rows
        self.dtypes = contract.dtypes
        self.model = contract_row_model(contract)
        self.columns_model = contract_columns_model(contract)
        self._order = {name: index for index, name in enumerate(self.columns)}
        self._rules = {rule.name: rule for rule in contract.columns}
        self._column_set = frozenset(self.columns)

    def validate(self, payload: Any) -> ValidatedBatch:
        """The checked rows of ``payload``, the parsed JSON body.

        Up to ``ROW_MODEL_MAX_ROWS`` rows are checked one dict per row, larger
        batches one list per column: the same rules, the same first refusal.

        Args:
            payload: ``{"dataframe_split": {"columns": [...], "data": [[...]]}}`` or
                ``{"dataframe_records": [{column: value}, ...]}``.
        """
        names, rows, records = self.parse(payload)
        count = len(rows) if records is None else len(records)
        if count > ROW_MODEL_MAX_ROWS:
            if records is not None:
                columns = {n: [record[n] for record in records] for n in self.columns}
            else:
                columns = {
                    name: list(values)
                    for name, values in zip(names, zip(*rows, strict=True), strict=True)
                }
            return ValidatedBatch(self.check_columns(columns), self.dtypes, count)
        if records is None:
            records = [dict(zip(names, values, strict=True)) for values in rows]
        checked = self.check_rows(records)
        if count == 1:
            (row,) = checked
            values = {name: [row[name]] for name in self.columns}
        else:
            values = {name: [row[name] for row in checked] for name in self.columns}
        return ValidatedBatch(values, self.dtypes, count)

    def check_rows(self, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Rows (contract columns exactly) checked and typed (ints, datetimes, None).

        Raises:
            RequestRejected: 422 naming the first column in contract order that a
                row breaks, the rule, and the first such row.
        """
        try:
            return self.model.validate_python(records)
        except pydantic.ValidationError as err:
            order = self._order
            first = min(
                err.errors(include_url=False, include_context=True),
                key=lambda e: (order.get(str(e["loc"][1]), -1), e["loc"][0]),
            )
            raise _contract_rejected(_rejection(first, self._rules)) from None

    def check_columns(self, columns: dict[str, list[Any]]) -> dict[str, list[Any]]:
        """Like :meth:`check_rows`, on one list per contract column."""
        try:
            return self.columns_model.validate_python(columns)
        except pydantic.ValidationError as err:
            order = self._order
            first = min(
                err.errors(include_url=False, include_context=True),
                key=lambda e: (order.get(str(e["loc"][0]), -1), e["loc"][1]),
            )
            raise _contract_rejected(
                _rejection(first, self._rules, columnar=True)
            ) from None

    def parse(
        self, payload: Any
    ) -> tuple[list[str], list[list[Any]], list[dict[str, Any]] | None]:
        """Structure and names checked: split's (names, rows, None) or records'.

        Returns:
            ``(names, rows, None)`` for ``dataframe_split``, ``([], [], records)``
            for ``dataframe_records``.
        """
        if type(payload) is not dict:
            raise _format_rejected("the body must be a JSON object")
        if len(payload) != 1 or next(iter(payload)) not in INPUT_FORMATS:
            raise _format_rejected(
                "the body must hold exactly one of 'dataframe_split' or "
                "'dataframe_records' and nothing else"
            )
        if "dataframe_split" in payload:
            names, rows = self._split(payload["dataframe_split"])
            return names, rows, None
        return [], [], self._records(payload["dataframe_records"])

    def _check_rows(self, rows: Any, what: str) -> None:
        if type(rows) is not list:
            raise _format_rejected(f"{what} must be a JSON array")
        if len(rows) > self.max_rows:
            raise RequestRejected(
                HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                f"the request has {len(rows)} rows; at most {self.max_rows} are "
                f"accepted per request",
                rule=f"max_rows {self.max_rows}",
            )
        if not rows:  # the contract's min_rows is per source partition, not request
            raise RequestRejected(
                HTTPStatus.UNPROCESSABLE_ENTITY,
                "the request has 0 rows; at least 1 needed",
                rule="min_rows 1",
            )

    def _names(self, names: Sequence[Any], record: int | None = None) -> None:
        try:
            self.contract.check_names(names, record)
        except ValueRejected as err:
            raise _contract_rejected(err) from None

    def _split(self, split: Any) -> tuple[list[str], list[list[Any]]]:
        if type(split) is not dict or not {"columns", "data"} <= split.keys():
            raise _format_rejected(
                "'dataframe_split' must be an object with 'columns' and 'data'"
            )
        if not split.keys() <= {"columns", "data", "index"}:
            raise _format_rejected(
                "'dataframe_split' may hold only 'columns', 'data' and 'index'"
            )
        names, rows = split["columns"], split["data"]
        try:
            given = set(names) if type(names) is list else None
        except TypeError:  # a name that is an array or an object
            given = None
        exact = given == self._column_set and len(names) == len(given)
        if not exact:  # the usual request skips these: its names are the contract's
            if given is None or not all(type(n) is str for n in names):
                raise _format_rejected("'columns' must be an array of column names")
            if len(given) != len(names):
                raise _format_rejected(
                    "'columns' names a column twice", rule="unique columns"
                )
        self._check_rows(rows, "'data'")
        if not exact:  # the contract says which column is missing or extra
            self._names(names)
        width = len(names)
        for row, values in enumerate(rows):
            if type(values) is not list or len(values) != width:
                raise _format_rejected(
                    f"row {row} of 'data' must be an array of {width} values, one per "
                    f"column"
                )
        return names, rows

    def _records(self, records: Any) -> list[dict[str, Any]]:
        self._check_rows(records, "'dataframe_records'")
        expected = self._column_set
        for row, record in enumerate(records):
            if type(record) is not dict:
                raise _format_rejected(f"record {row} must be a JSON object")
            if record.keys() != expected:
                self._names(list(record), row)
        return records


def _contract_rejected(err: ValueRejected) -> RequestRejected:
    """The contract's refusal as an HTTP 422 (its message holds no request value)."""
    return RequestRejected(
        HTTPStatus.UNPROCESSABLE_ENTITY,
        err.message,
        column=err.column,
        rule=err.rule,
        row=err.row,
    )


def _format_rejected(message: str, rule: str = "format") -> RequestRejected:
    return RequestRejected(HTTPStatus.BAD_REQUEST, message, rule=rule)
