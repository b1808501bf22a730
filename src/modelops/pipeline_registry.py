"""Project pipelines: one per folder under pipelines/, plus the jobs built from them."""

from __future__ import annotations

from kedro.framework.project import find_pipelines
from kedro.pipeline import Pipeline

from modelops.pipelines import promotion


def register_pipelines() -> dict[str, Pipeline]:
    """Register the project's pipelines and jobs.

    - ``__default__``: the deployment job — data_processing → training → evaluation
      → deployment (gate, registration, the env's alias).
    - ``promotion_reuse``: prod's default — re-evaluate the acceptance-approved
      challenger on prod's test set and move ``champion`` if the gate passes.
    - ``promotion_retrain``: retrain with the same config and seed, check that the
      challenger's metrics reproduce, then promote as above.

    Which job a bare ``kedro run --env X`` runs is ``default_pipeline`` in
    conf/X/globals.yml.
    """
    pipelines = find_pipelines(raise_errors=True)
    data = pipelines["data_processing"]
    split = pipelines["training"].only_nodes("split_model_input_node")
    train_and_evaluate = data + pipelines["training"] + pipelines["evaluation"]
    pipelines["__default__"] = train_and_evaluate + pipelines["deployment"]
    pipelines["promotion_reuse"] = data + split + pipelines["promotion"]
    pipelines["promotion_retrain"] = (
        train_and_evaluate
        + promotion.create_retrain_checks()
        + promotion.create_pipeline(after_reproduction=True)
    )
    del pipelines["promotion"]
    return pipelines
