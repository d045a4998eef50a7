"""A real HTTP server on 127.0.0.1 for the downloader tests: serves bytes by name, counts requests, and can cut a
transfer short (the full Content-Length announced, half the body sent, the connection closed)."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from contextlib import contextmanager


class FileServer:
    """Serves ``files`` at ``url + name``; names in ``truncate`` are cut off half-way."""

    def __init__(self, files: dict[str, bytes]) -> None:
        self.files = dict(files)
        self.truncate: set[str] = set()
        self.requests: list[str] = []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server naming)
                name = self.path.rsplit("/", 1)[-1]
                server.requests.append(self.path)
                body = server.files.get(name) if self.path.count("/") == 1 else None
                if body is None:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if name in server.truncate:
                    self.wfile.write(body[:len(body) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)


@contextmanager
def serving(files: dict[str, bytes]) -> Iterator[FileServer]:
    server = FileServer(files)
    try:
        yield server
    finally:
        server.close()


def listing(directory) -> list[str]:
    """Every file under ``directory`` (hidden temp files included), relative, sorted."""
    return sorted(str(p.relative_to(directory)) for p in directory.rglob("*") if p.is_file())
