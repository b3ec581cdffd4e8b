"""Domain and infrastructure errors mapped to HTTP answers, in one place. WebSocket close codes
live beside them so the two stay consistent."""

from __future__ import annotations

from typing import Any, Final

from litestar import MediaType, Request, Response
from litestar.exceptions import HTTPException, ValidationException
from litestar.status_codes import (
    HTTP_400_BAD_REQUEST,
    HTTP_404_NOT_FOUND,
    HTTP_409_CONFLICT,
    HTTP_422_UNPROCESSABLE_ENTITY,
    HTTP_429_TOO_MANY_REQUESTS,
    HTTP_500_INTERNAL_SERVER_ERROR,
    HTTP_503_SERVICE_UNAVAILABLE,
)
from loguru import logger
from redis.exceptions import RedisError
from sqlalchemy.exc import DBAPIError, SQLAlchemyError

from presto_deck.application.limits import LimitExceeded
from presto_deck.application.ports import StorageError
from presto_deck.domain.deck import (
    BadOrder,
    DeckAlreadyFinished,
    DeckBusy,
    DeckEmpty,
    DeckFull,
    DeckNotFound,
    EditRejected,
    IdempotencyConflict,
    SlideNotFound,
    TooManyEdits,
)
from presto_deck.infrastructure.observability.metrics import ERRORS

#: WebSocket close codes of the contract.
CLOSE_BAD_REQUEST: Final = 4400
CLOSE_UNAUTHORIZED: Final = 4401
CLOSE_FORBIDDEN_ORIGIN: Final = 4403
CLOSE_NOT_FOUND: Final = 4404
CLOSE_UNAVAILABLE: Final = 1011
#: Over a limit: too many open sockets, or a client that floods the socket with frames.
CLOSE_POLICY_VIOLATION: Final = 1008
#: Close codes after which a client should not reconnect: it would be refused the same way.
FINAL_CLOSE_CODES: Final = frozenset(
    {CLOSE_BAD_REQUEST, CLOSE_UNAUTHORIZED, CLOSE_FORBIDDEN_ORIGIN, CLOSE_NOT_FOUND}
)

#: Codes of error frames (and of the ``code`` of an edit's HTTP error), as documented.
INVALID_FRAME: Final = "invalid_frame"
RATE_LIMITED: Final = "rate_limited"
DECK_NOT_FOUND: Final = "deck_not_found"
UNAVAILABLE: Final = "unavailable"
DECK_BUSY: Final = DeckBusy.code
SLIDE_NOT_FOUND: Final = SlideNotFound.code
BAD_ORDER: Final = BadOrder.code
TOO_MANY_EDITS: Final = TooManyEdits.code
TOO_MANY_SLIDES: Final = DeckFull.code
DECK_EMPTY: Final = DeckEmpty.code
IDEMPOTENCY_CONFLICT: Final = IdempotencyConflict.code
#: The code of an HTTP request the API cannot read: a body or parameter that is not valid.
INVALID_REQUEST: Final = "invalid_request"
#: The HTTP status of each refused edit.
_EDIT_STATUS: Final[dict[str, int]] = {
    DECK_BUSY: HTTP_409_CONFLICT,
    SLIDE_NOT_FOUND: HTTP_404_NOT_FOUND,
    BAD_ORDER: HTTP_400_BAD_REQUEST,
    TOO_MANY_EDITS: HTTP_429_TOO_MANY_REQUESTS,
    TOO_MANY_SLIDES: HTTP_409_CONFLICT,
    IDEMPOTENCY_CONFLICT: HTTP_422_UNPROCESSABLE_ENTITY,
}

#: A close frame has room for 123 bytes of reason (RFC 6455 §5.5), in UTF-8.
_MAX_CLOSE_REASON_BYTES = 123

_AnyRequest = Request[Any, Any, Any]


def close_reason(text: str) -> str:
    """``text`` made fit for a close frame: valid UTF-8, cut on a character boundary."""
    encoded = text.encode("utf-8", "replace")
    if len(encoded) <= _MAX_CLOSE_REASON_BYTES:
        return encoded.decode("utf-8")
    ellipsis = "…".encode()
    cut = encoded[: _MAX_CLOSE_REASON_BYTES - len(ellipsis)]
    return cut.decode("utf-8", "ignore") + "…"  # "ignore" drops a character cut in two


def _error(status: int, detail: str, **extra: Any) -> Response[dict[str, Any]]:
    return Response(
        {"status_code": status, "detail": detail, **extra},
        status_code=status,
        media_type=MediaType.JSON,
    )


def _not_found(_: _AnyRequest, exc: DeckNotFound) -> Response[dict[str, Any]]:
    return _error(HTTP_404_NOT_FOUND, "Deck not found.")


def _already_finished(_: _AnyRequest, exc: DeckAlreadyFinished) -> Response[dict[str, Any]]:
    return _error(HTTP_409_CONFLICT, "The deck has already finished; there is nothing to cancel.")


def _deck_empty(_: _AnyRequest, exc: DeckEmpty) -> Response[dict[str, Any]]:
    return _error(HTTP_409_CONFLICT, str(exc), code=DECK_EMPTY)


def _edit_rejected(_: _AnyRequest, exc: EditRejected) -> Response[dict[str, Any]]:
    return _error(_EDIT_STATUS.get(exc.code, HTTP_409_CONFLICT), str(exc), code=exc.code)


def _over_limit(_: _AnyRequest, exc: LimitExceeded) -> Response[dict[str, Any]]:
    response = _error(HTTP_429_TOO_MANY_REQUESTS, str(exc))
    if exc.retry_after is not None:
        response.headers["Retry-After"] = str(exc.retry_after)
    return response


def _validation(_: _AnyRequest, exc: ValidationException) -> Response[dict[str, Any]]:
    problems = exc.extra if isinstance(exc.extra, list) else []
    named = [_describe_problem(p) for p in problems if isinstance(p, dict)]
    detail = "; ".join(named) or exc.detail or "Invalid request."
    # The problems by field, when the request's fields were checked (not for a refusal of ours).
    fields = {"extra": problems} if problems else {}
    return _error(HTTP_400_BAD_REQUEST, detail, code=INVALID_REQUEST, **fields)


def _undecodable(_: _AnyRequest, exc: Exception) -> Response[dict[str, Any]]:
    # Raised while decoding a request body: bytes that are not UTF-8, or JSON nested too deep.
    detail = "The request body could not be decoded as JSON."
    return _error(HTTP_400_BAD_REQUEST, detail, code=INVALID_REQUEST)


def _describe_problem(problem: dict[str, Any]) -> str:
    key, message = problem.get("key"), str(problem.get("message"))
    if problem.get("source") == "body" and key == "data":
        # The body as a whole: msgspec's message names the field ("Object missing required
        # field `prompt`"); Litestar's for a missing body is just "'data'".
        return "a JSON object body is required" if message == "'data'" else message
    return f"{key}: {message}" if key else message


def _http(_: _AnyRequest, exc: HTTPException) -> Response[dict[str, Any]]:
    extra = {"code": INVALID_REQUEST} if exc.status_code == HTTP_400_BAD_REQUEST else {}
    response = _error(exc.status_code, exc.detail, **extra)
    response.headers.update(exc.headers or {})
    return response


def _unavailable(request: _AnyRequest, exc: Exception) -> Response[dict[str, Any]]:
    storage = isinstance(exc, StorageError | SQLAlchemyError)
    ERRORS.labels(kind="storage" if storage else "redis").inc()
    logger.error(
        "backing service unavailable during {} {}: {}", request.method, request.url.path, exc
    )
    return _error(
        HTTP_503_SERVICE_UNAVAILABLE,
        "Service temporarily unavailable; try again.",
        code=UNAVAILABLE,
    )


def _storage(request: _AnyRequest, exc: StorageError) -> Response[dict[str, Any]]:
    # Transient: the database is down or busy. Otherwise it refused a value we sent: our bug.
    return _unavailable(request, exc) if exc.transient else _internal(request, exc)


def _internal(request: _AnyRequest, exc: Exception) -> Response[dict[str, Any]]:
    logger.opt(exception=exc).error("unhandled error in {} {}", request.method, request.url.path)
    return _error(HTTP_500_INTERNAL_SERVER_ERROR, "Internal server error.")


exception_handlers: dict[type[Exception] | int, Any] = {
    DeckNotFound: _not_found,
    DeckAlreadyFinished: _already_finished,
    EditRejected: _edit_rejected,
    DeckEmpty: _deck_empty,
    LimitExceeded: _over_limit,
    ValidationException: _validation,
    HTTPException: _http,
    UnicodeDecodeError: _undecodable,
    RecursionError: _undecodable,
    StorageError: _storage,
    DBAPIError: _unavailable,
    SQLAlchemyError: _unavailable,
    RedisError: _unavailable,
    OSError: _unavailable,
    Exception: _internal,
}
