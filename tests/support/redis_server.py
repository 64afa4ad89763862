"""A real redis-server on a free port, which a test can stop, restart, pause and flush.

A machine without redis-server skips the tests that need one, saying how to install it; CI
(the CI environment variable set) fails them instead, so a broken CI image can't pass by
skipping.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from tests.support.moto_sts import free_port

INSTALL_HINT = "redis-server is not installed: apt-get install redis-server"
START_TIMEOUT_S = 10.0


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def redis_server_binary() -> str:
    binary = shutil.which("redis-server")
    if binary is None:
        if in_ci():
            pytest.fail(f"{INSTALL_HINT} (CI never skips the shared-state tests)")
        pytest.skip(INSTALL_HINT)
    return binary


class RedisServer:
    """One redis-server process: no persistence, loopback only, a password if given."""

    def __init__(self, binary: str, directory: str, password: str = "") -> None:
        self.binary = binary
        self.directory = directory
        self.password = password
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        credentials = f":{self.password}@" if self.password else ""
        return f"redis://{credentials}127.0.0.1:{self.port}/0"

    def start(self) -> None:
        assert self.process is None, "already running"
        self.process = subprocess.Popen(
            [
                self.binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                self.directory,
                *(("--requirepass", self.password) if self.password else ()),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + START_TIMEOUT_S
        while self.command(b"PING") != b"+PONG\r\n":
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"redis-server did not start on port {self.port}")
            time.sleep(0.02)

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is None:
            return
        process.send_signal(signal.SIGCONT)  # a paused server can't act on SIGTERM
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def restart(self) -> None:
        self.stop()
        self.start()

    def pause(self) -> None:
        """SIGSTOP: the port still accepts connections, nothing answers (a hung Redis)."""
        assert self.process is not None
        self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGCONT)

    def flush(self) -> None:
        """FLUSHALL and SCRIPT FLUSH: keys and loaded scripts gone, as after a failover."""
        assert self.command(b"FLUSHALL") == b"+OK\r\n"
        assert self.command(b"SCRIPT", b"FLUSH") == b"+OK\r\n"

    def command(self, *words: bytes) -> bytes:
        """One command over a fresh socket; its raw reply, or b"" when nothing answers."""
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=2) as connection:
                if self.password:
                    connection.sendall(encoded(b"AUTH", self.password.encode()))
                    connection.recv(64)
                connection.sendall(encoded(*words))
                return connection.recv(65536)
        except OSError:
            return b""


def encoded(*words: bytes) -> bytes:
    """A command as RESP, the way a client sends it."""
    return b"*%d\r\n" % len(words) + b"".join(
        b"$%d\r\n%s\r\n" % (len(word), word) for word in words
    )


# The password of the servers tests get for themselves: a log line or error body that quotes
# shared_state.redis_url would show it.
REDIS_PASSWORD = "redis-pass-never-logged"


@contextmanager
def running_redis(password: str = "") -> Iterator[RedisServer]:
    binary = redis_server_binary()
    with tempfile.TemporaryDirectory(prefix="spapi-proxy-redis-") as directory:
        server = RedisServer(binary, directory, password)
        server.start()
        try:
            yield server
        finally:
            server.stop()
