"""An ASGI app served by uvicorn over real HTTP on 127.0.0.1, in a thread, for the tests."""

from __future__ import annotations

import contextvars
import threading
import time

import uvicorn

from canaryflow.local.procs import free_port


class ServedApp:
    """uvicorn on 127.0.0.1:<free port> in a thread that sees the test's Prefect settings."""

    def __init__(self, app) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_config=None,
                                                    log_level="info", lifespan="on", proxy_headers=False))
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
