"""`docpipe worker` and `docpipe codec-server`: the long-running processes the images run."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

import typer

from docpipe.client.cli.root import cli_settings, err_console


class WorkerKind(StrEnum):
    workflow = "workflow"
    cpu = "cpu"
    gpu = "gpu"
    io = "io"


def worker(kind: Annotated[WorkerKind, typer.Argument(help="Which worker to run")]) -> None:
    """Run one worker (what each image runs).

    Polls its task queue until SIGTERM or SIGINT, then finishes what it holds."""
    import importlib

    module = importlib.import_module(f"docpipe.workers.{kind.value}")
    module.main()


def codec_server(
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8081,
    host: Annotated[
        str, typer.Option(help="Address to listen on (0.0.0.0 in a container).")
    ] = "127.0.0.1",
    cors_origin: Annotated[
        list[str] | None,
        typer.Option(
            "--cors-origin",
            help="Origin of a Temporal UI allowed to call it from a browser, e.g. "
            "http://localhost:8233 (repeatable).",
        ),
    ] = None,
) -> None:
    """Decode payloads for the Temporal UI and CLI.

    Temporal's remote codec protocol, with PAYLOAD_ENCRYPTION_KEYS; requests must
    carry CODEC_SERVER_TOKEN when it is set."""
    from docpipe.encryption.codec import EncryptionCodec
    from docpipe.encryption.codec_server import CodecServerConfig, serve
    from docpipe.workers.common import configure_logging

    settings = cli_settings()
    keyring = settings.payload_keyring()
    if keyring is None:
        err_console.print(
            "[red]PAYLOAD_ENCRYPTION_KEYS (or PAYLOAD_ENCRYPTION_KEYS_FILE) is not set: "
            "there are no keys to decode with[/red]"
        )
        raise typer.Exit(2)
    configure_logging(settings.log_level)
    token = settings.codec_server_token
    config = CodecServerConfig(
        namespace=settings.temporal_connection().namespace,
        cors_origins=frozenset(origin.rstrip("/") for origin in cors_origin or ()),
        token=token.get_secret_value() if token is not None else None,
    )
    serve(EncryptionCodec(keyring), config, host, port)
