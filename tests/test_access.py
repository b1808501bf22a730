"""Unit tests of the access policy: zones, checks, loading from conf, the hook."""

from __future__ import annotations

import re
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pandas as pd
import pytest
import yaml
from kedro.config import OmegaConfigLoader
from kedro.framework.hooks.manager import _create_hook_manager
from kedro.io import AbstractDataset, DataCatalog, DatasetError, MemoryDataset, Version
from kedro.pipeline import Node, Pipeline
from kedro.runner import SequentialRunner
from kedro_datasets.json import JSONDataset
from kedro_datasets.matplotlib import MatplotlibDataset
from kedro_datasets.pandas import CSVDataset, ParquetDataset
from kedro_datasets.partitions import PartitionedDataset
from kedro_datasets.pickle import PickleDataset

from modelops.access import (
    AccessPolicy,
    AccessPolicyHooks,
    dataset_paths,
    load_policy,
    run_env,
)
from modelops.datasets import (
    ContentAddressedParquetDataset,
    IncumbentModelDataset,
    MlflowJsonDataset,
    MlflowMetricsDataset,
    RegisteredModelDataset,
)
from modelops.errors import AccessPolicyError, ModelopsError
from modelops.settings import CONFIG_LOADER_ARGS
from tests.conftest import PROJECT_ROOT, new_mlflow_store

ZONES = {
    "source": "data/source",
    "dev": "data/dev",
    "acceptance": "data/acceptance",
    "prod": "data/prod",
}
POLICIES = {
    "dev": {
        "read": ["source", "dev"],
        "write": ["dev"],
        "aliases": ["dev"],
        "register": True,
    },
    "acceptance": {
        "read": ["source", "acceptance"],
        "write": ["acceptance"],
        "aliases": ["challenger"],
        "register": True,
    },
    "prod": {
        "read": ["source", "prod"],
        "write": ["prod"],
        "aliases": ["champion"],
        "register": False,
    },
}


def _write_conf(
    root: Path,
    access: dict[str, Any | None],
    zones: dict[str, str] | None = None,
) -> Path:
    """A conf/ folder: base globals with zones, one folder per env in ``access``.

    ``access[env]`` is the content of conf/<env>/access.yml, or None for no file.
    """
    conf = root / "conf"
    (conf / "base").mkdir(parents=True)
    (conf / "base" / "globals.yml").write_text(
        yaml.safe_dump({"zones": ZONES if zones is None else zones}, sort_keys=False)
    )
    for env, content in access.items():
        (conf / env).mkdir(exist_ok=True)
        (conf / env / "globals.yml").write_text(yaml.safe_dump({"env": env}))
        if content is not None:
            (conf / env / "access.yml").write_text(
                yaml.safe_dump(content, sort_keys=False)
            )
    return conf


def _loader(conf: Path, env: str | None) -> OmegaConfigLoader:
    return OmegaConfigLoader(conf_source=str(conf), env=env, **CONFIG_LOADER_ARGS)


def _policy(tmp_path: Path, env: str = "dev", **access: Any) -> AccessPolicy:
    conf = _write_conf(
        tmp_path, {name: {"access": rules} for name, rules in POLICIES.items()}
    )
    if access:
        (conf / env / "access.yml").write_text(yaml.safe_dump({"access": access}))
    return load_policy(_loader(conf, env), env, tmp_path)


@pytest.fixture
def dev(tmp_path) -> AccessPolicy:
    """The dev policy, with the zones under tmp_path."""
    return _policy(tmp_path)


# --- zones --------------------------------------------------------------------------


def test_zone_of_resolves_relative_absolute_and_file_urls(dev, tmp_path):
    assert dev.zone_of("data/prod/x.parquet") == "prod"
    assert dev.zone_of(tmp_path / "data" / "dev" / "x.parquet") == "dev"
    assert dev.zone_of(f"file://{tmp_path}/data/source/bike_rentals") == "source"
    assert dev.zone_of("data/source") == "source"  # the zone root itself


def test_zone_of_is_outside_every_zone_for_other_places(dev, tmp_path):
    assert dev.zone_of("s3://bucket/data/dev/x.parquet") is None
    assert dev.zone_of("memory://data/dev/x.parquet") is None
    assert dev.zone_of(tmp_path.parent / "elsewhere.csv") is None
    assert dev.zone_of("data/device/x.csv") is None  # a name prefix is not a folder
    assert dev.zone_of("data/x.csv") is None


def test_zone_of_sees_through_dot_dot_and_symlinks(dev, tmp_path):
    assert dev.zone_of("data/dev/../prod/x.parquet") == "prod"
    (tmp_path / "data" / "prod").mkdir(parents=True)
    (tmp_path / "data" / "dev").mkdir(parents=True)
    (tmp_path / "data" / "dev" / "shortcut").symlink_to(tmp_path / "data" / "prod")
    assert dev.zone_of("data/dev/shortcut/x.parquet") == "prod"


def test_zone_of_takes_the_longest_matching_root(tmp_path):
    zones = {**ZONES, "dev_scratch": "data/dev/scratch"}
    conf = _write_conf(
        tmp_path,
        {"dev": {"access": {"read": ["source"], "write": ["dev", "dev_scratch"]}}},
        zones=zones,
    )
    policy = load_policy(_loader(conf, "dev"), "dev", tmp_path)
    assert policy.zone_of("data/dev/scratch/x.csv") == "dev_scratch"
    assert policy.zone_of("data/dev/scratchpad/x.csv") == "dev"


# --- checks and their messages ---------------------------------------------------------


def test_an_env_reads_and_writes_its_own_zone_and_reads_the_source(dev):
    dev.check_read("a", "data/source/bike_rentals")
    dev.check_read("b", "data/dev/05_model_input/t.parquet")
    dev.check_write("b", "data/dev/05_model_input/t.parquet")
    dev.check_alias("dev")


def test_writing_another_envs_zone_names_env_dataset_path_zone_rule(dev, tmp_path):
    target = tmp_path / "data" / "prod" / "y.parquet"
    message = (
        f"Access policy of env 'dev' forbids writing dataset 'x' at '{target}': it "
        f"lies in zone 'prod', and env 'dev' may write only [dev] "
        f"(conf/dev/access.yml, rule access.write).\nHint: "
    )
    with pytest.raises(AccessPolicyError, match=re.escape(message)):
        dev.check_write("x", "data/prod/y.parquet")


def test_writing_the_source_is_refused_as_read_only(dev, tmp_path):
    target = tmp_path / "data" / "source" / "bike_rentals" / "2025-01-01.parquet"
    with pytest.raises(AccessPolicyError) as refused:
        dev.check_write("model_input_table", target)
    message = str(refused.value)
    assert f"dataset 'model_input_table' at '{target}'" in message
    assert "zone 'source'" in message
    assert "read-only for every env (rule: source is read-only" in message
    assert "conf/dev/access.yml, rule access.write" in message
    assert "\nHint: " in message


def test_reading_another_envs_zone_is_refused(dev, tmp_path):
    target = tmp_path / "data" / "prod" / "peek.parquet"
    message = (
        f"Access policy of env 'dev' forbids reading dataset 'peek' at '{target}': it "
        f"lies in zone 'prod', and env 'dev' may read only [source, dev] "
        f"(conf/dev/access.yml, rule access.read)."
    )
    with pytest.raises(AccessPolicyError, match=re.escape(message)):
        dev.check_read("peek", target)


@pytest.mark.parametrize(
    ("path", "where"),
    [
        ("/somewhere/else.csv", "it lies outside every zone"),
        ("s3://bucket/x.csv", "it is not a local path, so it lies outside every zone"),
    ],
)
def test_paths_outside_every_zone_are_refused(dev, path, where):
    with pytest.raises(AccessPolicyError, match=re.escape(f"'{path}': {where}, ")):
        dev.check_read("x", path)
    with pytest.raises(AccessPolicyError, match=r"rule access\.write"):
        dev.check_write("x", path)


def test_writable_zones_are_readable(tmp_path):
    policy = _policy(tmp_path, read=["source"], write=["dev"], aliases=[])
    assert policy.readable == ("source", "dev")
    policy.check_read("x", "data/dev/x.parquet")


def test_an_alias_outside_the_policy_is_refused(tmp_path):
    acceptance = _policy(tmp_path, "acceptance")
    acceptance.check_alias("challenger")
    message = (
        "Access policy of env 'acceptance' forbids setting registry alias 'champion': "
        "env 'acceptance' may set only [challenger] "
        "(conf/acceptance/access.yml, rule access.aliases)."
    )
    with pytest.raises(AccessPolicyError, match=re.escape(message)):
        acceptance.check_alias("champion")


def test_access_policy_error_is_a_modelops_error():
    assert issubclass(AccessPolicyError, ModelopsError)  # the CLI prints it cleanly


# --- loading from conf -----------------------------------------------------------------


@pytest.mark.parametrize("env", ["dev", "acceptance", "prod"])
def test_the_projects_policies_are_as_the_issue_says(env, tmp_path):
    loader = _loader(PROJECT_ROOT / "conf", env)
    policy = load_policy(loader, run_env(loader), tmp_path)
    assert policy.env == env
    assert policy.read == tuple(POLICIES[env]["read"])
    assert policy.write == tuple(POLICIES[env]["write"])
    assert policy.aliases == tuple(POLICIES[env]["aliases"])
    assert policy.register is POLICIES[env]["register"]
    assert policy.zones["source"] == (tmp_path / "data" / "source").resolve()


def test_a_bare_run_is_dev():
    assert run_env(_loader(PROJECT_ROOT / "conf", None)) == "dev"


def test_an_env_without_access_yml_refuses(tmp_path):
    conf = _write_conf(tmp_path, {"dev": {"access": POLICIES["dev"]}, "qa": None})
    message = (
        "Env 'qa' has no access policy: conf/qa/access.yml is missing, so env 'qa' "
        "refuses to run."
    )
    with pytest.raises(AccessPolicyError, match=re.escape(message)):
        load_policy(_loader(conf, "qa"), "qa", tmp_path)


def test_an_env_does_not_inherit_a_policy_from_base(tmp_path):
    conf = _write_conf(tmp_path, {"dev": None})
    (conf / "base" / "access.yml").write_text(
        yaml.safe_dump({"access": POLICIES["dev"]})
    )
    with pytest.raises(AccessPolicyError, match="Env 'dev' has no access policy"):
        load_policy(_loader(conf, "dev"), "dev", tmp_path)


@pytest.mark.parametrize("content", [{}, {"access": None}, {"other": 1}])
def test_an_empty_access_yml_refuses(tmp_path, content):
    conf = _write_conf(tmp_path, {"dev": content})
    with pytest.raises(AccessPolicyError, match="Env 'dev' has no access policy"):
        load_policy(_loader(conf, "dev"), "dev", tmp_path)


@pytest.mark.parametrize(
    ("access", "expected"),
    [
        (
            {"read": ["source", "dve"], "write": ["dev"]},
            "access.read in conf/dev/access.yml names unknown zone(s) [dve]; the "
            "zones are [source, dev, acceptance, prod]",
        ),
        (
            {"read": ["source"], "write": ["dev", "source"]},
            "access.write in conf/dev/access.yml lists zone 'source', but the "
            "production source is read-only for every env (rule: source is read-only)",
        ),
        (
            {"read": ["source"], "write": ["dev", "prod"]},
            "access.write in conf/dev/access.yml lists zone(s) [prod] of another env, "
            "but no env writes into another env's zone",
        ),
        (
            {"read": ["source"], "writes": ["dev"]},
            "access: in conf/dev/access.yml has unknown key(s) [writes]",
        ),
        (
            {"read": "source", "write": ["dev"]},
            "access.read in conf/dev/access.yml must be a list of names",
        ),
    ],
)
def test_a_policy_that_breaks_the_rules_refuses(tmp_path, access, expected):
    conf = _write_conf(
        tmp_path, {"dev": {"access": access}, "prod": {"access": POLICIES["prod"]}}
    )
    with pytest.raises(AccessPolicyError, match=re.escape(expected)):
        load_policy(_loader(conf, "dev"), "dev", tmp_path)


def test_the_right_to_register_is_absent_unless_granted(tmp_path):
    """Fail closed: a policy without register: true may not register."""
    rules = {k: v for k, v in POLICIES["dev"].items() if k != "register"}
    conf = _write_conf(tmp_path, {"dev": {"access": rules}})
    policy = load_policy(_loader(conf, "dev"), "dev", tmp_path)
    assert policy.register is False
    with pytest.raises(AccessPolicyError, match=r"absent means false"):
        policy.check_register()


@pytest.mark.parametrize("value", ["yes", "true", 1, None, ["dev"]])
def test_the_right_to_register_must_be_true_or_false(tmp_path, value):
    conf = _write_conf(
        tmp_path, {"dev": {"access": {**POLICIES["dev"], "register": value}}}
    )
    with pytest.raises(
        AccessPolicyError,
        match=re.escape(
            f"access.register in conf/dev/access.yml must be true or false, got {value!r}"
        ),
    ):
        load_policy(_loader(conf, "dev"), "dev", tmp_path)


def test_zones_must_be_declared(tmp_path):
    conf = _write_conf(tmp_path, {"dev": {"access": POLICIES["dev"]}}, zones={})
    with pytest.raises(AccessPolicyError, match="No zones declared"):
        load_policy(_loader(conf, "dev"), "dev", tmp_path)


# --- where datasets read and write -------------------------------------------------------


def test_dataset_paths_of_file_datasets(tmp_path):
    versioned = Version(None, "2025-01-01T00.00.00.000Z")
    cases = [
        (
            PartitionedDataset(
                path="data/source/bike", dataset="pandas.ParquetDataset"
            ),
            ["data/source/bike"],
        ),
        (
            ParquetDataset(filepath="data/dev/t.parquet", version=versioned),
            ["data/dev/t.parquet"],
        ),
        (JSONDataset(filepath="data/dev/m.json"), ["data/dev/m.json"]),
        (PickleDataset(filepath="data/dev/m.pkl"), ["data/dev/m.pkl"]),
        (MatplotlibDataset(filepath="data/dev/p.png"), ["data/dev/p.png"]),
        (CSVDataset(filepath="/abs/f.csv", version=versioned), ["/abs/f.csv"]),
        (ParquetDataset(filepath="file:///abs/t.parquet"), ["/abs/t.parquet"]),
        (ParquetDataset(filepath="memory://bucket/t.parquet"), None),
        (
            ContentAddressedParquetDataset(directory=str(tmp_path / "data/dev/sets")),
            [str(tmp_path / "data/dev/sets")],
        ),
    ]
    for dataset, expected in cases:
        paths = dataset_paths(dataset)
        if expected is None:  # remote: the protocol is kept, so no zone matches
            assert len(paths) == 1 and paths[0].startswith("memory://"), paths
        else:
            assert paths == expected, (dataset, paths)


def test_datasets_without_a_location_have_no_paths():
    for dataset in [
        MemoryDataset(data={"a": 1}),
        MlflowMetricsDataset(prefix="x_"),
        MlflowJsonDataset(artifact_file="a.json"),
        IncumbentModelDataset(model_name="m", aliases=["champion"]),
    ]:
        assert dataset_paths(dataset) == [], dataset


# --- the hook -------------------------------------------------------------------------


class _AliasMover(AbstractDataset[Any, Any]):
    """A stand-in for the registry datasets: it only keeps the policy it is given."""

    def __init__(self, aliases: tuple[str, ...] = ()) -> None:
        self.policy: Any = None
        self.access_aliases = aliases

    def bind_access_policy(self, policy: Any) -> None:
        self.policy = policy

    def _load(self) -> Any:
        return None

    def _save(self, data: Any) -> None:
        self.policy.check_alias(data)

    def _describe(self) -> dict[str, Any]:
        return {}


def _identity(frame: pd.DataFrame) -> pd.DataFrame:
    return frame


@pytest.fixture
def hooks(tmp_path) -> AccessPolicyHooks:
    """The hooks after context creation, for env dev in a project at tmp_path."""
    conf = _write_conf(
        tmp_path, {name: {"access": rules} for name, rules in POLICIES.items()}
    )
    hooks = AccessPolicyHooks()
    context = SimpleNamespace(config_loader=_loader(conf, None), project_path=tmp_path)
    hooks.after_context_created(context)
    return hooks


def _catalog(tmp_path: Path, **extra: AbstractDataset) -> DataCatalog:
    return DataCatalog(
        datasets={
            "raw": ParquetDataset(filepath=str(tmp_path / "data/source/raw.parquet")),
            "table": ParquetDataset(filepath=str(tmp_path / "data/dev/table.parquet")),
            **extra,
        }
    )


PIPELINE = Pipeline([Node(_identity, "raw", "table", name="copy_node")])


def test_the_hook_loads_the_policy_of_the_env_in_force(hooks):
    assert hooks.policy is not None and hooks.policy.env == "dev"


def test_the_hook_refuses_a_context_without_policy(tmp_path):
    conf = _write_conf(tmp_path, {"dev": None})
    context = SimpleNamespace(config_loader=_loader(conf, None), project_path=tmp_path)
    with pytest.raises(AccessPolicyError, match="Env 'dev' has no access policy"):
        AccessPolicyHooks().after_context_created(context)


def test_the_hook_refuses_a_run_without_a_loaded_policy(tmp_path):
    with pytest.raises(AccessPolicyError, match="No access policy was loaded"):
        AccessPolicyHooks().before_pipeline_run({}, PIPELINE, _catalog(tmp_path))


def test_the_hook_passes_a_compliant_run(hooks, tmp_path):
    hooks.before_pipeline_run({}, PIPELINE, _catalog(tmp_path))


def test_the_hook_refuses_an_unused_catalog_entry_in_another_zone(hooks, tmp_path):
    catalog = _catalog(
        tmp_path, peek=CSVDataset(filepath=str(tmp_path / "data/prod/peek.csv"))
    )
    with pytest.raises(AccessPolicyError, match=r"reading dataset 'peek' at .*prod"):
        hooks.before_pipeline_run({}, PIPELINE, catalog)


def test_the_hook_refuses_a_pipeline_output_in_the_source(hooks, tmp_path):
    catalog = _catalog(
        tmp_path,
        table=ParquetDataset(filepath=str(tmp_path / "data/source/table.parquet")),
    )
    with pytest.raises(
        AccessPolicyError, match=r"writing dataset 'table' .* source is read-only"
    ):
        hooks.before_pipeline_run({}, PIPELINE, catalog)


def test_the_hook_binds_the_policy_to_alias_datasets(hooks, tmp_path):
    mover = _AliasMover()
    hooks.after_catalog_created(_catalog(tmp_path, promoted=mover))
    assert mover.policy is hooks.policy
    mover.save("dev")
    # Kedro wraps whatever a dataset's _save raises in a DatasetError.
    with pytest.raises(DatasetError, match=r"rule access\.aliases") as refused:
        mover.save("champion")
    assert isinstance(refused.value.__cause__, AccessPolicyError)


def test_the_hook_refuses_an_output_that_would_set_a_forbidden_alias(hooks, tmp_path):
    mover = _AliasMover(aliases=("champion",))
    pipeline = PIPELINE + Pipeline([Node(_identity, "table", "promoted", name="p")])
    message = (
        "Access policy of env 'dev' forbids setting registry alias 'champion' "
        "(dataset 'promoted'): env 'dev' may set only [dev] (conf/dev/access.yml, "
        "rule access.aliases)."
    )
    with pytest.raises(AccessPolicyError, match=re.escape(message)):
        hooks.before_pipeline_run({}, pipeline, _catalog(tmp_path, promoted=mover))


def test_a_dataset_added_after_the_check_is_refused_when_saved(hooks, tmp_path):
    """The real save path: a runner with the hook, a dataset added after the check."""
    raw = tmp_path / "data" / "source" / "raw.parquet"
    raw.parent.mkdir(parents=True)
    pd.DataFrame({"a": [1, 2]}).to_parquet(raw)
    catalog = _catalog(tmp_path)
    hooks.after_catalog_created(catalog)
    hooks.before_pipeline_run({}, PIPELINE, catalog)  # compliant so far
    sneaky = tmp_path / "data" / "prod" / "table.parquet"
    catalog["table"] = ParquetDataset(filepath=str(sneaky))
    hook_manager = _create_hook_manager()
    hook_manager.register(hooks)
    with pytest.raises(AccessPolicyError, match=r"writing dataset 'table' at .*prod"):
        SequentialRunner().run(PIPELINE, catalog, hook_manager)
    assert not sneaky.exists()
    assert not (tmp_path / "data" / "prod").exists()


def test_a_load_from_a_zone_added_after_the_check_is_refused(hooks, tmp_path):
    catalog = _catalog(tmp_path)
    hooks.before_pipeline_run({}, PIPELINE, catalog)
    catalog["raw"] = ParquetDataset(filepath=str(tmp_path / "data/prod/raw.parquet"))
    with pytest.raises(AccessPolicyError, match=r"reading dataset 'raw' at .*prod"):
        hooks.before_dataset_loaded("raw")


REGISTER_REFUSAL = (
    "Access policy of env 'prod' forbids registering model versions (dataset "
    "'registered_model'): env 'prod' has no access.register: true "
    "(conf/prod/access.yml, rule access.register; absent means false).\nHint: prod "
    "promotes what acceptance approved instead of registering its own: run `kedro run "
    "--env acceptance`, then `kedro run --env prod` (its default job runs promotion); "
    "pipelines that register run in an env whose access.yml says register: true."
)


def _hooks_for(tmp_path: Path, env: str) -> AccessPolicyHooks:
    conf = _write_conf(
        tmp_path, {name: {"access": rules} for name, rules in POLICIES.items()}
    )
    hooks = AccessPolicyHooks()
    context = SimpleNamespace(config_loader=_loader(conf, env), project_path=tmp_path)
    hooks.after_context_created(context)
    return hooks


def test_the_hook_refuses_a_registering_pipeline_in_an_env_without_the_right(tmp_path):
    hooks = _hooks_for(tmp_path, "prod")
    registrar = RegisteredModelDataset("m", alias="champion")  # prod's own alias
    catalog = DataCatalog(
        datasets={
            "raw": ParquetDataset(filepath=str(tmp_path / "data/source/raw.parquet")),
            "registered_model": registrar,
        }
    )
    pipeline = Pipeline([Node(_identity, "raw", "registered_model", name="reg")])
    with pytest.raises(AccessPolicyError) as refused:
        hooks.before_pipeline_run({}, pipeline, catalog)
    assert str(refused.value) == REGISTER_REFUSAL
    # a pipeline that only reads the registry (promotion) is fine in prod
    hooks.before_pipeline_run(
        {}, Pipeline([Node(_identity, "raw", "x", name="n")]), catalog
    )


def test_the_hook_lets_an_env_with_the_right_register(tmp_path):
    hooks = _hooks_for(tmp_path, "acceptance")
    catalog = DataCatalog(
        datasets={
            "raw": ParquetDataset(filepath=str(tmp_path / "data/source/raw.parquet")),
            "registered_model": RegisteredModelDataset("m", alias="challenger"),
        }
    )
    pipeline = Pipeline([Node(_identity, "raw", "registered_model", name="reg")])
    hooks.before_pipeline_run({}, pipeline, catalog)


def test_the_registry_dataset_refuses_to_register_without_the_right(tmp_path):
    """Defence in depth: even past the hook, a save in prod registers nothing."""
    import mlflow  # noqa: PLC0415

    hooks = _hooks_for(tmp_path, "prod")
    registrar = RegisteredModelDataset("m", alias="champion")
    hooks.after_catalog_created(DataCatalog(datasets={"registered_model": registrar}))
    uri = new_mlflow_store(tmp_path)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    mlflow.set_experiment("prod")  # not an experiment id another test left active
    with mlflow.start_run(), pytest.raises(DatasetError) as refused:
        registrar.save({"model": None, "reason": "x"})
    assert isinstance(refused.value.__cause__, AccessPolicyError)
    assert "rule access.register" in str(refused.value)
