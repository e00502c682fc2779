"""``tailor serve`` in a subprocess on a free local port, for the serving benchmarks."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def local_server(home: Path, env: dict | None = None) -> Iterator[tuple[str, subprocess.Popen]]:
    """Run the API (no job workers) over ``home`` until the block ends; yields ``(base_url, process)``.

    Raises:
        RuntimeError: the server did not answer ``/health`` within 60 s.
    """
    import httpx

    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "tailor.cli", "serve", "--port", str(port), "--no-workers"],
                              env={**os.environ, "TAILOR_HOME": str(home), **(env or {})}, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                httpx.get(url + "/health", timeout=1)
                break
            except httpx.HTTPError:
                time.sleep(0.2)
        else:
            raise RuntimeError("tailor serve did not answer /health in 60 s")
        yield url, server
    finally:
        server.terminate()
        server.wait(30)
