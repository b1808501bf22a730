"""Project pipelines: one per folder under pipelines/, plus the jobs built from them."""

from __future__ import annotations

from kedro.pipeline import Pipeline

from modelops.pipelines import (
    data_processing,
    deployment,
    evaluation,
    monitoring,
    promotion,
    serving,
    training,
)


def register_pipelines() -> dict[str, Pipeline]:
    """Register the project's pipelines and the jobs composed from them.

    The pipelines are imported explicitly rather than with ``find_pipelines``: Kedro
    1.7 narrows discovery to the pipeline names given to ``kedro run --pipelines``,
    and the composed jobs below have no folder of their own.

    - ``__default__``: the deployment job — data_processing → training → evaluation
      → deployment (gate, registration, the env's alias).
    - ``promotion_reuse``: prod's default — re-evaluate the acceptance-approved
      challenger on prod's test set and move ``champion`` if the gate passes.
    - ``promotion_retrain``: retrain with the same config and seed, check that the
      challenger's metrics reproduce, then promote as above.

    Which job a bare ``kedro run --env X`` runs is ``default_pipeline`` in
    conf/X/globals.yml.
    """
    pipelines = {
        "data_processing": data_processing.create_pipeline(),
        "training": training.create_pipeline(),
        "evaluation": evaluation.create_pipeline(),
        "deployment": deployment.create_pipeline(),
        "serving": serving.create_pipeline(),
        "monitoring": monitoring.create_pipeline(),
    }
    split = pipelines["training"].only_nodes("split_model_input_node")
    train_and_evaluate = (
        pipelines["data_processing"] + pipelines["training"] + pipelines["evaluation"]
    )
    pipelines["__default__"] = train_and_evaluate + pipelines["deployment"]
    pipelines["promotion_reuse"] = (
        pipelines["data_processing"] + split + promotion.create_pipeline()
    )
    pipelines["promotion_retrain"] = (
        train_and_evaluate
        + promotion.create_retrain_checks()
        + promotion.create_pipeline(after_reproduction=True)
    )
    return pipelines
