"""Local sandbox components: stand-ins for a cluster's services, for tests, demos and benchmarks."""
