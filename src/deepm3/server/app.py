"""The FastAPI app: recommendations over HTTP for one trained run.

Endpoints (docs/serving.md has examples): ``POST /recommend`` (a history, a known ``user``, or
a JSON array of either), ``POST /events`` (append a user's events to the stored state),
``GET /health``, ``GET /model``, ``GET /metrics`` (Prometheus), ``POST /snapshot``.

Bad input is a 4xx whose body is ``{"detail": "<one line naming the field>"}``, never a 500
or a traceback: the service (:class:`Server`) raises the project's errors (:mod:`deepm3.errors`)
and the routes map them to status codes (:func:`as_http_error`). Bodies are read by hand, so
the size limit holds before anything is parsed, and parsed and scored in a worker thread, so a
long request does not stall ``/health`` (with ``batching``, scored by the micro-batcher's
thread, :mod:`deepm3.server.batching`).
No endpoint takes a file path; the network is in eval mode with its parameters frozen, and
every request runs under ``torch.inference_mode``: a request cannot change the model.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import threading
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass
from functools import lru_cache, partial
from pathlib import Path
from typing import Any, TypeVar

import torch
from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from omegaconf import OmegaConf
from prometheus_client import CONTENT_TYPE_LATEST
from pydantic import BaseModel, TypeAdapter, ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

import deepm3
from deepm3.data.processed import item_map_digest
from deepm3.errors import ConflictError, DataError, DeepM3Error, LimitError, UnavailableError, UnreadableError
from deepm3.provenance import code_version
from deepm3.recommender import Recommendations, Recommender
from deepm3.run_dir import locate_run, read_config, try_read_metrics
from deepm3.server.batching import MicroBatcher
from deepm3.server.observe import Metrics, TimingMiddleware
from deepm3.server.schemas import (
    EventsResponse,
    Query,
    Recommendation,
    SnapshotResponse,
    UserEvents,
    UserSummary,
    one_line,
)
from deepm3.server.state import StateStore, is_stateful

log = logging.getLogger(__name__)

ENDPOINTS = ("/recommend", "/events", "/health", "/model", "/metrics", "/snapshot")
T = TypeVar("T", bound=BaseModel)
API_KEY_HEADER = "X-API-Key"


@dataclass(frozen=True)
class Limits:
    """What one request may ask for; larger requests get a 413 before any work is done."""

    max_body_bytes: int = 1_000_000  # request body
    max_batch: int = 256  # queries (or users' event lists) in one request
    max_events: int = 10_000  # events in one history, or in one /events request
    body_timeout_s: int = 30  # seconds to send the whole body: a trickled body gets a 408

    def __post_init__(self) -> None:
        for key, value in asdict(self).items():
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise DataError(f"limits.{key}={value!r}; expected a positive integer")


class Server:
    """The recommender, its users' stored state and metrics: everything the endpoints share."""

    def __init__(
        self,
        rec: Recommender,
        limits: Limits,
        k: int,
        snapshot: Path | None,
        info: dict[str, Any],
        fingerprint: dict[str, Any],
        batching: bool = False,
        max_users: int | None = None,
    ) -> None:
        self.rec, self.limits, self.k, self.snapshot = rec, limits, k, snapshot
        self.info, self.fingerprint = info, fingerprint
        # One network call at a time: the fused solver=none path swaps weights into a shared GRU
        # template (torch.func.functional_call) while it runs, which two threads must not do at once.
        # (The ODE used to keep the gap on the module; it now binds it per call, tests/test_ode.py.)
        self.model_lock = threading.Lock()
        self.metrics = Metrics(rec.name)
        self.store = StateStore(
            rec.net, rec.max_len, rec.device, self.model_lock, max_users=max_users, on_evict=self.metrics.evicted.inc
        )
        # Snapshots run one at a time on their own thread, never in the request pool: 100 concurrent
        # POST /snapshot calls once delayed an unrelated /recommend by 65 s (issue 30).
        self.snapshot_gate = threading.Lock()
        self.snapshot_pool = ThreadPoolExecutor(1, thread_name_prefix="deepm3-snapshot")
        self.batcher = (
            MicroBatcher(self.recommend, limits.max_batch, self.metrics.batch_queries.observe) if batching else None
        )

    # --- parsing ----------------------------------------------------------------------------

    def parse(self, body: bytes, model: type[T]) -> tuple[list[T], bool]:
        """``(items, was_a_list)`` from a JSON object or array of objects of ``model``."""
        try:
            value = json.loads(body)
        except (ValueError, UnicodeDecodeError) as exc:
            raise UnreadableError(f"body: not valid JSON ({str(exc).splitlines()[0]})") from None
        except RecursionError:
            raise UnreadableError("body: JSON nested too deeply") from None
        many = isinstance(value, list)
        if many and len(value) > self.limits.max_batch:
            raise LimitError(
                f"body: {len(value)} entries; at most {self.limits.max_batch} per request (limits.max_batch)"
            )
        if many and not value:
            raise DataError("body: an empty list; expected at least one entry")
        try:
            parsed = _list_of(model).validate_python(value) if many else [model.model_validate(value)]
        except ValidationError as exc:
            raise DataError(one_line(exc)) from None
        return parsed, many

    # --- /recommend ---------------------------------------------------------------------------

    def recommend(self, queries: list[Query], labels: list[str]) -> list[Recommendation]:
        now = int(time.time())
        for query, label in zip(queries, labels):
            if query.items is not None and len(query.items) > self.limits.max_events:
                raise LimitError(
                    f"{label}.items: {len(query.items)} events; at most "
                    f"{self.limits.max_events} per history (limits.max_events)"
                )
        results: list[Recommendation | None] = [None] * len(queries)
        with torch.inference_mode():
            self._histories(queries, labels, now, results)
            self._users(queries, labels, now, results)
        return results  # type: ignore[return-value]

    def _histories(self, queries: list[Query], labels: list[str], now: int, results: list[Any]) -> None:
        """History queries, one ``recommend_batch`` per distinct (k, exclude_seen, unknown_items)."""
        groups: dict[tuple[int, bool, str], list[int]] = defaultdict(list)
        for i, query in enumerate(queries):
            if query.user is None:
                assert query.items is not None and query.timestamps is not None
                if query.at is None and query.timestamps and query.timestamps[-1] > now:
                    raise DataError(
                        f"{labels[i]}.at: not given, so now ({now}), which is earlier than the last "
                        f"event (timestamps[{len(query.timestamps) - 1}]={query.timestamps[-1]})"
                    )
                groups[(query.k or self.k, query.exclude_seen, query.unknown_items)].append(i)
        for (k, exclude_seen, unknown), rows in groups.items():
            ats = [queries[i].at if queries[i].at is not None else now for i in rows]
            with self.model_lock:
                ranked = self.rec.recommend_batch(
                    [queries[i].items for i in rows],  # type: ignore[misc]
                    [queries[i].timestamps for i in rows],  # type: ignore[misc]
                    at=ats,
                    k=k,
                    exclude_seen=exclude_seen,
                    unknown_items=unknown,
                    names=[labels[i] for i in rows],
                )
            for i, at, result in zip(rows, ats, ranked):
                results[i] = _response(result, at, result.source, None)

    def _users(self, queries: list[Query], labels: list[str], now: int, results: list[Any]) -> None:
        """Known-user queries: stored state (DeepM3) or the stored window, scored together."""
        hits: list[tuple[int, Any, int]] = []
        misses = 0
        for i, query in enumerate(queries):
            if query.user is None:
                continue
            record = self.store.get(query.user)
            at = query.at if query.at is not None else now
            if record is None:
                if not self.rec.has_popularity:
                    raise DataError(
                        f"{labels[i]}.user: {query.user!r} has no stored events, and the run has no "
                        "popularity counts for a user without history; POST /events first"
                    )
                misses += 1
                results[i] = _response(
                    self.rec.recommend_popular(query.k or self.k), at, "popularity", "miss", query.user
                )
                continue
            if at < record.last_time:
                raise DataError(
                    f"{labels[i]}.at={at}{'' if query.at is not None else ' (now)'} is earlier than the "
                    f"last stored event of user {query.user!r} ({record.last_time}); a prediction is "
                    "asked after the history"
                )
            hits.append((i, record, at))
        self.metrics.hits(len(hits), misses)
        if not hits:
            return
        records = [record for _, record, _ in hits]
        with self.model_lock:
            if self.store.stateful:
                scores = self.rec.score_states([r.h for r in records], [at - r.last_time for _, r, at in hits])
            else:
                scores = self.rec.score_windows(
                    [r.items for r in records], [r.times for r in records], [at for _, _, at in hits]
                )
        groups: dict[tuple[int, bool], list[int]] = defaultdict(list)
        for row, (i, _, _) in enumerate(hits):
            groups[(queries[i].k or self.k, queries[i].exclude_seen)].append(row)
        state = "stored" if self.store.stateful else "recomputed"
        for (k, exclude_seen), rows in groups.items():
            ranked = self.rec.recommend_scores(scores[rows], [records[r].seen for r in rows], k, exclude_seen)
            for row, result in zip(rows, ranked):
                i, _, at = hits[row]
                results[i] = _response(result, at, "model", state, queries[i].user)

    # --- /events ------------------------------------------------------------------------------

    def events(self, batches: list[UserEvents], labels: list[str]) -> EventsResponse:
        total = sum(len(b.items) for b in batches)
        if total > self.limits.max_events:
            raise LimitError(f"body: {total} events; at most {self.limits.max_events} per request (limits.max_events)")
        prepared, skipped = [], []
        for batch, label in zip(batches, labels):
            history = self.rec.validate_history(batch.items, batch.timestamps, batch.unknown_items, label, body=True)
            skipped += history.skipped
            prepared.append((batch.user, history.items, history.times))
        records = self.store.append(prepared, labels)
        accepted = sum(len(items) for _, items, _ in prepared)
        self.metrics.accepted.inc(accepted)
        self.metrics.stored_users.set(len(self.store))
        users = []
        for user in dict.fromkeys(b.user for b in batches):
            record = records.get(user) or self.store.get(user)
            users.append(
                UserSummary(
                    user=user, events=record.count if record else 0, last_time=record.last_time if record else None
                )
            )
        return EventsResponse(accepted=accepted, skipped_items=skipped, users=users, durability=self.durability)

    @property
    def durability(self) -> str:
        """The promise of a 200 from /events, said plainly in every answer (docs/serving.md)."""
        if self.snapshot is None:
            return "memory only: lost when the server stops (state.snapshot=null)"
        return "in memory until the next snapshot (POST /snapshot or a clean shutdown); a crash before it loses them"

    # --- snapshots ----------------------------------------------------------------------------

    def save_snapshot(self) -> SnapshotResponse:
        if self.snapshot is None:
            raise ConflictError("snapshots are off (state.snapshot=null); start the server with a snapshot path")
        try:
            users, size, seconds = self.store.save(self.snapshot, self.fingerprint)
        except OSError as exc:
            log.error("cannot write the state snapshot %s: %s", self.snapshot, exc)
            raise UnavailableError(
                f"cannot write the state snapshot ({exc.strerror or exc}); see the server log"
            ) from None
        log.info("saved stored state of %d users to %s (%d bytes, %.3f s)", users, self.snapshot, size, seconds)
        return SnapshotResponse(users=users, file=self.snapshot.name, bytes=size, seconds=round(seconds, 6))

    async def snapshot_once(self) -> SnapshotResponse:
        """``save_snapshot`` on the snapshot thread; refused while another one is being written."""
        if not self.snapshot_gate.acquire(blocking=False):
            raise ConflictError("snapshot: one is being written now; retry when it has finished")
        try:
            return await asyncio.get_running_loop().run_in_executor(self.snapshot_pool, self.save_snapshot)
        finally:
            self.snapshot_gate.release()

    def load_snapshot(self) -> None:
        if self.snapshot is None:
            log.info("state.snapshot=null: stored state lives in memory only and is lost on shutdown")
            return
        for leftover in self.snapshot.parent.glob(f".{self.snapshot.name}.*.tmp"):  # a snapshot write killed midway
            try:
                leftover.unlink()
                log.warning("removed %s, left by a snapshot write that did not finish", leftover)
            except OSError as exc:
                log.warning("cannot remove %s, left by an unfinished snapshot write: %s", leftover, exc)
        message = self.store.load(self.snapshot, self.fingerprint)
        (log.info if message.startswith("loaded") else log.warning)("%s", message)
        self.metrics.stored_users.set(len(self.store))


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


@lru_cache(maxsize=None)
def _list_of(model: type[BaseModel]) -> TypeAdapter:
    """A validator for ``list[model]``, built once (building one costs more than using it)."""
    return TypeAdapter(list[model])  # type: ignore[valid-type]


def _response(
    result: Recommendations, at: int, source: str, state: str | None, user: str | None = None
) -> Recommendation:
    return Recommendation(
        user=user,
        at=at,
        items=[item for item, _ in result],
        scores=[score for _, score in result],
        source=source,
        state=state,
        skipped_items=result.skipped,
        reason=result.reason,
    )  # type: ignore[arg-type]


async def read_body(request: Request, limit: int, timeout: float | None = None) -> bytes:
    """The request body, refused with a 413 as soon as it is known to exceed ``limit`` bytes,
    and with a 408 when it takes longer than ``timeout`` seconds (a slow client holds a socket)."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise HTTPException(413, f"body: {declared} bytes; at most {limit} (limits.max_body_bytes)")
    chunks: list[bytes] = []

    async def receive() -> None:
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise HTTPException(413, f"body: more than {limit} bytes (limits.max_body_bytes)")
            chunks.append(chunk)

    try:  # wait_for, not asyncio.timeout: the package supports Python 3.10
        await asyncio.wait_for(receive(), timeout)
    except asyncio.TimeoutError:
        raise HTTPException(
            408, f"body: not received within {timeout:g} s (limits.body_timeout_s)", headers={"Connection": "close"}
        ) from None
    return b"".join(chunks)


R = TypeVar("R")


def _guarded(call: Callable[..., R], *args: Any) -> R:
    """Run ``call``, its errors as :func:`as_http_error` maps them."""
    try:
        return call(*args)
    except Exception as exc:
        raise as_http_error(exc) from None


# the project's errors as status codes, first match wins; any other DeepM3Error is bad input (422)
STATUS = ((UnreadableError, 400), (LimitError, 413), (ConflictError, 409), (UnavailableError, 503), (DeepM3Error, 422))


def as_http_error(exc: Exception) -> HTTPException:
    """The HTTP answer to ``exc``: a project error -> its status (:data:`STATUS`) with its line;
    a bug -> a logged one-line 500."""
    if isinstance(exc, HTTPException):
        return exc
    for kind, status in STATUS:
        if isinstance(exc, kind):
            return HTTPException(status, " ".join(str(exc).split("\n")))
    log.error("internal error while answering a request", exc_info=exc)
    return HTTPException(500, "internal error; see the server log")


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
            many, results = await run_in_threadpool(_guarded, answer)
        else:
            queries, many, labels = await run_in_threadpool(_guarded, parse)
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

        return JSONResponse(await run_in_threadpool(_guarded, answer))

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
