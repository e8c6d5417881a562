"""The embedded local stack: real servers as child processes, no Docker."""

from docpipe.local.devstack.stack import (
    DevStack,
    ManagedProcess,
    MotoS3Server,
    ServerStartError,
    TemporalServer,
    find_executable,
    free_port,
)

__all__ = [
    "DevStack",
    "ManagedProcess",
    "MotoS3Server",
    "ServerStartError",
    "TemporalServer",
    "find_executable",
    "free_port",
]
