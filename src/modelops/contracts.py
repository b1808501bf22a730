"""The data contract: one definition, checked on source frames and on REST requests."""

from __future__ import annotations

import datetime as dt
import functools
import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pandas as pd
import pandera.pandas as pa

from modelops.errors import ConfigError, DataContractError

# The one file a team edits to plug in its dataset; its values reach the other conf
# files as ${globals:use_case.<key>}.
USE_CASE_FILE = "conf/base/use_case.yml"


def use_case_key(key: str) -> str:
    """Where a use-case setting is fixed: ``use_case.<key> in conf/base/use_case.yml``."""
    return f"use_case.{key} in {USE_CASE_FILE}"


CONTRACT_CONF = use_case_key("contract")
DTYPES: dict[str, Any] = {
    "datetime": pa.DateTime,
    "string": str,
    "int": "int64",
    "float": "float64",
    "bool": "bool",
}
CONTRACT_KEYS = ("columns", "min_rows", "unique_key")
RULE_KEYS = ("dtype", "nullable", "min", "max", "allowed", "pattern")
# The rules each dtype takes besides dtype and nullable (others are refused).
DTYPE_RULES: dict[str, tuple[str, ...]] = {
    "float": ("min", "max", "allowed"),
    "int": ("min", "max", "allowed"),
    "string": ("allowed", "pattern"),
    "bool": (),
    "datetime": ("min", "max"),
}
_MAX_EXAMPLES = 3
_MAX_NAME_CHARS = 64  # a column name from a request is cut to this in messages
_INT64 = (-(2**63), 2**63 - 1)


class ValueRejected(DataContractError):
    """A batch of JSON values breaks the contract: names column, rule and row.

    The message never holds a value of the batch, only names and the contract's own
    bounds, so it can be returned to the client that sent the values.
    """

    def __init__(
        self,
        message: str,
        *,
        column: str | None = None,
        rule: str | None = None,
        row: int | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.column = column
        self.rule = rule
        self.row = row


def _rejected(column: str, rule: str, row: int, expected: str) -> ValueRejected:
    return ValueRejected(
        f"column '{column}' breaks rule '{rule}' at row {row}: {expected}",
        column=column,
        rule=rule,
        row=row,
    )


def _safe_name(name: object) -> str:
    """A column name from a request, cut short: names are echoed, values never."""
    text = str(name)
    return text if len(text) <= _MAX_NAME_CHARS else f"{text[:_MAX_NAME_CHARS]}..."


# A value check takes one column's JSON values and returns them as Python values of
# the contract's type (ints for int, datetime for datetime, None for null) or raises.
ValueCheck = Callable[[Sequence[Any]], list[Any]]


@dataclass(frozen=True)
class ColumnRule:
    """What the contract says about one column."""

    name: str
    dtype: str
    nullable: bool = False
    min: float | None = None
    max: float | None = None
    allowed: tuple[Any, ...] | None = None
    pattern: str | None = None

    def checks(self) -> list[pa.Check]:
        """The pandera value checks for this column, each named by its rule."""
        checks = []
        if self.min is not None:
            checks.append(pa.Check.ge(self.min, error=f"min {self.min}"))
        if self.max is not None:
            checks.append(pa.Check.le(self.max, error=f"max {self.max}"))
        if self.allowed is not None:
            allowed = list(self.allowed)
            checks.append(pa.Check.isin(allowed, error=f"allowed values {allowed}"))
        if self.pattern is not None:
            checks.append(
                pa.Check.str_matches(self.pattern, error=f"pattern {self.pattern}")
            )
        return checks

    def value_check(self) -> ValueCheck:
        """The same rules as :meth:`checks`, on JSON values (REST requests)."""
        return _VALUE_CHECKS[self.dtype](self)


@dataclass(frozen=True)
class Contract:
    """A parsed data contract: column rules plus frame-level rules.

    One object gives both forms of the contract: :attr:`schema` (pandera, for source
    frames in data processing and batch scoring) and :meth:`check_values` (for the
    column-oriented JSON values of a REST request), built from the same rules.
    """

    columns: tuple[ColumnRule, ...]
    min_rows: int = 1
    unique_key: tuple[str, ...] = ()

    @property
    def column_names(self) -> list[str]:
        """The contract's columns, in declaration order."""
        return [rule.name for rule in self.columns]

    @property
    def dtypes(self) -> dict[str, str]:
        """Contract dtype name per column, in declaration order."""
        return {rule.name: rule.dtype for rule in self.columns}

    def without(self, names: Iterable[str]) -> Contract:
        """This contract minus some columns (serving drops the label, for example).

        A unique key that loses a column is dropped with it: the rest of it need not
        be unique.
        """
        dropped = set(names)
        kept = tuple(rule for rule in self.columns if rule.name not in dropped)
        unique_key = () if dropped & set(self.unique_key) else self.unique_key
        return replace(self, columns=kept, unique_key=unique_key)

    @functools.cached_property
    def schema(self) -> pa.DataFrameSchema:
        """The pandera schema enforcing this contract (built once; extra columns allowed)."""
        return pa.DataFrameSchema(
            {
                rule.name: pa.Column(
                    DTYPES[rule.dtype], rule.checks(), nullable=rule.nullable
                )
                for rule in self.columns
            },
            strict=False,
        )

    # --- JSON values (REST requests) ----------------------------------------------

    @functools.cached_property
    def _value_checks(self) -> tuple[tuple[str, ValueCheck], ...]:
        return tuple((rule.name, rule.value_check()) for rule in self.columns)

    @functools.cached_property
    def _name_set(self) -> frozenset[str]:
        return frozenset(self.column_names)

    def check_names(self, names: Iterable[Any], record: int | None = None) -> None:
        """Raise ValueRejected unless ``names`` are exactly the contract's columns.

        Args:
            names: The column names a batch (or one record of it) has.
            record: The record's position, named in the message, if they are one
                record's names.
        """
        names = list(names)
        where = "" if record is None else f" in record {record}"
        present = set(names)
        for name in self.column_names:
            if name not in present:
                raise ValueRejected(
                    f"column '{name}' breaks rule 'required column'{where}: it is "
                    f"missing",
                    column=name,
                    rule="required column",
                    row=record,
                )
        for name in names:
            if name not in self._name_set:
                shown = _safe_name(name)
                raise ValueRejected(
                    f"column '{shown}' breaks rule 'no extra columns'{where}: the "
                    f"contract does not have it",
                    column=shown,
                    rule="no extra columns",
                    row=record,
                )

    def check_values(
        self, columns: Mapping[str, Sequence[Any]]
    ) -> dict[str, list[Any]]:
        """Check a column-oriented batch of JSON values against every column rule.

        The unique key is not checked: it is a promise about what a run reads, not
        about one request.

        Args:
            columns: Column name to its values (as JSON parsed them), one list per
                contract column, all of the same length; extra names are ignored
                (see :meth:`check_names`).

        Returns:
            Each contract column's values as Python values of its dtype (ints for
            int, ``datetime`` for datetime, None for null), in contract order.

        Raises:
            ValueRejected: naming the first column, rule and row that break the
                contract, never the value.
        """
        return {name: check(columns[name]) for name, check in self._value_checks}

    # --- frames (data processing, batch scoring) ----------------------------------

    def violations(self, df: pd.DataFrame) -> list[str]:
        """Every way a frame breaks the contract, one readable line per rule."""
        problems: list[str] = []
        if len(df) < self.min_rows:
            problems.append(
                f"frame: rule 'min_rows {self.min_rows}' failed: it has {len(df)} rows"
            )
        try:
            self.schema.validate(df, lazy=True)
        except pa.errors.SchemaErrors as err:
            problems.extend(_describe_failures(err.failure_cases, df))
        repeated = _unique_key_violation(df, self.unique_key)
        if repeated:
            problems.append(repeated)
        return problems


def column_array(dtype: str, values: list[Any]) -> Any:
    """Checked values of a contract dtype as the column training data has.

    Training data is read from parquet by pandas: float64, int64 (float64 with
    nulls), bool (nullable ``boolean`` with nulls), ``str`` and ``datetime64[us]``.
    """
    if dtype == "float":
        return np.array(values, dtype=np.float64)  # None -> NaN
    has_null = None in values
    if dtype == "int":
        return np.array(values, dtype=np.float64 if has_null else np.int64)
    if dtype == "bool":
        return pd.array(values, dtype="boolean") if has_null else np.array(values, bool)
    if dtype == "string":
        return pd.array(values, dtype="str")
    return np.array(values, dtype="datetime64[us]")  # None -> NaT


# --- value checks per dtype ----------------------------------------------------------


def _allowed(rule: ColumnRule) -> tuple[frozenset[Any] | None, str]:
    """The allowed values as a set (None: any), and the rule's name."""
    if rule.allowed is None:
        return None, ""
    return frozenset(rule.allowed), f"allowed values {list(rule.allowed)}"


def _float_check(rule: ColumnRule) -> ValueCheck:
    name, nullable, low, high = rule.name, rule.nullable, rule.min, rule.max
    allowed, allowed_rule = _allowed(rule)

    def check(values: Sequence[Any]) -> list[Any]:
        for row, value in enumerate(values):
            kind = type(value)
            if kind is float:
                if not -math.inf < value < math.inf:
                    raise _rejected(name, "finite", row, "expects a finite number")
            elif kind is int:
                if not -1e308 < value < 1e308:  # noqa: PLR2004 (float64 range)
                    raise _rejected(name, "finite", row, "expects a finite number")
            elif value is None:
                if nullable:
                    continue
                raise _rejected(name, "not null", row, "expects a number, not null")
            else:
                raise _rejected(name, "dtype float", row, "expects a number")
            if low is not None and value < low:
                raise _rejected(name, f"min {low}", row, f"expects >= {low}")
            if high is not None and value > high:
                raise _rejected(name, f"max {high}", row, f"expects <= {high}")
            if allowed is not None and value not in allowed:
                raise _rejected(name, allowed_rule, row, "the value is not allowed")
        return list(values)

    return check


def _int_check(rule: ColumnRule) -> ValueCheck:
    name, nullable, low, high = rule.name, rule.nullable, rule.min, rule.max
    allowed, allowed_rule = _allowed(rule)

    def check(values: Sequence[Any]) -> list[Any]:
        checked = list(values)
        for row, value in enumerate(checked):
            kind = type(value)
            if kind is float and value.is_integer():  # 26.0 is the integer 26
                value = checked[row] = int(value)  # noqa: PLW2901
            elif kind is not int:
                if value is None:
                    if nullable:
                        continue
                    raise _rejected(
                        name, "not null", row, "expects an integer, not null"
                    )
                raise _rejected(name, "dtype int", row, "expects an integer")
            if not _INT64[0] <= value <= _INT64[1]:
                raise _rejected(name, "dtype int", row, "expects a 64-bit integer")
            if low is not None and value < low:
                raise _rejected(name, f"min {low}", row, f"expects >= {low}")
            if high is not None and value > high:
                raise _rejected(name, f"max {high}", row, f"expects <= {high}")
            if allowed is not None and value not in allowed:
                raise _rejected(name, allowed_rule, row, "the value is not allowed")
        return checked

    return check


def _bool_check(rule: ColumnRule) -> ValueCheck:
    name, nullable = rule.name, rule.nullable

    def check(values: Sequence[Any]) -> list[Any]:
        for row, value in enumerate(values):
            if type(value) is bool or (value is None and nullable):
                continue
            rule_name = "not null" if value is None else "dtype bool"
            raise _rejected(name, rule_name, row, "expects true or false")
        return list(values)

    return check


def _string_check(rule: ColumnRule) -> ValueCheck:
    name, nullable = rule.name, rule.nullable
    allowed, allowed_rule = _allowed(rule)
    # pandera's str_matches, which the frame schema uses, is re.match.
    match = re.compile(rule.pattern).match if rule.pattern is not None else None

    def check(values: Sequence[Any]) -> list[Any]:
        for row, value in enumerate(values):
            if type(value) is not str:
                if value is None and nullable:
                    continue
                rule_name = "not null" if value is None else "dtype string"
                raise _rejected(name, rule_name, row, "expects a string")
            if allowed is not None and value not in allowed:
                raise _rejected(
                    name, allowed_rule, row, "the value is not an allowed category"
                )
            if match is not None and match(value) is None:
                raise _rejected(
                    name, f"pattern {rule.pattern}", row, "the value does not match"
                )
        return list(values)

    return check


def _datetime_check(rule: ColumnRule) -> ValueCheck:
    name, nullable = rule.name, rule.nullable
    low = None if rule.min is None else pd.Timestamp(rule.min).to_pydatetime()
    high = None if rule.max is None else pd.Timestamp(rule.max).to_pydatetime()
    expected = "expects an ISO 8601 date-time string without a time zone"
    parse = dt.datetime.fromisoformat

    def check(values: Sequence[Any]) -> list[Any]:
        parsed: list[dt.datetime | None] = []
        for row, value in enumerate(values):
            if type(value) is not str:
                if value is None and nullable:
                    parsed.append(None)
                    continue
                rule_name = "not null" if value is None else "dtype datetime"
                raise _rejected(name, rule_name, row, expected)
            try:
                moment = parse(value)
            except ValueError:
                raise _rejected(name, "dtype datetime", row, expected) from None
            if moment.tzinfo is not None:  # training data is naive: no silent shift
                raise _rejected(name, "dtype datetime", row, expected)
            if low is not None and moment < low:
                raise _rejected(name, f"min {rule.min}", row, f"expects >= {low}")
            if high is not None and moment > high:
                raise _rejected(name, f"max {rule.max}", row, f"expects <= {high}")
            parsed.append(moment)
        return parsed

    return check


_VALUE_CHECKS: dict[str, Callable[[ColumnRule], ValueCheck]] = {
    "float": _float_check,
    "int": _int_check,
    "bool": _bool_check,
    "string": _string_check,
    "datetime": _datetime_check,
}


# --- parsing the contract from conf --------------------------------------------------


def parse_contract(spec: Mapping[str, Any]) -> Contract:
    """Parse and check the contract as written in conf.

    Args:
        spec: ``{"columns": {name: {dtype: ..., rules...}}, "min_rows": int,
            "unique_key": [names]}``.

    Returns:
        The parsed contract.

    Raises:
        ConfigError: if the contract itself is malformed, or has a key (at its top
            level or in a column's rules) it does not know.
    """
    if not isinstance(spec, Mapping):
        raise ConfigError(
            f"The data contract is {type(spec).__name__}, not a mapping of "
            f"{list(CONTRACT_KEYS)}.\nHint: fix {CONTRACT_CONF}."
        )
    unknown = sorted(set(spec) - set(CONTRACT_KEYS), key=str)
    if unknown:
        raise ConfigError(
            f"The data contract has unknown key(s) {unknown}; expected some of "
            f"{list(CONTRACT_KEYS)}.\nHint: fix {CONTRACT_CONF} (column rules go "
            f"under 'columns: {{<name>: {{dtype: ..., <rule>: ...}}}}')."
        )
    columns = spec.get("columns")
    if not isinstance(columns, Mapping) or not columns:
        raise ConfigError(
            f"The data contract declares no columns.\nHint: add a 'columns' mapping "
            f"to {CONTRACT_CONF}."
        )
    rules = tuple(_parse_rule(str(name), raw) for name, raw in columns.items())
    return Contract(
        columns=rules,
        min_rows=_parse_min_rows(spec.get("min_rows", 1)),
        unique_key=_parse_unique_key(spec.get("unique_key"), [r.name for r in rules]),
    )


def _parse_rule(name: str, raw: Any) -> ColumnRule:
    if raw is not None and not isinstance(raw, Mapping):
        raise ConfigError(
            f"Contract column '{name}' is {raw!r}; expected a mapping such as "
            f"{{dtype: float, min: 0}}.\nHint: fix {CONTRACT_CONF}."
        )
    rule_spec = dict(raw or {})
    unknown = sorted(set(rule_spec) - set(RULE_KEYS), key=str)
    if unknown:
        raise ConfigError(
            f"Contract column '{name}' has unknown rule(s) {unknown}; expected some "
            f"of {sorted(RULE_KEYS)}.\nHint: fix {CONTRACT_CONF}."
        )
    dtype = rule_spec.get("dtype")
    if dtype not in DTYPES:
        raise ConfigError(
            f"Contract column '{name}' has dtype {dtype!r}; expected one of "
            f"{sorted(DTYPES)}.\nHint: fix {CONTRACT_CONF}."
        )
    misplaced = [
        key
        for key in RULE_KEYS[2:]
        if rule_spec.get(key) is not None and key not in DTYPE_RULES[dtype]
    ]
    if misplaced:
        raise ConfigError(
            f"Contract column '{name}' (dtype {dtype}) has rule(s) {misplaced}, which "
            f"{dtype} columns do not take (they take: "
            f"{list(DTYPE_RULES[dtype]) or 'only nullable'}).\nHint: fix {CONTRACT_CONF}."
        )
    pattern = rule_spec.get("pattern")
    if pattern is not None:
        try:
            re.compile(pattern)
        except (re.error, TypeError) as err:
            raise ConfigError(
                f"Contract column '{name}' has an invalid pattern {pattern!r}: "
                f"{err}.\nHint: fix {CONTRACT_CONF}."
            ) from err
    allowed = rule_spec.get("allowed")
    if allowed is not None and (
        isinstance(allowed, str | bytes) or not isinstance(allowed, Iterable)
    ):
        raise ConfigError(
            f"Contract column '{name}' has allowed {allowed!r}; expected a list of "
            f"values.\nHint: fix {CONTRACT_CONF}."
        )
    nullable = rule_spec.get("nullable", False)
    if not isinstance(nullable, bool):
        raise ConfigError(
            f"Contract column '{name}' has nullable {nullable!r}; expected true or "
            f"false.\nHint: fix {CONTRACT_CONF}."
        )
    return ColumnRule(
        name=name,
        dtype=dtype,
        nullable=nullable,
        min=rule_spec.get("min"),
        max=rule_spec.get("max"),
        allowed=tuple(allowed) if allowed is not None else None,
        pattern=pattern,
    )


def _parse_min_rows(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ConfigError(
            f"The data contract's min_rows is {value!r}; expected a number of rows "
            f">= 0.\nHint: fix {use_case_key('contract.min_rows')}."
        )
    return value


def _parse_unique_key(value: Any, columns: list[str]) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, Sequence) or not all(isinstance(v, str) for v in value):
        raise ConfigError(
            f"The data contract's unique_key is {value!r}; expected a list of column "
            f"names ([] for none).\nHint: fix {use_case_key('contract.unique_key')}."
        )
    unknown = [name for name in value if name not in columns]
    if unknown:
        raise ConfigError(
            f"Column(s) {unknown} of the data contract's unique_key are not contract "
            f"columns (columns: {columns}).\nHint: fix "
            f"{use_case_key('contract.unique_key')}."
        )
    return tuple(dict.fromkeys(value))


# --- frame checks and their messages -------------------------------------------------


def contract_violations(df: pd.DataFrame, contract: Contract) -> list[str]:
    """List every way a frame breaks the contract, one readable line per rule.

    Args:
        df: The data to check; it is not modified.
        contract: The contract to check against.

    Returns:
        One line per broken rule (empty when the frame satisfies the contract).
    """
    return contract.violations(df)


def validate_frame(df: pd.DataFrame, contract: Contract, *, where: str) -> None:
    """Raise a readable error if a frame breaks the contract.

    Args:
        df: The data to check; it is not modified.
        contract: The contract to check against.
        where: What the data is, for the message (e.g. "partition '2025-01-03'").

    Raises:
        DataContractError: naming ``where``, each column, its rule and examples.
    """
    problems = contract.violations(df)
    if problems:
        lines = "\n".join(f"  - {problem}" for problem in problems)
        raise DataContractError(
            f"Data contract violated in {where}:\n{lines}\n"
            f"Hint: fix the data upstream; if the data is right and the contract is "
            f"out of date, edit {CONTRACT_CONF}."
        )


def _unique_key_violation(df: pd.DataFrame, keys: Sequence[str]) -> str | None:
    """One line naming repeated key values and their rows, or None."""
    if not keys or any(key not in df.columns for key in keys):
        return None  # a missing key column is reported as a missing column
    repeated = df.duplicated(subset=list(keys), keep=False)
    if not repeated.any():
        return None
    groups = (
        df.loc[repeated, list(keys)]
        .groupby(list(keys), sort=False, dropna=False)
        .groups
    )
    shown = [
        (key if isinstance(key, tuple) else (key,), list(rows)[:5])
        for key, rows in list(groups.items())[:_MAX_EXAMPLES]
    ]
    examples = "; ".join(
        "("
        + ", ".join(f"{k}={v!r}" for k, v in zip(keys, key, strict=True))
        + f") at rows {', '.join(str(r) for r in rows)}"
        for key, rows in shown
    )
    return (
        f"frame: rule 'unique_key {list(keys)}' failed: {int(repeated.sum())} of "
        f"{len(df)} rows repeat a key, e.g. {examples}"
    )


def _describe_failures(failures: pd.DataFrame, df: pd.DataFrame) -> list[str]:
    """Turn pandera's failure-case table into one line per (column, rule)."""
    lines = []
    missing = failures[failures["check"] == "column_in_dataframe"]
    lines.extend(
        f"column '{name}': rule 'required column' failed: it is missing "
        f"(present: {list(df.columns)})"
        for name in missing["failure_case"]
    )
    failures = failures[failures["check"] != "column_in_dataframe"]
    dtype_failed = {
        str(column)
        for column, check in zip(failures["column"], failures["check"], strict=True)
        if str(check).startswith("dtype(")
    }
    for (column, check), group in failures.groupby(
        ["column", "check"], sort=False, dropna=False
    ):
        check_name = str(check)
        is_dtype = check_name.startswith("dtype(")
        if column in dtype_failed and not is_dtype:
            continue  # value rules on a column of the wrong type only repeat the cause
        if is_dtype:
            expected = check_name.removeprefix("dtype(").removesuffix(")").strip("'")
            lines.append(
                f"column '{column}': rule 'dtype {expected}' failed: found "
                f"{df[column].dtype}, e.g. {_examples(df[column].dropna())}"
            )
            continue
        rule = "not null" if check_name == "not_nullable" else check_name
        rows = group["index"].dropna()
        examples = _examples(group["failure_case"])
        lines.append(
            f"column '{column}': rule '{rule}' failed for {len(group)} of {len(df)} "
            f"rows, e.g. values {examples} at rows {_examples(rows)}"
        )
    return lines


def _examples(values: pd.Series) -> str:
    """A few distinct values, readable in a log line."""
    distinct = list(dict.fromkeys(values.tolist()))[:_MAX_EXAMPLES]
    return ", ".join(repr(value) for value in distinct) or "(none)"
