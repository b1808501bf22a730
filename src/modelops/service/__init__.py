"""The REST service: Starlette on uvicorn, scoring the registry alias's verified model artifact.

Modules: ``settings`` (the ``serving_api`` conf), ``request_validation`` (the pydantic
model generated from the data contract), ``model_holder`` (loading, warm-up, atomic
swap), ``metrics`` (Prometheus), ``prediction_log_writer`` (the REST prediction log),
``app`` (the Starlette endpoints) and ``server`` (uvicorn; ``kedro serve``).
"""
