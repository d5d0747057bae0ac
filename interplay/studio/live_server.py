"""The studio served by uvicorn in a background thread of this process, on a free loopback port:
what the browser tests and the load benchmark talk to (a real server over real sockets)."""

from __future__ import annotations

import threading
import time

import uvicorn
from fastapi import FastAPI


class LiveServer:
    """``with LiveServer(app) as server: ... server.url ...``"""

    def __init__(self, app: FastAPI, host: str = "127.0.0.1", port: int = 0):
        self.config = uvicorn.Config(app, host=host, port=port, log_level="warning", lifespan="off")
        self.server = uvicorn.Server(self.config)
        self.thread = threading.Thread(target=self.server.run, name="studio-server", daemon=True)
        self.url = ""

    def __enter__(self) -> "LiveServer":
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the studio server did not start")
            time.sleep(0.05)
        host, port = self.server.servers[0].sockets[0].getsockname()[:2]
        self.url = f"http://{host}:{port}"
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
