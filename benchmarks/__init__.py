"""Benchmarks of the controller; each runs as a module (``python -m benchmarks.NAME --help``)."""
