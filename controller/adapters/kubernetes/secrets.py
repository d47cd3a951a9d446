"""Secrets resolved by reference: ``SecretReader`` reads a ``SecretRef`` from an environment variable of the
controller or a key of a Kubernetes Secret in the policy's namespace.

Secrets are never inline in a policy; which references a CanaryPolicy resource may use is decided before,
by ``controller.core.admission``. Prometheus credentials and alert webhook URLs are both read through here.
"""

from __future__ import annotations

import base64
import binascii
import os
import threading
import time
from collections.abc import Callable, Mapping

from controller.adapters.kubernetes.api import KubeApi
from controller.core.policy import SecretRef
from controller.errors import ApiError, SecretError


def describe_ref(ref: SecretRef, *, namespace: str) -> str:
    """The reference in words, for messages: ``env var PROM_TOKEN`` or ``Secret ns/name key token``."""
    if ref.env is not None:
        return f"env var {ref.env}"
    assert ref.secret_key_ref is not None  # exactly one is set (schema rule)
    return f"Secret {namespace}/{ref.secret_key_ref.name} key {ref.secret_key_ref.key!r}"


class SecretReader:
    """Resolves ``SecretRef`` values: an environment variable of the controller, or a Kubernetes Secret key.

    Secrets are read through ``KubeApi`` (CoreV1 ``read_namespaced_secret``) and kept for ``ttl_seconds``
    so that a check every few seconds does not read the Secret every time, while a rotated value is picked
    up soon. Failures are not cached.

    Args:
        kube: the API to read Secrets from; None when only environment variables may be used.
        environ: the environment to read variables from (default: the process environment).
        ttl_seconds: how long a Secret read stays cached.
        clock: monotonic seconds (injected by tests).
    """

    def __init__(
        self,
        *,
        kube: KubeApi | None = None,
        environ: Mapping[str, str] | None = None,
        ttl_seconds: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._kube = kube
        self._environ = environ
        self._ttl = ttl_seconds
        self._clock = clock
        self._cache: dict[tuple[str, str], tuple[float, dict[str, str]]] = {}
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"SecretReader(kube={self._kube is not None}, ttl_seconds={self._ttl})"

    def read(self, ref: SecretRef, *, namespace: str) -> str:
        """The value ``ref`` points to, as text.

        Args:
            ref: the reference (exactly one of ``env`` or ``secretKeyRef``).
            namespace: where a ``secretKeyRef`` Secret lives (the policy's namespace).

        Raises:
            SecretError: the variable is unset or empty, the Secret or key is missing or unreadable, or the
                value is not UTF-8 text. The message names the reference, never the value.
        """
        if ref.env is not None:
            environ = os.environ if self._environ is None else self._environ
            value = environ.get(ref.env)
            if not value:
                raise SecretError([f"{describe_ref(ref, namespace=namespace)} is not set in the controller"])
            return value
        selector = ref.secret_key_ref
        assert selector is not None  # exactly one is set (schema rule)
        what = describe_ref(ref, namespace=namespace)
        data = self._secret_data(namespace, selector.name)
        if selector.key not in data:
            keys = ", ".join(sorted(data)) or "none"
            raise SecretError([f"{what}: the Secret has no such key (its keys: {keys})"])
        try:
            value = base64.b64decode(data[selector.key], validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            # Not chained: the decoding error holds the value's bytes (see controller.errors).
            raise SecretError([f"{what}: the value is not base64-encoded UTF-8 text"]) from None
        if not value:
            raise SecretError([f"{what} is empty"])
        return value

    def _secret_data(self, namespace: str, name: str) -> dict[str, str]:
        """The ``data`` of a Secret (base64 values), from the cache while fresh."""
        now = self._clock()
        with self._lock:
            cached = self._cache.get((namespace, name))
            if cached is not None and cached[0] > now:
                return cached[1]
        kube = self._kube
        if kube is None:
            raise SecretError(
                [f"Secret {namespace}/{name}: no Kubernetes API is configured to read Secrets (use an env ref)"]
            )
        try:
            secret = kube.call(
                lambda: kube.core.read_namespaced_secret(name, namespace, _request_timeout=kube.timeout),
                verb="get",
                resource="secrets",
                group="",
                namespace=namespace,
                name=name,
            )
        except ApiError as exc:
            raise SecretError([f"cannot read Secret {namespace}/{name}: {exc}"]) from exc
        data = {str(key): str(value) for key, value in (secret.data or {}).items()}
        with self._lock:
            self._cache[(namespace, name)] = (now + self._ttl, data)
        return data
