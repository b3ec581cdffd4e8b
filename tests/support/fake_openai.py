"""A scriptable OpenAI-compatible chat completions server, over real HTTP, for writer tests.

It answers ``POST /v1/chat/completions`` well enough for the real ``openai`` client behind
``langchain-openai``: a tool call when tools are offered (``function_calling``), JSON content when
a ``json_schema`` response format is asked for. The answer is a valid DeckPlan or SlideContent,
chosen by the name of the requested tool or schema. Each request takes the next scripted
behaviour (``ok()`` once the script is empty) and is recorded with its headers and body.

    with FakeOpenAI() as server:
        server.script(status(500), ok())
        ...  # point a client at server.base_url
        assert len(server.requests) == 2
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections import deque
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self

import uvicorn

# ASGI's callables, loosely typed: this is a test double, not an ASGI framework.
_Receive = Any
_Send = Any


@dataclass(frozen=True)
class Ok:
    """Answer with valid content; ``slides`` overrides the number of slides in a plan.

    ``hostile`` puts what PostgreSQL refuses (NUL, a lone surrogate) into every string, as JSON
    escapes: valid JSON, valid structure, and poison for a database that stores it as it is.
    """

    slides: int | None = None
    hostile: bool = False


@dataclass(frozen=True)
class Status:
    """Answer with this HTTP error status and an OpenAI-style error body with ``message``."""

    code: int
    message: str | None = None
    retry_after: str | None = None


@dataclass(frozen=True)
class Hang:
    """Answer nothing for ``seconds`` (or until the server stops), then answer as ``Ok``."""

    seconds: float


@dataclass(frozen=True)
class Garbage:
    """Answer 200 with output that is not valid JSON where JSON was asked for."""


@dataclass(frozen=True)
class Raw:
    """Answer 200 with these bytes as they are (a broken proxy, a misbehaving server)."""

    body: bytes
    content_type: bytes = b"application/json"


Behaviour = Ok | Status | Hang | Garbage | Raw


def ok(slides: int | None = None, *, hostile: bool = False) -> Ok:
    return Ok(slides, hostile)


def status(code: int, message: str | None = None, *, retry_after: str | None = None) -> Status:
    return Status(code, message, retry_after)


def hang(seconds: float) -> Hang:
    return Hang(seconds)


def garbage() -> Garbage:
    return Garbage()


def raw(body: bytes, content_type: bytes = b"application/json") -> Raw:
    return Raw(body, content_type)


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str
    headers: dict[str, str]
    body: Any
    #: ``time.monotonic()`` when the request arrived.
    at: float

    @property
    def prompt(self) -> str:
        """The last message the client sent: the request to the model."""
        messages = self.body.get("messages", []) if isinstance(self.body, dict) else []
        return str(messages[-1].get("content", "")) if messages else ""

    @property
    def requested_schema(self) -> str | None:
        """The tool or response-format name the client asked for, e.g. ``"DeckPlan"``."""
        return _requested_schema(self.body)[0] if isinstance(self.body, dict) else None


class FakeOpenAI:
    """The server: uvicorn in a background thread on 127.0.0.1 and a free port."""

    def __init__(
        self,
        *,
        plan_slides: int = 3,
        input_tokens: int = 42,
        output_tokens: int = 17,
        latency: float = 0.0,
    ) -> None:
        """``latency``: seconds every answer takes, as a real model's do."""
        self.plan_slides = plan_slides
        self.latency = latency
        self.input_tokens = input_tokens
        self.output_tokens = output_tokens
        self.requests: list[RecordedRequest] = []
        self._script: deque[Behaviour] = deque()
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._socket: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._server = uvicorn.Server(
            uvicorn.Config(
                self._app,
                log_level="warning",
                access_log=False,
                interface="asgi3",
                lifespan="off",
                ws="none",
                http="h11",
                timeout_graceful_shutdown=2,
            )
        )

    @property
    def base_url(self) -> str:
        if self._socket is None:
            raise RuntimeError("the fake server is not running")
        host, port = self._socket.getsockname()[:2]
        return f"http://{host}:{port}/v1"

    def script(self, *behaviours: Behaviour, replace: bool = False) -> None:
        """Queue behaviours for the next requests, in order (after dropping those left)."""
        with self._lock:
            if replace:
                self._script.clear()
            self._script.extend(behaviours)

    def start(self) -> None:
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._socket.bind(("127.0.0.1", 0))
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [self._socket]}, daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("the fake OpenAI server did not start")
            time.sleep(0.01)

    def stop(self) -> None:
        self._stopping.set()
        self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
        if self._socket is not None:
            self._socket.close()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _next_behaviour(self) -> Behaviour:
        with self._lock:
            return self._script.popleft() if self._script else Ok()

    async def _app(self, scope: dict[str, Any], receive: _Receive, send: _Send) -> None:
        if scope["type"] != "http":
            return
        raw_body = b""
        while True:
            message = await receive()
            raw_body += message.get("body", b"")
            if not message.get("more_body"):
                break
        try:
            body: Any = json.loads(raw_body) if raw_body else None
        except json.JSONDecodeError:
            body = raw_body.decode(errors="replace")
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        self.requests.append(
            RecordedRequest(scope["method"], scope["path"], headers, body, time.monotonic())
        )

        if scope["method"] != "POST" or scope["path"] != "/v1/chat/completions":
            await _respond(send, 404, {"error": {"message": "not found", "type": "not_found"}})
            return
        behaviour = self._next_behaviour()
        if isinstance(behaviour, Status):
            message = behaviour.message or f"scripted status {behaviour.code}"
            error = {"message": message, "type": "scripted_error"}
            extra = (
                []
                if behaviour.retry_after is None
                else [(b"retry-after", behaviour.retry_after.encode())]
            )
            await _respond(send, behaviour.code, {"error": error}, extra)
            return
        if isinstance(behaviour, Raw):
            await _send_raw(send, behaviour)
            return
        if isinstance(behaviour, Hang):
            await asyncio.to_thread(self._stopping.wait, behaviour.seconds)
        elif self.latency:
            await asyncio.sleep(self.latency)
        await _respond(send, 200, self._completion(body, behaviour))

    def _completion(self, body: Any, behaviour: Behaviour) -> dict[str, Any]:
        request = body if isinstance(body, dict) else {}
        name, via_tool = _requested_schema(request)
        if isinstance(behaviour, Garbage):
            text = '{"title": "cut off in the middle'
        else:
            slides = behaviour.slides if isinstance(behaviour, Ok) else None
            content = self._content(name, slides or self.plan_slides)
            if isinstance(behaviour, Ok) and behaviour.hostile:
                content = _poisoned(content)
            text = json.dumps(content)  # ASCII: NUL and surrogates leave as \u escapes
        if via_tool:
            message: dict[str, Any] = {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": f"call_{len(self.requests)}",
                        "type": "function",
                        "function": {"name": name, "arguments": text},
                    }
                ],
            }
        else:
            message = {"role": "assistant", "content": text}
        return {
            "id": f"chatcmpl-fake-{len(self.requests)}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": request.get("model", "fake-model"),
            "choices": [
                {
                    "index": 0,
                    "message": message,
                    "finish_reason": "tool_calls" if via_tool else "stop",
                    "logprobs": None,
                }
            ],
            "usage": {
                "prompt_tokens": self.input_tokens,
                "completion_tokens": self.output_tokens,
                "total_tokens": self.input_tokens + self.output_tokens,
            },
        }

    @staticmethod
    def _content(name: str | None, slides: int) -> dict[str, Any]:
        if name == "DeckPlan":
            return {
                "title": "A fake deck",
                "summary": "What a fake model would say about the request.",
                "slides": [
                    {"title": f"Slide {n}", "layout": "bullets", "key_points": [f"point {n}"]}
                    for n in range(1, slides + 1)
                ],
            }
        if name == "SlideContent":
            return {
                "layout": "bullets",
                "title": "A written slide",
                "bullets": ["first <strong>point</strong>", "second point"],
                "notes": "Say something useful here.",
            }
        return {"answer": "plain text was not expected"}


def _requested_schema(request: dict[str, Any]) -> tuple[str | None, bool]:
    """The schema name asked for, and whether it was asked as a tool (else as response_format)."""
    tools = request.get("tools") or []
    if tools:
        return tools[0].get("function", {}).get("name"), True
    response_format = request.get("response_format") or {}
    if response_format.get("type") == "json_schema":
        return response_format.get("json_schema", {}).get("name"), False
    return None, False


def _poisoned(node: Any) -> Any:
    if isinstance(node, str):
        return f"{node}\x00\ud800"
    if isinstance(node, list):
        return [_poisoned(item) for item in node]
    if isinstance(node, dict):
        return {key: node[key] if key == "layout" else _poisoned(node[key]) for key in node}
    return node


async def _respond(
    send: _Send,
    code: int,
    payload: dict[str, Any],
    extra_headers: list[tuple[bytes, bytes]] | None = None,
) -> None:
    data = json.dumps(payload).encode()
    await send(
        {
            "type": "http.response.start",
            "status": code,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(data)).encode()),
                *(extra_headers or []),
            ],
        }
    )
    await send({"type": "http.response.body", "body": data})


async def _send_raw(send: _Send, behaviour: Raw) -> None:
    headers = [
        (b"content-type", behaviour.content_type),
        (b"content-length", str(len(behaviour.body)).encode()),
    ]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": behaviour.body})
