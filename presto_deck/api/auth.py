"""The bearer token of every route: read from the Authorization header, verified, or 401."""

from __future__ import annotations

from typing import Any

from litestar import Request
from litestar.di import NamedDependency
from litestar.exceptions import NotAuthorizedException

from presto_deck.infrastructure.tokens import InvalidToken, TokenVerifier


def bearer_token(authorization: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header, or None."""
    if not authorization:
        return None
    scheme, _, token = authorization.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token or " " in token:
        return None
    return token


async def provide_user_id(
    request: Request[Any, Any, Any], verifier: NamedDependency[TokenVerifier]
) -> str:
    """The dependency every ``/api`` route takes: the caller's user id, or 401."""
    token = bearer_token(request.headers.get("authorization"))
    if token is None:
        raise NotAuthorizedException(
            "Missing or malformed bearer token.", headers={"WWW-Authenticate": "Bearer"}
        )
    try:
        return verifier.verify(token)
    except InvalidToken as exc:
        raise NotAuthorizedException(
            _sentence(str(exc)), headers={"WWW-Authenticate": "Bearer"}
        ) from None


def _sentence(text: str) -> str:
    text = text[:1].upper() + text[1:]
    return text if text.endswith((".", "…")) else text + "."
