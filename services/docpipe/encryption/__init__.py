"""Encrypted Temporal payloads: what the server stores of docpipe's data is ciphertext.

Document titles, sources, summaries and failure reasons travel through
Temporal's history as workflow and activity payloads. With payload keys
configured, every client docpipe builds encrypts them (AES-256-GCM) before
they leave the process and decrypts them on the way back; a codec server
lets the Temporal UI and CLI show them to people holding its token.

keyring.py       parse and validate the keys (pure; no crypto, no Temporal)
codec.py         the PayloadCodec: seal and open one payload
converter.py     the one function that builds a client's DataConverter
codec_server.py  Temporal's remote codec protocol over HTTP (aiohttp)
"""
