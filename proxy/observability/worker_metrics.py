"""Exact totals with `listen.workers: N`: a scrape reaches one worker, which asks every other
worker for a snapshot of its metrics over a Unix socket and answers with the sum.

Why not prometheus_client's multiprocess mode: it keeps every sample in memory-mapped files
updated under a lock on each change (the per-request cost the plain counts avoid), supports
neither custom collectors nor the process_* metrics, and needs its directory wiped between
runs. Here a request costs nothing more; the work is done at scrape time, at most once per
worker per scrape. A worker that died takes its counts with it (as its process_* go too).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
from pathlib import Path

from proxy.observability.metrics import ProxyMetrics, Snapshot

logger = logging.getLogger(__name__)

SOCKET_SUFFIX = ".metrics.sock"
# A sibling busy with requests still answers within milliseconds: its event loop serves the
# snapshot between two requests. One that doesn't answer in this time is left out, with a
# warning, rather than stalling the scrape.
SIBLING_TIMEOUT_S = 2.0


class WorkerMetrics:
    """This worker's snapshot served on `<directory>/<pid>.metrics.sock`, and the other
    workers' gathered from theirs."""

    def __init__(self, directory: str, metrics: ProxyMetrics) -> None:
        self._directory = Path(directory)
        self._metrics = metrics
        self._path = self._directory / f"{os.getpid()}{SOCKET_SUFFIX}"
        self._server: asyncio.AbstractServer | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_unix_server(self._answer, path=str(self._path))

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        with contextlib.suppress(FileNotFoundError):
            self._path.unlink()

    async def _answer(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            writer.write(json.dumps(self._metrics.snapshot()).encode())
            await writer.drain()
        finally:
            writer.close()

    async def siblings(self) -> list[Snapshot]:
        """Every other live worker's snapshot."""
        paths = [path for path in self._directory.glob(f"*{SOCKET_SUFFIX}") if path != self._path]
        answers = await asyncio.gather(*(self._ask(path) for path in paths))
        return [answer for answer in answers if answer is not None]

    async def _ask(self, path: Path) -> Snapshot | None:
        try:
            async with asyncio.timeout(SIBLING_TIMEOUT_S):
                reader, writer = await asyncio.open_unix_connection(str(path))
                try:
                    data = await reader.read()  # the sibling closes after its snapshot
                finally:
                    writer.close()
            snapshot: Snapshot = json.loads(data)
            return snapshot
        except (ConnectionRefusedError, FileNotFoundError):
            return None  # a worker that has exited: its socket file outlived it
        except (OSError, TimeoutError, ValueError) as error:
            logger.warning(
                "worker metrics: %s did not answer (%s); this scrape leaves it out",
                path.name,
                type(error).__name__,
            )
            return None
