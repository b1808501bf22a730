"""Two real datasets plugged in by conf only, run through the whole lifecycle.

dev -> acceptance -> prod -> batch scoring -> REST, with `kedro` commands in a project
copy whose only edit is conf/base/use_case.yml:

- sklearn's diabetes table (ships with scikit-learn): one CSV file, no time column, no
  key. The use case and the command that writes the file are taken from the README's
  recipe ("Pointing it at your own data") verbatim, and REST is `kedro serve`.
- Seattle's daily weather (vega-datasets, installed from PyPI; the CSV ships inside the
  package): a time column and a categorical, as monthly parquet partitions; REST is
  the in-process server factory.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from tests.conftest import CLEAN_ENVIRON, copy_project, run_kedro
from tests.test_use_case import README, readme_use_case

pytestmark = pytest.mark.slow

FAST_MODEL = ("--params", "model.kwargs.max_iter=30")


def _aliases(project: Path, model_name: str) -> dict[str, int]:
    uri = f"sqlite:///{project / 'mlruns' / 'mlflow.db'}"
    client = MlflowClient(uri, registry_uri=uri)
    model = client.get_registered_model(model_name)
    return {alias: int(version) for alias, version in model.aliases.items()}


def _lifecycle(project: Path) -> None:
    """The README's step 3: dev, acceptance, prod, batch scoring (small models)."""
    run_kedro(project, "run", *FAST_MODEL)
    run_kedro(project, "run", "--env", "acceptance", *FAST_MODEL)
    run_kedro(project, "run", "--env", "prod")
    run_kedro(project, "run", "--env", "prod", "--pipelines", "serving")


def _newest(folder: Path) -> pd.DataFrame:
    """Every file of the newest version of a versioned partitioned output."""
    versions = sorted(path for path in folder.iterdir() if path.is_dir())
    assert versions, f"nothing under {folder}"
    files = sorted(versions[-1].glob("*.parquet"))
    return pd.concat([pd.read_parquet(f) for f in files], ignore_index=True)


def _post(port: int, payload: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request(
            "POST",
            "/invocations",
            body=json.dumps(payload),
            headers={"Content-Type": "application/json"},
        )
        response = conn.getresponse()
        return response.status, json.loads(response.read())
    finally:
        conn.close()


def _records(frame: pd.DataFrame) -> dict[str, Any]:
    def plain(value: Any) -> Any:
        if isinstance(value, pd.Timestamp):
            return value.isoformat()
        return value.item() if hasattr(value, "item") else value

    return {
        "dataframe_records": [
            {column: plain(value) for column, value in row.items()}
            for row in frame.to_dict(orient="records")
        ]
    }


# --- sklearn's diabetes data: the README recipe, literally ----------------------------


@pytest.fixture(scope="module")
def diabetes(tmp_path_factory) -> Path:
    project = copy_project(tmp_path_factory.mktemp("diabetes"))
    # Step 1: the README's command writes the file into the source zone.
    section = README.read_text().split("## Pointing it at your own data", 1)[1]
    command = re.search(r'^ *(python -c ".*")$', section, re.M)
    assert command, "the README recipe has no `python -c` command for the data"
    (project / "data" / "source").mkdir(parents=True, exist_ok=True)
    argv = shlex.split(command.group(1))
    subprocess.run([sys.executable, *argv[1:]], cwd=project, check=True, timeout=120)
    # Step 2: conf/base/use_case.yml is the README's, and nothing else in conf changes.
    (project / "conf" / "base" / "use_case.yml").write_text(readme_use_case("diabetes"))
    _lifecycle(project)
    return project


def test_diabetes_goes_from_dev_to_champion(diabetes):
    assert _aliases(diabetes, "diabetes-progression") == {
        "dev": 1,
        "challenger": 2,
        "champion": 2,
    }
    for env in ("dev", "acceptance"):
        plot = sorted(
            (diabetes / f"data/{env}/08_reporting/residuals.png").rglob("*.png")
        )
        assert plot, f"no residuals plot in {env}"
    manifest = json.loads(
        sorted(
            (diabetes / "data/acceptance/08_reporting").rglob("source_manifest.json")
        )[-1].read_text()
    )
    assert manifest["partitions"][0]["id"] == "single_file"
    assert manifest["rows"] == 442


def test_diabetes_batch_scores_the_file_and_kedro_serve_agrees(diabetes):
    source = pd.read_csv(diabetes / "data/source/diabetes.csv")
    predictions = _newest(diabetes / "data/prod/07_model_output/batch_predictions")
    assert predictions["source_partition"].unique().tolist() == ["single_file"]
    assert predictions["source_row"].tolist() == list(range(len(source)))
    assert (predictions["model_version"] == 2).all()

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {**CLEAN_ENVIRON, "KEDRO_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "1"}
    env.pop("MLFLOW_TRACKING_URI", None)
    env.pop("MODELOPS_SERVING_TOKEN", None)
    kedro = str(Path(sys.executable).parent / "kedro")
    server = subprocess.Popen(
        [kedro, "serve", "--env", "prod", "--port", str(port)],
        cwd=diabetes,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        _wait_ready(port, server)
        features = [c for c in source.columns if c != "target"]
        rows = source[features].iloc[[0, 7, 100, 441]]
        status, body = _post(port, _records(rows))
        assert status == 200, body
        assert body["model_name"] == "diabetes-progression"
        assert body["model_version"] == 2
        np.testing.assert_array_equal(
            body["predictions"], predictions["prediction"].iloc[[0, 7, 100, 441]]
        )
        # The contract's rules reach REST: sex is 1.0 or 2.0 (README's use case).
        bad = _records(rows.head(1).assign(sex=3.0))
        status, body = _post(port, bad)
        assert status == 422
        assert (body["column"], body["rule"]) == ("sex", "allowed values [1.0, 2.0]")
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.communicate()


def _wait_ready(port: int, server: subprocess.Popen, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise AssertionError(f"kedro serve exited: {server.stderr.read()[-3000:]}")
        with contextlib.suppress(OSError):
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", "/health")
            if conn.getresponse().status == 200:
                conn.close()
                return
            conn.close()
        time.sleep(0.5)
    raise AssertionError("kedro serve did not get ready")


# --- Seattle weather: a time column and a categorical, monthly partitions -------------

WEATHER_USE_CASE = """\
use_case:
  registered_model_name: seattle-temp-max
  source:
    dataset:
      type: partitions.PartitionedDataset
      path: ${source_root}/seattle_weather
      dataset:
        type: pandas.ParquetDataset
      filename_suffix: .parquet
    partition_date_format: "%Y-%m"
  contract:
    min_rows: 28
    unique_key: [date]
    columns:
      date: {dtype: datetime}
      precipitation: {dtype: float, min: 0.0}
      temp_max: {dtype: float, min: -30.0, max: 50.0}
      temp_min: {dtype: float, min: -30.0, max: 50.0}
      wind: {dtype: float, min: 0.0}
      weather: {dtype: string, allowed: [drizzle, fog, rain, snow, sun]}
  features:
    time_column: date
    key_columns: [date]
    dedupe: keys
    target: temp_max
    numeric: [precipitation, temp_min, wind]
    categorical: [weather]
    calendar: [day_of_year, month, day_of_week]
  split:
    strategy: time
    cutoff: "2015-07-01"
  baseline:
    group_by: [weather]
    time_grains: [month]
  gate:
    metric: rmse
    business_threshold: 4.0
"""


@pytest.fixture(scope="module")
def weather(tmp_path_factory) -> Path:
    from vega_datasets import local_data  # noqa: PLC0415 (a dev dependency)

    project = copy_project(tmp_path_factory.mktemp("weather"))
    data = local_data.seattle_weather()  # read from the installed package, offline
    folder = project / "data" / "source" / "seattle_weather"
    folder.mkdir(parents=True)
    for month, part in data.groupby(data["date"].dt.strftime("%Y-%m")):
        part.reset_index(drop=True).to_parquet(folder / f"{month}.parquet", index=False)
    (project / "conf" / "base" / "use_case.yml").write_text(WEATHER_USE_CASE)
    _lifecycle(project)
    return project


def test_weather_goes_from_dev_to_champion(weather):
    assert _aliases(weather, "seattle-temp-max") == {
        "dev": 1,
        "challenger": 2,
        "champion": 2,
    }
    split = json.loads(
        sorted(
            (weather / "data/acceptance/05_model_input").rglob("split_manifest.json")
        )[-1].read_text()
    )
    assert split["strategy"] == "time"
    assert split["test_start"] == "2015-07-01 00:00:00"


def test_weather_batch_scores_the_newest_month_and_the_service_agrees(
    weather, monkeypatch
):
    from modelops.service import server as serving  # noqa: PLC0415
    from modelops.service.settings import load_serving_config  # noqa: PLC0415

    predictions = _newest(weather / "data/prod/07_model_output/batch_predictions")
    assert predictions.columns[0] == "date"
    assert predictions["date"].dt.strftime("%Y-%m").unique().tolist() == ["2015-12"]
    source = pd.read_parquet(weather / "data/source/seattle_weather/2015-12.parquet")

    uri = f"sqlite:///{weather / 'mlruns' / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.delenv("MODELOPS_SERVING_TOKEN", raising=False)
    config = load_serving_config(weather, "prod")
    assert config.contract.column_names == [
        "date",
        "precipitation",
        "temp_min",
        "wind",
        "weather",
    ]
    with _serving(serving, config) as port:
        status, body = _post(port, _records(source[config.contract.column_names]))
        assert status == 200, body
        assert body["model_version"] == 2
        expected = source[["date"]].merge(predictions, on="date")["prediction"]
        np.testing.assert_array_equal(body["predictions"], expected)
        status, body = _post(
            port,
            _records(
                source[config.contract.column_names].head(1).assign(weather="hail")
            ),
        )
        assert status == 422
        assert body["column"] == "weather"


@contextlib.contextmanager
def _serving(serving: Any, config: Any) -> Iterator[int]:
    service = serving.build_service(config)
    service.holder.load_first(attempts=3, interval=1)
    with serving.running(service) as server:
        yield server.port
