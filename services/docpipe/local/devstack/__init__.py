"""The embedded local stack: real servers as child processes, no Docker.

One module a concern: ``ports`` (ports that stay free), ``process`` (a server
as a child process we own), ``users`` (an unprivileged OS user when we are
root), ``postgres`` and ``servers`` (the four servers), ``stack`` (starting,
stopping and restarting them together).
"""

from docpipe.local.devstack.ports import free_port
from docpipe.local.devstack.postgres import PostgresServer
from docpipe.local.devstack.process import ManagedProcess, ServerStartError, find_executable
from docpipe.local.devstack.servers import ChromaServer, MotoS3Server, TemporalServer
from docpipe.local.devstack.stack import DevStack

__all__ = [
    "ChromaServer",
    "DevStack",
    "ManagedProcess",
    "MotoS3Server",
    "PostgresServer",
    "ServerStartError",
    "TemporalServer",
    "find_executable",
    "free_port",
]
