"""The Starlette application: endpoints, request ids, body limits, errors that never echo input.

Endpoints: ``POST /invocations`` (MLflow's ``dataframe_split`` / ``dataframe_records``
JSON, answered as ``{"predictions": [...], "model_name", "model_version"}``),
``GET /health`` and ``GET /ping`` (503 until a model is loaded), ``GET /model``,
``POST /reload`` (bearer token) and ``GET /metrics`` (Prometheus). Every response
carries ``X-Request-Id`` (the client's when it is sane, else a new one) and, once a
model is loaded, ``X-Model-Version``. A body must come with a Content-Length no larger
than ``max_body_bytes`` (413) and arrive within ``body_timeout_seconds`` (408), both
closing the connection. Rejections are short JSON naming the column and the rule,
never the request's values or a stack trace; a failure inside the model is a 500
with the request id, its traceback in the server log only.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import hmac
import itertools
import json
import logging
import os
import re
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from http import HTTPStatus
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from modelops.service.metrics import CONTENT_TYPE, ServiceMetrics
from modelops.service.model_holder import (
    INLINE_MAX_ROWS,
    ModelHolder,
    ServingError,
)
from modelops.service.prediction_log_writer import PredictionLogWriter
from modelops.service.request_validation import RequestRejected, RequestValidator
from modelops.service.settings import ServingConfig

logger = logging.getLogger(__name__)
access_logger = logging.getLogger("modelops.service.access")

JSON_TYPE = "application/json"
DRAIN_FACTOR = 8  # a body up to this many times max_body_bytes is read before a 413
RELOAD_TIMEOUT_SECONDS = 60.0
BODY_KEY = "modelops.body"  # scope key: the body read (bytes) or why it was refused
_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")
ENDPOINTS = ("/invocations", "/health", "/ping", "/model", "/reload", "/metrics")
# Every route takes these methods: a wrong one gets a JSON 405 naming the right one.
METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
ACCESS_LINE = (
    "request_id=%s method=%s path=%s status=%s version=%s rows=%d latency_ms=%.2f"
)
# orjson reads integers beyond 64 bits as floats; a body with a run of this many
# digits is parsed by the standard library, which keeps them exact.
_LONG_NUMBER = re.compile(rb"[0-9]{19}")
# Request ids made here: a random prefix per process and a counter (32 hex digits,
# unique, no system call per request).
_ID_PREFIX = os.urandom(8).hex()
_ID_COUNTER = itertools.count(1)


def new_request_id() -> str:
    """A request id for a request that brought none (or an unusable one)."""
    return f"{_ID_PREFIX}{next(_ID_COUNTER):016x}"


def log_access(message: str, args: tuple[Any, ...]) -> None:
    """One access-log line through ``logging`` now (formatted by the log's handlers).

    The default of :attr:`Service.access`; ``kedro serve`` queues the line for a
    writer thread instead (:meth:`modelops.service.access_log.BatchedStreamHandler.queue`).
    """
    if access_logger.isEnabledFor(logging.INFO):  # no caller lookup per request
        access_logger.handle(
            access_logger.makeRecord(
                access_logger.name, logging.INFO, __file__, 0, message, args, None
            )
        )


@dataclasses.dataclass
class Reply:
    """What an endpoint answers, before it becomes an HTTP response."""

    status: int
    body: dict[str, Any]
    version: str | None = None
    rows: int = 0
    close: bool = False
    headers: tuple[tuple[str, str], ...] = ()
    rule: str | None = None
    column: str | None = None
    # A scored request: (ValidatedBatch, predictions, model identity), recorded (rows
    # counted, prediction log, warm-up rows) once the answer is sent.
    scored: tuple[Any, list[float], tuple[str, int, str | None]] | None = None


def error_reply(  # noqa: PLR0913
    status: int,
    message: str,
    request_id: str,
    *,
    column: str | None = None,
    rule: str | None = None,
    row: int | None = None,
    version: str | None = None,
    close: bool = False,
    headers: tuple[tuple[str, str], ...] = (),
) -> Reply:
    """A short JSON error: message, column, rule, row, request id (never a value)."""
    body: dict[str, Any] = {
        "error": message,
        "column": column,
        "rule": rule,
        "request_id": request_id,
    }
    if row is not None:
        body["row"] = row
    return Reply(
        status, body, version, close=close, headers=headers, rule=rule, column=column
    )


def _rejected(err: RequestRejected, request_id: str) -> Reply:
    return error_reply(
        err.status,
        err.message,
        request_id,
        column=err.column,
        rule=err.rule,
        row=err.row,
        close=err.close,
    )


def _reject_constant(name: str) -> Any:
    raise RequestRejected(
        HTTPStatus.BAD_REQUEST,
        "malformed JSON: NaN and Infinity are not JSON",
        rule="json",
    )


def parse_json(body: bytes) -> Any:
    """The parsed body, or RequestRejected (400) saying where the JSON is broken.

    orjson parses what it can read exactly; anything else (a broken body, NaN, a
    lone surrogate, integers beyond 64 bits) goes to the standard library, whose
    reading and messages decide.
    """
    if not body:
        raise RequestRejected(HTTPStatus.BAD_REQUEST, "the body is empty", rule="json")
    if _LONG_NUMBER.search(body) is None:
        try:
            return orjson.loads(body)
        except orjson.JSONDecodeError:
            pass
    try:
        return json.loads(body.decode("utf-8"), parse_constant=_reject_constant)
    except UnicodeDecodeError:
        raise RequestRejected(
            HTTPStatus.BAD_REQUEST, "the body is not UTF-8", rule="json"
        ) from None
    except json.JSONDecodeError as err:
        raise RequestRejected(
            HTTPStatus.BAD_REQUEST,
            f"malformed JSON at line {err.lineno} column {err.colno}",
            rule="json",
        ) from None
    except RecursionError:
        raise RequestRejected(
            HTTPStatus.BAD_REQUEST, "malformed JSON: nested too deeply", rule="json"
        ) from None


ASGIApp = Callable[[dict[str, Any], Any, Any], Awaitable[None]]


class BodyReader:
    """Reads ``POST /invocations`` bodies before the app sees the request (pure ASGI).

    A request waiting for its body holds only this small coroutine (not Starlette's
    middleware and routing frames), so thousands of slow clients cost little memory;
    the body must come with a Content-Length of at most ``max_body_bytes`` and arrive
    within ``body_timeout_seconds``. The endpoint finds the body, or the
    :class:`RequestRejected` saying why there is none, under ``scope[BODY_KEY]``.

    ``POST /invocations`` then goes straight to its endpoint (``invocations``: a
    Starlette request in, the response and what records it out), not through
    Starlette's middleware and router: the scoring path is the hot one, and that
    endpoint answers its own errors. The request is recorded (metrics, access log,
    prediction log) once its response is sent, so the client does not wait for
    that. Every other request goes to ``app``.
    """

    def __init__(
        self,
        app: ASGIApp,
        settings: Any,
        invocations: Callable[[Request], Awaitable[tuple[Response, Callable[[], None]]]]
        | None = None,
    ) -> None:
        self.app = app
        self.invocations = invocations
        self.limit = settings.max_body_bytes
        self.timeout = settings.body_timeout_seconds
        self.deadlines = Deadlines(self.timeout)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        """ASGI entry point."""
        if (
            scope["type"] == "http"
            and scope["method"] == "POST"
            and scope["path"] == "/invocations"
        ):
            try:
                scope[BODY_KEY] = await self._read(scope, receive)
            except RequestRejected as err:
                scope[BODY_KEY] = err
            receive = _after_body(receive)
            if self.invocations is not None:
                response, record = await self.invocations(Request(scope, receive))
                try:
                    await response(scope, receive, send)
                finally:
                    record()
                return
        await self.app(scope, receive, send)

    def _length(self, scope: dict[str, Any]) -> int:
        """The body's declared length (checked against the limit before reading)."""
        headers = dict(scope["headers"])  # lower-case names; a repeat: the last one
        if b"transfer-encoding" in headers:
            raise RequestRejected(
                HTTPStatus.LENGTH_REQUIRED,
                "send the body with a Content-Length (chunked bodies are not accepted)",
                rule="content-length",
                close=True,
            )
        raw = headers.get(b"content-length")
        if raw is None:
            raise RequestRejected(
                HTTPStatus.LENGTH_REQUIRED,
                "send the body with a Content-Length header",
                rule="content-length",
                close=True,
            )
        if not raw.isdigit():
            raise RequestRejected(
                HTTPStatus.BAD_REQUEST,
                "Content-Length is not a number",
                rule="content-length",
                close=True,
            )
        length = int(raw)
        if length > DRAIN_FACTOR * self.limit:
            raise _too_large(length, self.limit)  # not read: the connection closes
        return length

    async def _read(self, scope: dict[str, Any], receive: Any) -> bytes:
        length, limit = self._length(scope), self.limit
        too_large = length > limit
        chunks: list[bytes] = []
        task = self.deadlines.start()
        try:
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    raise RequestRejected(
                        HTTPStatus.BAD_REQUEST,
                        "the client closed the connection before the body ended",
                        rule="content-length",
                        close=True,
                    )
                if not too_large:
                    chunks.append(message.get("body", b""))
                if not message.get("more_body", False):
                    break
        except asyncio.CancelledError:
            if not self.deadlines.expired(task):
                raise
            raise RequestRejected(
                HTTPStatus.REQUEST_TIMEOUT,
                f"the body did not arrive within {self.timeout:g} s",
                rule="body_timeout",
                close=True,
            ) from None
        finally:
            self.deadlines.stop(task)
        if too_large:  # drained, so the client reads the 413 rather than a reset
            raise _too_large(length, limit)
        body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        if len(body) != length:
            raise RequestRejected(
                HTTPStatus.BAD_REQUEST,
                "the body ended before Content-Length bytes",
                rule="content-length",
                close=True,
            )
        return body


class Deadlines:
    """Cancels the tasks that are still reading a body ``timeout`` seconds after start.

    One timer for every request reading its body (not one per request): it runs
    every ``timeout / 10`` seconds (at most every second) while any read is under
    way, so a read is cancelled between ``timeout`` and ``1.1 * timeout`` (at most
    ``timeout + 1`` s) after it began.
    """

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self.tick = min(1.0, timeout / 10)
        self._reading: dict[asyncio.Task[Any], float] = {}  # task -> deadline
        self._expired: set[asyncio.Task[Any]] = set()
        self._timer: asyncio.TimerHandle | None = None

    def start(self) -> asyncio.Task[Any]:
        """The current task starts reading; returns it (give it to :meth:`stop`)."""
        task = asyncio.current_task()
        if task is None:  # pragma: no cover (ASGI apps run in tasks)
            raise RuntimeError("a body is read inside a task")
        loop = task.get_loop()
        self._reading[task] = loop.time() + self.timeout
        if self._timer is None:
            self._timer = loop.call_later(self.tick, self._sweep, loop)
        return task

    def stop(self, task: asyncio.Task[Any]) -> None:
        """The task is done reading (the body came, or it was refused)."""
        self._reading.pop(task, None)

    def expired(self, task: asyncio.Task[Any]) -> bool:
        """True (once) if the task was cancelled here; its cancellation is taken back."""
        if task not in self._expired:
            return False
        self._expired.discard(task)
        task.uncancel()
        return True

    def _sweep(self, loop: asyncio.AbstractEventLoop) -> None:
        now = loop.time()
        late = [task for task, deadline in self._reading.items() if deadline <= now]
        for task in late:
            del self._reading[task]
            self._expired.add(task)
            task.cancel()
        self._timer = (
            loop.call_later(self.tick, self._sweep, loop) if self._reading else None
        )


def _after_body(receive: Any) -> Any:
    """A receive whose first message is the (already read) end of the body."""
    done = False

    async def replay() -> dict[str, Any]:
        nonlocal done
        if not done:
            done = True
            return {"type": "http.request", "body": b"", "more_body": False}
        return await receive()

    return replay


class Service:
    """The service's parts (config, holder, metrics, log, model threads) and its app."""

    def __init__(
        self,
        config: ServingConfig,
        holder: ModelHolder,
        *,
        metrics: ServiceMetrics | None = None,
        log_writer: PredictionLogWriter | None = None,
        model_pool: ThreadPoolExecutor | None = None,
    ) -> None:
        self.config = config
        self.settings = config.settings
        self.holder = holder
        self.validator: RequestValidator = holder.validator
        self.metrics = metrics or holder.metrics
        self.log_writer = log_writer
        # Records one access line (message, args); serve() swaps in a queue.
        self.access: Callable[[str, tuple[Any, ...]], None] = log_access
        self.model_pool = model_pool or ThreadPoolExecutor(
            max_workers=self.settings.model_threads,
            thread_name_prefix="modelops-model",
        )
        self._contract_columns = frozenset(self.validator.columns)
        invocations = self._endpoint("POST", self.invocations)
        endpoints = {
            "/invocations": invocations,
            "/health": self._endpoint("GET", self.health),
            "/ping": self._endpoint("GET", self.health),
            "/model": self._endpoint("GET", self.model),
            "/reload": self._endpoint("POST", self.reload),
            "/metrics": self._endpoint("GET", self.metrics_text),
            "/{path:path}": self._endpoint(None, self.not_found),
        }
        routes = [
            Route(path, self._route(answer), methods=METHODS)
            for path, answer in endpoints.items()
        ]
        self.app = BodyReader(Starlette(routes=routes), self.settings, invocations)

    # -- plumbing --

    def _endpoint(
        self,
        method: str | None,
        handler: Callable[[Request, str], Awaitable[Reply | Response]],
    ) -> Callable[[Request], Awaitable[tuple[Response, Callable[[], None]]]]:
        """Wrap a handler: request id, method check, 500s, headers.

        The wrapped handler returns the response and what records it (metrics,
        access log, prediction log), to be called once the response is sent.
        """

        async def answer(request: Request) -> tuple[Response, Callable[[], None]]:
            started = time.perf_counter()
            scope = request.scope
            request_id = request.headers.get("x-request-id", "")
            if not _REQUEST_ID.fullmatch(request_id):
                request_id = new_request_id()
            path = scope["path"]
            if method is not None and scope["method"] != method:
                reply: Reply | Response = error_reply(
                    HTTPStatus.METHOD_NOT_ALLOWED,
                    f"use {method} for {path}",
                    request_id,
                    rule="method",
                    headers=(("Allow", method),),
                )
            else:
                try:
                    reply = await handler(request, request_id)
                except Exception as err:
                    logger.exception(
                        "Request %s failed: %s", request_id, type(err).__name__
                    )
                    reply = error_reply(
                        HTTPStatus.INTERNAL_SERVER_ERROR,
                        "internal error; see the server log for this request id",
                        request_id,
                        close=True,
                    )
            response, version = self._response(reply, request_id)
            record = functools.partial(
                self._record, scope, reply, response, version, request_id, started
            )
            return response, record

        return answer

    @staticmethod
    def _route(
        answer: Callable[[Request], Awaitable[tuple[Response, Callable[[], None]]]],
    ) -> Callable[[Request], Awaitable[Response]]:
        """A Starlette endpoint of a wrapped handler (recorded before it is sent)."""

        async def endpoint(request: Request) -> Response:
            response, record = await answer(request)
            record()
            return response

        return endpoint

    def _record(  # noqa: PLR0913, PLR0917
        self,
        scope: dict[str, Any],
        reply: Reply | Response,
        response: Response,
        version: str | None,
        request_id: str,
        started: float,
    ) -> None:
        """Count and log one answered request (after it is sent, where possible)."""
        elapsed = time.perf_counter() - started
        path = scope["path"]
        name = path if path in ENDPOINTS else "other"
        status = str(response.status_code)
        self.metrics.requests.observe(name, status, elapsed)
        rows = 0
        if isinstance(reply, Reply):
            rows = reply.rows
            if reply.scored is not None:
                batch, predictions, identity = reply.scored
                self.holder.last_batch = batch  # the next version warms up on it
                self.metrics.scored(batch.rows)
                if self.log_writer is not None:
                    self.log_writer.submit(
                        batch.values, predictions, identity, request_id
                    )
            elif reply.rule is not None and 400 <= reply.status < 500:  # noqa: PLR2004
                column = reply.column if reply.column in self._contract_columns else ""
                self.metrics.rejections.labels(rule=reply.rule, column=column).inc()
        self.access(
            ACCESS_LINE,
            (
                request_id,
                scope["method"],
                path if name != "other" else "-",
                status,
                version or "-",
                rows,
                elapsed * 1000,
            ),
        )

    def _response(
        self, reply: Reply | Response, request_id: str
    ) -> tuple[Response, str | None]:
        """The HTTP response of ``reply`` and the model version it names."""
        current = self.holder.current
        if isinstance(reply, Response):
            reply.headers["X-Request-Id"] = request_id
            if current is None:
                return reply, None
            reply.headers["X-Model-Version"] = current.version_header
            return reply, current.version_header
        version = reply.version
        if version is None and current is not None:
            version = current.version_header
        if "model_version" not in reply.body:  # every body names the version too
            reply.body["model_version"] = int(version) if version else None
        headers = {"X-Request-Id": request_id}
        if version is not None:
            headers["X-Model-Version"] = version
        headers.update(reply.headers)
        if reply.close:
            headers["Connection"] = "close"
        return Response(
            orjson.dumps(reply.body),
            status_code=reply.status,
            headers=headers,
            media_type=JSON_TYPE,
        ), version

    def _authorized(self, request: Request) -> bool:
        token = self.config.token
        if token is None:
            return True
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(
            given.strip().encode(), token.encode()
        )

    @staticmethod
    def _unauthorized(request_id: str) -> Reply:
        return error_reply(
            HTTPStatus.UNAUTHORIZED,
            "missing or wrong bearer token",
            request_id,
            rule="authorization",
            headers=(("WWW-Authenticate", 'Bearer realm="modelops"'),),
        )

    @staticmethod
    def _check_content_type(request: Request) -> None:
        content_type = request.headers.get("content-type", "")
        mime, _, parameters = content_type.partition(";")
        charset = parameters.strip().lower().removeprefix("charset=").strip('"')
        if mime.strip().lower() != JSON_TYPE or charset not in {"", "utf-8"}:
            raise RequestRejected(
                HTTPStatus.UNSUPPORTED_MEDIA_TYPE,
                "send Content-Type: application/json (UTF-8)",
                rule="content-type",
            )

    # -- endpoints --

    async def invocations(self, request: Request, request_id: str) -> Reply:
        """Score MLflow ``dataframe_split`` / ``dataframe_records`` rows."""
        try:
            body = request.scope[BODY_KEY]
            if isinstance(body, RequestRejected):
                raise body
            if not self._authorized(request):
                return self._unauthorized(request_id)
            self._check_content_type(request)
            payload = parse_json(body)
            current = self.holder.current
            if current is None:
                return error_reply(
                    HTTPStatus.SERVICE_UNAVAILABLE,
                    "no model is loaded yet; retry shortly",
                    request_id,
                    rule="ready",
                    headers=(("Retry-After", "1"),),
                )
            batch = self.validator.validate(payload)
        except RequestRejected as err:
            return _rejected(err, request_id)
        try:
            if current.inline and batch.rows <= INLINE_MAX_ROWS:
                predicted = current.predict(batch)
            else:
                loop = asyncio.get_running_loop()
                predicted = await loop.run_in_executor(
                    self.model_pool, current.predict, batch
                )
            if predicted.shape != (batch.rows,):
                raise ValueError(
                    f"the model returned shape {predicted.shape} for {batch.rows} rows"
                )
        except Exception as err:
            logger.exception(
                "Request %s: model version %s failed (%s)",
                request_id,
                current.version_header,
                type(err).__name__,
            )
            return error_reply(
                HTTPStatus.INTERNAL_SERVER_ERROR,
                "the model failed on this request; see the server log for this "
                "request id",
                request_id,
                rule="model",
                version=current.version_header,
            )
        predictions = predicted.tolist()
        info = current.info
        return Reply(
            HTTPStatus.OK,
            {
                "predictions": predictions,
                "model_name": info.name,
                "model_version": info.version,
            },
            current.version_header,
            rows=batch.rows,
            scored=(batch, predictions, current.identity),
        )

    async def health(self, request: Request, request_id: str) -> Reply:
        """Ready (200) once a model is loaded, loading (503) before."""
        holder = self.holder
        current = holder.current
        if current is None:
            return Reply(
                HTTPStatus.SERVICE_UNAVAILABLE,
                {
                    "status": "loading",
                    "model_name": holder.model_name,
                    "alias": holder.alias,
                    "model_version": None,
                    "request_id": request_id,
                },
                headers=(("Retry-After", "1"),),
            )
        return Reply(
            HTTPStatus.OK,
            {
                "status": "ready",
                "model_name": current.info.name,
                "alias": current.info.alias,
                "model_version": current.info.version,
            },
            current.version_header,
        )

    async def model(self, request: Request, request_id: str) -> Reply:
        """What is served: version, alias, run, commit, form, artifact sha256."""
        current = self.holder.current
        if current is None:
            return error_reply(
                HTTPStatus.SERVICE_UNAVAILABLE,
                "no model is loaded yet",
                request_id,
                rule="ready",
            )
        return Reply(
            HTTPStatus.OK,
            {**current.info.as_dict(), "model_version": current.info.version},
            current.version_header,
        )

    async def reload(self, request: Request, request_id: str) -> Reply:
        """Ask the registry now where the alias points (bearer token required)."""
        config = self.config
        if config.token is None:
            return error_reply(
                HTTPStatus.FORBIDDEN,
                f"reload is disabled: no token is configured (set the environment "
                f"variable {self.settings.token_env})",
                request_id,
                rule="authorization",
            )
        if not self._authorized(request):
            return self._unauthorized(request_id)
        holder = self.holder
        try:
            outcome = await asyncio.to_thread(holder.refresh, RELOAD_TIMEOUT_SECONDS)
        except ServingError as err:
            logger.warning("Reload %s failed: %s", request_id, err)
            current = holder.current
            return error_reply(
                HTTPStatus.BAD_GATEWAY,
                "reload failed; still serving "
                + (f"version {current.info.version}" if current else "no model")
                + "; see the server log for this request id",
                request_id,
                rule="reload",
            )
        return Reply(
            HTTPStatus.OK,
            {
                "reloaded": outcome.changed,
                "previous_version": outcome.previous_version,
                "model_version": outcome.version,
                "request_id": request_id,
            },
            str(outcome.version),
        )

    async def metrics_text(self, request: Request, request_id: str) -> Response:
        """The metrics in Prometheus' text format."""
        if self.log_writer is not None:
            self.metrics.log_queue_rows.set(self.log_writer.pending_rows)
        return Response(self.metrics.exposition(), media_type=CONTENT_TYPE)

    async def not_found(self, request: Request, request_id: str) -> Reply:
        """Any other path."""
        return error_reply(
            HTTPStatus.NOT_FOUND, "no such endpoint", request_id, rule="path"
        )


def _too_large(length: int, limit: int) -> RequestRejected:
    return RequestRejected(
        HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
        f"the body has {length} bytes; at most {limit} are accepted",
        rule=f"max_body_bytes {limit}",
        close=True,
    )


def create_app(config: ServingConfig, holder: ModelHolder, **parts: Any) -> ASGIApp:
    """The ASGI app of a :class:`Service` (``parts``: metrics, log_writer...)."""
    return Service(config, holder, **parts).app
