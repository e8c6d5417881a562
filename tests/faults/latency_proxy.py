"""A TCP proxy in front of a server, with added latency and switchable outages.

Why a proxy for S3: moto keeps its objects in memory, so stopping the real
process would also lose every object written before the outage, which no real
S3 (MinIO, AWS, Ceph) does. Cutting the network path instead is what a client
sees when a persistent object store restarts: open connections reset, new
ones refused, until it is back with its data intact.

The latency (each chunk from the server delivered ``latency_s`` after it
arrived, chunks not delayed cumulatively) stands for slow storage: it widens
each activity's window so that a test can kill a worker while its activity is
certainly in flight.

The proxy runs its own event loop in a thread, so it keeps forwarding while
the test's loop is blocked or busy.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import threading
import time
from collections.abc import Coroutine
from typing import Any

from docpipe.local.devstack import free_port

_CHUNK = 64 * 1024


class LatencyProxy:
    """127.0.0.1:<port> -> 127.0.0.1:<target_port>; ``latency_s`` and ``cut``/``restore``."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.latency_s = 0.0
        self.port = free_port()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # ------------------------------------------------------------ control

    def start(self) -> LatencyProxy:
        self._thread.start()
        self._call(self._listen())
        return self

    def stop(self) -> None:
        self._call(self._close())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)

    def cut(self) -> None:
        """The server is gone: reset every open connection and refuse new ones."""
        self._call(self._close())

    def restore(self) -> None:
        """The server is back on the same address."""
        self._call(self._listen())

    def _call(self, coro: Coroutine[Any, Any, None]) -> None:
        asyncio.run_coroutine_threadsafe(coro, self._loop).result(10)

    async def _listen(self) -> None:
        if self._server is None:
            self._server = await asyncio.start_server(
                self._accept, "127.0.0.1", self.port, reuse_address=True
            )

    async def _close(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.close()
        for writer in list(self._writers):
            _reset(writer)
        self._writers.clear()
        if server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(server.wait_closed(), 2)

    # ------------------------------------------------------------ forwarding

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            _reset(writer)
            return
        self._writers.update((writer, up_writer))
        try:
            await asyncio.gather(
                self._pump(reader, up_writer, delayed=False),
                self._pump(up_reader, writer, delayed=True),
            )
        finally:
            for w in (writer, up_writer):
                self._writers.discard(w)
                w.close()

    async def _pump(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, delayed: bool
    ) -> None:
        """Copy one direction; the server's replies arrive ``latency_s`` late."""
        queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

        async def deliver() -> None:
            while True:
                arrived, data = await queue.get()
                if not data:
                    with contextlib.suppress(OSError):
                        writer.write_eof()
                    return
                if delayed and self.latency_s:
                    await asyncio.sleep(max(0.0, arrived + self.latency_s - time.monotonic()))
                writer.write(data)
                await writer.drain()

        sender = asyncio.create_task(deliver())
        try:
            while True:
                data = await reader.read(_CHUNK)
                await queue.put((time.monotonic(), data))
                if not data:
                    break
            await sender
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            sender.cancel()
            with contextlib.suppress(asyncio.CancelledError, OSError):
                await sender

    def __enter__(self) -> LatencyProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close with RST (SO_LINGER 0), as a crashed server's kernel would."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.close()
