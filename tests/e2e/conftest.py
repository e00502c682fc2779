"""A real ``tailor serve`` process (uvicorn, job worker processes) on a free local port."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest


@dataclass
class Server:
    url: str
    key: str
    home: Path
    env: dict
    process: subprocess.Popen | None = None

    @property
    def headers(self) -> dict:
        return {"Authorization": f"Bearer {self.key}"}

    def start(self) -> None:
        port = _free_port()
        self.url = f"http://127.0.0.1:{port}"
        log = open(self.home / "server.log", "ab")
        self.process = subprocess.Popen([sys.executable, "-m", "tailor.cli", "serve", "--port", str(port)],
                                        env=self.env, stdout=log, stderr=log, start_new_session=True)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                health = httpx.get(self.url + "/health", timeout=2).json()
                if health["workers"]["alive"] == health["workers"]["limit"]:
                    return
            except httpx.HTTPError:
                pass
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited: {(self.home / 'server.log').read_text()[-2000:]}")
            time.sleep(0.2)
        raise RuntimeError("server did not start in 60 s")

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()

    def worker_pid(self) -> int:
        return httpx.get(self.url + "/health").json()["workers"]["workers"][0]["pid"]

    def cli(self, *args: str) -> dict:
        out = subprocess.run([sys.executable, "-m", "tailor.cli", *args, "--json"], env=self.env,
                             capture_output=True, text=True, check=True)
        return json.loads(out.stdout.strip().splitlines()[-1])


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def server(tmp_path):
    env = {**os.environ, "TAILOR_HOME": str(tmp_path / "home"), "TAILOR_HEARTBEAT_S": "0.5",
           "TAILOR_WORKER_POLL_S": "0.3", "TAILOR_HEARTBEAT_TIMEOUT_S": "10", "HF_HUB_OFFLINE": "1"}
    env.pop("TAILOR_DATABASE_URL", None)
    (tmp_path / "home").mkdir()
    srv = Server("", "", tmp_path / "home", env)
    srv.key = srv.cli("tenants", "create", "acme")["key"]["secret"]
    srv.start()
    yield srv
    srv.stop()


def wait_for_job(client, job_id: str, timeout_s: float = 240) -> object:
    """Poll until the job ends; return it."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        job = client.fine_tuning.jobs.retrieve(job_id)
        if job.status in ("succeeded", "failed", "cancelled"):
            return job
        time.sleep(0.5)
    raise AssertionError(f"job {job_id} did not finish in {timeout_s} s")
