"""The client side: what a person or a program runs against a pipeline.

The `docpipe` CLI (``docpipe.client.cli``), the starter that admits a CSV's
batches as the workers drain them, server-side ingestion, the dead letter's
re-drive, and how each reaches Temporal and the stores. Workers and the
operator never import this package.
"""
