"""One entry point per worker type: workflow, cpu, gpu, io."""
