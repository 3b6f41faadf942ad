"""The connection guards of ``python -m deepm3.serve`` (deepm3.server.guard): slow clients -- idle
sockets, trickled headers or bodies -- are closed or answered 408 and cannot shut out a normal request."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from tests.helpers.tiny_recommenders import QUERY, gru_net, recommender

pytest.importorskip("fastapi")
httpx = pytest.importorskip("httpx")
uvicorn = pytest.importorskip("uvicorn")
from deepm3.server import Limits, create_app  # noqa: E402
from deepm3.server.guard import ConnectionLimits, guarded_protocol  # noqa: E402


@contextmanager
def guarded_server(connections: ConnectionLimits, body_timeout_s: int = 1) -> Iterator[tuple[str, int]]:
    """The app under uvicorn with the guards ``python -m deepm3.serve`` uses; ``(url, port)``."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    app = create_app(recommender(gru_net()), limits=Limits(body_timeout_s=body_timeout_s))
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, log_level="error", http=guarded_protocol(connections), timeout_keep_alive=1
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}", port
    finally:
        server.should_exit = True
        thread.join(timeout=30)


def open_socket(port: int, send: bytes = b"") -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    if send:
        sock.sendall(send)
    return sock


def closed_by_server(sock: socket.socket, within: float) -> bytes | None:
    """What the server sent before closing ``sock`` within ``within`` seconds; None if it stayed open."""
    sock.settimeout(within)
    received = b""
    try:
        while chunk := sock.recv(4096):
            received += chunk
    except TimeoutError:
        return None
    except ConnectionResetError:
        pass
    return received


PARTIAL_HEAD = b"POST /recommend HTTP/1.1\r\nHost: x\r\n"


PARTIAL_BODY = b"POST /recommend HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 500\r\n\r\n{"


def test_a_connection_that_never_completes_its_headers_is_closed() -> None:
    with guarded_server(ConnectionLimits(header_timeout=1)) as (_, port):
        idle, partial = open_socket(port), open_socket(port, PARTIAL_HEAD)
        assert closed_by_server(idle, within=5) == b""
        assert closed_by_server(partial, within=5) == b""


def test_a_trickled_body_gets_a_408_naming_the_limit() -> None:
    with guarded_server(ConnectionLimits(), body_timeout_s=1) as (_, port):
        answer = closed_by_server(open_socket(port, PARTIAL_BODY), within=5)
    assert answer is not None and answer.startswith(b"HTTP/1.1 408")
    assert b'"body: not received within 1 s (limits.body_timeout_s)"' in answer


def test_health_has_headroom_when_requests_fill_the_server() -> None:
    with guarded_server(ConnectionLimits(max_connections=2, health_headroom=2), body_timeout_s=30) as (url, port):
        stuck = [open_socket(port, PARTIAL_BODY) for _ in range(2)]  # two requests in progress, waiting for bodies
        time.sleep(0.3)
        busy = httpx.post(f"{url}/recommend", json=QUERY, timeout=5)
        health = httpx.get(f"{url}/health", timeout=5)
        for sock in stuck:
            sock.close()
    assert busy.status_code == 503 and "limits.max_connections" in busy.json()["detail"]
    assert health.status_code == 200


@pytest.mark.slow  # ~300 sockets and a few seconds of waiting
def test_hundreds_of_slow_clients_do_not_shut_out_a_normal_request() -> None:
    limits = ConnectionLimits(header_timeout=2, max_connections=16, health_headroom=4)
    with guarded_server(limits, body_timeout_s=2) as (url, port):
        slow = [open_socket(port) for _ in range(150)]  # idle sockets
        slow += [open_socket(port, PARTIAL_HEAD) for _ in range(100)]  # headers trickled
        slow += [open_socket(port, PARTIAL_BODY) for _ in range(8)]  # bodies trickled: requests in progress
        start = time.monotonic()
        with httpx.Client(base_url=url, timeout=10) as client:
            answers = [client.post("/recommend", json=QUERY) for _ in range(5)] + [client.get("/health")]
        took = time.monotonic() - start
        for sock in slow:
            sock.close()
    assert [a.status_code for a in answers] == [200] * 6
    assert took < 2, f"normal requests waited {took:.1f} s behind slow clients"
