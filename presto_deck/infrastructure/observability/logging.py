"""Structured logs with loguru: one JSON object a line (or plain text), stdlib logging routed in,
and credentials redacted from every line whatever logger wrote it."""

from __future__ import annotations

import logging
import re
import sys
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote_plus
from uuid import UUID

import msgspec
from loguru import logger
from opentelemetry import trace

from presto_deck.application.tracing import root_span_id_of, trace_id_of

if TYPE_CHECKING:
    from loguru import Message, Record

_JWT = re.compile(r"eyJ[\w-]{5,}\.[\w-]+\.[\w-]*")
_SECRETS = (
    (re.compile(r"(?i)(token=)[^&\s\"']+"), r"\1[redacted]"),
    (re.compile(r"(?i)(bearer\s+)[\w\-.~+/]+=*"), r"\1[redacted]"),
    (_JWT, "[redacted-jwt]"),
)
#: A query parameter as logged, still percent-encoded: a name after ``?`` or ``&``, then ``=``
#: and a value that runs to the next parameter or the end of the request target.
_QUERY_PARAMETER = re.compile(r"(?<=[?&])([^=&\s?#]+)=([^&\s]*)")
_encoder = msgspec.json.Encoder()


def redact(text: str) -> str:
    """Remove tokens from a log line (query strings, headers, bare JWTs)."""
    text = _QUERY_PARAMETER.sub(_redact_parameter, text)
    for pattern, replacement in _SECRETS:
        text = pattern.sub(replacement, text)
    return text


def _redact_parameter(match: re.Match[str]) -> str:
    """The parameter with its value redacted if, decoded as the application decodes it, it is
    named token or holds a JWT (``?%74oken=%65%79…`` is a token all the same)."""
    name, value = match.group(1), match.group(2)
    if unquote_plus(name).lower() != "token" and not _JWT.search(unquote_plus(value)):
        return match.group(0)
    # A quote that closes the logged target is the line's, not the value's.
    closing = value[len(value.rstrip("\"'")) :]
    return f"{name}=[redacted]{closing}"


def _patch(record: Record) -> None:
    record["message"] = redact(record["message"])


def _patch_with_span(record: Record) -> None:
    """Redact, and name the trace and span the line belongs to: a deck's line carries its
    deck's trace id (the deck id's hex) and the span it was written in if that span is of the
    deck's trace, else the deck's root span; another line, the span it was written in."""
    _patch(record)
    context = trace.get_current_span().get_span_context()
    deck_id = _uuid(record["extra"].get("deck_id"))
    if deck_id is not None:
        trace_id = trace_id_of(deck_id)
        in_deck = context.is_valid and context.trace_id == trace_id
        span_id = context.span_id if in_deck else root_span_id_of(deck_id)
    elif context.is_valid:
        trace_id, span_id = context.trace_id, context.span_id
    else:
        return
    record["extra"]["trace_id"] = trace.format_trace_id(trace_id)
    record["extra"]["span_id"] = trace.format_span_id(span_id)


def _uuid(value: object) -> UUID | None:
    if isinstance(value, UUID):
        return value
    try:
        return UUID(str(value)) if value is not None else None
    except ValueError:
        return None


def _json_sink(message: Message) -> None:
    record = message.record
    line: dict[str, Any] = {
        "time": record["time"].isoformat(),
        "level": record["level"].name,
        "message": record["message"],
        "logger": record["name"],
    }
    line.update({k: v for k, v in record["extra"].items() if v is not None})
    if record["exception"] is not None:
        exc_type, exc, _ = record["exception"]
        line["exception"] = redact(f"{getattr(exc_type, '__name__', 'Exception')}: {exc}")
    sys.stderr.write(_encoder.encode(line).decode() + "\n")


#: What stamina says of a retry besides its message; not the call's arguments (a prompt).
_STAMINA_DETAILS = frozenset(
    {"stamina.callable", "stamina.retry_num", "stamina.caused_by", "stamina.wait_for"}
)


class _InterceptHandler(logging.Handler):
    """Send stdlib records (uvicorn, arq, stamina, SQLAlchemy) through loguru."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            level: str | int = logger.level(record.levelname).name
        except ValueError:
            level = record.levelno
        details = {
            name.removeprefix("stamina."): redact(str(value))
            for name, value in vars(record).items()
            if name in _STAMINA_DETAILS
        }
        logger.bind(**details).opt(exception=record.exc_info, depth=6).log(
            level, record.getMessage()
        )


def _text_format(record: Record) -> str:
    """A line for a person: time, level, message, and the record's context only if it has any."""
    context = " {extra}" if record["extra"] else ""
    return "{time:HH:mm:ss.SSS} {level: <7} {message}" + context + "\n{exception}"


def configure_logging(log_format: str, level: str) -> None:
    logger.remove()
    # A person reading the text has the deck id; a program reading JSON gets the span's ids too.
    logger.configure(patcher=_patch_with_span if log_format == "json" else _patch)
    if log_format == "json":
        logger.add(_json_sink, level=level, backtrace=False, diagnose=False)
    else:
        logger.add(sys.stderr, level=level, backtrace=False, diagnose=False, format=_text_format)
    logging.basicConfig(handlers=[_InterceptHandler()], level=logging.INFO, force=True)
    # Alembic announces each of its plugins as it is imported: nothing an operator needs.
    logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)
    # psycopg's pool says at INFO each connection it lends and takes back.
    logging.getLogger("psycopg.pool").setLevel(logging.WARNING)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access", "arq", "stamina"):
        logging.getLogger(name).handlers = []
        logging.getLogger(name).propagate = True
