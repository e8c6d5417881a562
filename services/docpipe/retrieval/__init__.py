"""The read path: find what docpipe ingested (``docpipe search``/``show``/``serve``)."""
