"""The floor for the serving benchmark: bare uvicorn + onnxruntime, no validation.

The cheapest server doing the service's work: read the JSON body, take the
``dataframe_split`` columns and rows, score them with the registered version's ONNX
file on onnxruntime (``modelops.onnx_model.OnnxPredictor.predict_values``: input
matrices from the JSON values, calendar features, ``session.run``), answer
``{"predictions": [...]}``. No validation, no logging, no metrics, no alias polling;
scoring runs inline on the event loop. Two forms:

- ``asgi`` (the floor the targets use): a raw ASGI callable, no framework;
- ``starlette``: the same in a one-route Starlette app, to show the framework's share.

Both on uvicorn with uvloop and httptools, one worker, access log off.
Run by ``bench_serving.py``: ``bench_serving_floor.py --onnx FILE --port P
[--framework asgi|starlette]``; ``GET`` on any path answers 200 (the health check).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Awaitable, Callable, MutableMapping
from pathlib import Path
from typing import Any

try:  # the fastest JSON codec installed: the floor is the cheapest server
    import orjson

    def loads(body: bytes) -> Any:
        return orjson.loads(body)

    def dumps(value: Any) -> bytes:
        return orjson.dumps(value)

    JSON_LIBRARY = "orjson"
except ImportError:  # pragma: no cover (orjson comes with mlflow's dependencies)

    def loads(body: bytes) -> Any:
        return json.loads(body)

    def dumps(value: Any) -> bytes:
        return json.dumps(value).encode()

    JSON_LIBRARY = "json"

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
HEALTH = b'{"status": "ok"}'


def score(predictor: Any, body: bytes) -> bytes:
    """``dataframe_split`` JSON in, ``{"predictions": [...]}`` JSON out; no checks."""
    split = loads(body)["dataframe_split"]
    data = split["data"]
    values = {
        column: [row[index] for row in data]
        for index, column in enumerate(split["columns"])
    }
    return dumps({"predictions": predictor.predict_values(values).tolist()})


def asgi_app(predictor: Any) -> Callable[[Scope, Receive, Send], Awaitable[None]]:
    """A raw ASGI app: POST scores the body, GET answers the health check."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        if scope["method"] == "POST":
            chunks, more = [], True
            while more:
                message = await receive()
                chunks.append(message.get("body", b""))
                more = message.get("more_body", False)
            body = score(predictor, b"".join(chunks))
        else:
            body = HEALTH
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})

    return app


def starlette_app(predictor: Any) -> Any:
    """The same work in a Starlette app with one route per path."""
    from starlette.applications import Starlette  # noqa: PLC0415
    from starlette.requests import Request  # noqa: PLC0415
    from starlette.responses import Response  # noqa: PLC0415
    from starlette.routing import Route  # noqa: PLC0415

    async def invocations(request: Request) -> Response:
        body = score(predictor, await request.body())
        return Response(body, media_type="application/json")

    async def health(request: Request) -> Response:
        return Response(HEALTH, media_type="application/json")

    return Starlette(
        routes=[
            Route("/invocations", invocations, methods=["POST"]),
            Route("/health", health, methods=["GET"]),
        ]
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--onnx", type=Path, required=True, help="The ONNX file.")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--framework", choices=("asgi", "starlette"), default="asgi")
    args = parser.parse_args(argv)

    import uvicorn  # noqa: PLC0415

    from modelops.onnx_model import OnnxPredictor  # noqa: PLC0415

    predictor = OnnxPredictor(args.onnx.read_bytes(), intra_op_threads=1)
    app = (asgi_app if args.framework == "asgi" else starlette_app)(predictor)
    uvicorn.run(
        app,
        host=args.host,
        port=args.port,
        loop="uvloop",
        http="httptools",
        lifespan="off",
        access_log=False,
        log_level="warning",
        workers=1,
    )


if __name__ == "__main__":
    main()
