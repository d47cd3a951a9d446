# syntax=docker/dockerfile:1
# canary-controller: `canaryctl run` (the daemon) on Python 3.11.
#
#   VERSION=$(canaryctl version)    # the package's version (pyproject.toml), also the chart's appVersion
#   docker build -t canary-controller:$VERSION \
#     --build-arg VERSION=$VERSION --build-arg SOURCE_URL=https://github.com/<owner>/canary-controller .
#
# The builder makes a wheel of the project and installs it, with its dependencies, into a virtualenv; the final
# image holds that virtualenv on the same Python base, with no compilers, build tools or pip caches, and runs
# as a numeric non-root user (the Helm chart's runAsNonRoot can check a numeric USER).

FROM python:3.11.10-slim-bookworm AS builder
ARG PIP_VERSION=24.3.1
ENV PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
RUN python -m venv /opt/venv \
    && /opt/venv/bin/pip install --no-cache-dir "pip==${PIP_VERSION}"
# Only what the wheel is built from (README.md is the package's long description).
COPY pyproject.toml README.md ./
COPY controller ./controller
RUN /opt/venv/bin/pip wheel --no-cache-dir --no-deps --wheel-dir /tmp/wheels . \
    && /opt/venv/bin/pip install --no-cache-dir /tmp/wheels/*.whl \
    && /opt/venv/bin/canaryctl --help > /dev/null

FROM python:3.11.10-slim-bookworm
# No default: the version is written once, in pyproject.toml; the build passes it (above).
ARG VERSION
ARG SOURCE_URL=https://example.com/canary-controller
LABEL org.opencontainers.image.title="canary-controller" \
      org.opencontainers.image.description="Canary rollouts for TCP services on Istio and Gateway API: weight steps, Prometheus checks, safe rollback, alerts." \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.source="${SOURCE_URL}" \
      org.opencontainers.image.licenses="Apache-2.0"
ENV PATH="/opt/venv/bin:${PATH}" \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
COPY --from=builder /opt/venv /opt/venv
USER 65532:65532
# /healthz, /readyz and /metrics (CANARY_HTTP_PORT).
EXPOSE 8080
ENTRYPOINT ["canaryctl", "run"]
