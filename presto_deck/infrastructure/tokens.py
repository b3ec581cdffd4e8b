"""JWT bearer tokens (PyJWT): verify them for every route and socket, mint them for scripts."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, TypeGuard

import jwt

from presto_deck.settings import Settings

_MAX_USER_ID_LENGTH = 255
#: PyJWT's reasons may quote the token's own header values: pass on this much of them at most.
_MAX_REASON_CHARS = 80


class InvalidToken(Exception):
    """The token is missing, malformed, expired, badly signed or lacks a claim we require."""


@dataclass(frozen=True)
class Identity:
    user_id: str
    #: When the token expires (``exp``, seconds since the epoch).
    expires_at: float


class TokenVerifier:
    def __init__(self, settings: Settings) -> None:
        self._secret = settings.jwt_secret
        self._public_key = settings.jwt_public_key
        self._algorithms = list(settings.jwt_algorithms)
        self._audience = settings.jwt_audience
        self._issuer = settings.jwt_issuer

    def verify(self, token: str) -> str:
        """The token's user id (``sub``), or InvalidToken."""
        return self.identify(token).user_id

    def identify(self, token: str) -> Identity:
        """Whose token it is and until when it holds, or InvalidToken."""
        try:
            algorithm = jwt.get_unverified_header(token).get("alg")
            if algorithm not in self._algorithms:
                raise InvalidToken("token algorithm is not accepted")
            # Choose the key by the algorithm's family, so an HMAC token can never be checked
            # against the public key (key confusion) and vice versa.
            key = self._secret if str(algorithm).startswith("HS") else self._public_key
            if not key:
                raise InvalidToken("token algorithm is not accepted")
            claims: dict[str, Any] = jwt.decode(
                token,
                key,
                algorithms=[algorithm],
                audience=self._audience,
                issuer=self._issuer,
                # PyJWT rejects any token with an ``aud`` when no audience is given; unset
                # means unchecked, as for the issuer.
                options={"require": ["exp", "sub"], "verify_aud": self._audience is not None},
            )
        except jwt.ExpiredSignatureError:
            raise InvalidToken("token has expired") from None
        except jwt.PyJWTError as exc:
            raise InvalidToken(f"invalid token: {_reason(exc)}") from None
        subject = claims["sub"]
        if not _is_user_id(subject):
            raise InvalidToken("invalid token: sub must be 1 to 255 characters of text, no NUL")
        return Identity(user_id=subject, expires_at=float(claims["exp"]))

    def mint(self, user_id: str, ttl_seconds: int) -> str:
        """A token for ``user_id`` signed with the configured secret (development and scripts)."""
        if not self._secret:
            raise InvalidToken("minting needs PRESTO_JWT_SECRET")
        algorithm = next((a for a in self._algorithms if a.startswith("HS")), "HS256")
        now = int(time.time())
        claims: dict[str, Any] = {"sub": user_id, "iat": now, "exp": now + ttl_seconds}
        if self._audience:
            claims["aud"] = self._audience
        if self._issuer:
            claims["iss"] = self._issuer
        return jwt.encode(claims, self._secret, algorithm=algorithm)


def _is_user_id(subject: object) -> TypeGuard[str]:
    """A string that every store and log can hold: PostgreSQL refuses NUL, and a lone surrogate
    (JSON ``"\\ud800"`` decodes to one) cannot be encoded as UTF-8 at all."""
    if not isinstance(subject, str) or not 0 < len(subject) <= _MAX_USER_ID_LENGTH:
        return False
    try:
        subject.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return "\x00" not in subject


def _reason(exc: Exception) -> str:
    """PyJWT's reason, short and encodable, whatever the token put in it."""
    text = str(exc).encode("utf-8", "replace").decode("utf-8")
    return text if len(text) <= _MAX_REASON_CHARS else text[: _MAX_REASON_CHARS - 1] + "…"
