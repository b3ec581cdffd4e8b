"""Real ``presto-deck`` processes for the end-to-end tests.

A process starts in a session of its own (so in its own process group) with its stdout and stderr
written to files; the test waits until it answers ``/health/ready`` or writes a log line, and
stops it with SIGTERM, then SIGKILL once a timeout runs out. Stopping also proves that nothing of
the group outlived the process: a child left running after its parent exited is a bug to see.

    process = ManagedProcess.start("serve", ["serve", "--port", "8123"], env, log_dir)
    process.wait_until_ready("http://127.0.0.1:8123")
    stopped = process.stop()
    assert stopped.returncode in CLEAN_EXIT_CODES and not stopped.forced
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx

from presto_deck.worker import OVERDUE_EXIT_STATUS

#: The ``presto-deck`` script of the virtual environment the tests run in.
PRESTO_DECK = Path(sys.executable).parent / "presto-deck"

#: Exit statuses of a graceful stop: 0, or death by the re-raised SIGTERM (uvicorn re-raises the
#: signal once it has shut down, as a process should; a shell reports that as 128 + 15).
CLEAN_EXIT_CODES = frozenset({0, -signal.SIGTERM, 128 + signal.SIGTERM})

_POLL_SECONDS = 0.05


class ProcessFailed(AssertionError):
    """A process exited, or did not get ready in time, while the test needed it running."""


#: Workers that exited on their own shutdown deadline rather than by finishing it (shown in
#: pytest's summary: the cause is in the tasks they logged).
OVERDUE_SHUTDOWNS: list[str] = []


@dataclass(frozen=True)
class Stopped:
    returncode: int
    #: From the signal to the exit of the process.
    seconds: float
    #: SIGTERM was not enough: the group had to be killed.
    forced: bool


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def clean_environment(settings: Mapping[str, str]) -> dict[str, str]:
    """This process's environment without any ``PRESTO_*`` or ``OTEL_*`` variable, plus
    ``settings``."""
    env = {
        key: value for key, value in os.environ.items() if not key.startswith(("PRESTO_", "OTEL_"))
    }
    env["PYTHONUNBUFFERED"] = "1"  # log lines reach the files as they are written
    env.update(settings)
    return env


class ManagedProcess:
    """One ``presto-deck`` command running in its own process group, output captured to files."""

    def __init__(
        self, name: str, popen: subprocess.Popen[bytes], stdout_path: Path, stderr_path: Path
    ) -> None:
        self.name = name
        self.stdout_path = stdout_path
        self.stderr_path = stderr_path
        self.started_at = time.monotonic()
        #: Seconds from the start to the first good answer of ``/health/ready``, once seen.
        self.ready_after: float | None = None
        self._popen = popen

    @classmethod
    def start(
        cls, name: str, args: Sequence[str], env: Mapping[str, str], log_dir: Path
    ) -> ManagedProcess:
        """Run ``presto-deck ARGS``; ``name`` names its log files and must be unique in the dir."""
        log_dir.mkdir(parents=True, exist_ok=True)
        stdout_path, stderr_path = log_dir / f"{name}.stdout.log", log_dir / f"{name}.stderr.log"
        with stdout_path.open("xb") as stdout, stderr_path.open("xb") as stderr:
            popen = subprocess.Popen(
                [str(PRESTO_DECK), *args],
                env=dict(env),
                stdin=subprocess.DEVNULL,
                stdout=stdout,
                stderr=stderr,
                start_new_session=True,
            )
        return cls(name, popen, stdout_path, stderr_path)

    @property
    def pid(self) -> int:
        return self._popen.pid

    @property
    def returncode(self) -> int | None:
        """The exit status (negative: killed by that signal), or None while it runs."""
        return self._popen.poll()

    @property
    def running(self) -> bool:
        return self.returncode is None

    def stdout(self) -> str:
        return self.stdout_path.read_text(errors="replace")

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def output(self) -> str:
        return self.stdout() + self.stderr()

    def wait_until_ready(self, url: str, timeout: float = 60) -> float:
        """Poll ``url``/health/ready until it answers 200; returns the seconds since the start."""
        deadline = time.monotonic() + timeout
        with httpx.Client(base_url=url, timeout=2) as http:
            while True:
                self._require_running("to get ready")
                try:
                    if http.get("/health/ready").status_code == 200:
                        self.ready_after = time.monotonic() - self.started_at
                        return self.ready_after
                except httpx.TransportError:
                    pass
                self._sleep_until(deadline, f"{url}/health/ready to answer 200")

    def wait_for_log(self, pattern: str, timeout: float = 60) -> float:
        """Wait until the captured output matches the regular expression ``pattern``."""
        deadline = time.monotonic() + timeout
        regex = re.compile(pattern)
        while not regex.search(self.output()):
            self._require_running(f"to log {pattern!r}")
            self._sleep_until(deadline, f"a log line matching {pattern!r}")
        return time.monotonic() - self.started_at

    def wait_for_exit(self, timeout: float = 60) -> int:
        """The exit status; kills the process group and fails if it runs past ``timeout``."""
        try:
            return self._popen.wait(timeout)
        except subprocess.TimeoutExpired:
            self._kill_group()
            raise ProcessFailed(
                f"{self.name} was still running after {timeout}s\n{self.tail()}"
            ) from None
        finally:
            self.assert_nothing_left()

    def stop(self, timeout: float = 10) -> Stopped:
        """SIGTERM, then SIGKILL to the whole group once ``timeout`` runs out."""
        if not self.running:
            self.assert_nothing_left()
            return Stopped(self._popen.wait(), 0.0, forced=False)
        sent = time.monotonic()
        self._signal(signal.SIGTERM)
        self._signal(signal.SIGCONT)  # a paused process can only act on SIGTERM once resumed
        forced = False
        try:
            self._popen.wait(timeout)
        except subprocess.TimeoutExpired:
            forced = True
            self._kill_group()
        seconds = time.monotonic() - sent
        self.assert_nothing_left()
        returncode = self._popen.wait()
        if returncode == OVERDUE_EXIT_STATUS:
            OVERDUE_SHUTDOWNS.append(f"{self.name} after {seconds:.1f}s:\n{self.tail(60)}")
        return Stopped(returncode, seconds, forced)

    def kill(self) -> int:
        """``kill -9`` the whole group, as an out-of-memory killer or a lost VM would."""
        self._kill_group()
        self.assert_nothing_left()
        return self._popen.wait()

    def pause(self) -> None:
        """SIGSTOP: the process holds its connections but does nothing until ``resume``."""
        os.killpg(self.pid, signal.SIGSTOP)

    def resume(self) -> None:
        os.killpg(self.pid, signal.SIGCONT)

    def assert_nothing_left(self) -> None:
        """Fail, after killing them, if processes of this group outlived the process itself."""
        if self.running:
            return
        left = _live_members(self.pid)
        if left:
            self._kill_group()
            raise ProcessFailed(f"{self.name} exited but left processes running: {left}")

    def _signal(self, signum: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signum)

    def _kill_group(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pid, signal.SIGKILL)
        self._popen.wait()

    def _require_running(self, purpose: str) -> None:
        if not self.running:
            raise ProcessFailed(
                f"{self.name} exited with {self.returncode} instead of {purpose}\n{self.tail()}"
            )

    def _sleep_until(self, deadline: float, what: str) -> None:
        if time.monotonic() >= deadline:
            raise ProcessFailed(f"{self.name}: gave up waiting for {what}\n{self.tail()}")
        time.sleep(_POLL_SECONDS)

    def tail(self, lines: int = 30) -> str:
        """The last ``lines`` lines of what the process printed."""
        return "\n".join(self.output().splitlines()[-lines:])

    def __repr__(self) -> str:
        return f"<ManagedProcess {self.name} pid={self.pid} returncode={self.returncode}>"


def _live_members(group: int) -> list[int]:
    """Processes of the group that are not zombies (zombies wait for a reaper, they do not run)."""
    proc = Path("/proc")
    if not proc.is_dir():
        try:
            os.killpg(group, 0)
        except ProcessLookupError:
            return []
        return [group]
    members = []
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # Fields after the parenthesised command: state, ppid, pgrp, ...
        state, _ppid, pgrp = stat.rpartition(")")[2].split()[:3]
        if int(pgrp) == group and state != "Z":
            members.append(int(entry.name))
    return members
