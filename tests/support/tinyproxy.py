"""A real forward proxy for the egress tests: Debian's tinyproxy on a free loopback port.

A machine without tinyproxy skips the tests that need one, saying how to install it; CI (the
CI environment variable set) fails them instead, so a broken CI image can't pass by skipping.
Its log file is how a test tells the traffic went through it (on one machine the origin sees
127.0.0.1 either way).
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.support.moto_sts import free_port
from tests.support.redis_server import in_ci

INSTALL_HINT = "tinyproxy is not installed: apt-get install tinyproxy"
START_TIMEOUT_S = 10.0


def tinyproxy_binary() -> str:
    binary = shutil.which("tinyproxy")
    if binary is None:
        if in_ci():
            pytest.fail(f"{INSTALL_HINT} (CI never skips the egress proxy tests)")
        pytest.skip(INSTALL_HINT)
    return binary


class Tinyproxy:
    """One tinyproxy in the foreground: loopback only, CONNECT allowed to `connect_ports`
    only (any other port gets its 403; none listed: every port), Basic credentials required
    when given."""

    def __init__(self, directory: Path, connect_ports: tuple[int, ...], credentials: str) -> None:
        self.port = free_port()
        self.log_file = directory / f"tinyproxy-{self.port}.log"
        lines = [
            f"Port {self.port}",
            "Listen 127.0.0.1",
            "Allow 127.0.0.1",
            "MaxClients 50",
            "Timeout 30",
            f'LogFile "{self.log_file}"',
            "LogLevel Connect",
            *(f"ConnectPort {port}" for port in connect_ports),
        ]
        if credentials:
            user, _, password = credentials.partition(":")
            lines.append(f"BasicAuth {user} {password}")
        self.config_file = directory / f"tinyproxy-{self.port}.conf"
        self.config_file.write_text("\n".join(lines) + "\n")
        self.process: subprocess.Popen[bytes] | None = None

    def url(self, credentials: str = "") -> str:
        return f"http://{credentials + '@' if credentials else ''}127.0.0.1:{self.port}"

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, binary: str) -> None:
        self.process = subprocess.Popen(
            [binary, "-d", "-c", str(self.config_file)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return
            except OSError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"tinyproxy did not start on port {self.port}") from None
                time.sleep(0.02)

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
            self.process = None

    def log(self) -> str:
        return self.log_file.read_text() if self.log_file.exists() else ""

    def requests(self) -> list[str]:
        """The request lines tinyproxy logged ("CONNECT host:port HTTP/1.1", "GET http://…")."""
        marker = "Request (file descriptor"
        return [
            line.split("): ", 1)[1]
            for line in self.log().splitlines()
            if marker in line and "): " in line
        ]


@contextmanager
def running_tinyproxy(
    directory: Path, connect_ports: tuple[int, ...] = (), credentials: str = ""
) -> Iterator[Tinyproxy]:
    binary = tinyproxy_binary()
    proxy = Tinyproxy(directory, connect_ports, credentials)
    proxy.start(binary)
    try:
        yield proxy
    finally:
        proxy.stop()
