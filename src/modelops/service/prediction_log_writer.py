"""The REST prediction log: scored requests appended off the request path, in batches.

A request hands its checked values and predictions to :meth:`PredictionLogWriter.submit`,
which only appends to a bounded in-memory queue (counted in rows) and returns. A
writer thread takes what is queued every ``flush_seconds`` (or as soon as
``batch_rows`` are waiting) and writes it as one parquet file per UTC day,
``<path>/<YYYY-MM-DD>/<time>-<pid>-<n>.parquet``, under a hidden temporary name first
and then renamed, so a reader never sees half a file. The rows have the schema batch
scoring writes (:func:`modelops.prediction_log.log_frame`). When the queue is full a
request's rows are dropped, counted (``modelops_prediction_log_rows_dropped``) and
logged as a warning; nothing is dropped silently. :meth:`close` writes what is left.
"""

from __future__ import annotations

import collections
import datetime as dt
import itertools
import logging
import os
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

from modelops.contracts import column_array
from modelops.prediction_log import MODEL_NAME, MODEL_VERSION, RUN_ID, log_frame
from modelops.service.metrics import ServiceMetrics

logger = logging.getLogger(__name__)
WARN_EVERY_SECONDS = 10.0  # drops are counted always, warned about this often


SECONDS_PER_DAY = 86_400


class LogEntry(NamedTuple):
    """One scored request: plain values only (what the queue holds, as a plain tuple).

    Plain tuples holding only strings, numbers, datetimes and None are left alone by
    Python's cyclic garbage collector, so a queue of many entries costs requests
    nothing; the frame is built on the writer thread.
    """

    values: tuple[Any, ...]  # column after column (dtypes order), each `rows` long
    predictions: tuple[float, ...]
    identity: tuple[str, int, str | None]  # model name, version, run id
    request_id: str
    scored_at: float  # UTC epoch seconds


# Positions of LogEntry's fields in the plain tuples the queue holds.
VALUES, PREDICTIONS, IDENTITY, REQUEST_ID, SCORED_AT = range(5)


class PredictionLogWriter:
    """Appends scored requests to parquet files from a background thread.

    Args:
        path: The log's folder (day folders are made under it).
        prediction_column: Name of the prediction column (``serving.prediction_column``).
        dtypes: Contract dtype per input column (the log's input columns, in order).
        queue_rows: At most this many rows wait in memory; beyond, requests' rows
            are dropped and counted.
        batch_rows: Write as soon as this many rows wait.
        flush_seconds: Write what waits at least this often.
        metrics: Where written, dropped and queued rows are counted.
    """

    def __init__(  # noqa: PLR0913
        self,
        path: Path,
        prediction_column: str,
        dtypes: dict[str, str],
        *,
        queue_rows: int,
        batch_rows: int,
        flush_seconds: float,
        metrics: ServiceMetrics | None = None,
    ) -> None:
        self.path = Path(path)
        self.prediction_column = prediction_column
        self.dtypes = dict(dtypes)
        self._columns = tuple(self.dtypes)
        self.queue_rows = queue_rows
        self.batch_rows = batch_rows
        self.flush_seconds = flush_seconds
        self.metrics = metrics or ServiceMetrics()
        # LogEntry fields as plain tuples (a NamedTuple stays tracked by the collector)
        self._entries: collections.deque[tuple[Any, ...]] = collections.deque()
        self._pending = 0
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._idle = threading.Condition(self._lock)
        self._closing = False
        self._thread: threading.Thread | None = None
        self._writing = 0
        self._files = 0
        self._dropped_since_warning = 0
        self._last_warning = 0.0
        self.rows_written = 0
        self.rows_dropped = 0

    @property
    def pending_rows(self) -> int:
        """Rows waiting in memory."""
        return self._pending

    def start(self) -> PredictionLogWriter:
        """Start the writer thread (idempotent)."""
        if self._thread is None:
            self._closing = False
            self._thread = threading.Thread(
                target=self._run, name="modelops-prediction-log", daemon=True
            )
            self._thread.start()
        return self

    def submit(
        self,
        values: dict[str, list[Any]],
        predictions: Sequence[float],
        identity: tuple[str, int, str | None],
        request_id: str,
        scored_at: float | None = None,
    ) -> bool:
        """Queue one scored request (never blocks); False if its rows were dropped.

        Args:
            values: The checked values, one list per input column.
            predictions: One prediction per row.
            identity: Model name, version and run id of the model that scored.
            request_id: The request's id.
            scored_at: UTC epoch seconds (default: now).
        """
        rows = len(predictions)
        entry = (
            tuple(itertools.chain.from_iterable(values[c] for c in self._columns)),
            tuple(predictions),
            identity,
            request_id,
            scored_at or time.time(),
        )
        with self._lock:
            if self._closing or self._pending + rows > self.queue_rows:
                self._drop(rows, "queue_full")
                return False
            self._entries.append(entry)
            self._pending += rows
            pending = self._pending
        if pending >= self.batch_rows:  # the gauge is set when /metrics is read
            self._wake.set()
        return True

    def _drop(self, rows: int, reason: str) -> None:
        """Count dropped rows and warn (at most every WARN_EVERY_SECONDS); lock held."""
        self.rows_dropped += rows
        self.metrics.log_rows_dropped.labels(reason=reason).inc(rows)
        self._dropped_since_warning += rows
        now = time.monotonic()
        if now - self._last_warning >= WARN_EVERY_SECONDS:
            logger.warning(
                "Prediction log: dropped %d row(s) (%s; %d queued of at most %d). "
                "Raise serving_api.prediction_log.queue_rows or check the disk.",
                self._dropped_since_warning,
                reason,
                self._pending,
                self.queue_rows,
            )
            self._dropped_since_warning = 0
            self._last_warning = now

    def flush(self, timeout: float = 30.0) -> bool:
        """Write everything queued so far; True if it was written within ``timeout``."""
        deadline = time.monotonic() + timeout
        self._wake.set()
        with self._idle:
            while self._pending or self._writing:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self._thread is None:
                    return False
                self._wake.set()
                self._idle.wait(min(remaining, 0.05))
        return True

    def close(self, timeout: float = 30.0) -> None:
        """Refuse new rows, write what is queued, stop the thread."""
        with self._lock:
            self._closing = True
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        if self._entries:  # the thread did not start or did not finish in time
            self._write_batch(self._take())

    def _take(self) -> collections.deque[tuple[Any, ...]]:
        with self._lock:  # a new deque: requests wait for no copy
            taken, self._entries = self._entries, collections.deque()
            self._pending = 0
            self._writing += 1
        self.metrics.log_queue_rows.set(0)
        return taken

    def _run(self) -> None:
        while True:
            self._wake.wait(self.flush_seconds)
            self._wake.clear()
            closing = self._closing
            self._write_batch(self._take())
            if closing:
                return

    def _write_batch(self, entries: Sequence[tuple[Any, ...]]) -> None:
        try:
            if entries:
                self._write(entries)
        finally:
            with self._idle:
                self._writing -= 1
                self._idle.notify_all()

    def _write(self, entries: Sequence[tuple[Any, ...]]) -> None:
        rows = sum(len(entry[PREDICTIONS]) for entry in entries)
        try:
            by_day: dict[int, list[tuple[Any, ...]]] = {}  # UTC day number -> entries
            for entry in entries:
                day_number = int(entry[SCORED_AT] // SECONDS_PER_DAY)
                by_day.setdefault(day_number, []).append(entry)
            for number in sorted(by_day):
                day = dt.datetime.fromtimestamp(number * SECONDS_PER_DAY, dt.UTC)
                self._write_file(self.frame(by_day[number]), day.strftime("%Y-%m-%d"))
        except Exception as err:
            logger.exception("Prediction log: writing %d row(s) failed", rows)
            with self._lock:
                self._drop(rows, "write_failed")
            del err
            return
        self.rows_written += rows
        self.metrics.log_rows_written.inc(rows)

    def frame(self, entries: Sequence[tuple[Any, ...]]) -> pd.DataFrame:
        """The prediction-log rows of ``entries`` (:class:`LogEntry` fields, in order).

        The frame has the schema batch scoring writes.
        """
        groups: dict[tuple[str, int, str | None], list[tuple[Any, ...]]] = {}
        for entry in entries:
            groups.setdefault(entry[IDENTITY], []).append(entry)
        frames = []
        chain = itertools.chain.from_iterable
        for (name, version, run_id), group in groups.items():
            counts = [len(entry[PREDICTIONS]) for entry in group]
            if all(count == 1 for count in counts):  # single rows: transpose
                rows = [entry[VALUES] for entry in group]
                columns: list[Any] = list(zip(*rows, strict=True))
                ids = [entry[REQUEST_ID] for entry in group]
            else:
                columns = [
                    list(
                        chain(
                            entry[VALUES][index * count : (index + 1) * count]
                            for entry, count in zip(group, counts, strict=True)
                        )
                    )
                    for index in range(len(self.dtypes))
                ]
                ids = [
                    entry[REQUEST_ID]
                    for entry, count in zip(group, counts, strict=True)
                    for _ in range(count)
                ]
            inputs = pd.DataFrame(
                {
                    column: column_array(dtype, list(values))
                    for (column, dtype), values in zip(
                        self.dtypes.items(), columns, strict=True
                    )
                },
                copy=False,
            )
            stamps = pd.to_datetime(
                np.repeat([entry[SCORED_AT] for entry in group], counts),
                unit="s",
                utc=True,
            )
            frames.append(
                log_frame(
                    inputs,
                    np.fromiter(
                        chain(entry[PREDICTIONS] for entry in group),
                        np.float64,
                        sum(counts),
                    ),
                    self.prediction_column,
                    {MODEL_NAME: name, MODEL_VERSION: version, RUN_ID: run_id},
                    ids,
                    stamps,
                )
            )
        return frames[0] if len(frames) == 1 else pd.concat(frames, ignore_index=True)

    def _write_file(self, frame: pd.DataFrame, day: str) -> Path:
        folder = self.path / day
        folder.mkdir(parents=True, exist_ok=True)
        self._files += 1
        stamp = dt.datetime.now(dt.UTC).strftime("%H%M%S%f")
        target = folder / f"{stamp}-{os.getpid()}-{self._files:06d}.parquet"
        temporary = folder / f".{target.name}.tmp"
        try:
            frame.to_parquet(temporary, index=False)
            os.replace(temporary, target)
        finally:
            temporary.unlink(missing_ok=True)
        return target
