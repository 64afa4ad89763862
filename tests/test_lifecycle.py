"""The proxy process under stress: draining on SIGTERM, and huge uploads refused cheaply."""

from __future__ import annotations

import asyncio
import resource
import signal
from pathlib import Path

import aiohttp
from aiohttp import web
from aiohttp.test_utils import TestServer

from proxy.emulator import EmulatorConfig, create_emulator_app
from tests.conftest import ORDERS_TEST_CASE_200, ServerFactory, emulator_state, url_of
from tests.support.moto_sts import free_port
from tests.test_cli_e2e import SCRIPT, lwa_environment, wait_healthy

MIB = 1024 * 1024


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


async def start_proxy_process(
    tmp_path: Path,
    emulator: TestServer,
    upstream: str,
    drain_s: float = 5,
    workers: int = 1,
    *,
    listen: str = "",
    upstream_extra: str = "",
    nofile: int | None = None,
) -> tuple[asyncio.subprocess.Process, int]:
    """`listen` and `upstream_extra` are more flow-mapping entries, each starting with ", "."""
    base = url_of(emulator)
    port = free_port()
    config = tmp_path / "proxy.yaml"
    config.write_text(
        f"listen: {{port: {port}, drain_timeout_s: {drain_s}, workers: {workers}{listen}}}\n"
        f"upstream: {{endpoint: '{upstream}'{upstream_extra}}}\n"
        f"lwa: {{token_url: '{base}/auth/o2/token'}}\n"
    )

    def limit_descriptors() -> None:
        if nofile is not None:
            resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))

    process = await asyncio.create_subprocess_exec(
        SCRIPT,
        "run",
        "--config",
        str(config),
        env=lwa_environment(EmulatorConfig()),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        preexec_fn=limit_descriptors,
    )
    await wait_healthy(port, process)
    return process, port


async def test_sigterm_lets_in_flight_requests_finish_then_exits_0(
    aiohttp_server: ServerFactory, emulator: TestServer, tmp_path: Path
) -> None:
    async def slow(request: web.Request) -> web.Response:
        await asyncio.sleep(1.0)
        return web.Response(text="finished", headers={"x-amzn-RequestId": "drained"})

    app = web.Application()
    app.router.add_get("/slow", slow)
    upstream = await aiohttp_server(app)
    process, port = await start_proxy_process(tmp_path, emulator, url_of(upstream))

    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /slow HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    await writer.drain()
    await asyncio.sleep(0.3)
    process.send_signal(signal.SIGTERM)
    answer = await asyncio.wait_for(reader.read(), timeout=10)
    writer.close()
    output, _ = await asyncio.wait_for(process.communicate(), timeout=15)

    assert answer.startswith(b"HTTP/1.1 200"), answer
    assert answer.endswith(b"finished")
    assert process.returncode == 0, output.decode()


async def upload(port: int, headers: bytes, total: int, chunked: bool) -> bytes:
    """Streams `total` bytes, stopping quietly when the proxy hangs up; returns its answer."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(headers)
    block = b"z" * (256 * 1024)
    try:
        for _ in range(total // len(block)):
            writer.write(b"%x\r\n%s\r\n" % (len(block), block) if chunked else block)
            await writer.drain()
        if chunked:
            writer.write(b"0\r\n\r\n")
            await writer.drain()
    except ConnectionError:
        pass  # refused early: what we want
    answer = await asyncio.wait_for(reader.read(), timeout=10)
    writer.close()
    return answer


async def test_64_mib_uploads_are_refused_without_buffering_them(
    emulator: TestServer, tmp_path: Path
) -> None:
    process, port = await start_proxy_process(tmp_path, emulator, url_of(emulator))
    try:
        before = rss_bytes(process.pid)
        declared = (
            b"POST /feeds/2021-06-30/documents HTTP/1.1\r\nHost: x\r\n"
            b"Content-Length: %d\r\n\r\n" % (64 * MIB)
        )
        answer = await upload(port, declared, 64 * MIB, chunked=False)
        assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
        assert b"RequestTooLarge" in answer

        chunked = (
            b"POST /feeds/2021-06-30/documents HTTP/1.1\r\nHost: x\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n"
        )
        answer = await upload(port, chunked, 64 * MIB, chunked=True)
        assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
        growth = rss_bytes(process.pid) - before
        print(f"proxy RSS growth after two refused 64 MiB uploads: {growth / MIB:.1f} MiB")
        assert growth < 16 * MIB
    finally:
        process.send_signal(signal.SIGTERM)
        await asyncio.wait_for(process.communicate(), timeout=15)


async def test_two_workers_share_the_port_and_stop_together(
    aiohttp_server: ServerFactory, tmp_path: Path
) -> None:
    emulator = await aiohttp_server(
        create_emulator_app(EmulatorConfig(rate_per_s=1000, burst=1000))
    )
    base = url_of(emulator)
    process, port = await start_proxy_process(tmp_path, emulator, base, workers=2)
    try:
        async with aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(force_close=True)
        ) as session:
            # New connections, spread by the kernel over the workers listening. On a busy machine
            # the second worker may bind a moment after the first answered its health check, so
            # keep going (within a bound) until both have served.
            for sent in range(600):
                async with session.get(
                    f"http://127.0.0.1:{port}{ORDERS_TEST_CASE_200}"
                ) as response:
                    assert response.status == 200
                if sent >= 60 and emulator_state(emulator).lwa_calls["refresh_token"] >= 2:
                    break
    finally:
        process.send_signal(signal.SIGTERM)
        output, _ = await asyncio.wait_for(process.communicate(), timeout=20)
    assert process.returncode == 0, output.decode()
    # each worker fetched its own token: both served requests
    assert emulator_state(emulator).lwa_calls["refresh_token"] == 2
    assert output.decode().count("worker ") >= 2
