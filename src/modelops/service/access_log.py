"""The access log's handler: a request only queues its record; a thread writes lines in batches."""

from __future__ import annotations

import collections
import logging
import sys
import threading
import time
from typing import Any, TextIO

ACCESS_FORMAT = "%(asctime)s access %(message)s"


class BatchedStreamHandler(logging.Handler):
    """Writes records to a stream from a background thread, a batch at a time.

    ``emit`` only appends the record to a deque: no formatting, no thread wake-up,
    no system call per request. :meth:`queue` takes a line before it is even a
    record (its time, message and arguments): the request path then makes no
    ``LogRecord`` at all, the writer thread does. Every ``interval`` seconds the
    thread formats what waits and writes it with one ``write``; :meth:`close` writes
    the rest. At most ``max_pending`` lines wait; beyond, lines are dropped,
    counted, and the next batch says how many (never silently).

    Args:
        stream: Where lines go (default: ``sys.stderr`` at write time).
        interval: Seconds between writes.
        max_pending: Records kept waiting at most.
    """

    def __init__(
        self,
        stream: TextIO | None = None,
        *,
        interval: float = 0.2,
        max_pending: int = 100_000,
    ) -> None:
        super().__init__()
        self.stream = stream
        self.interval = interval
        self.max_pending = max_pending
        self.dropped = 0  # records dropped since start
        # LogRecords, or (time, logger name, message, args) of queued lines
        self._pending: collections.deque[Any] = collections.deque()
        self._unreported = 0
        self._drop_lock = threading.Lock()
        self._write_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def emit(self, record: logging.LogRecord) -> None:
        """Queue ``record`` (formatted later, on the writer thread)."""
        if len(self._pending) < self.max_pending:
            self._pending.append(record)  # deque.append is atomic
            return
        self._drop()

    def queue(self, message: str, args: tuple[Any, ...]) -> None:
        """Queue an INFO line of this handler's logger: ``message % args``, now."""
        if len(self._pending) < self.max_pending:
            self._pending.append((time.time(), message, args))
            return
        self._drop()

    def _drop(self) -> None:
        with self._drop_lock:
            self.dropped += 1
            self._unreported += 1

    def _record(self, line: tuple[float, str, tuple[Any, ...]]) -> logging.LogRecord:
        created, message, args = line
        return logging.makeLogRecord(
            {
                "name": self.name or "access",
                "levelno": logging.INFO,
                "levelname": "INFO",
                "msg": message,
                "args": args,
                "created": created,
                "msecs": int((created - int(created)) * 1000) + 0.0,
            }
        )

    def start(self) -> BatchedStreamHandler:
        """Start the writer thread (idempotent)."""
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(
                target=self._run, name="modelops-access-log", daemon=True
            )
            self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.write_pending()

    def write_pending(self) -> int:
        """Format and write every queued record now; returns how many lines."""
        with self._write_lock:  # the thread's writes and close()'s (not self.lock,
            pending = self._pending  # which emit takes)
            lines = []
            while pending:
                record = pending.popleft()
                if type(record) is tuple:
                    record = self._record(record)
                try:
                    lines.append(self.format(record))
                except Exception:  # logging's convention: report, go on
                    self.handleError(record)
            with self._drop_lock:
                dropped, self._unreported = self._unreported, 0
            if dropped:
                lines.append(
                    f"access log: {dropped} line(s) dropped ({self.max_pending} were "
                    f"waiting to be written)"
                )
            if lines:
                stream = self.stream or sys.stderr
                try:
                    stream.write("\n".join(lines) + "\n")
                    stream.flush()
                except (OSError, ValueError):  # a closed stream: nowhere to say so
                    return 0
            return len(lines)

    def close(self) -> None:
        """Stop the thread and write what is left."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5.0)
            self._thread = None
        self.write_pending()
        super().close()


def batched_access_log(
    logger: logging.Logger, stream: TextIO | None = None, interval: float = 0.2
) -> BatchedStreamHandler:
    """Send ``logger``'s INFO lines to ``stream`` (stderr) through a started handler."""
    handler = BatchedStreamHandler(stream, interval=interval)
    handler.set_name(logger.name)
    handler.setFormatter(logging.Formatter(ACCESS_FORMAT))
    logger.handlers = [handler]
    logger.setLevel(logging.INFO)
    logger.propagate = False
    return handler.start()
