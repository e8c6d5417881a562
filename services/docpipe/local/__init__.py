"""The local stack: the whole pipeline on one machine (`docpipe run`, tests, benches).

Real servers as child processes (``docpipe.local.devstack``), the four workers
started as their containers would run them (``docpipe.local.workers``), and a
supervisor that restarts a worker that dies (``docpipe.local.supervisor``).
Needs the ``[local]`` extra; nothing in the workers or the operator imports it.
"""
