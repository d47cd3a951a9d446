"""All I/O: files, and later Kubernetes, Prometheus and alert sinks. One module per technology."""
