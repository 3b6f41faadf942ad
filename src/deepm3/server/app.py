"""The FastAPI app: recommendations over HTTP for one trained run.

Endpoints (docs/serving.md has examples): ``POST /recommend`` (a history, a known ``user``, or
a JSON array of either), ``POST /events`` (append a user's events to the stored state),
``GET /health``, ``GET /model``, ``GET /metrics`` (Prometheus), ``POST /snapshot``.

Bad input is a 4xx whose body is ``{"detail": "<one line naming the field>"}``, never a 500
or a traceback: the service (:class:`~deepm3.server.service.Server`) raises the project's errors
(:mod:`deepm3.errors`) and the routes map them to status codes (:mod:`deepm3.server.errors`).
Bodies are read by hand (:mod:`deepm3.server.limits`), so the size limit holds before anything is
parsed, and parsed and scored in a worker thread, so a long request does not stall ``/health``
(with ``batching``, scored by the micro-batcher's thread, :mod:`deepm3.server.batching`).
No endpoint takes a file path; the network is in eval mode with its parameters frozen, and
every request runs under ``torch.inference_mode``: a request cannot change the model.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import asdict
from functools import partial
from pathlib import Path
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from omegaconf import OmegaConf
from prometheus_client import CONTENT_TYPE_LATEST
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

import deepm3
from deepm3.data.processed import item_map_digest
from deepm3.errors import DataError, DeepM3Error
from deepm3.provenance import code_version
from deepm3.recommender import Recommender
from deepm3.run_dir import locate_run, read_config, try_read_metrics
from deepm3.server.errors import STATUS, as_http_error, guarded
from deepm3.server.limits import Limits, read_body
from deepm3.server.observe import TimingMiddleware
from deepm3.server.schemas import Query, Recommendation, UserEvents
from deepm3.server.service import Server
from deepm3.server.state import is_stateful

__all__ = ["ENDPOINTS", "STATUS", "Limits", "Server", "as_http_error", "create_app", "describe", "read_body"]

log = logging.getLogger(__name__)

ENDPOINTS = ("/recommend", "/events", "/health", "/model", "/metrics", "/snapshot")
API_KEY_HEADER = "X-API-Key"


KEY_PARAMETER = {"name": API_KEY_HEADER, "in": "header", "required": False, "schema": {"type": "string"}}


def _body(model: type[BaseModel], keyed: bool = False) -> dict[str, Any]:
    """The OpenAPI request body of an endpoint taking one ``model`` or a non-empty array of them.

    Bodies are read by hand (the size limit holds before parsing), so FastAPI cannot infer them;
    declaring them lets clients and fuzzers (tests/test_server_app.py) see what is expected.
    """
    ref = {"$ref": f"#/components/schemas/{model.__name__}"}
    schema = {"anyOf": [ref, {"type": "array", "items": ref, "minItems": 1}]}
    extra: dict[str, Any] = {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}
    if keyed:
        extra["parameters"] = [KEY_PARAMETER]
    return extra


def _openapi(app: FastAPI, generate: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """FastAPI's schema plus the request models the hand-read bodies refer to (not served over HTTP)."""
    if app.openapi_schema is None:
        schema = generate()
        schemas = schema.setdefault("components", {}).setdefault("schemas", {})
        for model in (Query, UserEvents):
            definition = model.model_json_schema(ref_template="#/components/schemas/{model}")
            schemas.update(definition.pop("$defs", {}))
            schemas[model.__name__] = definition
    return app.openapi_schema  # type: ignore[return-value]


def describe(rec: Recommender, run: Path | None, limits: Limits, snapshot: Path | None) -> tuple[dict, dict]:
    """``(GET /model's body, the snapshot fingerprint)`` of the served run."""
    config, checkpoint, trained = None, None, None
    if run is not None:
        run_dir, checkpoint = locate_run(Path(run).expanduser())
        config = read_config(run_dir)
        metrics = try_read_metrics(run_dir)
        if metrics is not None:
            trained = (metrics.get("provenance") or {}).get("code_version")
    solver = OmegaConf.select(config, "model.net.solver", default=None) if config is not None else None
    stateful = is_stateful(rec.net)
    network = type(rec.net)
    info = {
        "model": rec.name,
        "network": network.__name__,
        "solver": OmegaConf.to_container(solver, resolve=True) if solver is not None else None,
        "items": rec.num_items,
        "max_len": rec.max_len,
        "query": rec.query,
        "uses_time": rec.uses_time,
        "stored_state": "state" if stateful else "window",
        "stored_state_note": (
            "per-user DeepM3 state, advanced once per posted event; a known user's request "
            "flows it to `at` and scores (equal to the recompute while the history fits max_len)"
            if stateful
            else f"no recurrent state: the last max_len={rec.max_len} events per user are stored and "
            "a known user's request recomputes the window from them"
        ),
        "checkpoint": checkpoint.name if checkpoint is not None else None,
        "device": str(rec.device),
        "code_version": code_version(),
        "package_version": deepm3.__version__,
        "trained_code_version": trained,
        "limits": asdict(limits),
        "snapshot": snapshot is not None,
        "durability": "events are kept in memory until the next snapshot; a crash before it loses them",
    }
    digest = hashlib.sha256(checkpoint.read_bytes()).hexdigest() if checkpoint is not None else None
    fingerprint = {
        "network": f"{network.__module__}.{network.__qualname__}",
        "checkpoint_sha256": digest,
        "item_map_sha256": item_map_digest(rec.item_ids.tolist()),
        "max_len": rec.max_len,
        "query": rec.query,
        "hidden": int(getattr(rec.net, "hidden", 0)),
    }
    return info, fingerprint


def create_app(
    rec: Recommender,
    run: str | Path | None = None,
    limits: Limits | None = None,
    snapshot: str | Path | None = None,
    k: int = 10,
    batching: bool = False,
    max_users: int | None = None,
    api_key: str | None = None,
) -> FastAPI:
    """The app serving ``rec`` (loaded from ``run``, which ``GET /model`` describes).

    ``snapshot``: where stored state is saved (``POST /snapshot`` and shutdown) and reloaded
    on start; ``None`` keeps it in memory only. ``batching``: score concurrent ``/recommend``
    requests together (:mod:`deepm3.server.batching`). ``max_users``: the most users whose
    events are stored; past it the least recently seen are dropped (``None``: no cap).
    ``api_key``: when given, ``/events`` and ``/snapshot`` need it in an ``X-API-Key`` header.
    """
    limits = limits or Limits()
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise DataError(f"k={k!r}; expected a positive integer")
    rec.net.eval().requires_grad_(False)  # no request can train or change it
    path = Path(snapshot).expanduser() if snapshot is not None else None
    info, fingerprint = describe(rec, Path(run) if run is not None else None, limits, path)
    info["batching"] = bool(batching)
    info["max_users"] = max_users
    if api_key is not None and (not isinstance(api_key, str) or not api_key.strip() or len(api_key.split()) != 1):
        raise DataError("api_key: expected a non-empty string without spaces (or null for no key)")
    info["write_key"] = api_key is not None
    server = Server(rec, limits, k, path, info, fingerprint, batching=bool(batching), max_users=max_users)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        server.load_snapshot()
        if server.batcher is not None:
            server.batcher.start()
        yield
        if server.batcher is not None:
            server.batcher.stop()
        if server.snapshot is not None:
            with server.snapshot_gate:  # after a snapshot still being written
                try:
                    server.save_snapshot()
                except DeepM3Error as exc:  # already logged; shutting down anyway
                    log.error("state not saved on shutdown: %s", exc)
        server.snapshot_pool.shutdown(wait=False)

    app = FastAPI(
        title="deepm3", version=deepm3.__version__, lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None
    )  # no UI that loads scripts from elsewhere
    app.state.server = server

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse(
            {"detail": " ".join(str(exc.detail).split("\n"))},
            status_code=exc.status_code,
            headers=getattr(exc, "headers", None),
        )

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(part) for part in first.get("loc", ()))
        return JSONResponse({"detail": f"{where}: {first.get('msg', 'invalid request')}"}, status_code=422)

    @app.post("/recommend", openapi_extra=_body(Query))
    async def recommend(request: Request) -> Any:
        body = await read_body(request, limits.max_body_bytes, limits.body_timeout_s)

        def parse() -> tuple[list[Query], bool, list[str]]:
            queries, many = server.parse(body, Query)
            return queries, many, [f"body[{i}]" for i in range(len(queries))] if many else ["body"]

        def answer() -> tuple[bool, list[Recommendation]]:
            queries, many, labels = parse()
            return many, server.recommend(queries, labels)

        if server.batcher is None:
            many, results = await run_in_threadpool(guarded, answer)
        else:
            queries, many, labels = await run_in_threadpool(guarded, parse)
            try:
                results = await server.batcher.submit(queries, labels)
            except Exception as exc:
                raise as_http_error(exc) from None
        return JSONResponse([r.model_dump() for r in results] if many else results[0].model_dump())

    def authorise(request: Request) -> None:
        """Write endpoints need the key, when the server has one (compared in constant time)."""
        if api_key is None:
            return
        given = request.headers.get(API_KEY_HEADER, "")
        if not hmac.compare_digest(given.encode(), api_key.encode()):
            raise HTTPException(
                401,
                f"{API_KEY_HEADER}: {'wrong' if given else 'missing'}; this server's write endpoints "
                "(/events, /snapshot) need its api key",
            )

    @app.post("/events", openapi_extra=_body(UserEvents, keyed=True))
    async def events(request: Request) -> Any:
        authorise(request)
        body = await read_body(request, limits.max_body_bytes, limits.body_timeout_s)

        def answer() -> Any:
            batches, many = server.parse(body, UserEvents)
            labels = [f"body[{i}]" for i in range(len(batches))] if many else ["body"]
            return server.events(batches, labels).model_dump()

        return JSONResponse(await run_in_threadpool(guarded, answer))

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {"status": "ok", "model": rec.name, "stored_users": len(server.store)}

    @app.get("/model")
    async def model() -> dict[str, Any]:
        return server.info

    @app.get("/metrics")
    async def metrics() -> Response:
        return Response(server.metrics.exposition(), media_type=CONTENT_TYPE_LATEST)

    @app.post("/snapshot", openapi_extra={"parameters": [KEY_PARAMETER]})
    async def snapshot_now(request: Request) -> Any:
        authorise(request)
        try:
            saved = await server.snapshot_once()
        except Exception as exc:
            raise as_http_error(exc) from None
        return saved.model_dump()

    app.openapi = partial(_openapi, app, app.openapi)  # type: ignore[method-assign]
    app.add_middleware(TimingMiddleware, metrics=server.metrics, endpoints=ENDPOINTS)
    return app
