"""All I/O: policy files and sources, Kubernetes, Prometheus and alert sinks, one module or package per technology.

Each adapter turns its library's errors into the project's own (:mod:`controller.errors`) in one place;
``kubernetes/`` and ``redaction.py`` are the helpers the others share (import-linter keeps siblings apart).
"""
