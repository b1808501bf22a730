"""Running the service on uvicorn: `kedro serve` calls :func:`serve`; tests use :class:`ServerThread`.

uvicorn runs the app on one event loop (uvloop, httptools) with bounded concurrency
(``limit_concurrency``: beyond it a request gets a 503 at once), a keep-alive
timeout, a listen backlog and, in the app, a body-read timeout and size limit. The
socket is bound before the model loads, so ``/health`` answers 503 (loading) until
the first version is in. The soft limit of open files is raised to the hard limit
at start, so thousands of idle or slow connections cannot run the process out of
file descriptors before ``limit_concurrency`` applies.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import os
import resource
import signal
import socket
import threading
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import uvicorn

from modelops.service.access_log import batched_access_log
from modelops.service.app import Service
from modelops.service.metrics import ServiceMetrics
from modelops.service.model_holder import (
    Loader,
    ModelHolder,
    ServingError,
    registry_loader,
)
from modelops.service.prediction_log_writer import PredictionLogWriter
from modelops.service.request_validation import RequestValidator
from modelops.service.settings import ServingConfig, load_serving_config

logger = logging.getLogger(__name__)
access_logger = logging.getLogger("modelops.service.access")
SHUTDOWN_GRACE_SECONDS = 5.0


def raise_open_files_limit() -> tuple[int, int]:
    """Raise the soft RLIMIT_NOFILE to the hard limit; returns (soft, hard) now."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)


def build_service(
    config: ServingConfig,
    *,
    loader: Loader | None = None,
    log_writer: PredictionLogWriter | None = None,
) -> Service:
    """The service's parts wired together (nothing loaded, no thread started)."""
    settings = config.settings
    metrics = ServiceMetrics()
    validator = RequestValidator(config.contract, settings.max_rows)
    holder = ModelHolder(
        config.model_name,
        config.alias,
        config.tracking_uri,
        validator,
        loader=loader
        or registry_loader(
            config.tracking_uri,
            form=settings.form,
            intra_op_threads=settings.intra_op_threads,
        ),
        metrics=metrics,
    )
    if log_writer is None and config.log_path is not None:
        log = settings.prediction_log
        log_writer = PredictionLogWriter(
            config.log_path,
            config.prediction_column,
            config.contract.dtypes,
            queue_rows=log.queue_rows,
            batch_rows=log.batch_rows,
            flush_seconds=log.flush_seconds,
            metrics=metrics,
        )
    if log_writer is not None:
        log_writer.metrics = metrics
    return Service(config, holder, metrics=metrics, log_writer=log_writer)


def uvicorn_config(service: Service) -> uvicorn.Config:
    """uvicorn's settings for the service (no logging config, no access log)."""
    settings = service.settings
    return uvicorn.Config(
        service.app,
        loop="uvloop",
        http="httptools",
        ws="none",
        lifespan="off",
        interface="asgi3",
        log_config=None,
        access_log=False,
        proxy_headers=False,
        server_header=False,
        limit_concurrency=settings.limit_concurrency,
        backlog=settings.backlog,
        timeout_keep_alive=int(max(1, round(settings.idle_timeout_seconds))),
        timeout_graceful_shutdown=int(settings.body_timeout_seconds + 5),
    )


def settle_heap() -> None:
    """Collect once, then keep what is alive now out of the garbage collector's scans.

    After start (libraries imported, conf read, first model loaded) the heap holds
    millions of long-lived objects; every full collection would walk them all again,
    on the event loop, in the middle of requests. ``gc.freeze`` moves them to a
    generation the collector skips (they are still freed when unreferenced).
    """
    gc.collect()
    gc.freeze()


def bind(host: str, port: int, backlog: int) -> socket.socket:
    """A listening socket (port 0: a free one).

    Raises:
        ServingError: the address cannot be used.
    """
    try:
        return socket.create_server((host, port), backlog=backlog)
    except OSError as err:
        raise ServingError(
            f"Cannot listen on {host}:{port}: {err.strerror or err}.\nHint: choose "
            f"another --port, or stop what is using it."
        ) from err


class ServerThread:
    """uvicorn serving a :class:`Service` in a background thread (tests, benchmarks)."""

    def __init__(self, service: Service, host: str = "127.0.0.1", port: int = 0):
        self.service = service
        self.socket = bind(host, port, service.settings.backlog)
        self.host, self.port = self.socket.getsockname()[:2]
        self.server = uvicorn.Server(uvicorn_config(service))
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:8000``."""
        return f"http://{self.host}:{self.port}"

    def start(self, timeout: float = 30.0) -> ServerThread:
        """Serve until :meth:`stop`; returns once uvicorn accepts connections."""
        if self.service.log_writer is not None:
            self.service.log_writer.start()
        self._thread = threading.Thread(
            target=self.server.run,
            kwargs={"sockets": [self.socket]},
            name="modelops-uvicorn",
            daemon=True,
        )
        self._thread.start()
        ready = threading.Event()
        while not self.server.started and self._thread.is_alive():
            ready.wait(0.01)
            timeout -= 0.01
            if timeout <= 0:
                raise ServingError("uvicorn did not start within the timeout")
        return self

    def stop(self, timeout: float = 30.0) -> None:
        """Stop serving, polling and logging (what is queued in the log is written)."""
        self.service.holder.stop()
        self.server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        self.socket.close()
        if self.service.log_writer is not None:
            self.service.log_writer.close()
        self.service.model_pool.shutdown(wait=False)


@contextlib.contextmanager
def running(
    service: Service, host: str = "127.0.0.1", port: int = 0
) -> Iterator[ServerThread]:
    """A started :class:`ServerThread`, stopped on exit."""
    thread = ServerThread(service, host, port).start()
    try:
        yield thread
    finally:
        thread.stop()


def serve(
    project_path: Path,
    env: str,
    host: str,
    port: int,
    *,
    overrides: Mapping[str, Any] | None = None,
) -> None:
    """Run the REST service for ``env`` until SIGINT/SIGTERM (`kedro serve`).

    Binds first (so /health answers 503 while loading), loads the alias's model with
    bounded retries in a background thread, then follows the alias by polling. On
    shutdown the prediction log writes what is queued.

    Raises:
        ServingError: the address is taken, or no model could be loaded within the
            startup attempts.
        ConfigError: the serving settings are wrong.
    """
    # Native thread pools read this when they load (before the model's first import).
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    soft, hard = raise_open_files_limit()
    config = load_serving_config(Path(project_path), env, overrides)
    settings = config.settings
    if not logging.getLogger().handlers:  # plain python, not the kedro CLI
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    logger.setLevel(logging.INFO)
    service = build_service(config)
    sock = bind(host, port, settings.backlog)
    server = uvicorn.Server(uvicorn_config(service))
    # Access lines: queued per request, written to stderr in batches by a thread.
    access_log = batched_access_log(access_logger)
    service.access = access_log.queue
    failure: list[ServingError] = []

    def load_then_poll() -> None:
        try:
            current = service.holder.load_first(
                settings.startup_attempts, settings.startup_interval_seconds
            )
        except ServingError as err:
            failure.append(err)
            server.should_exit = True
            return
        settle_heap()
        service.holder.start_polling(settings.poll_seconds)
        logger.info(
            "Ready: %s version %s (%s form) on http://%s:%s (polling every %s s)",
            current.info.name,
            current.info.version,
            current.info.form,
            host,
            sock.getsockname()[1],
            settings.poll_seconds,
        )

    logger.info(
        "Listening on http://%s:%s for %s@%s (env %s, token %s, open files %s/%s, "
        "prediction log %s)",
        host,
        sock.getsockname()[1],
        config.model_name,
        config.alias,
        env,
        "required" if config.token else "not set: /reload disabled",
        soft,
        hard,
        config.log_path or "off",
    )
    if service.log_writer is not None:
        service.log_writer.start()
    loader_thread = threading.Thread(
        target=load_then_poll, name="modelops-first-load", daemon=True
    )
    loader_thread.start()
    # uvicorn re-raises the signal it stopped on once it is done: SIGTERM then
    # lands here (a clean exit), SIGINT as KeyboardInterrupt.
    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, lambda *_: None)
    try:
        server.run(sockets=[sock])
    except KeyboardInterrupt:
        pass
    finally:
        service.holder.stop()
        if service.log_writer is not None:
            service.log_writer.close()
        service.model_pool.shutdown(wait=False)
        sock.close()
        access_log.close()
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    if failure:
        raise failure[0]
