"""A loopback HTTP server of in-memory files: downloads are tested without the internet.

``served`` starts ``http.server`` on 127.0.0.1 in a thread, serving the given files with HTTP
Range support (or not), and can cut a transfer short.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Site:
    """What the server serves and what it saw."""

    files: dict[str, bytes]
    ranges: bool = True  # honour ``Range: bytes=N-`` with 206 Partial Content
    cut_after: int | None = None  # announce the full length but close after this many body bytes
    requests: list[tuple[str, str | None]] = field(default_factory=list)
    url: str = ""


class _Handler(BaseHTTPRequestHandler):
    site: Site

    def do_GET(self) -> None:  # noqa: N802 (http.server naming)
        site = self.server.site  # type: ignore[attr-defined]
        range_header = self.headers.get("Range")
        site.requests.append((self.path, range_header))
        body = site.files.get(self.path)
        if body is None:
            self.send_error(404)
            return
        start = int(range_header.removeprefix("bytes=").split("-")[0]) if range_header and site.ranges else 0
        if start >= len(body) > 0:
            self.send_error(416)
            return
        self.send_response(206 if start else 200)
        if start:
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        self.send_header("Content-Length", str(len(body) - start))
        self.end_headers()
        payload = body[start:]
        if site.cut_after is not None:
            payload = payload[: site.cut_after]
        self.wfile.write(payload)

    def log_message(self, *args: object) -> None:
        pass


@contextmanager
def served(files: dict[str, bytes], **options: object) -> Iterator[Site]:
    """Serve ``files`` (URL path -> bytes) at ``site.url`` while the block runs; ``options`` set :class:`Site`."""
    site = Site(files=files, **options)  # type: ignore[arg-type]
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.site = site  # type: ignore[attr-defined]
    site.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield site
    finally:
        server.shutdown()
        server.server_close()
