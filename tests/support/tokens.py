"""Tokens that the API must refuse, each wrong in exactly one way (the rest is valid)."""

from __future__ import annotations

import base64
import json
import time
import warnings
from typing import Any

import jwt
from jwt.warnings import InsecureKeyLengthWarning

from presto_deck.settings import Settings

_OTHER_SECRET = "another-secret-that-is-long-enough-for-hs256"


def _claims(user_id: str = "alice", **changes: Any) -> dict[str, Any]:
    now = int(time.time())
    claims: dict[str, Any] = {"sub": user_id, "iat": now, "exp": now + 3600}
    for name, value in changes.items():
        if value is None:
            claims.pop(name, None)
        else:
            claims[name] = value
    return claims


def _b64(data: dict[str, Any]) -> str:
    raw = json.dumps(data, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def expired(settings: Settings) -> str:
    past = int(time.time()) - 600
    return jwt.encode(_claims(iat=past - 3600, exp=past), _secret(settings), algorithm="HS256")


def bad_signature(settings: Settings) -> str:
    return jwt.encode(_claims(), _OTHER_SECRET, algorithm="HS256")


def tampered(settings: Settings) -> str:
    """A valid token whose payload was changed to another user after signing."""
    header, _, signature = jwt.encode(_claims(), _secret(settings), algorithm="HS256").split(".")
    return f"{header}.{_b64(_claims('mallory'))}.{signature}"


def alg_none(settings: Settings) -> str:
    """Unsigned (``alg: none``), which no configuration may accept."""
    return f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{_b64(_claims())}."


def without_exp(settings: Settings) -> str:
    return jwt.encode(_claims(exp=None), _secret(settings), algorithm="HS256")


def without_sub(settings: Settings) -> str:
    return jwt.encode(_claims(sub=None), _secret(settings), algorithm="HS256")


def empty_sub(settings: Settings) -> str:
    return jwt.encode(_claims(sub=""), _secret(settings), algorithm="HS256")


def nul_in_sub(settings: Settings) -> str:
    """Correctly signed, but its user id holds a NUL character, which no user id can."""
    return jwt.encode(_claims(sub="alice\u0000"), _secret(settings), algorithm="HS256")


def lone_surrogate_in_sub(settings: Settings) -> str:
    """Correctly signed, but its user id is a lone UTF-16 surrogate (JSON ``"\\ud800"``, which
    PyJWT decodes as such): a string that cannot be encoded as UTF-8, so no database column or
    log line can hold it."""
    return jwt.encode(_claims(sub="\ud800"), _secret(settings), algorithm="HS256")


def huge_crit_header(settings: Settings) -> str:
    """Correctly signed, with a long list of unsupported critical extensions in its header, the
    first one long, multi-byte and ending in a lone surrogate: error messages that quote it
    must still fit a WebSocket close frame."""
    crit = ["\u00e9" * 400 + "\ud800", *(f"ext-{i}" for i in range(300))]
    return jwt.encode(_claims(), _secret(settings), algorithm="HS256", headers={"crit": crit})


def wrong_algorithm(settings: Settings) -> str:
    """Signed with the right secret but an algorithm the settings do not list (HS512)."""
    assert "HS512" not in settings.jwt_algorithms
    with warnings.catch_warnings():
        # The test secret is shorter than HS512 recommends; irrelevant to a token meant to fail.
        warnings.simplefilter("ignore", InsecureKeyLengthWarning)
        return jwt.encode(_claims(), _secret(settings), algorithm="HS512")


def malformed(settings: Settings) -> str:
    return "not-a-jwt"


def garbage_segments(settings: Settings) -> str:
    return "a.b.c"


#: Every kind of bad token, by a name that reads well in a test id.
BAD_TOKENS = {
    "expired": expired,
    "bad-signature": bad_signature,
    "tampered-payload": tampered,
    "alg-none": alg_none,
    "no-exp": without_exp,
    "no-sub": without_sub,
    "empty-sub": empty_sub,
    "lone-surrogate-sub": lone_surrogate_in_sub,
    "huge-crit-header": huge_crit_header,
    "wrong-algorithm": wrong_algorithm,
    "malformed": malformed,
    "garbage-segments": garbage_segments,
}


def _secret(settings: Settings) -> str:
    assert settings.jwt_secret
    return settings.jwt_secret
