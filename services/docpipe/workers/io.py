"""IO worker: network and storage steps on the IO queue.

Everything here waits on the network, so activities are async and up to
MAX_CONCURRENT_IO_ACTIVITIES run at once in one event loop, sharing one HTTP
client, one S3 client, one PostgreSQL pool and one Chroma client. The database
schema is migrated before polling starts (safe with many workers at once).
"""

from __future__ import annotations

from contextlib import AsyncExitStack

from docpipe.activities.io.activities import IoActivities
from docpipe.activities.io.download import make_http_client
from docpipe.config import Settings
from docpipe.storage.metadata import open_metadata_store
from docpipe.storage.objects import open_object_store
from docpipe.storage.vectors import open_vector_store
from docpipe.workers.activity_worker import poll_activities
from docpipe.workers.common import connect, make_runtime, run_worker


async def serve(settings: Settings) -> None:
    client = await connect(settings, make_runtime(settings))
    async with AsyncExitStack() as stack:
        http = await stack.enter_async_context(make_http_client(settings))
        store = await stack.enter_async_context(open_object_store(settings))
        await store.ensure_bucket()
        metadata = await stack.enter_async_context(open_metadata_store(settings))
        await metadata.migrate()
        vectors = await stack.enter_async_context(open_vector_store(settings))
        activities = IoActivities(settings, http, store, metadata, vectors)
        # The HTTP, S3, PostgreSQL and Chroma clients serve every Worker of the process.
        served = [
            activities.download_document,
            activities.store_vector_embeddings,
            activities.store_metadata,
            activities.parse_csv,
            activities.call_external_api,
            activities.query_metadata_database,
        ]
        await poll_activities(settings, client, "io", served, settings.max_concurrent_io_activities)


def main() -> None:
    run_worker("io", serve)


if __name__ == "__main__":
    main()
