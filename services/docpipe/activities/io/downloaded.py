"""What a fetch of a document's source gives back, whatever the source kind."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Downloaded:
    data: bytes
    content_type: str
    """The Content-Type header as sent (may be ""); for files, guessed from the name."""
    final_url: str
    """Where the bytes came from after redirects (a file:// URL for local files)."""
    filename: str
    """From Content-Disposition, else the last path segment; may be ""."""
