"""A TCP forwarder tests put between a client and a server.

It can stand for a server that is down (``target=None``: every connection is
closed at once, as by a server not yet up) and bring it back by naming a
target, without the client's configuration changing; with an ``ssl`` context
it terminates TLS in front of a plain server (Temporal's dev server over mTLS).
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl as ssl_module


class Forwarder:
    """Listens on 127.0.0.1; forwards to ``target`` (host:port) or, while None, hangs up."""

    def __init__(self, target: str | None = None, *, ssl: ssl_module.SSLContext | None = None):
        self.target = target
        self.ssl = ssl
        self.accepted = 0
        """Connections accepted (with TLS: whose handshake succeeded)."""
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def address(self) -> str:
        assert self._server is not None
        host, port = self._server.sockets[0].getsockname()[:2]
        return f"{host}:{port}"

    async def __aenter__(self) -> Forwarder:
        self._server = await asyncio.start_server(
            self._accept,
            "127.0.0.1",
            0,
            ssl=self.ssl,
            ssl_handshake_timeout=10 if self.ssl else None,
        )
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._server.wait_closed(), 2)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self.accepted += 1
        try:
            if self.target is None:
                return
            host, _, port = self.target.rpartition(":")
            up_reader, up_writer = await asyncio.open_connection(host, int(port))
            try:
                await asyncio.gather(pump(reader, up_writer), pump(up_reader, writer))
            finally:
                up_writer.close()
        except (OSError, asyncio.CancelledError):
            pass  # upstream gone, or the proxy is closing: just hang up
        finally:
            writer.close()
            self._tasks.discard(task)


async def pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Copy one direction until end of stream, then pass the end on."""
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, ssl_module.SSLError, asyncio.CancelledError):
        pass
    finally:
        with contextlib.suppress(Exception):
            writer.write_eof()
