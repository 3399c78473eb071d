"""engage's benchmarks: each module prints its figures; run them with ``python -m benchmarks.NAME``."""
