"""Benchmark the REST service (`modelops.serving`) against `mlflow models serve` and a floor.

One run, the same registered model version behind all four, on loopback:

- modelops: ``modelops.serving.serve(project, env, host, port)``, what ``kedro serve``
  runs (request validation against the data contract, access log, alias polling),
  with its default compiled predictor (verified identical to model.predict at load);
- modelops-pipeline: the same with ``compile_model: false`` (model.predict on the
  validated DataFrame), to show the service's own overhead over the floor;
- mlflow: ``mlflow models serve -m models:/<name>@<alias> --env-manager local`` with its
  defaults (one uvicorn worker);
- floor: a bare standard-library server (``ThreadingHTTPServer``, HTTP/1.1 keep-alive)
  around the same model loaded once: ``model.predict(pd.DataFrame(...))``, no checks.

Setup (not timed): a temporary copy of the project (pyproject.toml, conf/ without
local, src/), ``kedro simulate --start 2025-03-01 --days 24 --stations 6``, then
``kedro run`` for dev, acceptance and prod, so ``champion`` points at a registered
version in the copy's SQLite store. ``--project DIR`` reuses such a copy.

Load: single-row ``dataframe_split`` requests (rows of the model's test set, the same
sequence for every server), each client a process with one persistent
``http.client`` connection; after a warm-up, 1 client sending ``--requests-1``
requests per server, then 8 clients sending ``--requests-8`` in all per server. The
servers take turns in ``--blocks`` blocks (order rotating), so background load on a
shared machine falls on all of them alike. Reported: p50/p99 latency and requests
per second, side by side, with the ratios the issue targets: modelops p50 <= 0.2x
mlflow's and <= 1.2x the floor's; modelops req/s with 8 clients >= 5x mlflow's.
Also the cost of checking one single-row request with pandera (the contract's
schema) vs the service's validator. Finally every server scores the same rows one
request at a time and the predictions must be identical to each other and to
``model.predict`` in process.

All servers get OMP_NUM_THREADS=1 (``--omp-threads``), the venv's bin first on
PATH (mlflow execs ``uvicorn`` by name) and MLFLOW_TRACKING_URI pointing at the copy.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
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
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
MODEL_NAME = "modelops-bike-demand"
ENV_ALIAS = {"dev": "dev", "acceptance": "challenger", "prod": "champion"}
SERVERS = ("modelops", "modelops-pipeline", "mlflow", "floor")
TARGETS = {"p50_vs_mlflow": 0.2, "p50_vs_floor": 1.2, "rps8_vs_mlflow": 5.0}
READY_TIMEOUT = 180.0
REQUEST_TIMEOUT = 60.0
HEADERS = {"Content-Type": "application/json"}


# --- the floor server (run as a subprocess: bench_serving.py --floor-server) ----------


def floor_server(model_uri: str, port: int) -> None:
    """A bare stdlib HTTP server around the model: parse, DataFrame, predict, answer."""
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer  # noqa: PLC0415

    import mlflow.sklearn  # noqa: PLC0415
    import pandas as pd  # noqa: PLC0415

    model = mlflow.sklearn.load_model(model_uri)

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        wbufsize = -1
        disable_nagle_algorithm = True

        def log_message(self, *args: Any) -> None:
            pass

        def _send(self, body: bytes) -> None:
            self.send_response_only(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            self._send(b'{"status": "ready"}')

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            split = json.loads(body)["dataframe_split"]
            frame = pd.DataFrame(split["data"], columns=split["columns"])
            predictions = model.predict(frame).tolist()
            self._send(json.dumps({"predictions": predictions}).encode())

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.daemon_threads = True
    server.serve_forever()


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


def base_env(project: Path, omp_threads: str) -> dict[str, str]:
    env = {
        **os.environ,
        "KEDRO_DISABLE_TELEMETRY": "true",
        "DO_NOT_TRACK": "1",
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "MLFLOW_TRACKING_URI": f"sqlite:///{project / 'mlruns' / 'mlflow.db'}",
    }
    env.pop("MODELOPS_SERVING_TOKEN", None)
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
        timeout=900,
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
    for env in ("dev", "acceptance", "prod"):
        kedro(project, "run", "--env", env)
    return project


def json_value(value: Any) -> Any:
    """A cell as a client sends it: ISO 8601 timestamps, exact numbers."""
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return value.item() if hasattr(value, "item") else value


def test_rows(project: Path, env: str, count: int) -> tuple[list[str], list[list[Any]]]:
    """Rows of the served env's test set, as JSON-ready lists in contract order."""
    import pandas as pd  # noqa: PLC0415
    import yaml  # noqa: PLC0415

    use_case = yaml.safe_load((project / "conf/base/use_case.yml").read_text())
    target = use_case["use_case"]["features"]["target"]
    columns = [c for c in use_case["use_case"]["contract"]["columns"] if c != target]
    files = sorted(
        (project / "data" / env / "05_model_input/test_sets").glob("*.parquet")
    )
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


def server_commands(project: Path, env: str, port: int) -> dict[str, list[str]]:
    alias = ENV_ALIAS[env]
    python = str(BIN / "python")
    ours = (
        "import sys; from pathlib import Path; from modelops.serving import serve; "
        f"serve(Path.cwd(), {env!r}, '127.0.0.1', int(sys.argv[1]), "
        "overrides={'compile_model': sys.argv[2] == 'compiled'})"
    )
    return {
        "modelops": [python, "-c", ours, str(port), "compiled"],
        "modelops-pipeline": [python, "-c", ours, str(port), "pipeline"],
        "mlflow": [
            str(BIN / "mlflow"),
            "models",
            "serve",
            "-m",
            f"models:/{MODEL_NAME}@{alias}",
            "--env-manager",
            "local",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        "floor": [
            python,
            str(Path(__file__).resolve()),
            "--floor-server",
            f"models:/{MODEL_NAME}@{alias}",
            "--port",
            str(port),
        ],
    }


@contextlib.contextmanager
def running_servers(
    project: Path, env: str, omp_threads: str, logs: Path
) -> Iterator[dict[str, Server]]:
    servers: dict[str, Server] = {}
    health = {name: "/health" for name in SERVERS} | {"mlflow": "/ping"}
    try:
        for name in SERVERS:
            port = free_port()
            log = logs / f"{name}.log"
            command = server_commands(project, env, port)[name]
            with log.open("w") as out:
                process = subprocess.Popen(
                    command,
                    cwd=project,
                    env=base_env(project, omp_threads),
                    stdout=out,
                    stderr=subprocess.STDOUT,
                )
            servers[name] = Server(name, port, health[name], process, log)
        for server in servers.values():
            wait_ready(server)
        yield servers
    finally:
        for server in servers.values():
            server.process.terminate()
        for server in servers.values():
            try:
                server.process.wait(15)
            except subprocess.TimeoutExpired:
                server.process.kill()
                server.process.wait(5)


def wait_ready(server: Server) -> None:
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise SystemExit(
                f"{server.name} exited {server.process.returncode}:\n"
                f"{server.log.read_text()[-3000:]}"
            )
        with contextlib.suppress(OSError):
            conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
            conn.request("GET", server.health)
            status = conn.getresponse().status
            conn.close()
            if status == 200:
                return
        time.sleep(0.5)
    raise SystemExit(f"{server.name} not ready after {READY_TIMEOUT} s ({server.log})")


# --- load -----------------------------------------------------------------------------


def client_run(
    port: int, bodies: list[bytes], offset: int, count: int, barrier: Any
) -> dict[str, Any]:
    """One client: a persistent connection, ``count`` requests, per-request latency."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=REQUEST_TIMEOUT)
    conn.connect()
    barrier.wait(REQUEST_TIMEOUT)
    latencies, failures = [], 0
    started = time.perf_counter()
    for i in range(count):
        body = bodies[(offset + i) % len(bodies)]
        sent = time.perf_counter()
        conn.request("POST", "/invocations", body=body, headers=HEADERS)
        response = conn.getresponse()
        response.read()
        latencies.append(time.perf_counter() - sent)
        failures += response.status != 200
    finished = time.perf_counter()
    conn.close()
    return {
        "started": started,
        "finished": finished,
        "latencies": latencies,
        "failures": failures,
    }


def _client_entry(args: tuple[int, list[bytes], int, int, Any]) -> dict[str, Any]:
    return client_run(*args)


@dataclass
class LoadResult:
    clients: int
    requests: int
    failures: int
    seconds: float
    p50_ms: float
    p99_ms: float
    rps: float
    latencies_ms: list[float] = field(repr=False)


def run_clients(
    port: int, bodies: list[bytes], clients: int, requests: int
) -> list[dict[str, Any]]:
    """``clients`` processes, one connection each, ``requests`` in all."""
    per_client = [
        requests // clients + (i < requests % clients) for i in range(clients)
    ]
    if clients == 1:
        return [client_run(port, bodies, 0, per_client[0], _NoBarrier())]
    context = mp.get_context("fork")
    with context.Manager() as manager, context.Pool(clients) as pool:
        barrier = manager.Barrier(clients)
        return pool.map(
            _client_entry,
            [(port, bodies, i * 997, per_client[i], barrier) for i in range(clients)],
        )


def summarise(clients: int, blocks: list[list[dict[str, Any]]]) -> LoadResult:
    """Latencies pooled over the blocks; req/s = requests / time spent in the blocks."""
    latencies = sorted(
        x * 1000 for block in blocks for r in block for x in r["latencies"]
    )
    seconds = sum(
        max(r["finished"] for r in block) - min(r["started"] for r in block)
        for block in blocks
    )
    return LoadResult(
        clients=clients,
        requests=len(latencies),
        failures=sum(r["failures"] for block in blocks for r in block),
        seconds=seconds,
        p50_ms=statistics.median(latencies),
        p99_ms=latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))],
        rps=len(latencies) / seconds,
        latencies_ms=latencies,
    )


def interleaved_load(
    ports: dict[str, int],
    bodies: list[bytes],
    clients: int,
    requests: int,
    blocks: int,
) -> dict[str, LoadResult]:
    """Each server gets ``requests`` in ``blocks`` blocks, taking turns block by block.

    On a shared machine the background load changes over minutes; taking turns (the
    order rotating each block) spreads it evenly over the servers compared.
    """
    names = list(ports)
    per_block = [requests // blocks + (b < requests % blocks) for b in range(blocks)]
    done: dict[str, list[list[dict[str, Any]]]] = {name: [] for name in names}
    for block, count in enumerate(per_block):
        shift = block % len(names)
        for name in names[shift:] + names[:shift]:
            done[name].append(run_clients(ports[name], bodies, clients, count))
    return {name: summarise(clients, done[name]) for name in names}


class _NoBarrier:
    def wait(self, timeout: float | None = None) -> None:
        return None


def predictions(port: int, bodies: list[bytes]) -> list[float]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=REQUEST_TIMEOUT)
    values = []
    for body in bodies:
        conn.request("POST", "/invocations", body=body, headers=HEADERS)
        response = conn.getresponse()
        data = json.loads(response.read())
        if response.status != 200:
            raise SystemExit(f"port {port} answered {response.status}: {data}")
        values.extend(data["predictions"])
    conn.close()
    return values


def in_process_predictions(
    project: Path, env: str, columns: list[str], rows: list[list[Any]]
) -> list[float]:
    """``model.predict`` on the same rows, typed as training data (for the check)."""
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{project / 'mlruns' / 'mlflow.db'}"
    import mlflow.sklearn  # noqa: PLC0415
    import pandas as pd  # noqa: PLC0415

    model = mlflow.sklearn.load_model(f"models:/{MODEL_NAME}@{ENV_ALIAS[env]}")
    frame = pd.DataFrame(rows, columns=columns)
    frame["timestamp"] = pd.to_datetime(frame["timestamp"]).astype("datetime64[us]")
    return [float(model.predict(frame.iloc[[i]])[0]) for i in range(len(frame))]


# --- report ---------------------------------------------------------------------------


def report(results: dict[str, dict[str, LoadResult]]) -> dict[str, Any]:
    """Print the table and the ratios; the targets apply to ``modelops``."""
    print()
    print(
        f"{'server':<18} {'clients':>7} {'requests':>8} {'fail':>4} {'p50 ms':>8} "
        f"{'p99 ms':>8} {'req/s':>8}"
    )
    for name in SERVERS:
        for key in ("c1", "c8"):
            r = results[name][key]
            print(
                f"{name:<18} {r.clients:>7} {r.requests:>8} {r.failures:>4} "
                f"{r.p50_ms:>8.2f} {r.p99_ms:>8.2f} {r.rps:>8.1f}"
            )
    mlflow_, floor = results["mlflow"], results["floor"]
    summary: dict[str, Any] = {"targets": TARGETS}
    for name in ("modelops", "modelops-pipeline"):
        ours = results[name]
        ratios = {
            "p50_vs_mlflow": ours["c1"].p50_ms / mlflow_["c1"].p50_ms,
            "p50_vs_floor": ours["c1"].p50_ms / floor["c1"].p50_ms,
            "rps8_vs_mlflow": ours["c8"].rps / mlflow_["c8"].rps,
        }
        labels = {
            "p50_vs_mlflow": ("p50 / mlflow p50 (1 client)", "<="),
            "p50_vs_floor": ("p50 / floor p50 (1 client)", "<="),
            "rps8_vs_mlflow": ("req/s / mlflow req/s (8 clients)", ">="),
        }
        print()
        met = {}
        for key, (label, direction) in labels.items():
            target = TARGETS[key]
            ok = ratios[key] <= target if direction == "<=" else ratios[key] >= target
            met[key] = ok
            print(
                f"{name + ' ' + label:<52} {ratios[key]:>7.3f}  target {direction} "
                f"{target:<4} {'met' if ok else 'NOT met'}"
            )
        summary[name] = {"ratios": ratios, "met": met}
    return summary


def validation_costs(
    project: Path, env: str, columns: list[str], row: list[Any], repeats: int = 300
) -> dict[str, float]:
    """Per single-row request: pandera's contract check vs the service's validator."""
    import pandas as pd  # noqa: PLC0415

    from modelops.contracts import contract_violations  # noqa: PLC0415
    from modelops.serving import RequestValidator, load_serving_config  # noqa: PLC0415

    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{project / 'mlruns' / 'mlflow.db'}"
    config = load_serving_config(project, env)
    validator = RequestValidator(config.contract, config.max_rows)
    payload = {"dataframe_split": {"columns": columns, "data": [row]}}

    def per_call(function: Any) -> float:
        function()
        started = time.perf_counter()
        for _ in range(repeats):
            function()
        return (time.perf_counter() - started) / repeats * 1000

    frame = validator.validate(payload).frame()
    if contract_violations(frame, config.contract):
        raise SystemExit("the benchmark rows break the contract")
    costs = {
        "pandera_contract_ms": per_call(
            lambda: contract_violations(
                pd.DataFrame([row], columns=columns).astype(frame.dtypes.to_dict()),
                config.contract,
            )
        ),
        "validator_ms": per_call(lambda: validator.validate(payload)),
        "validator_and_frame_ms": per_call(lambda: validator.validate(payload).frame()),
    }
    print(
        f"\nValidation of one single-row request: pandera (contract_violations on a "
        f"typed frame) {costs['pandera_contract_ms']:.2f} ms; the service's validator "
        f"{costs['validator_ms'] * 1000:.0f} us ({costs['validator_and_frame_ms']:.2f}"
        f" ms with the DataFrame that model.predict needs)."
    )
    return costs


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--floor-server", metavar="MODEL_URI", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--project", type=Path, help="Reuse a prepared project copy.")
    parser.add_argument("--env", default="prod", choices=sorted(ENV_ALIAS))
    parser.add_argument("--requests-1", type=int, default=2000)
    parser.add_argument("--requests-8", type=int, default=4000)
    parser.add_argument("--warmup", type=int, default=100)
    parser.add_argument(
        "--blocks", type=int, default=5, help="Turns the servers take (per load)."
    )
    parser.add_argument("--rows", type=int, default=200, help="Distinct rows cycled.")
    parser.add_argument("--omp-threads", default="1", help="N, or 'unset'.")
    parser.add_argument("--keep", action="store_true", help="Keep the work folder.")
    parser.add_argument("--output", type=Path, help="Write the results as JSON here.")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.floor_server:
        floor_server(args.floor_server, args.port)
        return 0
    work = Path(tempfile.mkdtemp(prefix="bench-serving-"))
    try:
        if args.project:
            project = args.project.resolve()
        else:
            print("Preparing a project copy with a registered champion ...", flush=True)
            project = prepare_project(work)
        columns, rows = test_rows(project, args.env, args.rows)
        bodies = [
            json.dumps(
                {"dataframe_split": {"columns": columns, "data": [row]}}
            ).encode()
            for row in rows
        ]
        served: dict[str, list[float]] = {}
        with running_servers(project, args.env, args.omp_threads, work) as servers:
            print(
                f"Servers ready: {', '.join(f'{s.name}:{s.port}' for s in servers.values())}"
            )
            ports = {name: servers[name].port for name in SERVERS}
            for port in ports.values():
                run_clients(port, bodies, 1, args.warmup)
            print(
                f"  1 client, {args.requests_1} requests per server in "
                f"{args.blocks} interleaved blocks ...",
                flush=True,
            )
            c1 = interleaved_load(ports, bodies, 1, args.requests_1, args.blocks)
            print(
                f"  8 clients, {args.requests_8} requests per server in "
                f"{args.blocks} interleaved blocks ...",
                flush=True,
            )
            c8 = interleaved_load(ports, bodies, 8, args.requests_8, args.blocks)
            results = {name: {"c1": c1[name], "c8": c8[name]} for name in SERVERS}
            for name in SERVERS:
                served[name] = predictions(servers[name].port, bodies)
        summary = report(results)
        summary["validation"] = validation_costs(project, args.env, columns, rows[0])
        expected = in_process_predictions(project, args.env, columns, rows)
        identical = {name: served[name] == expected for name in SERVERS}
        print(
            f"\nIdentical predictions on {len(rows)} rows (each vs model.predict in "
            f"process): "
            + ", ".join(f"{n}={'yes' if ok else 'NO'}" for n, ok in identical.items())
        )
        if args.output:
            args.output.parent.mkdir(parents=True, exist_ok=True)
            args.output.write_text(
                json.dumps(
                    {
                        "results": {
                            name: {
                                key: {
                                    k: v
                                    for k, v in asdict(r).items()
                                    if k != "latencies_ms"
                                }
                                for key, r in per.items()
                            }
                            for name, per in results.items()
                        },
                        **summary,
                        "identical_predictions": identical,
                        "machine": {
                            "cpus": os.cpu_count(),
                            "python": platform.python_version(),
                        },
                        "omp_threads": args.omp_threads,
                    },
                    indent=2,
                )
            )
        return 0 if all(identical.values()) else 1
    finally:
        if args.keep:
            print(f"Kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
