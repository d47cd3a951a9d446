"""The HTTP sink base: one POST of a JSON body to one URL, every failure an ``AlertDeliveryError``.

Timeouts, proxies, TLS and extra headers (e.g. Alertmanager behind an authenticating proxy) come from the
client the caller builds, e.g. ``httpx.Client(timeout=httpx.Timeout(5.0))``: a per-request timeout is the
caller's choice, and the retry loop only ever lowers it to fit its deadline. The sinks never follow
redirects unless the client does.

Webhook URLs of Slack, Teams and Discord carry their credential in the path (and Teams Workflows URLs in
the query): they are secrets. Messages, logs and ``repr`` show them only as ``scheme://host/…``; the
generic webhook's URL is treated the same way, Alertmanager's is shown without user info or query. httpx
itself logs every request URL at INFO (logger ``httpx``): the sinks install a filter on that logger that
rewrites their own URLs to the safe form. Remote error bodies are cut to about 200 characters and scrubbed
of the URL's parts and of the HMAC secret.

Retryable: HTTP 5xx, 429 and 408, timeouts, refused or reset connections, a server closing the connection
without answering. Not retryable: any other 4xx (and 3xx), an invalid URL, a failed TLS certificate check.
"""

from __future__ import annotations

import logging
import threading
import weakref
from collections.abc import Iterable
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urlsplit

import httpx

from controller.adapters.alerts.formatting import dumps
from controller.adapters.redaction import MIN_REDACTED, cut, redact, safe_url, secret_url_parts
from controller.core.alerts import AlertMessage
from controller.errors import AlertDeliveryError

MAX_REMOTE_BODY = 200
"""Characters of a remote error body kept in an error message."""


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


def retry_after_seconds(response: httpx.Response) -> float | None:
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


class HttpSink:
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
        secrets = secret_url_parts(url, secret_path=self._secret_path)
        secrets += [secret for secret in extra_secrets if len(secret) >= MIN_REDACTED]
        self._secrets = tuple(sorted(set(secrets), key=len, reverse=True))
        _guard_logs(self, url, self.target)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(target={self.target!r})"

    def _redact(self, text: str) -> str:
        return redact(text, self._secrets)

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
            # Not chained: the transport error's text and request hold the URL (see controller.errors).
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
        return retry_after_seconds(response)


class WebhookSink(HttpSink):
    """A chat webhook whose message is one JSON document posted as is (Slack, Discord): subclasses render it.

    Args:
        client: the HTTP client.
        webhook_url: the webhook URL (a secret).
    """

    def __init__(self, client: httpx.Client, *, webhook_url: str) -> None:
        super().__init__(client, webhook_url)

    def render(self, message: AlertMessage) -> dict[str, Any]:
        """The JSON document for ``message``."""
        raise NotImplementedError

    def send(self, message: AlertMessage, *, timeout: float | None = None) -> None:
        """Post the message once.

        Args:
            message: the alert.
            timeout: upper bound in seconds on each phase of the request (None: the client's timeouts).

        Raises:
            AlertDeliveryError: not delivered.
        """
        self._post(self._url, dumps(self.render(message)), timeout=timeout)
