"""The REST prediction log: every scored request lands in parquet, batch's schema, never silently lost."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import pytest

from modelops.prediction_log import LOG_COLUMNS
from modelops.service.metrics import ServiceMetrics
from modelops.service.prediction_log_writer import PredictionLogWriter
from tests.service.conftest import (
    MODEL_NAME,
    Client,
    ConstantServed,
    running,
    split_payload,
)


def writer(path, contract, **sizes) -> PredictionLogWriter:
    settings = {"queue_rows": 1000, "batch_rows": 100, "flush_seconds": 0.2, **sizes}
    return PredictionLogWriter(
        path, "prediction", contract.dtypes, metrics=ServiceMetrics(), **settings
    )


def test_scored_requests_are_logged_with_the_batch_schema(
    config, served, contract, rows, tmp_path
):
    log = writer(tmp_path / "log", contract, flush_seconds=30)  # only close() writes
    with running(config, served, log_writer=log) as server:
        client = Client(server)
        ids = [f"req-{i}" for i in range(3)]
        answers = [
            client.call(
                "POST",
                "/invocations",
                split_payload(rows.iloc[i * 4 : i * 4 + 1 + i]),
                headers={"X-Request-Id": request_id},
            ).body["predictions"]
            for i, request_id in enumerate(ids)
        ]
        client.call("POST", "/invocations", {"dataframe_records": []})  # not scored
        client.close()
        assert not list((tmp_path / "log").rglob("*.parquet"))  # off the request path
    files = sorted((tmp_path / "log").rglob("*.parquet"))  # close() flushed
    assert len(files) == 1
    assert files[0].parent.name == pd.Timestamp.now("UTC").strftime("%Y-%m-%d")
    assert not [p for p in (tmp_path / "log").rglob("*") if p.name.startswith(".")]
    logged = pd.read_parquet(files[0])
    assert list(logged.columns) == [*contract.column_names, "prediction", *LOG_COLUMNS]
    assert logged["request_id"].tolist() == ["req-0", "req-1", "req-1", "req-2",
                                             "req-2", "req-2"]  # fmt: skip
    assert logged["prediction"].tolist() == [p for a in answers for p in a]
    assert (logged["model_name"] == MODEL_NAME).all()
    assert (logged["model_version"] == 7).all()
    assert logged["model_version"].dtype == np.int64
    assert (logged["run_id"] == "run-7").all()
    assert logged["source_partition"].isna().all()
    assert str(logged["scored_at"].dtype) == "datetime64[us, UTC]"
    sent = pd.concat([rows.iloc[0:1], rows.iloc[4:6], rows.iloc[8:11]])
    pd.testing.assert_frame_equal(
        logged[contract.column_names],
        sent.reset_index(drop=True),
        check_dtype=False,
    )
    assert log.rows_written == 6
    assert log.rows_dropped == 0


def test_the_writer_flushes_in_the_background(contract, tmp_path):
    log = writer(tmp_path, contract, flush_seconds=0.1).start()
    try:
        values = {name: [None] for name in contract.column_names}
        values.update(
            timestamp=[pd.Timestamp("2025-03-03 10:00").to_pydatetime()],
            station_id=["S0001"],
        )
        assert log.submit(values, [1.5], (MODEL_NAME, 3, "r3"), "abc")
        assert log.flush(10)
        assert log.rows_written == 1
        assert len(list(tmp_path.rglob("*.parquet"))) == 1
    finally:
        log.close()


def test_a_full_queue_drops_counts_and_warns(contract, tmp_path, caplog):
    log = writer(tmp_path, contract, queue_rows=3)  # not started: nothing drains
    values = {name: [None, None] for name in contract.column_names}
    identity = (MODEL_NAME, 1, "r1")
    with caplog.at_level(logging.WARNING, "modelops.service.prediction_log_writer"):
        assert log.submit(values, [1.0, 2.0], identity, "a")
        assert not log.submit(values, [1.0, 2.0], identity, "b")  # 4 > 3 rows
        assert not log.submit(values, [1.0, 2.0], identity, "c")
    assert log.rows_dropped == 4
    assert log.pending_rows == 2
    dropped = log.metrics.registry.get_sample_value(
        "modelops_prediction_log_rows_dropped_total", {"reason": "queue_full"}
    )
    assert dropped == 4
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 1  # rate-limited, but the first drop always warns
    assert "dropped 2 row(s) (queue_full" in warnings[0]
    assert "serving_api.prediction_log.queue_rows" in warnings[0]


def test_a_failed_write_is_counted_not_raised(contract, tmp_path, caplog):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    log = writer(blocker, contract)
    values = {name: [None] for name in contract.column_names}
    values["timestamp"] = [pd.Timestamp("2025-03-03").to_pydatetime()]
    log.submit(values, [1.0], (MODEL_NAME, 1, "r1"), "a")
    with caplog.at_level(logging.WARNING):
        log.close()
    assert log.rows_dropped == 1
    assert log.rows_written == 0
    assert any("write_failed" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("version", [1, 2])
def test_rows_scored_across_a_swap_name_the_version_that_scored_them(
    config, contract, rows, tmp_path, version
):
    columns = contract.column_names
    log = writer(tmp_path, contract, flush_seconds=30)
    with running(config, ConstantServed(1.0, 1, columns), log_writer=log) as server:
        client = Client(server)
        client.call("POST", "/invocations", split_payload(rows.head(1)))
        server.service.holder.install(ConstantServed(2.0, 2, columns))
        client.call("POST", "/invocations", split_payload(rows.head(2)))
        client.close()
    logged = pd.concat(pd.read_parquet(p) for p in tmp_path.rglob("*.parquet"))
    mine = logged[logged["model_version"] == version]
    assert mine["prediction"].tolist() == [float(version)] * version


def test_single_row_and_multi_row_requests_give_the_same_rows(contract, rows, tmp_path):
    def submit_all(log, batches):
        for number, batch in enumerate(batches):
            values = {c: batch[c].tolist() for c in contract.column_names}
            values["timestamp"] = [t.to_pydatetime() for t in batch["timestamp"]]
            predictions = [float(i) for i in batch.index]
            log.submit(values, predictions, (MODEL_NAME, 4, "r4"), f"req-{number}")

    head = rows.head(4)
    single, multi = writer(tmp_path / "a", contract), writer(tmp_path / "b", contract)
    submit_all(single, [head.iloc[[i]] for i in range(4)])  # one row per request
    submit_all(multi, [head.iloc[:1], head.iloc[1:4]])
    one_each = single.frame(single._take())
    mixed = multi.frame(multi._take())
    columns = contract.column_names
    expected = head.reset_index(drop=True)
    pd.testing.assert_frame_equal(one_each[columns], expected, check_dtype=False)
    pd.testing.assert_frame_equal(mixed[columns], expected, check_dtype=False)
    assert one_each["prediction"].tolist() == mixed["prediction"].tolist() == [
        0.0, 1.0, 2.0, 3.0
    ]  # fmt: skip
    assert one_each["request_id"].tolist() == ["req-0", "req-1", "req-2", "req-3"]
    assert mixed["request_id"].tolist() == ["req-0", "req-1", "req-1", "req-1"]
    assert list(one_each.dtypes) == list(mixed.dtypes)
