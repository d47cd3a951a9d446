"""Tests against a real Prometheus: the adapter, the built-in queries on real and driven data."""
