"""An HTTP proxy in front of Azurite that throttles and drops requests, as a busy storage
account does: a real server on 127.0.0.1 whose faults follow a fixed, counted pattern."""

from __future__ import annotations

import http.client
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

# Hop-by-hop headers, which a proxy does not pass on.
_HOP = {"connection", "keep-alive", "transfer-encoding", "proxy-connection", "upgrade"}


class FlakyProxy:
    """Forwards to `upstream` (host, port). Of every `every` requests whose path holds `only`,
    the first is answered `status` with `Retry-After: retry_after` (when `status`), or its
    connection dropped without an answer (when `status` is 0); the others are forwarded."""

    def __init__(
        self,
        upstream: tuple[str, int],
        every: int,
        status: int,
        retry_after: int | None = None,
        only: str = "",
    ) -> None:
        self.upstream, self.every, self.status, self.retry_after = (
            upstream, every, status, retry_after,
        )  # fmt: skip
        self.only = only
        self.requests = 0
        self.faults = 0
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _fault(self, path: str) -> bool:
        if self.only not in path:
            return False
        with self._lock:
            self.requests += 1
            fault = (self.requests - 1) % self.every == 0
            self.faults += fault
            return fault

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def _any(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                if proxy._fault(self.path):
                    if not proxy.status:
                        self.close_connection = True
                        self.connection.close()  # dropped, unanswered
                        return
                    self.send_response(proxy.status)
                    if proxy.retry_after is not None:
                        self.send_header("Retry-After", str(proxy.retry_after))
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                upstream = http.client.HTTPConnection(*proxy.upstream, timeout=30)
                headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP}
                upstream.request(self.command, self.path, body, headers)
                answer = upstream.getresponse()
                data = answer.read()
                self.send_response(answer.status, answer.reason)
                for key, value in answer.getheaders():
                    if key.lower() not in _HOP | {"content-length"}:
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)
                upstream.close()

            do_GET = do_PUT = do_HEAD = do_DELETE = do_POST = _any

        return Handler
