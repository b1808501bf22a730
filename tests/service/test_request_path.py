"""The scoring path's cheap parts: access lines, request ids, JSON, request metrics."""

from __future__ import annotations

import io
import logging
import re
import time

import pytest

from modelops.service.access_log import BatchedStreamHandler, batched_access_log
from modelops.service.app import ACCESS_LINE, new_request_id, parse_json
from modelops.service.metrics import ServiceMetrics
from modelops.service.request_validation import RequestRejected

LINE = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} access (.*)")


@pytest.fixture
def access_logger():
    logger = logging.getLogger("tests.service.access")
    yield logger
    logger.handlers = []


def test_access_lines_are_written_in_order_off_the_request_path(access_logger):
    stream = io.StringIO()
    handler = batched_access_log(access_logger, stream, interval=30)
    queued_at = time.time()
    handler.queue(ACCESS_LINE, ("id-1", "POST", "/invocations", "200", "7", 1, 0.5))
    access_logger.info("a record %s", "through logging")
    handler.queue(ACCESS_LINE, ("id-2", "GET", "/health", "200", "7", 0, 0.25))
    assert stream.getvalue() == ""  # nothing formatted or written per request
    handler.close()  # writes what waits
    lines = stream.getvalue().splitlines()
    assert [LINE.fullmatch(line).group(1) for line in lines] == [
        "request_id=id-1 method=POST path=/invocations status=200 version=7 rows=1 "
        "latency_ms=0.50",
        "a record through logging",
        "request_id=id-2 method=GET path=/health status=200 version=7 rows=0 "
        "latency_ms=0.25",
    ]
    stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(queued_at))
    assert lines[0].startswith(stamp[:16])  # the time it was queued (to the minute)


def test_access_lines_beyond_the_limit_are_dropped_counted_and_reported():
    stream = io.StringIO()
    handler = BatchedStreamHandler(stream, interval=30, max_pending=2)
    handler.setFormatter(logging.Formatter("%(message)s"))
    for number in range(5):
        handler.queue("line %d", (number,))
    assert handler.dropped == 3
    assert handler.write_pending() == 3
    assert stream.getvalue().splitlines() == [
        "line 0",
        "line 1",
        "access log: 3 line(s) dropped (2 were waiting to be written)",
    ]
    handler.queue("line %d", (5,))  # room again; the drops were reported once
    handler.close()
    assert stream.getvalue().splitlines()[-1] == "line 5"


def test_request_ids_made_here_are_unique_32_hex_digits():
    made = [new_request_id() for _ in range(10_000)]
    assert len(set(made)) == len(made)
    assert all(re.fullmatch(r"[0-9a-f]{32}", made_id) for made_id in made)


@pytest.mark.parametrize(
    "body",
    [
        b'{"a": [1, 2.5, "x", null, true, {"b": -0.0}]}',
        b'{"a": 9223372036854775807, "b": -9223372036854775808}',
        b'{"big": -9223372036854775809, "bigger": 18446744073709551616}',
        b'{"a": 1.0000000000000000001, "b": "\\u00e9\\ud83d\\ude00"}',
        b'{"lone": "\\ud800"}',
        b'{"a": 1e400}',
    ],
)
def test_json_is_read_as_the_standard_library_reads_it(body):
    import json  # noqa: PLC0415

    expected = json.loads(body.decode())
    parsed = parse_json(body)
    assert repr(parsed) == repr(expected)  # same types: big integers stay integers


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b'{"a": NaN}', "malformed JSON: NaN and Infinity are not JSON"),
        (b'{"a": [', "malformed JSON at line 1 column 8"),
        (b"\xff", "the body is not UTF-8"),
    ],
)
def test_broken_json_is_refused_with_the_same_messages(body, message):
    with pytest.raises(RequestRejected) as refused:
        parse_json(body)
    assert refused.value.message == message
    assert refused.value.rule == "json"


def test_request_metrics_keep_prometheus_bucket_rules():
    metrics = ServiceMetrics()
    for seconds in (0.0002, 0.0003, 0.0005, 20.0):
        metrics.observe("/invocations", "200", seconds)
    metrics.observe("other", "404", 0.001)
    metrics.scored(3)
    metrics.scored(2)
    sample = metrics.registry.get_sample_value
    ok = {"endpoint": "/invocations", "status": "200"}
    assert sample("modelops_requests_total", ok) == 4
    assert sample("modelops_request_duration_seconds_count", ok) == 4
    assert sample("modelops_request_duration_seconds_sum", ok) == pytest.approx(20.001)
    buckets = {"0.0002": 1, "0.0005": 3, "10.0": 3, "+Inf": 4}  # le is inclusive
    for le, count in buckets.items():
        assert sample("modelops_request_duration_seconds_bucket", {**ok, "le": le}) == (
            count
        )
    other = {"endpoint": "other", "status": "404"}
    assert sample("modelops_requests_total", other) == 1
    assert sample("modelops_rows_scored_total") == 5
    text = metrics.exposition().decode()
    assert "# TYPE modelops_request_duration_seconds histogram" in text
    assert "# TYPE modelops_requests_total counter" in text
