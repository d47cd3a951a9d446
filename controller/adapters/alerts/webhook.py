"""The generic webhook: a versioned, optionally signed JSON payload.

Generic webhook payload (version 1, a public contract)
-----------------------------------------------------

``POST <url>`` with ``Content-Type: application/json`` and these headers:

- ``X-Canary-Delivery``: the message key. The same event always has the same key (a retry, or a re-post
  by the controller); receivers should drop a key they have already processed.
- ``X-Canary-Timestamp``: Unix seconds when this attempt was signed.
- ``X-Canary-Signature``: ``sha256=<hex>``, only when a secret is configured: HMAC-SHA256 with the secret
  as key over ``<timestamp>.<raw body bytes>``. Check it with ``verify_signature`` (constant-time); reject
  timestamps older than a few minutes to stop replays.

Body (UTF-8 JSON; fields are never removed or retyped within ``version`` 1, new fields may be added)::

    {
      "apiVersion": "canaryctl.dev/v1alpha1",
      "kind": "CanaryAlert",
      "version": 1,
      "key": "run-7f3a/CanaryRolledBack/3",     # event id: same key = same event (a retry)
      "name": "CanaryRolledBack",               # alert name
      "title": "CanaryRolledBack: shop/tcp-echo",
      "severity": "critical",                   # critical | warning | info
      "state": "firing",                        # firing | resolved
      "policy": "tcp-echo",
      "namespace": "shop",
      "runId": "run-7f3a",
      "target": "VirtualService shop/tcp-echo",
      "route": "tcp port 31400",
      "step": 2,                                # index of the schedule step
      "weight": 20,                             # canary weight in percent, or null
      "fromPhase": "Progressing",               # or null
      "toPhase": "RolledBack",
      "reason": "check error-rate failed",
      "summary": "...",
      "description": "...",
      "startedAt": "2024-05-01T12:00:00.000Z",  # RFC 3339, UTC
      "endedAt": null,                          # RFC 3339 when resolved, else null
      "sourceUrl": "",                          # link to the controller's view, may be empty
      "checks": [
        {
          "name": "error-rate",
          "verdict": "fail",
          "reason": "canary 0.05 > stable 0.001 x 2 + 0.01",
          "canaryValue": 0.05,                  # number or null (null also for NaN/Inf)
          "stableValue": 0.001,                 # number or null
          "sampleSize": 1200,                   # number or null
          "threshold": "<= 0.012",
          "queries": ["sum(rate(...))"],
          "graphUrls": ["http://prometheus:9090/graph?g0.expr=..."]
        }
      ]
    }
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Callable
from typing import Any

import httpx

from controller.adapters.alerts.base import HttpSink
from controller.adapters.alerts.formatting import dumps, json_number, rfc3339
from controller.core.alerts import AlertMessage

PAYLOAD_API_VERSION = "canaryctl.dev/v1alpha1"
PAYLOAD_KIND = "CanaryAlert"
PAYLOAD_VERSION = 1
SIGNATURE_PREFIX = "sha256="


class WebhookSink(HttpSink):
    """Posts the versioned JSON payload documented at the top of this module, optionally signed.

    Headers: ``X-Canary-Delivery`` (the message key, for receivers to drop retries), ``X-Canary-Timestamp``
    (Unix seconds) and, with a secret, ``X-Canary-Signature: sha256=<hex HMAC-SHA256 of "<timestamp>.<body>">``.
    Any 2xx is success.

    Args:
        client: the HTTP client.
        url: the receiver's URL (treated as a secret: it may embed a token).
        secret: the HMAC key; None sends no signature.
        clock: Unix seconds (injected by tests).
    """

    name = "webhook"

    def __init__(
        self, client: httpx.Client, *, url: str, secret: str | None, clock: Callable[[], float] = time.time
    ) -> None:
        super().__init__(client, url, extra_secrets=[secret] if secret else [])
        self._secret = secret.encode("utf-8") if secret else None
        self._clock = clock

    def send(self, message: AlertMessage, *, timeout: float | None = None) -> None:
        """Post the payload once, signed with a fresh timestamp.

        Args:
            message: the alert.
            timeout: upper bound in seconds on each phase of the request (None: the client's timeouts).

        Raises:
            AlertDeliveryError: not delivered.
        """
        body = dumps(self.render(message))
        timestamp = str(int(self._clock()))
        headers = {"X-Canary-Delivery": message.key, "X-Canary-Timestamp": timestamp}
        if self._secret is not None:
            headers["X-Canary-Signature"] = SIGNATURE_PREFIX + _signature(self._secret, timestamp, body)
        self._post(self._url, body, headers=headers, timeout=timeout)

    @staticmethod
    def render(message: AlertMessage) -> dict[str, Any]:
        """The payload (version 1)."""
        return {
            "apiVersion": PAYLOAD_API_VERSION,
            "kind": PAYLOAD_KIND,
            "version": PAYLOAD_VERSION,
            "key": message.key,
            "name": message.name,
            "title": message.title,
            "severity": message.severity,
            "state": message.state,
            "policy": message.policy,
            "namespace": message.namespace,
            "runId": message.run_id,
            "target": message.target,
            "route": message.route,
            "step": message.step,
            "weight": message.weight,
            "fromPhase": message.from_phase,
            "toPhase": message.to_phase,
            "reason": message.reason,
            "summary": message.summary,
            "description": message.description,
            "startedAt": rfc3339(message.started_at),
            "endedAt": rfc3339(message.ended_at) if message.ended_at is not None else None,
            "sourceUrl": message.source_url,
            "checks": [
                {
                    "name": check.name,
                    "verdict": check.verdict,
                    "reason": check.reason,
                    "canaryValue": json_number(check.canary_value),
                    "stableValue": json_number(check.stable_value),
                    "sampleSize": json_number(check.sample_size),
                    "threshold": check.threshold,
                    "queries": list(check.queries),
                    "graphUrls": list(check.graph_urls),
                }
                for check in message.checks
            ],
        }


def _signature(secret: bytes, timestamp: str, body: bytes) -> str:
    return hmac.new(secret, timestamp.encode("ascii") + b"." + body, hashlib.sha256).hexdigest()


def verify_signature(secret: str | bytes, timestamp: str | int, body: bytes, header: str | None) -> bool:
    """Whether ``header`` (``X-Canary-Signature``) signs ``body`` sent at ``timestamp`` with ``secret``.

    Standalone (hashlib and hmac only) so that receivers can copy it. Compares in constant time. It does not
    judge the timestamp's age: receivers should also reject old timestamps (say, over five minutes) and drop
    repeated ``X-Canary-Delivery`` keys.

    Args:
        secret: the shared HMAC key.
        timestamp: the ``X-Canary-Timestamp`` header as received.
        body: the raw request body, byte for byte (not re-serialized JSON).
        header: the ``X-Canary-Signature`` header (None when absent).

    Returns:
        True when the signature is valid.
    """
    if not header or not header.startswith(SIGNATURE_PREFIX):
        return False
    key = secret.encode("utf-8") if isinstance(secret, str) else secret
    try:
        expected = hmac.new(key, str(timestamp).encode("ascii") + b"." + body, hashlib.sha256).hexdigest()
    except UnicodeEncodeError:
        return False
    return hmac.compare_digest(expected.encode("ascii"), header[len(SIGNATURE_PREFIX) :].strip().encode("utf-8"))
