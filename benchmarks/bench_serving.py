"""Benchmark the REST service (`kedro serve`) against `mlflow models serve` and a floor.

One run, the same registered model version behind every side, on loopback:

- ``modelops``: ``kedro serve --env ENV --host 127.0.0.1 --port P`` in the project
  copy, as a user runs it (request validation against the data contract, metrics,
  prediction log, alias polling), serving the version the env's alias points to;
- ``mlflow``: ``mlflow models serve -m models:/NAME/VERSION --env-manager local``
  on that version, with its defaults (one uvicorn worker, the sklearn pyfunc);
- ``floor``: ``bench_serving_floor.py``, a raw ASGI app on uvicorn (uvloop,
  httptools) that scores the JSON with the version's ONNX file on onnxruntime
  (``OnnxPredictor.predict_values``) with no validation and no logging, the
  cheapest server doing the same work;
- ``floor-starlette``: the same floor as a one-route Starlette app (the framework's
  share of the cost; no target applies to it).

The ONNX file the floors load is the version's registered ``extra_files/model.onnx``
(checked against its sha256 tag when the version has one). A version registered
without one (code before ONNX artifacts) gets an ONNX export of its sklearn model
made here with ``modelops.onnx_model.export_onnx``; the JSON says which.

Setup (not timed): a temporary copy of the project (pyproject.toml, conf/ without
local, src/), ``kedro simulate --start 2025-03-01 --days 24 --stations 6``, ``kedro
run --env acceptance`` (trains, registers, sets ``challenger``) and ``kedro run --env
prod`` (moves ``champion`` to it). ``--project DIR`` reuses such a copy.

Same predictions first: every side scores the same ``--check-rows`` rows, one request
each; they must agree within ``--tolerance`` (absolute; 0 asks for bit-identical)
and ``modelops`` must answer with the expected ``X-Model-Version``, or nothing is
timed and the run exits 1.

Load: single-row ``dataframe_split`` requests built from the served env's test set
(the same byte-identical bodies, the same order, for every side), sent by clients
over one keep-alive connection each (a minimal HTTP/1.1 client on a raw socket, so
the client's own cost stays small). In each of ``--rounds`` rounds every side gets
``--requests-1`` requests from 1 client, then ``--requests-8`` requests from 8 client
processes (started together behind a barrier); the order of the sides rotates each
round, so background load on a shared machine falls on all of them alike. A warm-up
(``--warmup`` requests at 1 and at 8 clients) precedes round 1 and is not counted.

Reported per side and client count: p50/p90/p99 latency (pooled over the rounds),
requests/s (requests / seconds spent in the rounds' phases), server CPU ms per
request (the server's process tree, from /proc), failures; the ratios the issue
targets, pooled and as the median (min..max) of per-round ratios:
``modelops`` single-row p50 <= 0.1x ``mlflow``'s and <= 1.5x the ``floor``'s;
``modelops`` 8-client req/s >= 20x ``mlflow``'s (and its ratio to the floor); and,
without a target, the ratio of server CPU per request to the floor's, which other
processes on a shared machine disturb less than wall-clock latency.
Results, with the library versions and the commit measured, go to
``benchmarks/results/serving.json`` (``--output``).

Every server gets OMP_NUM_THREADS=1 (``--omp-threads``), the venv's bin first on
PATH (mlflow execs ``uvicorn`` by name), PYTHONPATH=<copy>/src and
MLFLOW_TRACKING_URI pointing at the copy's SQLite store.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import hashlib
import http.client
import importlib.metadata
import json
import multiprocessing as mp
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
FLOOR = BENCH_DIR / "bench_serving_floor.py"
RESULTS = BENCH_DIR / "results" / "serving.json"
BIN = Path(sys.executable).parent
ENV_ALIAS = {"dev": "dev", "acceptance": "challenger", "prod": "champion"}
SIDES = ("modelops", "mlflow", "floor", "floor-starlette")
TARGETS = {"p50_vs_mlflow": 0.1, "p50_vs_floor": 1.5, "rps8_vs_mlflow": 20.0}
TARGET_LABELS = {
    "p50_vs_mlflow": ("single-row p50 / mlflow's", "<="),
    "p50_vs_floor": ("single-row p50 / floor's", "<="),
    "rps8_vs_mlflow": ("8-client req/s / mlflow's", ">="),
    "rps8_vs_floor": ("8-client req/s / floor's", None),
    "cpu1_vs_floor": ("server CPU/request, 1 client / floor's", None),
    "cpu8_vs_floor": ("server CPU/request, 8 clients / floor's", None),
}
ONNX_FILE = "extra_files/model.onnx"
ARTIFACT_SHA_PREFIX = "modelops.artifact_sha256."
LIBRARIES = (
    "mlflow",
    "fastapi",
    "starlette",
    "uvicorn",
    "uvloop",
    "httptools",
    "pydantic",
    "prometheus-client",
    "onnxruntime",
    "onnx",
    "skl2onnx",
    "skops",
    "scikit-learn",
    "numpy",
    "pandas",
    "orjson",
    "kedro",
    "kedro-mlflow",
)
READY_TIMEOUT = 240.0
REQUEST_TIMEOUT = 60.0


# --- setup ----------------------------------------------------------------------------


def copy_project(destination: Path) -> Path:
    """pyproject.toml, conf/ (without local) and src/, as tests/conftest.py copies."""
    destination.mkdir(parents=True, exist_ok=True)
    shutil.copy2(ROOT / "pyproject.toml", destination / "pyproject.toml")
    shutil.copytree(
        ROOT / "conf", destination / "conf", ignore=shutil.ignore_patterns("local")
    )
    shutil.copytree(
        ROOT / "src",
        destination / "src",
        ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"),
    )
    (destination / "conf" / "local").mkdir()
    (destination / "data").mkdir()
    return destination


def tracking_uri(project: Path) -> str:
    return f"sqlite:///{project / 'mlruns' / 'mlflow.db'}"


def base_env(project: Path, omp_threads: str) -> dict[str, str]:
    """What every process gets: the copy's sources and store, one OpenMP thread."""
    env = {
        **os.environ,
        "KEDRO_DISABLE_TELEMETRY": "true",
        "DO_NOT_TRACK": "1",
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "PYTHONPATH": str(project / "src"),
        "MLFLOW_TRACKING_URI": tracking_uri(project),
    }
    env.pop("MODELOPS_SERVING_TOKEN", None)  # /invocations open, as by default
    if omp_threads == "unset":
        env.pop("OMP_NUM_THREADS", None)
    else:
        env["OMP_NUM_THREADS"] = omp_threads
    return env


def kedro(project: Path, *args: str) -> None:
    env = base_env(project, "1")
    env.pop("MLFLOW_TRACKING_URI")  # the project's default: mlruns/mlflow.db
    print(f"  kedro {' '.join(args)}", flush=True)
    result = subprocess.run(
        [str(BIN / "kedro"), *args],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=1800,
        check=False,
    )
    if result.returncode != 0:
        raise SystemExit(
            f"kedro {' '.join(args)} failed:\n{result.stdout[-3000:]}\n"
            f"{result.stderr[-3000:]}"
        )


def prepare_project(work: Path) -> Path:
    project = copy_project(work / "project")
    kedro(
        project, "simulate", "--start", "2025-03-01", "--days", "24", "--stations", "6"
    )
    for env in ("acceptance", "prod"):
        kedro(project, "run", "--env", env)
    return project


def use_case(project: Path) -> dict[str, Any]:
    import yaml  # noqa: PLC0415

    return yaml.safe_load((project / "conf/base/use_case.yml").read_text())["use_case"]


def served_version(project: Path, env: str) -> dict[str, Any]:
    """The version the env's alias points to, its tags and its ONNX file if any."""
    from mlflow import MlflowClient  # noqa: PLC0415

    name = use_case(project)["registered_model_name"]
    client = MlflowClient(tracking_uri(project), registry_uri=tracking_uri(project))
    version = client.get_model_version_by_alias(name, ENV_ALIAS[env])
    return {
        "name": name,
        "alias": ENV_ALIAS[env],
        "version": int(version.version),
        "run_id": version.run_id,
        "tags": dict(version.tags),
    }


def floor_onnx(project: Path, served: dict[str, Any], work: Path) -> dict[str, Any]:
    """The ONNX file the floor serves: the version's own, or exported here from it."""
    import mlflow  # noqa: PLC0415
    from mlflow import MlflowClient  # noqa: PLC0415

    uri = f"models:/{served['name']}/{served['version']}"
    client = MlflowClient(tracking_uri(project), registry_uri=tracking_uri(project))
    local = Path(
        mlflow.artifacts.download_artifacts(
            artifact_uri=client.get_model_version_download_uri(
                served["name"], served["version"]
            ),
            dst_path=str(work / "model"),
            tracking_uri=tracking_uri(project),
        )
    )
    registered = local / ONNX_FILE
    if registered.is_file():
        onnx_bytes = registered.read_bytes()
        sha = hashlib.sha256(onnx_bytes).hexdigest()
        expected = served["tags"].get(ARTIFACT_SHA_PREFIX + ONNX_FILE)
        if expected is not None and expected != sha:
            raise SystemExit(
                f"{uri}: {ONNX_FILE} has sha256 {sha[:12]}, its tag says "
                f"{expected[:12]}."
            )
        source = "registered"
    else:
        import mlflow.sklearn  # noqa: PLC0415

        from modelops.onnx_model import export_onnx  # noqa: PLC0415

        model = mlflow.sklearn.load_model(str(local))
        onnx_bytes = export_onnx(model, use_case(project)["features"])
        sha = hashlib.sha256(onnx_bytes).hexdigest()
        source = "exported by the benchmark (the version has no ONNX artifact)"
    path = work / "floor.onnx"
    path.write_bytes(onnx_bytes)
    return {"path": path, "sha256": sha, "source": source, "bytes": len(onnx_bytes)}


def json_value(value: Any) -> Any:
    """A cell as a client sends it: ISO 8601 timestamps, plain numbers, null."""
    if value is None or value != value:  # noqa: PLR0124 (NaN/NaT)
        return None
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return value.item() if hasattr(value, "item") else value


def test_rows(project: Path, env: str, count: int) -> tuple[list[str], list[list[Any]]]:
    """Rows of the served env's newest test set, JSON-ready, in contract order."""
    import pandas as pd  # noqa: PLC0415

    case = use_case(project)
    target = case["features"]["target"]
    columns = [c for c in case["contract"]["columns"] if c != target]
    files = sorted(
        (project / "data" / env / "05_model_input" / "test_sets").glob("*.parquet"),
        key=lambda path: path.stat().st_mtime,
    )
    if not files:
        raise SystemExit(f"No test set under {project}/data/{env}: run the env first.")
    frame = pd.read_parquet(files[-1])[columns].head(count)
    rows = [[json_value(v) for v in row] for row in frame.itertuples(index=False)]
    return columns, rows


# --- servers --------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Server:
    name: str
    port: int
    health: str
    process: subprocess.Popen
    log: Path


def server_command(
    name: str, env: str, port: int, served: dict[str, Any], onnx_path: Path
) -> list[str]:
    python = str(BIN / "python")
    floor = [python, str(FLOOR), "--onnx", str(onnx_path), "--port", str(port)]
    return {
        "modelops": [
            str(BIN / "kedro"),
            "serve",
            "--env",
            env,
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        "mlflow": [
            str(BIN / "mlflow"),
            "models",
            "serve",
            "-m",
            f"models:/{served['name']}/{served['version']}",
            "--env-manager",
            "local",
            "-h",
            "127.0.0.1",
            "-p",
            str(port),
        ],
        "floor": [*floor, "--framework", "asgi"],
        "floor-starlette": [*floor, "--framework", "starlette"],
    }[name]


@contextlib.contextmanager
def running_servers(  # noqa: PLR0913
    project: Path,
    env: str,
    sides: list[str],
    *,
    served: dict[str, Any],
    onnx_path: Path,
    omp_threads: str,
    logs: Path,
) -> Iterator[dict[str, Server]]:
    servers: dict[str, Server] = {}
    try:
        for name in sides:
            port = free_port()
            log = logs / f"{name}.log"
            with log.open("w") as out:
                process = subprocess.Popen(
                    server_command(name, env, port, served, onnx_path),
                    cwd=project,
                    env=base_env(project, omp_threads),
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,  # its own group: stopped with its children
                )
            health = "/ping" if name == "mlflow" else "/health"
            servers[name] = Server(name, port, health, process, log)
        for server in servers.values():
            wait_ready(server)
        yield servers
    finally:
        for server in servers.values():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(server.process.pid, 15)
        for server in servers.values():
            try:
                server.process.wait(20)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(server.process.pid, 9)
                server.process.wait(5)


def wait_ready(server: Server) -> None:
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise SystemExit(
                f"{server.name} exited {server.process.returncode}:\n"
                f"{server.log.read_text()[-3000:]}"
            )
        with contextlib.suppress(OSError, http.client.HTTPException):
            conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
            conn.request("GET", server.health)
            status = conn.getresponse().status
            conn.close()
            if status == 200:
                return
        time.sleep(0.5)
    raise SystemExit(f"{server.name} not ready after {READY_TIMEOUT} s ({server.log})")


def process_tree_cpu(pid: int) -> float:
    """CPU seconds (user + system) of ``pid`` and its descendants, from /proc."""
    ticks = os.sysconf("SC_CLK_TCK")
    total, pending = 0.0, [pid]
    while pending:
        current = pending.pop()
        with contextlib.suppress(OSError, ValueError, IndexError):
            stat = Path(f"/proc/{current}/stat").read_text()
            fields = stat[stat.rindex(")") + 2 :].split()
            total += (int(fields[11]) + int(fields[12])) / ticks
            for task in Path(f"/proc/{current}/task").iterdir():
                children = (task / "children").read_text().split()
                pending.extend(int(child) for child in children)
    return total


# --- the client -----------------------------------------------------------------------


class KeepAliveClient:
    """A minimal HTTP/1.1 client on one socket: prebuilt requests, few Python calls."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.reconnects = 0
        self._connect()

    def _connect(self) -> None:
        self.sock = socket.create_connection(
            ("127.0.0.1", self.port), timeout=REQUEST_TIMEOUT
        )
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buffer = b""

    def _fill(self, size: int) -> None:
        while len(self.buffer) < size:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("the server closed the connection")
            self.buffer += chunk

    def _until(self, marker: bytes) -> bytes:
        while (end := self.buffer.find(marker)) < 0:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("the server closed the connection")
            self.buffer += chunk
        head, self.buffer = self.buffer[:end], self.buffer[end + len(marker) :]
        return head

    def _take(self, size: int) -> bytes:
        self._fill(size)
        data, self.buffer = self.buffer[:size], self.buffer[size:]
        return data

    def request(self, raw: bytes) -> tuple[int, dict[str, str], bytes]:
        """Send one prebuilt request; the status, headers (lower-case) and body."""
        self.sock.sendall(raw)
        lines = self._until(b"\r\n\r\n").decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        headers = {}
        for line in lines[1:]:
            key, _, value = line.partition(":")
            headers[key.strip().lower()] = value.strip()
        if "content-length" in headers:
            body = self._take(int(headers["content-length"]))
        elif headers.get("transfer-encoding", "").lower() == "chunked":
            parts = []
            while size := int(self._until(b"\r\n").split(b";")[0], 16):
                parts.append(self._take(size + 2)[:-2])
            self._until(b"\r\n")  # no trailers expected
            body = b"".join(parts)
        else:
            raise ConnectionError("a response without length on a keep-alive socket")
        if headers.get("connection", "").lower() == "close":
            self.close()
            self.reconnects += 1
            self._connect()
        return status, headers, body

    def close(self) -> None:
        self.sock.close()


def raw_request(port: int, body: bytes) -> bytes:
    return (
        f"POST /invocations HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode() + body


def client_run(
    port: int, requests: list[bytes], offset: int, count: int, barrier: Any
) -> dict[str, Any]:
    """One client: one keep-alive connection, ``count`` requests, each one timed."""
    client = KeepAliveClient(port)
    if barrier is not None:
        barrier.wait(REQUEST_TIMEOUT)
    latencies, failures = [], 0
    clock = time.perf_counter
    started = clock()
    for i in range(count):
        raw = requests[(offset + i) % len(requests)]
        sent = clock()
        status, _, _ = client.request(raw)
        latencies.append(clock() - sent)
        failures += status != 200
    finished = clock()
    client.close()
    return {
        "started": started,
        "finished": finished,
        "latencies": latencies,
        "failures": failures,
        "reconnects": client.reconnects,
    }


def _client_process(queue: Any, job: tuple[int, list[bytes], int, int, Any]) -> None:
    try:
        queue.put(client_run(*job))
    except Exception as err:  # reported by the parent
        queue.put({"error": f"{type(err).__name__}: {err}"})


def phase(
    server: Server, requests: list[bytes], clients: int, count: int, offset: int
) -> dict[str, Any]:
    """``count`` requests from ``clients`` clients started together; the server's CPU."""
    per_client = [count // clients + (i < count % clients) for i in range(clients)]
    offsets = [offset + i * 997 for i in range(clients)]
    cpu_before = process_tree_cpu(server.process.pid)
    if clients == 1:
        results = [client_run(server.port, requests, offsets[0], count, None)]
    else:
        context = mp.get_context("fork")
        queue = context.Queue()
        barrier = context.Barrier(clients)
        workers = [
            context.Process(
                target=_client_process,
                args=(
                    queue,
                    (server.port, requests, offsets[i], per_client[i], barrier),
                ),
            )
            for i in range(clients)
        ]
        for worker in workers:
            worker.start()
        results = [queue.get(timeout=REQUEST_TIMEOUT * 10) for _ in workers]
        for worker in workers:
            worker.join()
    errors = [r["error"] for r in results if "error" in r]
    if errors:
        raise SystemExit(f"{server.name}: client failed: {errors[0]}")
    return {
        "seconds": max(r["finished"] for r in results)
        - min(r["started"] for r in results),
        "latencies": [x for r in results for x in r["latencies"]],
        "failures": sum(r["failures"] for r in results),
        "reconnects": sum(r["reconnects"] for r in results),
        "cpu_seconds": process_tree_cpu(server.process.pid) - cpu_before,
    }


def at(ordered: list[float], share: float) -> float:
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def summarise(phases: list[dict[str, Any]], clients: int) -> dict[str, Any]:
    """Latency percentiles pooled over rounds; req/s = requests / phase seconds."""
    latencies = sorted(x * 1000 for p in phases for x in p["latencies"])
    seconds = sum(p["seconds"] for p in phases)
    return {
        "clients": clients,
        "requests": len(latencies),
        "failures": sum(p["failures"] for p in phases),
        "reconnects": sum(p["reconnects"] for p in phases),
        "seconds": seconds,
        "p50_ms": statistics.median(latencies),
        "p90_ms": at(latencies, 0.90),
        "p99_ms": at(latencies, 0.99),
        "mean_ms": statistics.fmean(latencies),
        "rps": len(latencies) / seconds,
        "server_cpu_ms_per_request": sum(p["cpu_seconds"] for p in phases)
        * 1000
        / len(latencies),
        "rounds": [
            {
                "p50_ms": statistics.median(p["latencies"]) * 1000,
                "rps": len(p["latencies"]) / p["seconds"],
                "server_cpu_ms_per_request": p["cpu_seconds"]
                * 1000
                / len(p["latencies"]),
            }
            for p in phases
        ],
    }


def measure(
    servers: dict[str, Server],
    requests: dict[str, list[bytes]],
    args: argparse.Namespace,
) -> dict[str, dict[str, Any]]:
    """Warm-up, then ``args.rounds`` rounds; the sides take turns, order rotating."""
    names = list(servers)
    for name in names:
        phase(servers[name], requests[name], 1, args.warmup, 0)
        phase(servers[name], requests[name], 8, args.warmup, 0)
    done: dict[str, dict[str, list]] = {name: {"c1": [], "c8": []} for name in names}
    for number in range(args.rounds):
        shift = number % len(names)
        order = names[shift:] + names[:shift]
        started = time.perf_counter()
        for key, clients, count in (
            ("c1", 1, args.requests_1),
            ("c8", 8, args.requests_8),
        ):
            for name in order:
                offset = number * 7919
                done[name][key].append(
                    phase(servers[name], requests[name], clients, count, offset)
                )
        print(
            f"  round {number + 1}/{args.rounds} ({', '.join(order)}): "
            f"{time.perf_counter() - started:.1f} s",
            flush=True,
        )
    return {
        name: {
            "c1": summarise(done[name]["c1"], 1),
            "c8": summarise(done[name]["c8"], 8),
        }
        for name in names
    }


# --- same predictions -----------------------------------------------------------------


def predictions(server: Server, bodies: list[bytes]) -> tuple[list[float], set[str]]:
    """Each body scored alone; the predictions and the X-Model-Version headers seen."""
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=REQUEST_TIMEOUT)
    values, versions = [], set()
    for body in bodies:
        conn.request(
            "POST",
            "/invocations",
            body=body,
            headers={"Content-Type": "application/json"},
        )
        response = conn.getresponse()
        text = response.read()
        if response.status != 200:
            raise SystemExit(
                f"{server.name} answered {response.status} to a benchmark row: "
                f"{text[:500]!r}"
            )
        data = json.loads(text)
        values.extend(data["predictions"] if isinstance(data, dict) else data)
        if response.getheader("X-Model-Version"):
            versions.add(response.getheader("X-Model-Version"))
    conn.close()
    return [float(v) for v in values], versions


def model_info(server: Server) -> Any:
    with contextlib.suppress(OSError, http.client.HTTPException, ValueError):
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
        conn.request("GET", "/model")
        response = conn.getresponse()
        body = response.read()
        conn.close()
        if response.status == 200:
            return json.loads(body)
    return None


def check_same_predictions(
    servers: dict[str, Server],
    bodies: list[bytes],
    served: dict[str, Any],
    tolerance: float,
) -> dict[str, Any]:
    """Every side on the same rows; each compared with mlflow's (the sklearn model)."""
    scored = {name: predictions(server, bodies) for name, server in servers.items()}
    reference = "mlflow" if "mlflow" in scored else next(iter(scored))
    expected = scored[reference][0]
    sides: dict[str, Any] = {}
    for name, (values, versions) in scored.items():
        if len(values) != len(expected):
            raise SystemExit(
                f"{name} returned {len(values)} predictions, not {len(expected)}."
            )
        diff = max(abs(a - b) for a, b in zip(values, expected, strict=True))
        sides[name] = {
            "identical": values == expected,
            "max_abs_diff": diff,
            "within_tolerance": diff <= tolerance,
            "model_version_headers": sorted(versions),
        }
    check = {
        "rows": len(bodies),
        "reference": reference,
        "tolerance": tolerance,
        "sides": sides,
        "passed": all(side["within_tolerance"] for side in sides.values()),
    }
    ours = sides.get("modelops")
    if ours is not None and ours["model_version_headers"] != [str(served["version"])]:
        check["passed"] = False
        check["reason"] = (
            f"modelops answered X-Model-Version {ours['model_version_headers']}, "
            f"expected ['{served['version']}']"
        )
    verdicts = [
        f"{name}=identical"
        if side["identical"]
        else f"{name}=max diff {side['max_abs_diff']:.3g}"
        for name, side in sides.items()
    ]
    print(
        f"Same predictions on {len(bodies)} rows (vs {reference}, tolerance "
        f"{tolerance:g}): "
        + ", ".join(verdicts)
        + ("" if check["passed"] else f"  -> FAILED {check.get('reason', '')}"),
        flush=True,
    )
    return check


def same_artifact(info: Any, floor_sha256: str) -> dict[str, Any]:
    """Whether modelops serves the floor's ONNX file (per its ``/model`` answer).

    ``same`` is None when ``/model`` does not say (a service without ONNX forms) or
    the service serves the sklearn form (then the floor's ONNX is the same model in
    the form the issue's floor names, and the predictions check covers it).
    """
    info = info if isinstance(info, dict) else {}
    form, sha = info.get("form"), info.get("sha256")
    same = None
    if form == "onnx" and sha:
        same = sha == floor_sha256
    return {"modelops_form": form, "modelops_sha256": sha, "same": same}


# --- report ---------------------------------------------------------------------------


def ratios(results: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The targets' ratios for ``modelops``: pooled, and per round (median, range)."""
    if "modelops" not in results:
        return {}
    ours = results["modelops"]
    wanted = {
        "p50_vs_mlflow": ("c1", "p50_ms", "mlflow"),
        "p50_vs_floor": ("c1", "p50_ms", "floor"),
        "rps8_vs_mlflow": ("c8", "rps", "mlflow"),
        "rps8_vs_floor": ("c8", "rps", "floor"),
        # Less sensitive to other processes on the machine than wall-clock ratios.
        "cpu1_vs_floor": ("c1", "server_cpu_ms_per_request", "floor"),
        "cpu8_vs_floor": ("c8", "server_cpu_ms_per_request", "floor"),
    }
    out: dict[str, Any] = {}
    for key, (load, metric, other) in wanted.items():
        if other not in results:
            continue
        theirs = results[other][load]
        per_round = [
            a[metric] / b[metric]
            for a, b in zip(ours[load]["rounds"], theirs["rounds"], strict=True)
            if metric in a and metric in b
        ]
        value = ours[load][metric] / theirs[metric]
        entry: dict[str, Any] = {"pooled": value}
        if per_round:
            entry |= {
                "round_median": statistics.median(per_round),
                "round_min": min(per_round),
                "round_max": max(per_round),
            }
        direction = TARGET_LABELS[key][1]
        if direction is not None:
            target = TARGETS[key]
            entry["target"] = f"{direction} {target:g}"
            entry["met"] = value <= target if direction == "<=" else value >= target
        out[key] = entry
    return out


def print_report(results: dict[str, dict[str, Any]], summary: dict[str, Any]) -> None:
    print()
    print(
        f"{'side':<16} {'clients':>7} {'requests':>8} {'fail':>4} {'p50 ms':>8} "
        f"{'p90 ms':>8} {'p99 ms':>8} {'req/s':>8} {'cpu ms/req':>10}"
    )
    for name, per in results.items():
        for key in ("c1", "c8"):
            r = per[key]
            print(
                f"{name:<16} {r['clients']:>7} {r['requests']:>8} {r['failures']:>4} "
                f"{r['p50_ms']:>8.3f} {r['p90_ms']:>8.3f} {r['p99_ms']:>8.3f} "
                f"{r['rps']:>8.1f} {r['server_cpu_ms_per_request']:>10.3f}"
            )
    print()
    for key, entry in summary.items():
        label, _ = TARGET_LABELS[key]
        verdict = (
            f"target {entry['target']:<6} {'met' if entry['met'] else 'NOT met'}"
            if "target" in entry
            else "(no target)"
        )
        rounds = (
            f"(rounds {entry['round_median']:.3f}, {entry['round_min']:.3f}..."
            f"{entry['round_max']:.3f})"
            if "round_median" in entry
            else ""
        )
        print(f"modelops {label:<40} {entry['pooled']:>8.3f}  {rounds:<28} {verdict}")


def git_state() -> dict[str, Any]:
    def git(*args: str) -> str:
        result = subprocess.run(
            ["git", *args], cwd=ROOT, capture_output=True, text=True, check=False
        )
        return result.stdout.strip()

    return {"commit": git("rev-parse", "HEAD"), "dirty": bool(git("status", "--short"))}


def versions() -> dict[str, str | None]:
    found: dict[str, str | None] = {"python": platform.python_version()}
    for name in LIBRARIES:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            found[name] = None
    return found


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--project", type=Path, help="Reuse a prepared project copy.")
    parser.add_argument("--env", default="prod", choices=sorted(ENV_ALIAS))
    parser.add_argument(
        "--sides",
        default=",".join(SIDES),
        help="Comma-separated (the targets need all).",
    )
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--requests-1", type=int, default=500, help="Per round.")
    parser.add_argument("--requests-8", type=int, default=1000, help="Per round.")
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--rows", type=int, default=500, help="Distinct rows cycled.")
    parser.add_argument("--check-rows", type=int, default=200)
    parser.add_argument("--tolerance", type=float, default=1e-9)
    parser.add_argument("--omp-threads", default="1", help="N, or 'unset'.")
    parser.add_argument("--keep", action="store_true", help="Keep the work folder.")
    parser.add_argument("--output", type=Path, default=RESULTS)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    sides = [side.strip() for side in args.sides.split(",") if side.strip()]
    if not sides or not set(sides) <= set(SIDES):
        raise SystemExit(f"--sides: any of {', '.join(SIDES)}")
    if args.omp_threads != "unset":
        os.environ["OMP_NUM_THREADS"] = args.omp_threads
    work = Path(tempfile.mkdtemp(prefix="bench-serving-"))
    try:
        if args.project:
            project = args.project.resolve()
        else:
            print("Preparing a project copy with a registered champion ...", flush=True)
            project = prepare_project(work)
        sys.path.insert(0, str(project / "src"))  # modelops as the copy has it
        os.environ["MLFLOW_TRACKING_URI"] = tracking_uri(project)
        served = served_version(project, args.env)
        onnx = floor_onnx(project, served, work)
        print(
            f"Serving {served['name']} version {served['version']} "
            f"(@{served['alias']}); floor ONNX {onnx['sha256'][:12]}, {onnx['source']}",
            flush=True,
        )
        columns, rows = test_rows(project, args.env, max(args.rows, args.check_rows))
        bodies = [
            json.dumps(
                {"dataframe_split": {"columns": columns, "data": [row]}}
            ).encode()
            for row in rows
        ]
        load_before = os.getloadavg()
        with running_servers(
            project,
            args.env,
            sides,
            served=served,
            onnx_path=onnx["path"],
            omp_threads=args.omp_threads,
            logs=work,
        ) as servers:
            print(
                "Servers ready: "
                + ", ".join(f"{s.name}:{s.port}" for s in servers.values()),
                flush=True,
            )
            check = check_same_predictions(
                servers, bodies[: args.check_rows], served, args.tolerance
            )
            info = model_info(servers["modelops"]) if "modelops" in servers else None
            check["artifact"] = same_artifact(info, onnx["sha256"])
            if check["artifact"]["same"] is False:
                check["passed"] = False
                print(f"modelops serves another ONNX file: {check['artifact']}")
            if not check["passed"]:
                print("Not timing servers that do not return the same predictions.")
                return 1
            requests = {
                name: [raw_request(server.port, body) for body in bodies[: args.rows]]
                for name, server in servers.items()
            }
            print(
                f"{args.rounds} rounds: {args.requests_1} requests from 1 client, then "
                f"{args.requests_8} from 8 clients, per side per round ...",
                flush=True,
            )
            results = measure(servers, requests, args)
        summary = ratios(results)
        print_report(results, summary)
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(
            json.dumps(
                {
                    "measured_at": datetime.datetime.now(datetime.UTC).isoformat(
                        timespec="seconds"
                    ),
                    "git": git_state(),
                    "served": {key: served[key] for key in ("name", "alias", "version")}
                    | {"modelops_model_endpoint": info},
                    "floor_onnx": {k: v for k, v in onnx.items() if k != "path"},
                    "targets": TARGETS,
                    "ratios": summary,
                    "results": results,
                    "same_predictions": check,
                    "settings": {
                        "env": args.env,
                        "sides": sides,
                        "rounds": args.rounds,
                        "requests_1_per_round": args.requests_1,
                        "requests_8_per_round": args.requests_8,
                        "warmup": args.warmup,
                        "distinct_rows": args.rows,
                        "omp_threads": args.omp_threads,
                        "payload": "dataframe_split, one row per request",
                        "client": "raw-socket HTTP/1.1 keep-alive, one per process",
                        "floor": (
                            "raw ASGI on uvicorn (uvloop, httptools), orjson, "
                            "OnnxPredictor.predict_values inline, no validation/logging"
                        ),
                        "project": str(args.project) if args.project else "fresh copy",
                    },
                    "machine": {
                        "cpus": os.cpu_count(),
                        "platform": platform.platform(),
                        "loadavg_before": load_before,
                        "loadavg_after": os.getloadavg(),
                    },
                    "versions": versions(),
                },
                indent=2,
            )
            + "\n"
        )
        print(f"\nWrote {args.output}")
        return 0
    finally:
        if args.keep:
            print(f"Kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
