"""Activities, grouped by the resource they need: ``cpu``, ``gpu`` and ``io``."""
