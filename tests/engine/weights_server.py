"""A local HTTP server for the download tests: serves bytes by name, honours Range, and can cut
a transfer short, ignore Range or be down. Nothing in the tests touches the internet."""

from __future__ import annotations

import hashlib
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from engine.zoo.pretrained import PretrainedWeights


class WeightsServer:
    """`files`: name -> bytes. `cut_after`: the next `cuts` responses stop after that many
    bytes of their body (the connection is closed). `honour_range`: False answers a Range
    request with the whole file (200). `ranges`: the Range header of each request (or None)."""

    def __init__(self):
        self.files: dict[str, bytes] = {}
        self.cut_after: int | None = None
        self.cuts = 0
        self.honour_range = True
        self.ranges: list[str | None] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def do_GET(self):
                name = self.path.rsplit("/", 1)[-1]
                rng = self.headers.get("Range")
                server.ranges.append(rng)
                data = server.files.get(name)
                if data is None:
                    self.send_error(404, "Not Found")
                    return
                start = 0
                if rng and server.honour_range:
                    start = int(rng.removeprefix("bytes=").split("-")[0])
                    if start >= len(data):
                        self.send_response(416)
                        self.send_header("Content-Range", f"bytes */{len(data)}")
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        return
                    self.send_response(206)
                    self.send_header("Content-Range",
                                     f"bytes {start}-{len(data) - 1}/{len(data)}")
                else:
                    self.send_response(200)
                body = data[start:]
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if server.cuts and server.cut_after is not None:
                    server.cuts -= 1
                    self.wfile.write(body[:server.cut_after])
                    self.wfile.flush()
                    self.connection.shutdown(socket.SHUT_RDWR)
                    self.close_connection = True
                    return
                self.wfile.write(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/models"
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.02,),
                                       daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)


def free_port_url() -> str:
    """The URL of a port nothing listens on (a server that is down)."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return f"http://127.0.0.1:{port}/models"


def weights_entry(data: bytes, template: str = "squeezenet1_1", stem: str = "tiny",
                  good: bool = True) -> PretrainedWeights:
    """A catalogue entry for `data`: its file name carries the SHA-256 prefix of `data` (or of
    something else when not `good`)."""
    digest = hashlib.sha256(data if good else data + b"x").hexdigest()
    return PretrainedWeights(template, "TEST", f"{stem}-{digest[:8]}.pth", 224, 256, 1.0, 2.0,
                             len(data) / 1e6)
