"""Data contracts: pandera schemas built from conf, with errors a person can act on."""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import pandas as pd
import pandera.pandas as pa

from modelops.errors import ConfigError, DataContractError

CONTRACT_CONF = "source.contract in conf/base/parameters_data_processing.yml"
DTYPES: dict[str, Any] = {
    "datetime": pa.DateTime,
    "string": str,
    "int": "int64",
    "float": "float64",
    "bool": "bool",
}
_RULE_KEYS = {"dtype", "nullable", "min", "max", "allowed", "pattern"}
_MAX_EXAMPLES = 3


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


@dataclass(frozen=True)
class Contract:
    """A parsed data contract: column rules plus frame-level rules."""

    columns: tuple[ColumnRule, ...]
    min_rows: int = 1

    @property
    def column_names(self) -> list[str]:
        """The contract's columns, in declaration order."""
        return [rule.name for rule in self.columns]

    def without(self, names: Iterable[str]) -> Contract:
        """This contract minus some columns (serving drops the label, for example)."""
        dropped = set(names)
        kept = tuple(rule for rule in self.columns if rule.name not in dropped)
        return Contract(columns=kept, min_rows=self.min_rows)

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


def parse_contract(spec: Mapping[str, Any]) -> Contract:
    """Parse and check the contract as written in conf.

    Args:
        spec: ``{"min_rows": int, "columns": {name: {dtype: ..., rules...}}}``.

    Returns:
        The parsed contract.

    Raises:
        ConfigError: if the contract itself is malformed.
    """
    columns = spec.get("columns")
    if not isinstance(columns, Mapping) or not columns:
        raise ConfigError(
            f"The data contract declares no columns.\nHint: add a 'columns' mapping "
            f"to {CONTRACT_CONF}."
        )
    rules = []
    for name, raw in columns.items():
        rule_spec = dict(raw or {})
        unknown = set(rule_spec) - _RULE_KEYS
        if unknown:
            raise ConfigError(
                f"Contract column '{name}' has unknown rule(s) {sorted(unknown)}; "
                f"expected some of {sorted(_RULE_KEYS)}.\nHint: fix {CONTRACT_CONF}."
            )
        dtype = rule_spec.get("dtype")
        if dtype not in DTYPES:
            raise ConfigError(
                f"Contract column '{name}' has dtype {dtype!r}; expected one of "
                f"{sorted(DTYPES)}.\nHint: fix {CONTRACT_CONF}."
            )
        pattern = rule_spec.get("pattern")
        if pattern is not None:
            try:
                re.compile(pattern)
            except re.error as err:
                raise ConfigError(
                    f"Contract column '{name}' has an invalid pattern {pattern!r}: "
                    f"{err}.\nHint: fix {CONTRACT_CONF}."
                ) from err
        allowed = rule_spec.get("allowed")
        rules.append(
            ColumnRule(
                name=str(name),
                dtype=dtype,
                nullable=bool(rule_spec.get("nullable", False)),
                min=rule_spec.get("min"),
                max=rule_spec.get("max"),
                allowed=tuple(allowed) if allowed is not None else None,
                pattern=pattern,
            )
        )
    return Contract(columns=tuple(rules), min_rows=int(spec.get("min_rows", 1)))


def contract_violations(df: pd.DataFrame, contract: Contract) -> list[str]:
    """List every way a frame breaks the contract, one readable line per rule.

    Args:
        df: The data to check; it is not modified.
        contract: The contract to check against.

    Returns:
        One line per broken rule (empty when the frame satisfies the contract).
    """
    problems: list[str] = []
    if len(df) < contract.min_rows:
        problems.append(
            f"frame: rule 'min_rows {contract.min_rows}' failed: it has {len(df)} rows"
        )
    try:
        contract.schema.validate(df, lazy=True)
    except pa.errors.SchemaErrors as err:
        problems.extend(_describe_failures(err.failure_cases, df))
    return problems


def validate_frame(df: pd.DataFrame, contract: Contract, *, where: str) -> None:
    """Raise a readable error if a frame breaks the contract.

    Args:
        df: The data to check; it is not modified.
        contract: The contract to check against.
        where: What the data is, for the message (e.g. "partition '2025-01-03'").

    Raises:
        DataContractError: naming ``where``, each column, its rule and examples.
    """
    problems = contract_violations(df, contract)
    if problems:
        lines = "\n".join(f"  - {problem}" for problem in problems)
        raise DataContractError(
            f"Data contract violated in {where}:\n{lines}\n"
            f"Hint: fix the data upstream; if the data is right and the contract is "
            f"out of date, edit {CONTRACT_CONF}."
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
