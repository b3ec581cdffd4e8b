"""The sockets this process serves, so that all of them can be told at once to catch up.

Live events travel through Redis, which may lose some (a restart, a flushed stream, a dropped
Pub/Sub connection). Each socket finds such a loss by itself on its next event or heartbeat;
when the process knows that a loss happened, it makes every socket look now instead.
"""

from __future__ import annotations

from typing import Protocol


class CatchingUp(Protocol):
    def catch_up_soon(self) -> None:
        """Read what this socket may have missed from the database, without waiting."""
        ...


class LiveSockets:
    def __init__(self) -> None:
        self._sockets: set[CatchingUp] = set()

    def add(self, socket: CatchingUp) -> None:
        self._sockets.add(socket)

    def discard(self, socket: CatchingUp) -> None:
        self._sockets.discard(socket)

    def catch_up_all(self) -> int:
        """Tell every socket to catch up; how many there were."""
        for socket in list(self._sockets):
            socket.catch_up_soon()
        return len(self._sockets)
