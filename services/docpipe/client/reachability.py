"""Reaching the backends from the CLI: fast, and one clear line when one is down.

A person at a terminal who mistyped an address, or whose database is not up,
should learn that in a few seconds, from one line that names the service and
the address -- not from thirty seconds of pool warnings and a traceback. The
CLI exits with :data:`EXIT_UNREACHABLE` then, distinct from "some documents
failed" (1) and from a usage or configuration error (2), so scripts can tell
"try again later" from "fix the input".
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack, asynccontextmanager, contextmanager
from typing import TYPE_CHECKING

from docpipe.config import Settings

if TYPE_CHECKING:
    from temporalio.client import Client

    from docpipe.storage.metadata import MetadataStore
    from docpipe.storage.vectors import VectorStore

EXIT_UNREACHABLE = 3
"""Exit status when a service (Temporal, PostgreSQL, Chroma) could not be reached."""
CONNECT_TIMEOUT_S = 5.0


class ServiceUnreachable(Exception):
    """A backend did not answer; the message is one line a person can act on."""


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return text[0][:300] if text else type(err).__name__


async def connect_temporal(settings: Settings, timeout_s: float = CONNECT_TIMEOUT_S) -> Client:
    """The Temporal client, or :class:`ServiceUnreachable` within ``timeout_s``."""
    target = settings.temporal_connection()
    where = f"Temporal at {target.address} (namespace {target.namespace})"
    try:
        async with asyncio.timeout(timeout_s):
            return await target.connect()
    except TimeoutError:
        raise ServiceUnreachable(
            f"cannot reach {where}: no answer within {timeout_s:g} s"
        ) from None
    except RuntimeError as err:  # the SDK's "Failed client connect: ..."
        reason = _first_line(err).removeprefix("Failed client connect: ")
        raise ServiceUnreachable(f"cannot reach {where}: {_short(reason)}") from None


_GRPC_MESSAGE = re.compile(r'message: "([^"]*)"')
_KNOWN_REASONS = (
    "connection refused",
    "timed out",
    "no route to host",
    "name or service not known",
    "failed to lookup address",
    "certificate",
    "unauthenticated",
    "permission denied",
)


def _short(reason: str) -> str:
    """The transport's long error chain, reduced to what it says (refused, timed out...)."""
    lowered = reason.lower()
    known = next((k for k in _KNOWN_REASONS if k in lowered), None)
    if known is not None:
        return known
    message = _GRPC_MESSAGE.search(reason)  # tonic's Status { code, message: "..." }
    return message.group(1) if message else reason


@contextmanager
def _quiet(logger_name: str) -> Iterator[None]:
    """Silence a library's retry warnings while we wait: the outcome is reported once."""
    logger = logging.getLogger(logger_name)
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        logger.setLevel(level)


@asynccontextmanager
async def open_metadata(
    settings: Settings, timeout_s: float = CONNECT_TIMEOUT_S
) -> AsyncIterator[MetadataStore]:
    """The metadata store, or :class:`ServiceUnreachable` within ``timeout_s``."""
    from psycopg import AsyncConnection, OperationalError
    from psycopg_pool import PoolTimeout

    from docpipe.storage.metadata import MetadataStore

    where = (
        f"PostgreSQL at {settings.metadata_db_host}:{settings.metadata_db_port}"
        f"/{settings.metadata_db_name}"
    )
    # One plain connection first: its error says why (refused, no such host, bad
    # password); a pool that cannot connect only says that it timed out.
    try:
        probe = await AsyncConnection.connect(
            settings.metadata_db_conninfo, connect_timeout=max(1, round(timeout_s))
        )
    except OperationalError as err:
        raise ServiceUnreachable(f"cannot reach {where}: {_short(_first_line(err))}") from None
    await probe.close()
    async with AsyncExitStack() as stack:
        try:
            with _quiet("psycopg.pool"):
                store = await stack.enter_async_context(
                    MetadataStore.open(settings, open_timeout_s=timeout_s)
                )
        except PoolTimeout:
            raise ServiceUnreachable(
                f"cannot reach {where}: no connection within {timeout_s:g} s"
            ) from None
        except OperationalError as err:
            raise ServiceUnreachable(f"cannot reach {where}: {_first_line(err)}") from None
        yield store


@asynccontextmanager
async def open_vectors(
    settings: Settings, timeout_s: float = CONNECT_TIMEOUT_S
) -> AsyncIterator[VectorStore]:
    """The vector store, or :class:`ServiceUnreachable` within ``timeout_s``; a server
    that refuses the credentials raises ``VectorDbCredentialsRefused`` (a ConfigError:
    the CLI's one line and status 2, since waiting cannot fix it)."""
    from docpipe.storage.vectors import VectorDbCredentialsRefused, VectorStore

    where = f"Chroma at {settings.vector_db_url}"
    async with AsyncExitStack() as stack:
        try:
            async with asyncio.timeout(timeout_s):
                store = await stack.enter_async_context(VectorStore.open(settings))
        except TimeoutError:
            raise ServiceUnreachable(
                f"cannot reach {where}: no answer within {timeout_s:g} s"
            ) from None
        except VectorDbCredentialsRefused:
            raise
        except Exception as err:  # chromadb wraps transport errors in its own types
            raise ServiceUnreachable(f"cannot reach {where}: {_first_line(err)}") from None
        yield store
