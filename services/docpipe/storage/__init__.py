"""Where docpipe keeps its data: objects (S3 or a directory), metadata rows
(PostgreSQL) and chunk vectors (ChromaDB).

Only the object store is re-exported here: every worker type needs it, while
``docpipe.storage.metadata`` (psycopg) and ``docpipe.storage.vectors``
(chromadb) pull in client libraries that only the IO worker's image installs.
"""

from docpipe.storage.objects import (
    InvalidKey,
    LocalObjectStore,
    ObjectNotFound,
    ObjectStore,
    S3ObjectStore,
    open_object_store,
)

__all__ = [
    "InvalidKey",
    "LocalObjectStore",
    "ObjectNotFound",
    "ObjectStore",
    "S3ObjectStore",
    "open_object_store",
]
