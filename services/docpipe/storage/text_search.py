"""PostgreSQL full-text search settings: which dictionary a document's language uses.

PostgreSQL ships snowball stemmers for these languages; any other language is
indexed word by word ('simple'), which still finds exact words.
"""

from __future__ import annotations

SIMPLE = "simple"

_CONFIGS = {
    "ar": "arabic",
    "ca": "catalan",
    "da": "danish",
    "de": "german",
    "el": "greek",
    "en": "english",
    "es": "spanish",
    "eu": "basque",
    "fi": "finnish",
    "fr": "french",
    "ga": "irish",
    "hi": "hindi",
    "hu": "hungarian",
    "hy": "armenian",
    "id": "indonesian",
    "it": "italian",
    "lt": "lithuanian",
    "ne": "nepali",
    "nl": "dutch",
    "no": "norwegian",
    "pt": "portuguese",
    "ro": "romanian",
    "ru": "russian",
    "sr": "serbian",
    "sv": "swedish",
    "ta": "tamil",
    "tr": "turkish",
    "yi": "yiddish",
}


def text_search_config(language: str | None) -> str:
    """The regconfig for an ISO 639-1 language code; 'simple' when unknown."""
    return _CONFIGS.get((language or "").strip().lower(), SIMPLE)
