"""The container's health check, for whichever role the container runs (``python -m
presto_deck.healthcheck``): ``serve`` and ``dev`` answer ``/health/live`` on their port; ``work``
has no HTTP port, and is healthy while its process runs (a worker that cannot reach Redis or
PostgreSQL waits for them, and says so in its log)."""

from __future__ import annotations

import sys
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path

_DEFAULT_PORT = 8000
_TIMEOUT_SECONDS = 2.0


def url_to_check(argv: Sequence[str]) -> str | None:
    """The liveness URL of the command ``argv`` runs, or None for a role without a port."""
    args = list(argv)
    role = next((arg for arg in args if arg in ("serve", "dev", "work", "migrate")), None)
    if role not in ("serve", "dev"):
        return None
    port = _DEFAULT_PORT
    for index, arg in enumerate(args):
        if arg == "--port" and index + 1 < len(args):
            port = int(args[index + 1])
        elif arg.startswith("--port="):
            port = int(arg.removeprefix("--port="))
    return f"http://127.0.0.1:{port}/health/live"


def main() -> int:
    argv = Path("/proc/1/cmdline").read_bytes().decode(errors="replace").split("\0")
    url = url_to_check(argv)
    if url is None:
        return 0
    try:
        with urllib.request.urlopen(url, timeout=_TIMEOUT_SECONDS) as answer:
            return 0 if answer.status == 200 else 1
    except (OSError, urllib.error.URLError):
        return 1


if __name__ == "__main__":
    sys.exit(main())
