"""What is wrong with the database, in one line that names the cause and the fix: for ``migrate``
and the other commands, and for ``/health/ready``."""

from __future__ import annotations

import re

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

_SETTING = "PRESTO_DATABASE_URL"


def describe_database_error(exc: BaseException, url: str) -> str:
    """``exc`` (from connecting or querying) as one line for whoever runs the service."""
    text = str(getattr(exc, "orig", None) or exc)
    where, user, name = _parts(url)
    if found := re.search(r'database "([^"]+)" does not exist', text):
        return (
            f'the database "{found[1]}" does not exist at {where}; create it '
            f"(createdb {found[1]}) or name another in {_SETTING}"
        )
    if found := re.search(r'role "([^"]+)" does not exist', text):
        return f'the role "{found[1]}" does not exist at {where}; name another user in {_SETTING}'
    if "password authentication failed" in text or "no password supplied" in text:
        return f'PostgreSQL at {where} refused the password of "{user}"; fix it in {_SETTING}'
    for symptom, reason in _UNREACHABLE.items():
        if symptom in text:
            return f"no PostgreSQL answers at {where} ({reason}); start it or fix {_SETTING}"
    if isinstance(exc, TimeoutError):
        return f"PostgreSQL at {where} did not answer in time"
    first_line = next((line.strip() for line in text.splitlines() if line.strip()), repr(exc))
    return f"PostgreSQL at {where} (database {name}) failed: {first_line.removeprefix('FATAL:  ')}"


_UNREACHABLE = {
    "Connection refused": "connection refused",
    "could not translate host name": "unknown host",
    "Name or service not known": "unknown host",
    "timeout expired": "no answer in time",
    "No route to host": "no route to host",
    "Network is unreachable": "network unreachable",
    "No such file or directory": "no server socket",
}


def _parts(url: str) -> tuple[str, str, str]:
    """host:port, user and database name of ``url``, never its password."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        return "the configured URL", "?", "?"
    return (
        f"{parsed.host or 'localhost'}:{parsed.port or 5432}",
        parsed.username or "",
        parsed.database or "",
    )
