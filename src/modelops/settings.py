"""Project settings: config loader, default run env and hooks."""

from __future__ import annotations

import atexit
import gc

from kedro.config import OmegaConfigLoader

from modelops.access import AccessPolicyHooks
from modelops.hooks import LineageHooks, RunSummaryHooks, StagedOutputHooks
from modelops.tracking import tracking_uri

HOOKS = (AccessPolicyHooks(), LineageHooks(), StagedOutputHooks(), RunSummaryHooks())

# At interpreter exit Python's final garbage collections walk every object the
# imports created (~470k with Kedro, MLflow, pandas and sklearn): 1-2 s of every
# `kedro` command's exit, measured. Freezing them at exit leaves them to the OS;
# atexit handlers, MLflow's end of run and the flushing of files run as before.
atexit.register(gc.freeze)

CONFIG_LOADER_CLASS = OmegaConfigLoader
CONFIG_LOADER_ARGS = {
    "base_env": "base",
    # A bare `kedro run` is dev: it can never touch acceptance or prod.
    "default_run_env": "dev",
    # env files override base key by key (nested), so conf/dev can change one value.
    "merge_strategy": {"parameters": "soft", "globals": "soft", "mlflow": "soft"},
    "custom_resolvers": {"tracking_uri": tracking_uri},
    "config_patterns": {
        # use_case.yml is read as globals: it is the one file a team edits to plug in
        # its dataset, and the other conf files take its values as ${globals:use_case.*}.
        "globals": ["globals*", "globals*/**", "use_case*", "use_case*/**"],
        "access": ["access*", "access*/**"],
        "mlflow": ["mlflow*", "mlflow*/**"],
    },
}
