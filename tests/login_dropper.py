"""A TCP proxy in front of a broker that drops its first connections as they log in, as a
node does while it starts or stops: pika calls that an authentication error."""

from __future__ import annotations

import socket
import threading


class DroppingProxy:
    """A TCP proxy to `upstream` that drops its first `drops` connections as they log in."""

    def __init__(self, upstream: tuple[str, int], drops: int) -> None:
        self.upstream, self.drops = upstream, drops
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            drop, self.drops = self.drops > 0, self.drops - 1
            threading.Thread(target=self._relay, args=(client, drop), daemon=True).start()

    def _relay(self, client: socket.socket, drop: bool) -> None:
        upstream = socket.create_connection(self.upstream)

        def back() -> None:
            try:
                while data := upstream.recv(65536):
                    client.sendall(data)
            except OSError:
                pass
            finally:
                client.close()

        threading.Thread(target=back, daemon=True).start()
        chunks = 0
        try:
            while data := client.recv(65536):
                chunks += 1
                if drop and chunks == 2:  # the login (Connection.StartOk): dropped
                    break
                upstream.sendall(data)
        except OSError:
            pass
        finally:
            upstream.close()
            client.close()
