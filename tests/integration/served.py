"""An ASGI app served by uvicorn over real HTTP on 127.0.0.1, in a thread, for the tests."""

from __future__ import annotations

import contextvars
import socket
import threading
import time

import uvicorn

from canaryflow.local.procs import free_port
from canaryflow.webhook import WebhookConfig
from canaryflow.webhook.server import uvicorn_config


class ServedApp:
    """uvicorn on 127.0.0.1:<free port> in a thread that sees the test's Prefect settings; with a
    ``config``, served as ``canaryflow webhook serve`` serves it (its connection limits)."""

    def __init__(self, app, config: WebhookConfig | None = None) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        options = {"log_config": None, "log_level": "info", "lifespan": "on"}
        if config is None:
            uvicorn_settings = uvicorn.Config(app, host="127.0.0.1", port=self.port, proxy_headers=False, **options)
        else:
            uvicorn_settings = uvicorn_config(app, config=config, host="127.0.0.1", port=self.port, **options)
        self.server = uvicorn.Server(uvicorn_settings)
        context = contextvars.copy_context()
        self.thread = threading.Thread(target=context.run, args=(self.server.run,), daemon=True)

    def __enter__(self) -> ServedApp:
        self.thread.start()
        deadline = time.monotonic() + 15
        while not self.server.started:
            assert self.thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


def connect(served: ServedApp, timeout: float = 15) -> socket.socket:
    """A raw TCP connection to the served app: for requests httpx will not send (folded or
    non-ASCII headers, a body that stops halfway)."""
    return socket.create_connection(("127.0.0.1", served.port), timeout=timeout)


def read_answer(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection ("" when it closed without a word;
    a reset, which a close with unread request bytes causes, ends it too)."""
    received = b""
    try:
        while chunk := sock.recv(65536):
            received += chunk
    except ConnectionResetError:
        pass
    return received


def raw_request(served: ServedApp, path: str, headers: list[tuple[str, bytes]], body: bytes) -> tuple[int, bytes]:
    """One request with ``Connection: close``, header values sent byte for byte."""
    head = f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Length: {len(body)}\r\n".encode()
    head += b"".join(name.encode() + b": " + value + b"\r\n" for name, value in headers)
    with connect(served) as sock:
        sock.sendall(head + b"\r\n" + body)
        answer = read_answer(sock)
    status_line, _, rest = answer.partition(b"\r\n")
    return int(status_line.split()[1]), rest.partition(b"\r\n\r\n")[2]
