"""Model inference: models load once per process, batched, placed on GPUs (CPU fallback)."""
