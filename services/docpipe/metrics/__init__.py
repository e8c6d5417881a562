"""Prometheus metrics of docpipe's workers (prometheus-client, ``docpipe_`` prefix)."""
