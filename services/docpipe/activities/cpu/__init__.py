"""Pure-CPU text steps: sync, side-effect free functions run in a process pool.

Nothing here touches the network or the object store, so every step is
testable without servers; inputs and outputs are builtins or plain dataclasses
so they cross the process-pool boundary by pickling.
"""
