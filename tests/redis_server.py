"""A throwaway redis-server on a free loopback port, for the tests and the benchmarks.

The tests use it through the ``redis_server`` fixture in ``conftest.py``;
``benchmarks/redis_backends.py`` imports it as ``tests.redis_server``. It talks to
the server over a plain socket, so it needs no Redis client library.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from types import TracebackType

from typing_extensions import Self

STARTUP_TIMEOUT = 10.0
STOP_TIMEOUT = 5.0


class RedisServerError(RuntimeError):
    """redis-server is missing, or did not start."""


def free_port() -> int:
    """A TCP port nobody listens on at this moment, on 127.0.0.1."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class RedisServer:
    """``redis-server`` in a temporary directory, without persistence, until ``stop()``.

    Use as a context manager: ``with RedisServer() as server: server.url``. With
    ``password``, the server requires it (``requirepass``): ``url`` then carries no
    password (a client of it is refused), ``url_for()`` builds one that does, and
    ``command()`` authenticates first.
    """

    def __init__(self, executable: str = "redis-server", *, password: str | None = None) -> None:
        found = shutil.which(executable)
        if found is None:
            raise RedisServerError(f"{executable} is not installed (apt-get install redis-server)")
        self.executable = found
        self.password = password
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None
        self.directory: tempfile.TemporaryDirectory[str] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def url_for(self, password: str, user: str = "") -> str:
        """The URL of the server with credentials: an ACL ``user``, or the default user."""
        return f"redis://{user}:{password}@127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.directory = tempfile.TemporaryDirectory(prefix="botperf-redis-")
        # The port is free when probed but may be taken before redis-server binds it.
        for _ in range(3):
            self.port = free_port()
            self.process = subprocess.Popen(
                [
                    self.executable,
                    "--port", str(self.port),
                    "--bind", "127.0.0.1",
                    "--save", "",
                    "--appendonly", "no",
                    "--daemonize", "no",
                    "--dir", self.directory.name,
                    *(["--requirepass", self.password] if self.password else []),
                ],
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
            )  # fmt: skip
            if self._wait_for_ping():
                return
        output = self._stop_process()
        self.directory.cleanup()
        raise RedisServerError(f"redis-server did not start: {output}")

    def command(self, *args: str) -> bytes:
        """Send one command; return the server's first reply line (e.g. ``b"+OK"``)."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=STOP_TIMEOUT) as sock:
            if self.password:
                authenticated = _request(sock, ("AUTH", self.password))
                if authenticated != b"+OK":
                    return authenticated
            return _request(sock, args)

    def flush(self) -> None:
        """Delete every key of every database."""
        self.command("FLUSHALL")

    def stop(self) -> None:
        self._stop_process()
        if self.directory is not None:
            self.directory.cleanup()
            self.directory = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def _wait_for_ping(self) -> bool:
        assert self.process is not None
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                return False  # exited: the port was taken, or a bad option
            try:
                # Another run's server may answer on the port ours failed to bind
                # (test runs on several Pythons at once): only ours counts, and ours
                # then exits, which the poll above sees.
                if self.command("PING") == b"+PONG" and self._answers_as_ours():
                    return True
            except OSError:
                pass
            time.sleep(0.02)
        return False

    def _answers_as_ours(self) -> bool:
        """Whether the server on ``self.port`` is the process this object started."""
        assert self.process is not None
        with socket.create_connection(("127.0.0.1", self.port), timeout=STOP_TIMEOUT) as sock:
            if self.password and _request(sock, ("AUTH", self.password)) != b"+OK":
                return False  # another run's server, with another password or none
            sock.sendall(b"*2\r\n$4\r\nINFO\r\n$6\r\nserver\r\n")
            reply = b""
            while chunk := sock.recv(4096):  # one bulk string: "$<length>\r\n<text>\r\n"
                reply += chunk
                header, _, text = reply.partition(b"\r\n")
                if header.startswith(b"$") and len(text) >= int(header[1:]) + 2:
                    break
        return f"\r\nprocess_id:{self.process.pid}\r\n".encode() in reply

    def _stop_process(self) -> str:
        process, self.process = self.process, None
        if process is None:
            return ""
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        assert process.stdout is not None
        output = process.stdout.read().decode(errors="replace")
        process.stdout.close()
        return output


def _request(sock: socket.socket, args: tuple[str, ...]) -> bytes:
    """Send one command on ``sock``; return its reply, read up to a line end."""
    request = f"*{len(args)}\r\n" + "".join(f"${len(a)}\r\n{a}\r\n" for a in args)
    sock.sendall(request.encode())
    reply = b""
    while not reply.endswith(b"\r\n"):
        chunk = sock.recv(4096)
        if not chunk:
            break
        reply += chunk
    return reply.strip()
