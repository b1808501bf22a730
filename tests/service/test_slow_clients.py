"""Slow clients cannot exhaust the service: 3,000 bodies that never finish, on loopback."""

from __future__ import annotations

import http.client
import os
import subprocess
import sys
import time

import pytest

from modelops.service.server import raise_open_files_limit
from tests.service.conftest import Client, ConstantServed, make_config, running

CONNECTIONS = 3000
# The clients, in their own process so both sides have file descriptors to spare:
# each connection sends complete headers announcing a body, then a few bytes of it,
# and never the rest.
SLOW_CLIENTS = r"""
import resource, socket, sys
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
port, count = int(sys.argv[1]), int(sys.argv[2])
head = (b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: 100000\r\n\r\n{\"dataframe_split\": ")
held = []
for _ in range(count):
    sock = socket.create_connection(("127.0.0.1", port))
    sock.sendall(head)
    held.append(sock)
print(len(held), flush=True)
sys.stdin.read()  # hold every connection until the test closes stdin
"""


def _rss_mb() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _threads() -> int:
    """The process's OS threads (Python's and native ones)."""
    with open("/proc/self/status") as status:
        line = next(line for line in status if line.startswith("Threads:"))
    return int(line.split()[1])


def _health_ms(port: int) -> tuple[int, float]:
    started = time.perf_counter()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request("GET", "/health")
    status = conn.getresponse().status
    conn.close()
    return status, (time.perf_counter() - started) * 1000


@pytest.mark.slow
def test_3000_slow_bodies_cost_little_memory_no_threads_and_health_answers(
    contract, rows
):
    soft, _ = raise_open_files_limit()
    assert soft > CONNECTIONS + 500, "the test needs more open files than allowed"
    config = make_config(contract, body_timeout_seconds=120)
    served = ConstantServed(1.0, 1, contract.column_names)
    with running(config, served) as server:
        client = Client(server)
        for _ in range(200):  # warm up every path a request takes
            client.call("GET", "/health")
            client.call(
                "POST",
                "/invocations",
                {"dataframe_records": [{c: None for c in contract.column_names}]},
            )
        client.close()
        rss_before, threads_before = _rss_mb(), _threads()
        clients = subprocess.Popen(
            [sys.executable, "-c", SLOW_CLIENTS, str(server.port), str(CONNECTIONS)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert clients.stdout.readline().strip() == str(CONNECTIONS)
            deadline = time.monotonic() + 30  # until the server holds every one
            while time.monotonic() < deadline:
                held = len(server.server.server_state.connections)
                if held >= CONNECTIONS:
                    break
                time.sleep(0.1)
            time.sleep(0.5)
            answers = [_health_ms(server.port) for _ in range(20)]
            rss_during, threads_during = _rss_mb(), _threads()
        finally:
            clients.stdin.close()
            clients.wait(30)
        time.sleep(0.5)
        after = _health_ms(server.port)
    grown = rss_during - rss_before
    worst = max(ms for _, ms in answers)
    print(  # noqa: T201 (the report quotes it)
        f"{held} connections held: RSS +{grown:.1f} MB, threads "
        f"{threads_before} -> {threads_during}, /health worst {worst:.1f} ms"
    )
    assert held >= CONNECTIONS
    assert all(status == 200 for status, _ in answers)
    assert worst < 50
    assert grown < 50
    assert threads_during <= threads_before + 2  # no thread per connection
    assert after[0] == 200
