"""Nodes of the data_processing pipeline: window, contract, sample, clean, features."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import pandas as pd

from modelops.contracts import (
    Contract,
    contract_violations,
    parse_contract,
    use_case_key,
    validate_frame,
)
from modelops.errors import ConfigError, SourceWindowError
from modelops.features import CalendarFeatures
from modelops.lineage import content_hash
from modelops.modeling import calendar_features, check_features

logger = logging.getLogger(__name__)

PARAMS_FILE = "conf/base/parameters_data_processing.yml"
# The partition id a single-file source (a CSV or parquet file, not date partitions)
# is read as: the whole file is one partition, and date windows do not apply.
SINGLE_FILE = "single_file"
_HASH_BUCKETS = 1_000_000

Partitions = Mapping[str, Callable[[], pd.DataFrame]]


def as_partitions(source_data: Partitions | pd.DataFrame) -> Partitions:
    """The source as partition id -> loader: a single file is one partition.

    A PartitionedDataset loads as such a mapping already; a CSV or parquet dataset
    loads as one DataFrame, which becomes the partition ``single_file``.

    Raises:
        ConfigError: the source entry loads something else.
    """
    if isinstance(source_data, pd.DataFrame):
        return {SINGLE_FILE: lambda: source_data}
    if isinstance(source_data, Mapping):
        return source_data
    raise ConfigError(
        f"The production source loaded a {type(source_data).__name__}; expected date "
        f"partitions (partitions.PartitionedDataset) or one table (pandas.CSVDataset, "
        f"pandas.ParquetDataset).\nHint: fix {use_case_key('source.dataset')}."
    )


def is_single_file(partitions: Partitions) -> bool:
    """Whether the source is one file (see ``as_partitions``), not date partitions."""
    return list(partitions) == [SINGLE_FILE]


def load_source_window(
    partitions: Partitions | pd.DataFrame, source: Mapping[str, Any]
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Load the source partitions inside the window, each checked against the contract.

    Args:
        partitions: Partition id (a date string) to loader, as a PartitionedDataset
            gives it; or one DataFrame (a single-file source), read whole as the
            partition ``single_file``: the window does not apply to it.
        source: The ``source`` parameters: ``partition_date_format``, ``window``
            (``start``, ``end``, ``last_days``) and ``contract``.

    Returns:
        The concatenated partitions, and a manifest naming what was read (partition
        ids, date range, rows and a content hash per partition) for lineage.

    Raises:
        SourceWindowError: no partition in the window, or a partition id that is not
            a date.
        DataContractError: a partition breaks the contract; nothing is returned.
    """
    contract = parse_contract(source["contract"])
    partitions = as_partitions(partitions)
    if is_single_file(partitions):
        window = {
            k: v for k, v in (source.get("window") or {}).items() if v is not None
        }
        if window:
            logger.warning(
                "source.window %s does not apply: the source is a single file, read "
                "whole",
                window,
            )
        selected = [SINGLE_FILE]
    else:
        selected = select_partitions(
            list(partitions), source["window"], source["partition_date_format"]
        )
    loaded = [(pid, partitions[pid]()) for pid in selected]
    data = _validated_concat(loaded, contract)
    entries = []
    offset = 0
    for partition_id, frame in loaded:
        rows = len(frame)
        part = data.iloc[offset : offset + rows]
        entries.append({"id": partition_id, "rows": rows, "sha256": content_hash(part)})
        offset += rows
    manifest = {
        "first_partition": selected[0],
        "last_partition": selected[-1],
        "partition_count": len(selected),
        "rows": len(data),
        "partitions": entries,
    }
    logger.info(
        "Read %d source partitions (%s .. %s), %d rows, all within the contract",
        len(selected),
        selected[0],
        selected[-1],
        len(data),
    )
    return data, manifest


def _validated_concat(
    loaded: list[tuple[str, pd.DataFrame]], contract: Contract
) -> pd.DataFrame:
    """Concatenate contract-checked partitions, validating the whole window at once.

    One pandera pass over the concatenation costs a fraction of one pass per daily
    partition; only when it fails are the partitions checked one by one, so the error
    still names the first broken partition.
    """
    first_columns = list(loaded[0][1].dtypes.items())
    uniform = all(
        len(frame) >= contract.min_rows and list(frame.dtypes.items()) == first_columns
        for _, frame in loaded
    )
    if uniform:
        data = pd.concat([frame for _, frame in loaded], ignore_index=True)
        if not contract_violations(data, contract):
            return data[contract.column_names]
    for partition_id, frame in loaded:
        validate_frame(frame, contract, where=_where(partition_id))
    data = pd.concat(
        [frame[contract.column_names] for _, frame in loaded], ignore_index=True
    )
    validate_frame(data, contract, where="the source window (all partitions together)")
    return data


def _where(partition_id: str) -> str:
    """How a partition is named in messages."""
    if partition_id == SINGLE_FILE:
        return f"the source file ({use_case_key('source.dataset')})"
    return f"source partition '{partition_id}'"


def select_partitions(
    partition_ids: list[str], window: Mapping[str, Any], date_format: str
) -> list[str]:
    """Pick the partition ids whose date lies in the window, oldest first.

    Args:
        partition_ids: All partition ids of the source.
        window: ``start`` and ``end`` (inclusive dates or null) and ``last_days``.
        date_format: ``strptime`` format of the partition ids.

    Returns:
        The selected ids in date order.

    Raises:
        SourceWindowError: a partition id is not a date, or nothing is selected.
    """
    dated = []
    for partition_id in partition_ids:
        try:
            day = dt.datetime.strptime(partition_id, date_format).date()
        except ValueError as err:
            raise SourceWindowError(
                f"Source partition '{partition_id}' is not named as a date in format "
                f"'{date_format}'.\nHint: remove or rename the file, or set "
                f"{use_case_key('source.partition_date_format')}."
            ) from err
        dated.append((day, partition_id))
    dated.sort()
    start = _as_date(window.get("start"), "source.window.start")
    end = _as_date(window.get("end"), "source.window.end")
    chosen = [
        (day, pid)
        for day, pid in dated
        if (start is None or day >= start) and (end is None or day <= end)
    ]
    last_days = window.get("last_days")
    if last_days is not None:
        if int(last_days) < 1:
            raise ConfigError(
                f"source.window.last_days is {last_days}; expected a positive number "
                f"of days or null.\nHint: fix {PARAMS_FILE}."
            )
        chosen = chosen[-int(last_days) :]
    if not chosen:
        available = (
            f"{len(dated)} partitions from {dated[0][1]} to {dated[-1][1]}"
            if dated
            else "no partitions at all"
        )
        raise SourceWindowError(
            f"No source partition in the window start={start}, end={end}, "
            f"last_days={last_days}; the source has {available}.\nHint: widen "
            f"source.window in {PARAMS_FILE}, or write partitions with `kedro "
            f"simulate`."
        )
    return [pid for _, pid in chosen]


def sample_rows(data: pd.DataFrame, sample: Mapping[str, Any]) -> pd.DataFrame:
    """Keep a deterministic fraction of rows, chosen by a salted hash of key columns.

    A row's fate depends only on its key values (the whole row when ``key_columns``
    is empty) and the seed, so the same rows are kept whatever window or partition
    order is read.

    Args:
        data: Rows to sample; not modified.
        sample: ``fraction`` in (0, 1], ``key_columns`` ([] = hash the whole row)
            and ``seed``.

    Returns:
        The kept rows (all of them when fraction is 1), index reset.
    """
    keep = sample_mask(data, sample)
    if keep is None:
        return data.reset_index(drop=True)
    kept = data.loc[keep].reset_index(drop=True)
    logger.info(
        "Sampled %d of %d rows (fraction %s, hash of %s)",
        len(kept),
        len(data),
        sample["fraction"],
        list(sample.get("key_columns") or []) or "whole rows",
    )
    return kept


def sample_mask(data: pd.DataFrame, sample: Mapping[str, Any]) -> np.ndarray | None:
    """Which rows ``sample_rows`` keeps (a boolean array), or None to keep them all.

    Raises:
        ConfigError: the fraction is not in (0, 1], or a key column is missing.
    """
    fraction = float(sample["fraction"])
    if not 0.0 < fraction <= 1.0:
        raise ConfigError(
            f"source.sample.fraction is {fraction}; expected a number in (0, 1].\n"
            f"Hint: fix the env's parameters_data_processing.yml."
        )
    if fraction == 1.0:
        return None
    keys = list(sample.get("key_columns") or [])
    if keys:
        _require_columns(
            data,
            keys,
            "source.sample.key_columns",
            use_case_key("features.key_columns"),
        )
    hashed = data[keys] if keys else data
    seed = int(sample["seed"])
    salt = f"{seed:016d}"[-16:]  # pandas wants a 16-character key
    hashes = pd.util.hash_pandas_object(hashed, index=False, hash_key=salt).to_numpy()
    if seed:  # pandas salts only string columns: mix the seed in for every dtype
        hashes = pd.util.hash_array(hashes ^ np.uint64(seed % 2**64))
    return (hashes % _HASH_BUCKETS) < round(fraction * _HASH_BUCKETS)


def clean_source(data: pd.DataFrame, features: Mapping[str, Any]) -> pd.DataFrame:
    """Drop repeated rows as ``features.dedupe`` says, and sort by key.

    ``keys``: one row per ``key_columns`` value (the newest wins), sorted by key.
    ``whole_rows``: identical rows kept once (the first), order kept. ``none``: all
    rows, order kept.

    Args:
        data: Contract-checked source rows; not modified.
        features: The ``features`` parameters (``key_columns`` and ``dedupe``).

    Returns:
        The cleaned rows, index reset.

    Raises:
        ConfigError: the features settings are invalid, e.g. ``dedupe: keys``
            without key columns.
    """
    check_features(features)
    keys = list(features["key_columns"])
    mode = features.get("dedupe", "keys")
    if keys:
        _require_columns(data, keys, "features.key_columns")
    if mode == "keys" and not keys:
        raise ConfigError(
            "features.dedupe is 'keys' but features.key_columns is empty: there is "
            f"no key to dedupe on.\nHint: set features.dedupe to whole_rows or none, "
            f"or name the key columns, in {use_case_key('features')}."
        )
    if mode == "keys":
        clean = data.drop_duplicates(subset=keys, keep="last")
    elif mode == "whole_rows":
        clean = data.drop_duplicates(keep="first")
    else:
        clean = data
    dropped = len(data) - len(clean)
    if dropped:
        what = f"an earlier key {keys}" if mode == "keys" else "an earlier row"
        logger.warning("Dropped %d rows that repeated %s", dropped, what)
    if keys:
        clean = clean.sort_values(keys, kind="stable")
    return clean.reset_index(drop=True)


def build_model_input(data: pd.DataFrame, features: Mapping[str, Any]) -> pd.DataFrame:
    """Derive the calendar features and keep the columns the model input table holds.

    Without a time column (``features.time_column`` null) no calendar feature is
    derived, whatever ``features.calendar`` says.

    Args:
        data: Clean source rows; not modified.
        features: ``time_column``, ``key_columns``, ``target``, ``numeric``,
            ``categorical`` and ``calendar`` lists.

    Returns:
        Keys, time column, feature columns and target, in that order.
    """
    check_features(features)
    calendar = calendar_features(features)
    if features.get("calendar") and not calendar:
        logger.warning(
            "features.calendar %s is ignored: features.time_column is null",
            list(features["calendar"]),
        )
    time_column = features.get("time_column")
    derived = data
    if calendar:
        _require_columns(data, [time_column], "features.time_column")
        derived = CalendarFeatures(time_column, calendar).fit_transform(data)
    columns = list(
        dict.fromkeys(
            [
                *features["key_columns"],
                *([time_column] if time_column else []),
                *features["numeric"],
                *features["categorical"],
                *calendar,
                features["target"],
            ]
        )
    )
    for key in ("key_columns", "numeric", "categorical"):
        _require_columns(derived, list(features[key]), f"features.{key}")
    if time_column:
        _require_columns(derived, [time_column], "features.time_column")
    _require_columns(derived, [features["target"]], "features.target")
    return derived[columns]


def _require_columns(
    data: pd.DataFrame, names: list[str], setting: str, fix: str | None = None
) -> list[str]:
    """Return ``names`` if all are columns of ``data``; else a ConfigError.

    Args:
        data: The frame that must have the columns.
        names: The columns.
        setting: The parameter that names them (``features.numeric``...).
        fix: Where to fix it (default: that key in conf/base/use_case.yml).
    """
    missing = [name for name in names if name not in data.columns]
    if missing:
        raise ConfigError(
            f"Column(s) {missing} named in {setting} are not in the data (columns: "
            f"{list(data.columns)}).\nHint: fix {fix or use_case_key(setting)} (the "
            f"data holds the columns of use_case.contract there)."
        )
    return list(names)


def _as_date(value: object, setting: str) -> dt.date | None:
    """Parse a window bound given as a date, an ISO string or null."""
    if value is None or isinstance(value, dt.date):
        return value
    try:
        return dt.date.fromisoformat(str(value))
    except ValueError as err:
        raise ConfigError(
            f"{setting} is {value!r}; expected a date like 2025-01-31 or null.\n"
            f"Hint: fix {PARAMS_FILE}."
        ) from err
