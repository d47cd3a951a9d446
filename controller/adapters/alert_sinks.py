"""Alert sinks: where an ``AlertMessage`` goes (Alertmanager, Slack, Microsoft Teams, Discord, a generic webhook).

Each sink takes an ``httpx.Client`` and one destination, renders the message in the format that service
documents, and POSTs it once: ``send`` either returns (delivered) or raises ``AlertDeliveryError`` saying
whether retrying can help. ``deliver`` retries retryable failures with exponential backoff and full jitter,
bounded in attempts and in total time, and reports a ``DeliveryOutcome``; it never raises.

Timeouts, proxies, TLS and extra headers (e.g. Alertmanager behind an authenticating proxy) come from the
client the caller builds, e.g. ``httpx.Client(timeout=httpx.Timeout(5.0))``: a per-request timeout is the
caller's choice, and ``deliver`` only ever lowers it to fit its deadline. The sinks never follow redirects
unless the client does.

Webhook URLs of Slack, Teams and Discord carry their credential in the path (and Teams Workflows URLs in
the query): they are secrets. Messages, logs and ``repr`` show them only as ``scheme://host/…``; the
generic webhook's URL is treated the same way, Alertmanager's is shown without user info or query. httpx
itself logs every request URL at INFO (logger ``httpx``): the sinks install a filter on that logger that
rewrites their own URLs to the safe form. Remote error bodies are cut to about 200 characters and scrubbed
of the URL's parts and of the HMAC secret.

Retryable: HTTP 5xx, 429 and 408, timeouts, refused or reset connections, a server closing the connection
without answering. Not retryable: any other 4xx (and 3xx), an invalid URL, a failed TLS certificate check.
A timeout after the request was sent may mean it was delivered: receivers of the generic webhook dedupe
retries by ``X-Canary-Delivery``; Slack, Teams and Discord cannot, so a rare duplicate is possible there.

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
import json
import logging
import math
import random
import re
import threading
import time
import weakref
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, Literal, Protocol
from urllib.parse import parse_qsl, urlsplit

import httpx

from controller.adapters.prometheus import MIN_REDACTED, cut
from controller.core.alerts import AlertMessage, FailingCheck
from controller.errors import CanaryError

log = logging.getLogger(__name__)

PAYLOAD_API_VERSION = "canaryctl.dev/v1alpha1"
PAYLOAD_KIND = "CanaryAlert"
PAYLOAD_VERSION = 1
MAX_REMOTE_BODY = 200
"""Characters of a remote error body kept in an error message."""
SIGNATURE_PREFIX = "sha256="

DeliveryResult = Literal["sent", "failed"]

_COLORS = {"critical": 0xD70000, "warning": 0xFFA500, "info": 0x0078D7}
_RESOLVED_COLOR = 0x2EB886
_SLACK_EMOJI = {"critical": ":red_circle:", "warning": ":large_orange_circle:", "info": ":large_blue_circle:"}
_TEAMS_FAILURE = re.compile(r"webhook message delivery failed", re.IGNORECASE)
_TEAMS_STATUS = re.compile(r"HTTP error (\d{3})")
_SECRET_SEGMENT = 8
"""Path segments and query values of a secret URL at least this long are scrubbed from remote bodies."""


class AlertDeliveryError(CanaryError):
    """A sink could not deliver a message.

    The message names the sink, where it sent (``scheme://host/…`` for secret URLs) and the HTTP status or
    network failure, with the remote body cut short; never a webhook URL or a signing secret.

    Attributes:
        sink: the sink's name (``slack``, ``alertmanager``...).
        status: the HTTP status (0: no answer).
        retryable: True when trying again can help (5xx, 429, 408, timeouts, network errors).
        retry_after: seconds the service asked to wait (``Retry-After``, Discord's ``retry_after``), if any.
    """

    def __init__(
        self,
        problems: list[str],
        *,
        sink: str,
        status: int = 0,
        retryable: bool = False,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(problems)
        self.sink = sink
        self.status = status
        self.retryable = retryable
        self.retry_after = retry_after


class AlertSink(Protocol):
    """Somewhere an alert can be sent."""

    @property
    def name(self) -> str:
        """Short name of the kind of sink, for logs and outcomes (``slack``, ``webhook``...)."""
        ...

    def send(self, message: AlertMessage, *, timeout: float | None = None) -> None:
        """Deliver ``message`` once (no retry).

        Args:
            message: the alert.
            timeout: an upper bound in seconds on each phase of the request (connect, write, read), below
                the client's own timeouts; None keeps the client's.

        Raises:
            AlertDeliveryError: not delivered; ``retryable`` says whether trying again can help.
        """
        ...


@dataclass(frozen=True)
class DeliveryOutcome:
    """What became of one message at one sink after retries.

    Attributes:
        sink: the sink's name.
        result: ``sent`` or ``failed``.
        attempts: requests made (1 = no retry).
        error: the last error's message when failed, else None.
        duration_seconds: time spent, waits included.
        retryable: for a failure, whether a later delivery could still succeed (the last error was
            retryable and only attempts or time ran out).
    """

    sink: str
    result: DeliveryResult
    attempts: int
    error: str | None
    duration_seconds: float
    retryable: bool = False


# ------------------------------------------------------------------------------------------------ delivery


def deliver(
    sink: AlertSink,
    message: AlertMessage,
    *,
    attempts: int = 5,
    base_delay: float = 0.5,
    max_delay: float = 8.0,
    deadline_seconds: float = 30.0,
    sleep: Callable[[float], None] = time.sleep,
    rand: Callable[[], float] = random.random,
    clock: Callable[[], float] = time.monotonic,
) -> DeliveryOutcome:
    """Send ``message`` to ``sink``, retrying retryable failures; never raises.

    The wait before retry ``n`` (1-based) is ``rand() * min(max_delay, base_delay * 2 ** (n - 1))`` ("full
    jitter"), raised to the service's ``Retry-After`` (capped at ``max_delay``) when it sent one. Delivery
    stops at the first success, a non-retryable failure, the last attempt, or when the next wait would end
    past ``deadline_seconds`` after the start. Each attempt's request timeout is lowered to the time left, so
    the whole delivery stays within the deadline (plus the time one phase of a request may overrun).

    Args:
        sink: where to send.
        message: the alert.
        attempts: most requests to make (at least 1).
        base_delay: seconds of the first backoff step.
        max_delay: longest single wait.
        deadline_seconds: bound on the whole delivery, waits included.
        sleep: waits (injected by tests).
        rand: a number in [0, 1) (injected by tests).
        clock: monotonic seconds (injected by tests).

    Returns:
        The outcome: sent or failed, attempts made, the last error, the time spent.
    """
    start = clock()
    made = 0
    error: str | None = None
    retryable = False
    for attempt in range(1, max(1, attempts) + 1):
        remaining = deadline_seconds - (clock() - start)
        if remaining <= 0:
            break
        made = attempt
        try:
            sink.send(message, timeout=remaining)
        except AlertDeliveryError as exc:
            error, retryable = str(exc), exc.retryable
            if not retryable or attempt >= attempts:
                break
            delay = rand() * min(max_delay, base_delay * 2 ** (attempt - 1))
            if exc.retry_after is not None:
                delay = max(delay, min(exc.retry_after, max_delay))
            if clock() - start + delay >= deadline_seconds:
                error += f" (gave up: the next attempt would start past the {deadline_seconds:g}s deadline)"
                break
            log.warning(
                "alert %s to %s failed (attempt %d of %d), retrying in %.2fs: %s",
                message.name,
                sink.name,
                attempt,
                attempts,
                delay,
                error,
                extra=_log_fields(message, error),
            )
            sleep(delay)
        except Exception as exc:  # a bug in a sink must not break the caller's loop
            error, retryable = f"{sink.name} sink failed unexpectedly: {type(exc).__name__}", False
            log.exception("alert %s to %s: unexpected error", message.name, sink.name)
            break
        else:
            duration = clock() - start
            log.info(
                "alert %s (%s) sent to %s in %.2fs (%d attempt%s)",
                message.name,
                message.state,
                sink.name,
                duration,
                attempt,
                "" if attempt == 1 else "s",
                extra=_log_fields(message, None),
            )
            return DeliveryOutcome(
                sink=sink.name, result="sent", attempts=attempt, error=None, duration_seconds=duration
            )
    duration = clock() - start
    if error is None:
        error = f"{sink.name} sink: no attempt made within the {deadline_seconds:g}s deadline"
        retryable = True
    log.warning(
        "alert %s (%s) not delivered to %s after %d attempt%s in %.2fs: %s",
        message.name,
        message.state,
        sink.name,
        made,
        "" if made == 1 else "s",
        duration,
        error,
        extra=_log_fields(message, error),
    )
    return DeliveryOutcome(
        sink=sink.name, result="failed", attempts=made, error=error, duration_seconds=duration, retryable=retryable
    )


def _log_fields(message: AlertMessage, error: str | None) -> dict[str, object]:
    fields: dict[str, object] = {"policy": message.policy, "namespace": message.namespace, "run_id": message.run_id}
    if error is not None:
        fields["error"] = error
    return fields


# ------------------------------------------------------------------------------------------ the HTTP part


class _UrlLogFilter(logging.Filter):
    """Rewrites the sinks' URLs in httpx's request log lines (``HTTP Request: POST <url> ...``) to their safe form."""

    def __init__(self) -> None:
        super().__init__()
        self._lock = threading.Lock()
        self._urls: dict[str, tuple[str, int]] = {}  # URL as httpx prints it -> (safe form, sinks using it)

    def register(self, url: str, safe: str) -> None:
        key = str(httpx.URL(url))
        with self._lock:
            self._urls[key] = (safe, self._urls.get(key, (safe, 0))[1] + 1)

    def release(self, url: str) -> None:
        key = str(httpx.URL(url))
        with self._lock:
            safe, count = self._urls.get(key, ("", 0))
            if count <= 1:
                self._urls.pop(key, None)
            else:
                self._urls[key] = (safe, count - 1)

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and args:
            with self._lock:
                urls = dict(self._urls)
            if urls:
                record.args = tuple(urls[str(arg)][0] if str(arg) in urls else arg for arg in args)
        return True


_URL_LOG_FILTER = _UrlLogFilter()
_HTTPX_LOGGER = "httpx"


def _guard_logs(sink: object, url: str, safe: str) -> None:
    """Keep ``url`` out of httpx's logs for as long as ``sink`` lives."""
    logger = logging.getLogger(_HTTPX_LOGGER)
    if _URL_LOG_FILTER not in logger.filters:
        logger.addFilter(_URL_LOG_FILTER)
    _URL_LOG_FILTER.register(url, safe)
    weakref.finalize(sink, _URL_LOG_FILTER.release, url)


def safe_url(url: str, *, secret_path: bool) -> str:
    """``url`` as it may appear in messages: no user info, query or fragment; only ``scheme://host/…`` when
    the path itself is a secret (Slack, Teams, Discord and generic webhook URLs)."""
    try:
        parts = urlsplit(url)
        host = parts.netloc.rsplit("@", 1)[-1]
    except ValueError:
        return "(invalid URL)"
    if not parts.scheme or not host:
        return "(invalid URL)"
    if secret_path:
        return f"{parts.scheme}://{host}/…"
    return f"{parts.scheme}://{host}{parts.path}"


def _secret_parts(url: str, *, secret_path: bool) -> list[str]:
    """Pieces of ``url`` that must not appear in messages, longest first."""
    parts = urlsplit(url)
    pieces: list[str] = []
    if "@" in parts.netloc:
        userinfo = parts.netloc.rsplit("@", 1)[0]
        pieces += [userinfo, *userinfo.split(":", 1)]
    if parts.query:
        pieces += [parts.query] + [value for _, value in parse_qsl(parts.query) if len(value) >= _SECRET_SEGMENT]
    if secret_path:
        pieces += [url, parts.path] + [
            segment for segment in re.split(r"[/@]", parts.path) if len(segment) >= _SECRET_SEGMENT
        ]
    return sorted({piece for piece in pieces if len(piece) >= MIN_REDACTED}, key=len, reverse=True)


def _capped_timeout(client: httpx.Client, cap: float | None) -> httpx.Timeout | None:
    """The client's timeouts, each lowered to ``cap`` seconds (None: the client's unchanged)."""
    if cap is None:
        return None
    cap = max(cap, 0.001)
    current = client.timeout

    def lower(value: float | None) -> float:
        return cap if value is None else min(value, cap)

    return httpx.Timeout(
        connect=lower(current.connect), read=lower(current.read), write=lower(current.write), pool=lower(current.pool)
    )


def _retry_after(response: httpx.Response) -> float | None:
    """Seconds from a ``Retry-After`` header (seconds or an HTTP date), if any."""
    value = response.headers.get("Retry-After")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def _transport_failure(exc: httpx.HTTPError) -> tuple[str, bool]:
    """What went wrong without an HTTP answer, in a few words, and whether retrying can help."""
    text = str(exc)
    lowered = text.lower()
    if isinstance(exc, httpx.ConnectTimeout):
        return "connect timed out", True
    if isinstance(exc, httpx.ReadTimeout):
        return "no answer in time (read timeout)", True
    if isinstance(exc, httpx.WriteTimeout):
        return "sending timed out (write timeout)", True
    if isinstance(exc, httpx.PoolTimeout):
        return "no free connection in time (pool timeout)", True
    if isinstance(exc, httpx.TimeoutException):
        return "timed out", True
    if isinstance(exc, httpx.ConnectError):
        if "certificate verify failed" in lowered:
            return "TLS certificate verification failed", False
        if "refused" in lowered:
            return "connection refused", True
        if any(mark in lowered for mark in ("name or service not known", "nodename nor servname", "name resolution")):
            return "DNS name resolution failed", True
        return f"cannot connect: {cut(text, 120)}", True
    if isinstance(exc, httpx.RemoteProtocolError):
        if "without sending" in lowered or "disconnected" in lowered:
            return "the server closed the connection without answering", True
        return f"protocol error: {cut(text, 120)}", True
    if isinstance(exc, httpx.NetworkError):  # ReadError, WriteError, CloseError
        return f"network error: {cut(text, 120) or type(exc).__name__}", True
    return f"request failed: {type(exc).__name__}", False


class _HttpSink:
    """POSTs JSON to one URL and turns every failure into an ``AlertDeliveryError``."""

    name = "http"
    _secret_path = True

    def __init__(self, client: httpx.Client, url: str, *, extra_secrets: Iterable[str] = ()) -> None:
        try:
            parts = urlsplit(url)
            httpx.URL(url)
        except (ValueError, httpx.InvalidURL):
            raise ValueError(f"{self.name} sink: the URL is not a valid URL") from None
        if parts.scheme not in {"http", "https"} or not parts.netloc:
            raise ValueError(f"{self.name} sink: the URL must be an absolute http:// or https:// URL")
        self._client = client
        self._url = url
        self.target = safe_url(url, secret_path=self._secret_path)
        secrets = _secret_parts(url, secret_path=self._secret_path)
        secrets += [secret for secret in extra_secrets if len(secret) >= MIN_REDACTED]
        self._secrets = tuple(sorted(set(secrets), key=len, reverse=True))
        _guard_logs(self, url, self.target)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(target={self.target!r})"

    def _redact(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text

    def _fail(
        self, what: str, *, status: int = 0, retryable: bool, retry_after: float | None = None
    ) -> AlertDeliveryError:
        """The error for ``what`` happened (whose remote parts the caller has scrubbed)."""
        text = f"{self.name} sink: {self.target} {what}"
        return AlertDeliveryError([text], sink=self.name, status=status, retryable=retryable, retry_after=retry_after)

    def _post(
        self, url: str, body: bytes, *, headers: dict[str, str] | None = None, timeout: float | None = None
    ) -> httpx.Response:
        """POST ``body`` as JSON; the response when it is 2xx.

        Raises:
            AlertDeliveryError: no answer, or a non-2xx one.
        """
        request_headers = {"Content-Type": "application/json", **(headers or {})}
        capped = _capped_timeout(self._client, timeout)
        try:
            response = self._client.post(
                url,
                content=body,
                headers=request_headers,
                timeout=capped if capped is not None else httpx.USE_CLIENT_DEFAULT,
            )
        except httpx.HTTPError as exc:
            reason, retryable = _transport_failure(exc)
            raise self._fail(f"unreachable: {self._redact(reason)}", retryable=retryable) from None
        except httpx.InvalidURL:
            raise self._fail("cannot be requested: invalid URL", retryable=False) from None
        if response.is_success:
            return response
        status = response.status_code
        retryable = status >= 500 or status in {408, 429}
        detail = self._remote_text(response)
        hint = " (a redirect: the sinks do not follow them unless the client does)" if response.is_redirect else ""
        raise self._fail(
            f"answered HTTP {status}: {detail}{hint}",
            status=status,
            retryable=retryable,
            retry_after=self._retry_after(response) if retryable else None,
        )

    def _remote_text(self, response: httpx.Response) -> str:
        """The response body for a message: scrubbed, on one line, cut short."""
        try:
            text = response.text
        except (UnicodeDecodeError, LookupError):
            text = "(undecodable body)"
        return cut(self._redact(text), MAX_REMOTE_BODY) or "(empty body)"

    def _retry_after(self, response: httpx.Response) -> float | None:
        return _retry_after(response)


# ------------------------------------------------------------------------------------------------ helpers


def rfc3339(moment: datetime) -> str:
    """``moment`` as RFC 3339 in UTC with milliseconds, e.g. ``2024-05-01T12:00:00.000Z`` (naive = UTC)."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def format_number(value: float | None) -> str:
    """A measured value for people: ``n/a``, ``NaN``, ``+Inf``, ``1200``, ``0.0123``."""
    if value is None:
        return "n/a"
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if value == int(value) and abs(value) < 1e15:
        return str(int(value))
    return f"{value:.6g}"


def _json_number(value: float | None) -> float | None:
    """A value JSON can carry (NaN and infinities become null)."""
    return value if value is not None and math.isfinite(value) else None


def _dumps(payload: Any) -> bytes:
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode("utf-8")


def _clip(text: str, limit: int) -> str:
    """``text`` at most ``limit`` characters (line breaks kept; ``…`` marks a cut)."""
    return text if len(text) <= limit else text[: max(0, limit - 1)] + "…"


def _color(message: AlertMessage) -> int:
    return _RESOLVED_COLOR if message.state == "resolved" else _COLORS.get(message.severity, _COLORS["info"])


def _state_word(message: AlertMessage) -> str:
    return "RESOLVED" if message.state == "resolved" else "FIRING"


def _phase(message: AlertMessage) -> str:
    return f"{message.from_phase or '(start)'} → {message.to_phase}"


def _step(message: AlertMessage) -> str:
    weight = "n/a" if message.weight is None else f"{message.weight}%"
    return f"step {message.step}, weight {weight}"


def _check_numbers(check: FailingCheck) -> str:
    parts = [f"canary {format_number(check.canary_value)}", f"stable {format_number(check.stable_value)}"]
    if check.threshold:
        parts.append(f"threshold {check.threshold}")
    parts.append(f"sample size {format_number(check.sample_size)}")
    return ", ".join(parts)


def _check_line(check: FailingCheck) -> str:
    """One line per check: ``error-rate: fail (canary 0.05, stable 0.001, sample size 1200): why``."""
    line = f"{check.name}: {check.verdict} ({_check_numbers(check)})"
    return f"{line}: {check.reason}" if check.reason else line


def _graph_links(message: AlertMessage) -> list[tuple[str, str]]:
    """(label, URL) of every graph link, the controller's own link first."""
    links: list[tuple[str, str]] = []
    if message.source_url:
        links.append(("controller", message.source_url))
    for check in message.checks:
        for index, url in enumerate(check.graph_urls):
            label = check.name if len(check.graph_urls) == 1 else f"{check.name} ({index + 1})"
            links.append((label, url))
    return links


def _first_graph(message: AlertMessage) -> str:
    return next((url for check in message.checks for url in check.graph_urls), "")


# ----------------------------------------------------------------------------------------------- the sinks


class AlertmanagerSink(_HttpSink):
    """Posts alerts to Prometheus Alertmanager's API v2 (``POST {url}/api/v2/alerts``).

    Each message becomes one alert. Its labels identify it, and Alertmanager dedupes on them: ``alertname``
    (the message name), ``policy``, ``namespace``, ``severity`` and ``run_id``; posting the same labels again
    updates the one alert. Annotations carry ``summary``, ``description``, ``reason``, ``phase``, ``target``,
    ``route``, ``step``, ``weight``, ``checks`` (one line per failing check), ``graph_url`` and, for check
    ``N`` (1-based; annotation names must match ``[a-zA-Z_][a-zA-Z0-9_]*``, check names need not):
    ``check_N_name``, ``check_N_verdict``, ``check_N_reason``, ``check_N_value``, ``check_N_stable_value``,
    ``check_N_threshold``, ``check_N_sample_size``, ``check_N_query`` and ``check_N_graph_url``.

    ``startsAt`` is the message's start; a resolved message sets ``endsAt`` to its end, which resolves the
    alert at once. A firing alert has no ``endsAt``: Alertmanager resolves it by itself five minutes
    (``resolve_timeout``) after the last post unless it is posted again, so the delivery loop re-posts firing
    alerts more often than that. ``generatorURL`` is the message's ``source_url``, else its first graph URL.

    Args:
        client: the HTTP client (timeouts, TLS, auth headers for a proxy in front of Alertmanager).
        url: Alertmanager's base URL, e.g. ``http://alertmanager.monitoring:9093``.
    """

    name = "alertmanager"
    _secret_path = False

    def __init__(self, client: httpx.Client, *, url: str) -> None:
        super().__init__(client, url)
        self._endpoint = url.rstrip("/") + "/api/v2/alerts"

    def send(self, message: AlertMessage, *, timeout: float | None = None) -> None:
        """Post the alert once.

        Args:
            message: the alert.
            timeout: upper bound in seconds on each phase of the request (None: the client's timeouts).

        Raises:
            AlertDeliveryError: not delivered (Alertmanager's 400 says which field it rejected).
        """
        self._post(self._endpoint, _dumps([self.render(message)]), timeout=timeout)

    @staticmethod
    def render(message: AlertMessage) -> dict[str, Any]:
        """The alert as Alertmanager API v2 takes it (one element of the posted list)."""
        labels = {
            "alertname": message.name,
            "policy": message.policy,
            "namespace": message.namespace,
            "severity": message.severity,
            "run_id": message.run_id,
        }
        annotations = {
            "summary": message.summary,
            "description": message.description,
            "reason": message.reason,
            "phase": _phase(message),
            "target": message.target,
            "route": message.route,
            "step": str(message.step),
            "weight": "" if message.weight is None else str(message.weight),
            "checks": "\n".join(_check_line(check) for check in message.checks),
            "graph_url": _first_graph(message),
        }
        for number, check in enumerate(message.checks, start=1):
            prefix = f"check_{number}_"
            annotations |= {
                prefix + "name": check.name,
                prefix + "verdict": check.verdict,
                prefix + "reason": check.reason,
                prefix + "value": format_number(check.canary_value),
                prefix + "stable_value": format_number(check.stable_value),
                prefix + "threshold": check.threshold,
                prefix + "sample_size": format_number(check.sample_size),
                prefix + "query": "\n".join(check.queries),
                prefix + "graph_url": "\n".join(check.graph_urls),
            }
        alert: dict[str, Any] = {
            # An empty label value is the same as no label to Alertmanager.
            "labels": {key: value for key, value in labels.items() if value},
            "annotations": {key: value for key, value in annotations.items() if value},
            "startsAt": rfc3339(message.started_at),
        }
        if message.state == "resolved":
            ended = message.ended_at or datetime.now(UTC)
            alert["endsAt"] = rfc3339(max(ended, message.started_at, key=_aware))
        generator = message.source_url or _first_graph(message)
        if generator:
            alert["generatorURL"] = generator
        return alert


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


# Slack Block Kit limits (docs.slack.dev/reference/block-kit): 50 blocks a message, header text 150
# characters, section text 3000, at most 10 section fields of 2000 each, 10 context elements.
SLACK_MAX_BLOCKS = 50
SLACK_HEADER_TEXT = 150
SLACK_SECTION_TEXT = 3000
SLACK_MAX_FIELDS = 10
SLACK_FIELD_TEXT = 2000
SLACK_MAX_CONTEXT = 10
SLACK_TEXT = 3000
"""The ``text`` fallback (notifications, screen readers) is kept short, though Slack allows far more."""


def _slack_escape(text: str) -> str:
    """Text safe inside Slack ``mrkdwn`` (only ``&``, ``<`` and ``>`` are control characters)."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _slack_code(text: str) -> str:
    return _slack_escape(text.replace("`", "'"))


class SlackSink(_HttpSink):
    """Posts to a Slack incoming webhook: a ``text`` fallback and a Block Kit ``blocks`` layout.

    Layout: a ``header`` (state, alert name, policy); a ``section`` with the summary and description and
    fields for policy, target, route, step and weight, phase change, severity, reason and run id; one
    ``section`` per failing check with its verdict, reason, numbers and query; a ``context`` block with the
    graph links. Texts are cut to Slack's limits; beyond 50 blocks the remaining checks are counted.
    Slack answers ``200 ok``; errors are text (``invalid_payload``, ``no_service``...).

    Args:
        client: the HTTP client.
        webhook_url: the incoming-webhook URL (a secret).
    """

    name = "slack"

    def __init__(self, client: httpx.Client, *, webhook_url: str) -> None:
        super().__init__(client, webhook_url)

    def send(self, message: AlertMessage, *, timeout: float | None = None) -> None:
        """Post the message once.

        Args:
            message: the alert.
            timeout: upper bound in seconds on each phase of the request (None: the client's timeouts).

        Raises:
            AlertDeliveryError: not delivered.
        """
        self._post(self._url, _dumps(self.render(message)), timeout=timeout)

    @staticmethod
    def render(message: AlertMessage) -> dict[str, Any]:
        """The webhook payload."""
        emoji = ":white_check_mark:" if message.state == "resolved" else _SLACK_EMOJI.get(message.severity, "")
        header = _clip(f"{emoji} {_state_word(message)}: {message.title}".strip(), SLACK_HEADER_TEXT)
        intro = f"*{_slack_escape(message.summary)}*"
        if message.description:
            intro += "\n" + _slack_escape(message.description)
        facts = [
            ("Policy", f"{message.namespace}/{message.policy}"),
            ("Target", message.target),
            ("Route", message.route),
            ("Step / weight", _step(message)),
            ("Phase", _phase(message)),
            ("Severity", f"{message.severity} ({message.state})"),
            ("Reason", message.reason),
            ("Run id", message.run_id),
        ]
        fields = [
            {"type": "mrkdwn", "text": _clip(f"*{name}*\n{_slack_escape(value or '—')}", SLACK_FIELD_TEXT)}
            for name, value in facts[:SLACK_MAX_FIELDS]
        ]
        blocks: list[dict[str, Any]] = [
            {"type": "header", "text": {"type": "plain_text", "text": header, "emoji": True}},
            {"type": "section", "text": {"type": "mrkdwn", "text": _clip(intro, SLACK_SECTION_TEXT)}, "fields": fields},
        ]
        links = [
            f"<{url}|{_slack_escape(label).replace('|', '/')}>"
            for label, url in _graph_links(message)
            if len(url) < SLACK_SECTION_TEXT - 100 and "|" not in url and ">" not in url
        ]
        room = SLACK_MAX_BLOCKS - len(blocks) - (1 if links else 0)
        checks = list(message.checks)
        shown = checks if len(checks) <= room else checks[: room - 1]
        blocks += [{"type": "section", "text": {"type": "mrkdwn", "text": _slack_check(check)}} for check in shown]
        if len(shown) < len(checks):
            more = f"… and {len(checks) - len(shown)} more failing checks (see the controller's status)"
            blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": more}})
        if links:
            elements = links if len(links) <= SLACK_MAX_CONTEXT else [*links[: SLACK_MAX_CONTEXT - 1], "…"]
            blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": text} for text in elements]})
        fallback = f"[{_state_word(message)}] {message.title}: {message.summary}"
        if message.checks:
            fallback += " — " + "; ".join(_check_line(check) for check in message.checks)
        return {"text": _clip(_slack_escape(fallback), SLACK_TEXT), "blocks": blocks}


def _slack_check(check: FailingCheck) -> str:
    """One check as a ``mrkdwn`` section text within Slack's 3000 characters (the query is cut first)."""
    head = f"*Check {_slack_escape(check.name)}*: {_slack_escape(check.verdict)}"
    if check.reason:
        head += f" — {_slack_escape(check.reason)}"
    head += f"\n{_slack_escape(_check_numbers(check))}"
    if not check.queries:
        return _clip(head, SLACK_SECTION_TEXT)
    room = SLACK_SECTION_TEXT - len(head) - 10
    if room < 40:
        return _clip(head, SLACK_SECTION_TEXT)
    query = _clip(_slack_code("\n".join(check.queries)), room)
    return f"{head}\n```{query}```"


# Teams: an Office 365 connector card ("MessageCard"), at most 28 KB a message, up to 4 actions.
TEAMS_MAX_BYTES = 27_000
TEAMS_MAX_ACTIONS = 4
TEAMS_QUERY_TEXT = 1000

_TEAMS_MARKDOWN = re.compile(r"([\\`*_\[\]#~])")


def _teams_escape(text: str) -> str:
    """Text shown literally in a MessageCard (every text field is Markdown)."""
    return _TEAMS_MARKDOWN.sub(r"\\\1", text)


class TeamsSink(_HttpSink):
    """Posts to a Microsoft Teams incoming webhook as a legacy actionable ``MessageCard``.

    The MessageCard (``@type``/``@context``, ``summary``, ``themeColor``, ``title``, ``text``, ``sections``
    with ``facts``, ``potentialAction`` ``OpenUri`` buttons) is what Office 365 connector webhooks
    (``https://<tenant>.webhook.office.com/webhookb2/...``) take and what most tools send; Teams Workflows
    webhooks expect an Adaptive Card instead and are not supported by this sink. ``themeColor`` is red for
    critical, orange for warning, blue for info, green when resolved. One section holds the rollout facts,
    one section per failing check holds its numbers and query; up to four buttons open the graphs. The
    card is kept under Teams' 28 KB by dropping check sections from the end.

    Teams connectors answer ``200`` with ``1``, and report many failures (throttling, a too-large card, a
    removed channel) as ``200`` with a text "Webhook message delivery failed with error: ... HTTP error
    429 ...": such an answer is a failure with the embedded status.

    Args:
        client: the HTTP client.
        webhook_url: the incoming-webhook URL (a secret).
    """

    name = "teams"

    def __init__(self, client: httpx.Client, *, webhook_url: str) -> None:
        super().__init__(client, webhook_url)

    def send(self, message: AlertMessage, *, timeout: float | None = None) -> None:
        """Post the card once.

        Args:
            message: the alert.
            timeout: upper bound in seconds on each phase of the request (None: the client's timeouts).

        Raises:
            AlertDeliveryError: not delivered, including a ``200`` whose body reports a failure.
        """
        response = self._post(self._url, _dumps(self.render(message)), timeout=timeout)
        text = response.text
        if _TEAMS_FAILURE.search(text):
            found = _TEAMS_STATUS.search(text)
            status = int(found.group(1)) if found else 0
            retryable = status == 0 or status >= 500 or status in {408, 429}
            raise self._fail(
                f"answered HTTP {response.status_code} but reported HTTP error {status or 'unknown'}: "
                f"{self._remote_text(response)}",
                status=status,
                retryable=retryable,
            )

    @staticmethod
    def render(message: AlertMessage) -> dict[str, Any]:
        """The MessageCard."""
        facts = [
            ("Policy", f"{message.namespace}/{message.policy}"),
            ("Target", message.target),
            ("Route", message.route),
            ("Step / weight", _step(message)),
            ("Phase", _phase(message)),
            ("Severity", f"{message.severity} ({message.state})"),
            ("Reason", message.reason),
            ("Run id", message.run_id),
        ]
        rollout = {
            "activityTitle": "Rollout",
            "facts": [{"name": name, "value": _teams_escape(value or "—")} for name, value in facts],
            "markdown": True,
        }
        checks = [_teams_check(check) for check in message.checks]
        actions = [
            {"@type": "OpenUri", "name": _clip(f"Graph: {label}", 100), "targets": [{"os": "default", "uri": url}]}
            for label, url in _graph_links(message)
        ][:TEAMS_MAX_ACTIONS]
        text = _teams_escape(message.summary)
        if message.description:
            text += "\n\n" + _teams_escape(message.description)
        card: dict[str, Any] = {
            "@type": "MessageCard",
            "@context": "https://schema.org/extensions",
            "summary": _clip(f"{_state_word(message)}: {message.title}", 200),
            "themeColor": f"{_color(message):06X}",
            "title": _teams_escape(f"{_state_word(message)}: {message.title}"),
            "text": text,
            "sections": [rollout, *checks],
        }
        if actions:
            card["potentialAction"] = actions
        dropped = 0
        while len(_dumps(card)) > TEAMS_MAX_BYTES and len(card["sections"]) > 1:
            card["sections"].pop()
            dropped += 1
        if dropped:
            more = {"activityTitle": f"… and {dropped} more failing checks (see the controller's status)"}
            card["sections"].append(more)
        return card


def _teams_check(check: FailingCheck) -> dict[str, Any]:
    facts = [
        ("Canary value", format_number(check.canary_value)),
        ("Stable value", format_number(check.stable_value)),
        ("Threshold", check.threshold or "—"),
        ("Sample size", format_number(check.sample_size)),
    ]
    section: dict[str, Any] = {
        "activityTitle": _teams_escape(f"Check {check.name}: {check.verdict}"),
        "facts": [{"name": name, "value": _teams_escape(value)} for name, value in facts],
        "markdown": True,
    }
    if check.reason:
        section["activitySubtitle"] = _teams_escape(check.reason)
    if check.queries:
        query = _clip("\n".join(check.queries), TEAMS_QUERY_TEXT)
        section["facts"].append({"name": "Query", "value": _teams_escape(query)})
    return section


# Discord embed limits (discord.com/developers/docs/resources/message#embed-object-embed-limits).
DISCORD_CONTENT = 2000
DISCORD_TITLE = 256
DISCORD_DESCRIPTION = 4096
DISCORD_MAX_FIELDS = 25
DISCORD_FIELD_NAME = 256
DISCORD_FIELD_VALUE = 1024
DISCORD_FOOTER = 2048
DISCORD_TOTAL = 6000
"""Characters across title, description, field names and values and footer text of all embeds."""

_DISCORD_MARKDOWN = re.compile(r"([\\`*_~|>\[\]()#-])")


def _discord_escape(text: str) -> str:
    return _DISCORD_MARKDOWN.sub(r"\\\1", text)


def embed_size(embed: dict[str, Any]) -> int:
    """Characters Discord counts towards its 6000 a message: title, description, fields, footer, author."""
    total = len(embed.get("title", "")) + len(embed.get("description", ""))
    total += sum(len(field["name"]) + len(field["value"]) for field in embed.get("fields", []))
    total += len(embed.get("footer", {}).get("text", "")) + len(embed.get("author", {}).get("name", ""))
    return total


class DiscordSink(_HttpSink):
    """Posts to a Discord webhook: ``content`` (a one-line notice) and one embed.

    The embed has the title (linked to the controller or the first graph), the summary and description,
    ``color`` by severity (green when resolved), ``timestamp`` (the start, or the end when resolved), fields
    for policy, target, route, step and weight, phase change, reason and run id, one field per failing check
    (numbers, reason, query) and one with the graph links, and a footer with the message key. Discord's limits
    are respected by cutting: 25 fields, 256 characters a field name, 1024 a value, 4096 the description and
    6000 in total (checks beyond the budget are counted, not shown). ``allowed_mentions`` is empty, so no
    text in an alert can ping anyone. Discord answers ``204``; its ``429`` carries ``retry_after``.

    Args:
        client: the HTTP client.
        webhook_url: the webhook URL (a secret).
    """

    name = "discord"

    def __init__(self, client: httpx.Client, *, webhook_url: str) -> None:
        super().__init__(client, webhook_url)

    def send(self, message: AlertMessage, *, timeout: float | None = None) -> None:
        """Post the message once.

        Args:
            message: the alert.
            timeout: upper bound in seconds on each phase of the request (None: the client's timeouts).

        Raises:
            AlertDeliveryError: not delivered.
        """
        self._post(self._url, _dumps(self.render(message)), timeout=timeout)

    def _retry_after(self, response: httpx.Response) -> float | None:
        header = _retry_after(response)
        if header is not None:
            return header
        try:
            body = response.json()
        except ValueError:
            return None
        value = body.get("retry_after") if isinstance(body, dict) else None
        return float(value) if isinstance(value, int | float) and value >= 0 else None

    @staticmethod
    def render(message: AlertMessage) -> dict[str, Any]:
        """The webhook payload."""
        title = _clip(f"{_state_word(message)}: {message.title}", DISCORD_TITLE)
        description = _discord_escape(message.summary)
        if message.description:
            description += "\n\n" + _discord_escape(message.description)
        fields = [
            _discord_field("Policy", f"{message.namespace}/{message.policy}", inline=True),
            _discord_field("Target", message.target, inline=True),
            _discord_field("Route", message.route, inline=True),
            _discord_field("Step / weight", _step(message), inline=True),
            _discord_field("Phase", _phase(message), inline=True),
            _discord_field("Run id", message.run_id, inline=True),
            _discord_field("Reason", message.reason, inline=False),
        ]
        links = [
            f"[{_discord_escape(label)}]({url})"
            for label, url in _graph_links(message)
            if len(url) < DISCORD_FIELD_VALUE - 50 and ")" not in url
        ]
        link_fields: list[dict[str, Any]] = []
        if links:
            value = ""
            for link in links:
                if len(value) + len(link) + 1 > DISCORD_FIELD_VALUE:
                    break
                value = f"{value}\n{link}" if value else link
            link_fields.append({"name": "Graphs", "value": value, "inline": False})
        embed: dict[str, Any] = {
            "title": title,
            "description": _clip(description, DISCORD_DESCRIPTION),
            "color": _color(message),
            "timestamp": rfc3339(
                message.ended_at if message.state == "resolved" and message.ended_at else message.started_at
            ),
            "footer": {"text": _clip(f"canary-controller · {message.key}", DISCORD_FOOTER)},
        }
        link = message.source_url or _first_graph(message)
        if link.startswith(("http://", "https://")) and len(link) <= 2048:
            embed["url"] = link
        # Fit the checks between the fixed fields and the links, within 25 fields and 6000 characters.
        room = DISCORD_MAX_FIELDS - len(fields) - len(link_fields) - 1
        budget = DISCORD_TOTAL - embed_size({**embed, "fields": fields + link_fields}) - 100
        checks = [_discord_check(check) for check in message.checks]
        shown: list[dict[str, Any]] = []
        for field in checks:
            size = len(field["name"]) + len(field["value"])
            if len(shown) >= room or size > budget:
                break
            shown.append(field)
            budget -= size
        if len(shown) < len(checks):
            more = f"{len(checks) - len(shown)} more failing checks; see the controller's status"
            shown.append({"name": "More checks", "value": more, "inline": False})
        embed["fields"] = fields + shown + link_fields
        content = _clip(f"**{_discord_escape(title)}**: {_discord_escape(message.summary)}", DISCORD_CONTENT)
        return {"content": content, "embeds": [embed], "allowed_mentions": {"parse": []}}


def _discord_field(name: str, value: str, *, inline: bool) -> dict[str, Any]:
    return {
        "name": _clip(name, DISCORD_FIELD_NAME) or "—",
        "value": _clip(_discord_escape(value), DISCORD_FIELD_VALUE) or "—",
        "inline": inline,
    }


def _discord_check(check: FailingCheck) -> dict[str, Any]:
    value = _discord_escape(_check_numbers(check))
    if check.reason:
        value += "\n" + _discord_escape(check.reason)
    if check.queries:
        room = DISCORD_FIELD_VALUE - len(value) - 10
        if room >= 40:
            value += "\n```" + _clip("\n".join(check.queries).replace("`", "'"), room) + "```"
    return {
        "name": _clip(f"Check {check.name}: {check.verdict}", DISCORD_FIELD_NAME),
        "value": _clip(value, DISCORD_FIELD_VALUE),
        "inline": False,
    }


class WebhookSink(_HttpSink):
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
        body = _dumps(self.render(message))
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
                    "canaryValue": _json_number(check.canary_value),
                    "stableValue": _json_number(check.stable_value),
                    "sampleSize": _json_number(check.sample_size),
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


SinkKind = Literal["alertmanager", "slack", "teams", "discord", "webhook"]
SINK_KINDS: tuple[SinkKind, ...] = ("alertmanager", "slack", "teams", "discord", "webhook")


def make_sink(kind: SinkKind, client: httpx.Client, *, url: str, secret: str | None = None) -> AlertSink:
    """The sink of ``kind`` for ``url`` (resolve URLs and secrets from a ``SecretRef`` with ``SecretReader``).

    Args:
        kind: one of ``SINK_KINDS``.
        client: the HTTP client.
        url: Alertmanager's base URL or the webhook URL.
        secret: the HMAC key (``webhook`` only).

    Raises:
        ValueError: an unknown kind, a URL that is not absolute http(s), or a secret for a sink that signs
            nothing. The message never contains the URL.
    """
    if secret is not None and kind != "webhook":
        raise ValueError(f"{kind} sink: only the webhook sink takes a signing secret")
    if kind == "alertmanager":
        return AlertmanagerSink(client, url=url)
    if kind == "slack":
        return SlackSink(client, webhook_url=url)
    if kind == "teams":
        return TeamsSink(client, webhook_url=url)
    if kind == "discord":
        return DiscordSink(client, webhook_url=url)
    if kind == "webhook":
        return WebhookSink(client, url=url, secret=secret)
    raise ValueError(f"unknown alert sink kind {kind!r} (known: {', '.join(SINK_KINDS)})")
