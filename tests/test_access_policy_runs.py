"""End-to-end: runs that try to break the access policy, in a temporary project copy."""

from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml
from kedro.config import OmegaConfigLoader

from modelops.access import load_policy
from modelops.errors import AccessPolicyError
from modelops.settings import CONFIG_LOADER_ARGS
from tests.conftest import PROJECT_ROOT, copy_project, files_under, run_kedro

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def small_source(tmp_path_factory) -> Path:
    """A project copy with a tiny simulated source (3 days, 3 stations)."""
    project = copy_project(tmp_path_factory.mktemp("access_source"))
    run_kedro(
        project, "simulate", "--start", "2025-03-01", "--days", "3", "--stations", "3"
    )
    return project


@pytest.fixture
def small_project(small_source, tmp_path) -> Path:
    """A fresh project copy holding the tiny source."""
    project = copy_project(tmp_path / "project")
    shutil.copytree(small_source / "data" / "source", project / "data" / "source")
    return project


def _add_to_dev_catalog(project: Path, entries: dict) -> None:
    (project / "conf" / "dev" / "catalog.yml").write_text(yaml.safe_dump(entries))


def _refusal(result: subprocess.CompletedProcess) -> str:
    """The one-line-per-message error the CLI printed (no traceback)."""
    assert result.returncode != 0, result.stdout[-2000:]
    output = result.stdout + result.stderr
    assert "Traceback" not in output, output[-4000:]
    return output


def _only_the_source(project: Path) -> set[str]:
    data = files_under(project / "data")
    assert all(name.startswith("source/") for name in data), data
    return data


def test_a_dev_catalog_entry_into_prod_is_refused_before_anything_runs(
    small_project,
):
    source_before = files_under(small_project / "data")
    _add_to_dev_catalog(
        small_project,
        {
            "prod_peek": {
                "type": "pandas.ParquetDataset",
                "filepath": "data/prod/05_model_input/model_input_table.parquet",
            }
        },
    )
    result = run_kedro(
        small_project, "run", "--pipelines", "data_processing", check=False
    )
    output = _refusal(result)
    target = (
        small_project / "data/prod/05_model_input/model_input_table.parquet"
    ).resolve()
    assert (
        "Error: AccessPolicyError: Access policy of env 'dev' forbids reading dataset "
        f"'prod_peek' at '{target}': it lies in zone 'prod', and env 'dev' may read "
        "only [source, dev] (conf/dev/access.yml, rule access.read)."
    ) in output
    assert _only_the_source(small_project) == source_before


def test_a_pipeline_output_into_the_source_is_refused(small_project):
    source_dir = small_project / "data" / "source"
    source_before = {f: (source_dir / f).read_bytes() for f in files_under(source_dir)}
    _add_to_dev_catalog(
        small_project,
        {
            "model_input_table": {
                "type": "pandas.ParquetDataset",
                "filepath": "${globals:source_root}/model_input_table.parquet",
                "versioned": True,
            }
        },
    )
    result = run_kedro(
        small_project, "run", "--pipelines", "data_processing", check=False
    )
    output = _refusal(result)
    target = (source_dir / "model_input_table.parquet").resolve()
    assert (
        "Error: AccessPolicyError: Access policy of env 'dev' forbids writing dataset "
        f"'model_input_table' at '{target}': it lies in zone 'source', the production "
        "source, which is read-only for every env (rule: source is read-only; env "
        "'dev' may write only [dev], conf/dev/access.yml, rule access.write)."
    ) in output
    _only_the_source(small_project)
    assert {f: (source_dir / f).read_bytes() for f in files_under(source_dir)} == (
        source_before
    )


def test_acceptance_may_not_set_champion(tmp_path):
    loader = OmegaConfigLoader(
        conf_source=str(PROJECT_ROOT / "conf"), env="acceptance", **CONFIG_LOADER_ARGS
    )
    policy = load_policy(loader, "acceptance", tmp_path)
    policy.check_alias("challenger")
    with pytest.raises(
        AccessPolicyError,
        match=r"env 'acceptance' forbids setting registry alias 'champion'.*"
        r"\(conf/acceptance/access\.yml, rule access\.aliases\)",
    ):
        policy.check_alias("champion")


ADD_AFTER_CREATION = textwrap.dedent(
    """
    import sys
    from pathlib import Path

    from kedro.framework.hooks import hook_impl
    from kedro.framework.session import KedroSession
    from kedro.framework.startup import bootstrap_project
    from kedro_datasets.json import JSONDataset

    from modelops.errors import AccessPolicyError

    project = Path.cwd()
    bootstrap_project(project)


    class RedirectAfterTheCheck:
        @hook_impl(trylast=True)  # after the access hook checked the whole catalog
        def before_pipeline_run(self, catalog):
            target = project / "data/prod/08_reporting/source_manifest.json"
            catalog["source_manifest"] = JSONDataset(filepath=str(target))


    with KedroSession.create(project_path=project, env="dev") as session:
        session._hook_manager.register(RedirectAfterTheCheck())
        try:
            session.run(pipeline_names=["data_processing"])
        except AccessPolicyError as err:  # raised as is, not wrapped by Kedro
            print(f"REFUSED {err}", file=sys.stderr)
            sys.exit(3)
    """
)


def test_a_dataset_added_after_catalog_creation_is_refused_at_save(small_project):
    script = small_project / "add_after_creation.py"
    script.write_text(ADD_AFTER_CREATION)
    result = subprocess.run(  # a real session; its global state stays out of pytest
        [sys.executable, str(script)],
        cwd=small_project,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 3, result.stderr[-4000:]
    target = (small_project / "data/prod/08_reporting/source_manifest.json").resolve()
    assert (
        "REFUSED Access policy of env 'dev' forbids writing "
        f"dataset 'source_manifest' at '{target}': it lies in zone 'prod', and env "
        "'dev' may write only [dev] (conf/dev/access.yml, rule access.write)."
    ) in result.stderr
    assert not (small_project / "data" / "prod").exists()
    _only_the_source(small_project)


def test_an_env_without_access_yml_refuses_to_run(small_project):
    (small_project / "conf" / "dev" / "access.yml").unlink()
    result = run_kedro(small_project, "run", check=False)  # a bare run: env dev
    output = _refusal(result)
    assert (
        "Error: AccessPolicyError: Env 'dev' has no access policy: conf/dev/access.yml "
        "is missing, so env 'dev' refuses to run."
    ) in output
    _only_the_source(small_project)


def test_a_compliant_dev_run_passes(small_project):
    result = run_kedro(small_project, "run", "--pipelines", "data_processing")
    data = files_under(small_project / "data")
    assert all(name.startswith(("dev/", "source/")) for name in data), data
    assert any(name.startswith("dev/05_model_input/") for name in data), data
    assert "Run in env 'dev' wrote:" in result.stdout + result.stderr
