"""A worker told to stop is gone within its deadline, whatever its shutdown waits on."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time

from presto_deck.worker import OVERDUE_EXIT_STATUS

# A worker whose shutdown never finishes: the loop is stuck in a call that ignores cancellation.
_STUCK_WORKER = textwrap.dedent(
    """
    import asyncio, signal, time
    from presto_deck.bootstrap import Role, build_container
    from presto_deck.settings import Settings
    from presto_deck.worker import DeckWorker

    async def main():
        settings = Settings(database_url="postgresql://nowhere/x", redis_url="redis://127.0.0.1:1/0")
        container = build_container(settings, Role.WORKER)
        worker = DeckWorker(container, handle_signals=False)
        worker.exit_within(0.5)
        worker.arq.on_stop(signal.SIGTERM)
        await asyncio.sleep(0)
        time.sleep(30)

    asyncio.run(main())
    """
)


def test_a_worker_whose_shutdown_hangs_exits_at_its_deadline_saying_what_hung() -> None:
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-c", _STUCK_WORKER], capture_output=True, text=True, timeout=20
    )
    assert done.returncode == OVERDUE_EXIT_STATUS, done.stderr
    assert time.monotonic() - started < 15
    output = done.stdout + done.stderr
    assert "shutdown not done after 0.5s" in output
    assert "Stack for <Task" in output  # what each task waits on
    assert "line 14 in main" in output  # the stuck call, in the threads' stacks
