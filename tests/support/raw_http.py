"""Talking to the API over a bare TCP connection, byte by byte, as an abusive client would: what
httpx and websockets refuse to send (oversized or unfinished request heads) or never do (stop
reading)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from urllib.parse import urlsplit


def address(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    assert parts.hostname is not None, url
    assert parts.port is not None, url
    return parts.hostname, parts.port


def request_head(path: str, size: int, *, headers: str = "", method: str = "GET") -> bytes:
    """A request head (request line, headers, blank line) of exactly ``size`` bytes.

    ``headers`` are extra header lines, each ending in CRLF; a padding header fills the rest.
    """
    start = f"{method} {path} HTTP/1.1\r\nHost: test\r\n{headers}X-Padding: "
    end = "\r\n\r\n"
    padding = size - len(start) - len(end)
    assert padding >= 0, f"a head of {size} bytes cannot hold these headers"
    return (start + "a" * padding + end).encode()


@contextlib.asynccontextmanager
async def connection(
    url: str,
) -> AsyncIterator[tuple[asyncio.StreamReader, asyncio.StreamWriter]]:
    reader, writer = await asyncio.open_connection(*address(url))
    try:
        yield reader, writer
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


async def read_until_closed(reader: asyncio.StreamReader, timeout: float = 10) -> bytes:
    """Everything the server sends until it closes the connection (a reset counts as closed)."""
    received = bytearray()
    async with asyncio.timeout(timeout):
        try:
            while chunk := await reader.read(65536):
                received += chunk
        except ConnectionResetError:
            pass
    return bytes(received)


async def read_response(reader: asyncio.StreamReader, timeout: float = 10) -> tuple[int, bytes]:
    """One response with a Content-Length body: its status and body."""
    async with asyncio.timeout(timeout):
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        length = next(
            int(line.partition(":")[2])
            for line in lines
            if line.lower().startswith("content-length:")
        )
        return int(lines[0].split()[1]), await reader.readexactly(length)


def status_of(answer: bytes) -> int | None:
    """The status code of the response at the start of ``answer``, or None if there is none."""
    if not answer.startswith(b"HTTP/1.1 "):
        return None
    return int(answer.split(b" ", 2)[1])


def body_of(answer: bytes) -> bytes:
    return answer.partition(b"\r\n\r\n")[2]
