"""Instant queries against Prometheus: the ``MetricsSource`` port, and secrets resolved by reference.

``PrometheusMetricsSource`` answers every query with a ``QueryOutcome`` and never raises for what
Prometheus (or the way to it) does: a value, no data, or an error that says precisely what went wrong,
cut short, with the URL but never a credential in it.

Connections come from the policy's ``spec.analysis.prometheus`` (falling back to the controller's
defaults field by field, but only for the default URL: a policy naming another server gets none of the
default credentials, headers or TLS settings). Each distinct connection (URL, authentication, headers,
TLS, timeout) gets one ``PrometheusConnect`` client, reused across queries; credentials only enter the
cache key as SHA-256 digests. Secrets are never inline in a policy: ``SecretReader``
(``controller.adapters.kubernetes.secrets``) resolves a ``SecretRef`` from an environment variable of the
controller or a key of a Kubernetes Secret in the policy's namespace.

prometheus-api-client (and ``requests`` under it) is confined to this module.
"""

from __future__ import annotations

import ast
import base64
import contextlib
import hashlib
import json
import logging
import math
import os
import re
import tempfile
import threading
import weakref
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

import requests
from prometheus_api_client.exceptions import PrometheusApiClientException
from prometheus_api_client.prometheus_connect import PrometheusConnect
from urllib3.exceptions import ReadTimeoutError
from urllib3.util.retry import Retry

from controller.adapters.kubernetes.secrets import SecretReader, describe_ref
from controller.adapters.redaction import MAX_MESSAGE, MIN_REDACTED, cut
from controller.core.durations import parse_go_duration
from controller.core.measurement import QueryOutcome, VectorOutcome
from controller.core.policy import CanaryPolicy, PrometheusSpec
from controller.core.url_rules import same_url, strip_userinfo
from controller.errors import CanaryError, PolicyError, SecretError

log = logging.getLogger(__name__)

MAX_CLIENTS = 64
"""Clients kept for distinct connections; the least recently used one is closed beyond this."""
_IDENTIFYING = (
    "job",
    "instance",
    "pod",
    "namespace",
    "reporter",
    "destination_workload",
    "destination_workload_namespace",
    "destination_service",
    "response_flags",
    "envoy_cluster_name",
)
_STATUS = re.compile(r"^HTTP Status Code (\d+) \((.*)\)$", re.DOTALL)
_ERRNO = re.compile(r"\[Errno -?\d+\]\s*([^'\")]+)")


# Why nothing can be measured when neither the policy nor the controller names a Prometheus.
NO_PROMETHEUS_URL = "no Prometheus URL (set CANARY_PROMETHEUS_URL or spec.analysis.prometheus.url)"


@dataclass(frozen=True)
class PrometheusConnection:
    """Everything needed to reach one Prometheus. Credentials are kept out of ``repr``.

    Attributes:
        url: base URL as configured (it may carry user info; see ``safe_url``).
        timeout_seconds: per-query timeout, sent to Prometheus and used for the HTTP request.
        verify: TLS verification as ``requests`` takes it: True, False, or the path of a CA bundle file.
        headers: HTTP headers sent with every query (extra headers, and ``Authorization`` for a bearer token).
        auth: basic-auth user name and password.
        secrets: credential values to scrub from any message.
    """

    url: str
    timeout_seconds: float
    verify: bool | str = True
    headers: Mapping[str, str] = field(default_factory=dict, repr=False)
    auth: tuple[str, str] | None = field(default=None, repr=False)
    secrets: tuple[str, ...] = field(default=(), repr=False)

    @property
    def safe_url(self) -> str:
        """The URL without user info, for messages."""
        return strip_userinfo(self.url)

    def cache_key(self) -> tuple[object, ...]:
        """What makes two connections distinct; credentials appear only as digests."""
        headers = tuple(sorted((name.lower(), _digest(value)) for name, value in self.headers.items()))
        auth = (self.auth[0], _digest(self.auth[1])) if self.auth else None
        return (_digest(self.url), headers, auth, self.verify, self.timeout_seconds)

    def redact(self, text: str) -> str:
        """``text`` with every credential replaced by ``***``."""
        for secret in sorted(self.secrets, key=len, reverse=True):
            if len(secret) >= MIN_REDACTED:
                text = text.replace(secret, "***")
        return text


def _digest(value: str) -> str:
    return hashlib.sha256(value.encode("utf-8")).hexdigest()


def _seconds(value: float) -> str:
    """``0.5`` -> ``0.5``, ``10.0`` -> ``10``: seconds as people (and Prometheus's ``timeout``) read them."""
    return f"{value:g}"


class PrometheusMetricsSource:
    """The ``MetricsSource`` port on Prometheus's HTTP API (``/api/v1/query``).

    Args:
        default_url: base URL when a policy sets none (None: policies must set one).
        default_timeout_seconds: per-query timeout when a policy sets none.
        secrets: resolves bearer tokens, passwords and CA bundles by reference.
        default_spec: the controller's default credentials, headers and TLS settings (from settings), which
            a policy's ``spec.analysis.prometheus`` overrides field by field.
    """

    def __init__(
        self,
        *,
        default_url: str | None,
        default_timeout_seconds: float = 10.0,
        secrets: SecretReader,
        default_spec: PrometheusSpec | None = None,
    ) -> None:
        self.default_url = default_url
        self.default_spec = default_spec
        self.default_timeout_seconds = default_timeout_seconds
        self._secrets = secrets
        self._clients: OrderedDict[tuple[object, ...], Any] = OrderedDict()
        self._ca_files: dict[str, str] = {}
        self._lock = threading.Lock()
        self._finalizer = weakref.finalize(self, _cleanup, self._clients, self._ca_files)

    def __repr__(self) -> str:
        url = strip_userinfo(self.default_url) if self.default_url else None
        return f"PrometheusMetricsSource(default_url={url!r}, default_timeout_seconds={self.default_timeout_seconds})"

    def close(self) -> None:
        """Close every HTTP session and delete the CA bundle files written for them (also done when the
        source is garbage-collected or the interpreter exits). A later query opens new sessions."""
        with self._lock:
            _cleanup(self._clients, self._ca_files)

    def query(self, *, query: str, at: datetime, connection: CanaryPolicy | None = None) -> QueryOutcome:
        """Evaluate ``query`` at ``at`` and reduce the answer to one value, no data, or an error.

        Args:
            query: PromQL expected to return at most one series (or a scalar).
            at: evaluation time (timezone-aware).
            connection: the policy whose ``spec.analysis.prometheus`` (and namespace, for Secrets) applies;
                None for the controller's defaults.

        Returns:
            The outcome. Never raises for Prometheus, network, secret or answer problems: they become
            ``QueryOutcome.error``.
        """
        answer = self._evaluate(query, at, connection)
        if isinstance(answer, QueryOutcome):
            return answer
        result, settings = answer
        outcome = _reduce(query, result)
        if outcome.error is not None:
            return self._failed(query, outcome.error, settings)
        return outcome

    def query_vector(
        self, *, query: str, at: datetime, labels: tuple[str, ...], connection: CanaryPolicy | None = None
    ) -> VectorOutcome:
        """Evaluate a grouped query (``sum by (labels) (...)``) at ``at``: a value per group, or an error.

        Never raises for Prometheus, network, secret or answer problems (see :meth:`query`).
        """
        answer = self._evaluate(query, at, connection)
        if isinstance(answer, QueryOutcome):
            return VectorOutcome(query=query, error=answer.error)
        result, settings = answer
        if not isinstance(result, list) or any(not isinstance(item, dict) or "value" not in item for item in result):
            return VectorOutcome(
                query=query, error=self._failed(query, "query did not return an instant vector", settings).error
            )
        values: dict[tuple[str, ...], float] = {}
        for item in result:
            metric = _metric(item)
            key = tuple(str(metric.get(label, "")) for label in labels)
            try:
                values[key] = float(item["value"][1])
            except (TypeError, ValueError, IndexError):
                return VectorOutcome(query=query, error="malformed answer from Prometheus: a sample is not a number")
        return VectorOutcome(query=query, values=values)

    def _evaluate(
        self, query: str, at: datetime, connection: CanaryPolicy | None
    ) -> tuple[Any, PrometheusConnection] | QueryOutcome:
        """The raw ``data.result`` of an instant query with its connection, or the failure as an outcome."""
        try:
            settings = self.connection(connection)
        except CanaryError as exc:
            return self._failed(query, str(exc), None)
        try:
            client = self._client(settings)
        except CanaryError as exc:
            return self._failed(query, str(exc), settings)
        params = {"time": at.timestamp(), "timeout": _seconds(settings.timeout_seconds)}
        try:
            result = client.custom_query(query, params=params, timeout=settings.timeout_seconds)
        except (requests.exceptions.Timeout, ReadTimeoutError):
            return self._failed(
                query,
                f"Prometheus at {settings.safe_url}: query timed out after {_seconds(settings.timeout_seconds)}s",
                settings,
            )
        except requests.exceptions.ConnectionError as exc:
            return self._failed(query, f"Prometheus at {settings.safe_url} unreachable: {_reason(exc)}", settings)
        except PrometheusApiClientException as exc:
            return self._failed(query, _http_error(str(exc), settings), settings)
        except requests.exceptions.JSONDecodeError:
            return self._failed(query, f"malformed answer from Prometheus at {settings.safe_url}: not JSON", settings)
        except requests.exceptions.RequestException as exc:  # an invalid URL, too many redirects...
            return self._failed(
                query,
                f"request to Prometheus at {settings.safe_url} failed: {type(exc).__name__}: {cut(str(exc), 200)}",
                settings,
            )
        except (ValueError, KeyError, TypeError) as exc:  # JSON, but not Prometheus's shape
            return self._failed(
                query, f"malformed answer from Prometheus at {settings.safe_url}: {type(exc).__name__}", settings
            )
        return result, settings

    def connection(self, policy: CanaryPolicy | None) -> PrometheusConnection:
        """The connection a policy asks for: its ``spec.analysis.prometheus`` over the controller's defaults.

        A bearer token replaces any ``Authorization`` among the extra headers. Tokens and passwords are
        stripped of surrounding whitespace (Secrets made from files often end in a newline), as Prometheus
        does with its own credentials files. A CA bundle is written to a private temp file for ``requests``.

        Args:
            policy: the policy (None for the defaults alone).

        Raises:
            PolicyError: no URL anywhere.
            SecretError: a referenced secret cannot be read, or a CA bundle is not PEM.
        """
        spec: PrometheusSpec | None = None
        if policy is not None and policy.spec.analysis is not None:
            spec = policy.spec.analysis.prometheus
        own_url = spec.url if spec is not None else None
        # The default credentials, headers and TLS settings belong to the default Prometheus: a policy that
        # names another server gets none of them, or its author could collect them there.
        if self.default_spec is not None and (own_url is None or same_url(own_url, self.default_url)):
            # The controller's defaults (settings), overridden field by field by what the policy sets; a
            # policy that sets either kind of credentials replaces the default credentials entirely.
            if spec is None:
                spec = self.default_spec
            else:
                overridden = set(spec.model_fields_set)
                if overridden & {"bearer_token", "basic_auth"}:
                    overridden |= {"bearer_token", "basic_auth"}
                spec = self.default_spec.model_copy(update={name: getattr(spec, name) for name in overridden})
        namespace = policy.metadata.namespace if policy is not None else ""
        url = (spec.url if spec is not None else None) or self.default_url
        if not url:
            raise PolicyError([NO_PROMETHEUS_URL])
        url = url.rstrip("/")
        timeout = self.default_timeout_seconds
        if spec is not None and "timeout" in spec.model_fields_set:
            timeout = parse_go_duration(spec.timeout)
        if spec is None:
            return PrometheusConnection(url=url, timeout_seconds=timeout, secrets=_userinfo_secrets(url))
        secrets = list(_userinfo_secrets(url))
        headers = dict(spec.headers or {})
        secrets += [
            value for name, value in headers.items() if name.lower() in {"authorization", "proxy-authorization"}
        ]
        auth: tuple[str, str] | None = None
        if spec.bearer_token is not None:
            token = self._secrets.read(spec.bearer_token, namespace=namespace).strip()
            headers = {name: value for name, value in headers.items() if name.lower() != "authorization"}
            headers["Authorization"] = f"Bearer {token}"
            secrets += [token, headers["Authorization"]]
        if spec.basic_auth is not None:
            password = self._secrets.read(spec.basic_auth.password, namespace=namespace).strip()
            auth = (spec.basic_auth.username, password)
            encoded = base64.b64encode(f"{spec.basic_auth.username}:{password}".encode()).decode()
            secrets += [password, encoded]
        verify: bool | str = True
        if spec.insecure_skip_verify:
            verify = False
        elif spec.ca_bundle is not None:
            pem = self._secrets.read(spec.ca_bundle, namespace=namespace)
            if "-----BEGIN CERTIFICATE-----" not in pem:
                raise SecretError(
                    [f"caBundle {describe_ref(spec.ca_bundle, namespace=namespace)} holds no PEM certificate"]
                )
            verify = self._ca_file(pem)
        return PrometheusConnection(
            url=url, timeout_seconds=timeout, verify=verify, headers=headers, auth=auth, secrets=tuple(secrets)
        )

    def ready(self, *, timeout_seconds: float = 3.0) -> str | None:
        """Whether the default Prometheus answers ``/-/ready``, asked through the very connection the
        analysis uses (default credentials, headers, CA bundle): None when it does, else why not.

        Never raises; the reason carries no credential.
        """
        try:
            settings = self.connection(None)
            client = self._client(settings)
        except CanaryError as exc:
            return cut(str(exc))
        session = client._session  # the session built in _client: its TLS settings and adapters
        try:
            answer = session.request(
                "GET",
                f"{settings.url}/-/ready",
                headers=dict(settings.headers),
                auth=settings.auth,
                timeout=min(timeout_seconds, settings.timeout_seconds),
                allow_redirects=False,
            )
        except requests.exceptions.Timeout:
            return settings.redact(f"Prometheus at {settings.safe_url}: /-/ready timed out")
        except requests.exceptions.RequestException as exc:
            return settings.redact(f"Prometheus at {settings.safe_url} unreachable: {_reason(exc)}")
        if answer.status_code != 200:
            return settings.redact(f"Prometheus at {settings.safe_url}: /-/ready answered HTTP {answer.status_code}")
        return None

    def _ca_file(self, pem: str) -> str:
        """A private (0600) file holding ``pem``, one per distinct bundle, deleted by ``close``."""
        key = _digest(pem)
        with self._lock:
            path = self._ca_files.get(key)
            if path is not None and os.path.exists(path):
                return path
            descriptor, path = tempfile.mkstemp(prefix="canary-prometheus-ca-", suffix=".pem")
            os.fchmod(descriptor, 0o600)  # mkstemp's default too; said here because it matters
            with os.fdopen(descriptor, "w", encoding="utf-8") as file:
                file.write(pem)
            self._ca_files[key] = path
            return path

    def _client(self, settings: PrometheusConnection) -> Any:
        """The cached ``PrometheusConnect`` of a connection (one per distinct connection)."""
        key = settings.cache_key()
        with self._lock:
            client = self._clients.get(key)
            if client is not None:
                self._clients.move_to_end(key)
                return client
            session = requests.Session()
            session.verify = settings.verify
            # The library's annotations say int/dict/tuple where it accepts float and None.
            options: dict[str, Any] = {
                "url": settings.url,
                "headers": dict(settings.headers) or None,
                "auth": settings.auth,
                # The controller checks again at its next interval; retrying here would only stretch a
                # failing query beyond its timeout.
                # (``read=False`` re-raises a read timeout as such rather than as a "connection" error.)
                "retry": Retry(total=0, read=False, redirect=False, raise_on_status=False),
                "session": session,
                "timeout": settings.timeout_seconds,
            }
            try:
                client = PrometheusConnect(**options)
            except (TypeError, ValueError) as exc:
                session.close()
                raise PolicyError([f"invalid Prometheus URL {settings.safe_url}: {exc}"]) from None
            self._clients[key] = client
            while len(self._clients) > MAX_CLIENTS:
                _, oldest = self._clients.popitem(last=False)
                oldest.close()
        log.debug(
            "new Prometheus client for %s (auth: %s, TLS: %s, timeout %ss)",
            settings.safe_url,
            "bearer" if "Authorization" in settings.headers else "basic" if settings.auth else "none",
            "insecure" if settings.verify is False else "CA bundle" if isinstance(settings.verify, str) else "system",
            _seconds(settings.timeout_seconds),
        )
        return client

    @staticmethod
    def _failed(query: str, message: str, settings: PrometheusConnection | None) -> QueryOutcome:
        if settings is not None:
            message = settings.redact(message)
        message = cut(message, 2 * MAX_MESSAGE)
        log.debug("Prometheus query failed: %s", message)
        return QueryOutcome(query=query, error=message)


def _cleanup(clients: OrderedDict[tuple[object, ...], Any], ca_files: dict[str, str]) -> None:
    """Close sessions and remove CA files (also run when the source is garbage-collected)."""
    for client in list(clients.values()):
        client.close()
    clients.clear()
    for path in list(ca_files.values()):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
    ca_files.clear()


def _userinfo_secrets(url: str) -> tuple[str, ...]:
    """Credentials written into the URL itself (``http://user:password@host``), to scrub from messages."""
    netloc = urlsplit(url).netloc
    if "@" not in netloc:
        return ()
    userinfo = netloc.rsplit("@", 1)[0]
    return (userinfo, userinfo.partition(":")[2]) if ":" in userinfo else (userinfo,)


def _reason(exc: BaseException) -> str:
    """Why a connection failed, in a few words (refused, name resolution, TLS...), without the request URL."""
    text = str(exc)
    if isinstance(exc, requests.exceptions.SSLError):
        detail = re.search(r"SSLError\((.*)\)\)", text, re.DOTALL)
        return "TLS error: " + cut(detail.group(1) if detail else text, 200)
    lowered = text.lower()
    if "connection refused" in lowered:
        return "connection refused"
    if any(marker in lowered for marker in ("name or service not known", "nodename nor servname", "name resolution")):
        return "DNS name resolution failed"
    errno = _ERRNO.search(text)
    if errno:
        return errno.group(1).strip().rstrip(".")
    return cut(text, 200)


def _http_error(text: str, settings: PrometheusConnection) -> str:
    """``HTTP <status>: <errorType>: <error>`` from prometheus-api-client's exception text."""
    match = _STATUS.match(text)
    if match is None:
        return f"Prometheus at {settings.safe_url}: {cut(text)}"
    status = int(match.group(1))
    body = match.group(2)
    try:
        raw = ast.literal_eval(body)
        body = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
    except (ValueError, SyntaxError):
        pass
    message = body
    error_type = ""
    try:
        parsed = json.loads(body)
    except ValueError:
        parsed = None
    if isinstance(parsed, dict) and "error" in parsed:
        message = str(parsed.get("error"))
        error_type = str(parsed.get("errorType") or "")
    if error_type == "timeout":
        return (
            f"Prometheus at {settings.safe_url}: query timed out after {_seconds(settings.timeout_seconds)}s "
            f"(HTTP {status}: {cut(message)})"
        )
    kind = f"{error_type}: " if error_type else ""
    hint = " (is that the base URL of Prometheus, without /api/v1?)" if status == 404 else ""
    return f"Prometheus at {settings.safe_url} answered HTTP {status}: {kind}{cut(message or '(empty body)')}{hint}"


def _reduce(query: str, result: Any) -> QueryOutcome:
    """One value, no data, or an error, from the ``data.result`` of an instant query."""
    if isinstance(result, list) and len(result) == 2 and not isinstance(result[0], dict):
        return _number(query, result[1])  # a scalar: [time, "value"]
    if not isinstance(result, list):
        return QueryOutcome(query=query, error=f"malformed answer from Prometheus: result is {type(result).__name__}")
    if not result:
        return QueryOutcome(query=query)
    if len(result) > 1:
        differing = _differing_labels(result)
        listed = result[:3]
        head = f"query returned {len(result)} series where one was expected"
        head += f" (the first {len(listed)}): " if len(result) > len(listed) else ": "
        budget = (MAX_MESSAGE - len(head)) // len(listed) - 2
        shown = "; ".join(_labels(item, differing, budget) for item in listed)
        return QueryOutcome(query=query, error=cut(head + shown))
    item = result[0]
    if not isinstance(item, dict) or "value" not in item:
        kind = "a range vector" if isinstance(item, dict) and "values" in item else "an unknown shape"
        return QueryOutcome(query=query, error=f"query returned {kind}; an instant vector or a scalar is expected")
    value = item["value"]
    if not isinstance(value, list) or len(value) != 2:
        return QueryOutcome(query=query, error="malformed answer from Prometheus: a sample is not [time, value]")
    return _number(query, value[1])


def _number(query: str, text: Any) -> QueryOutcome:
    try:
        value = float(text)
    except (TypeError, ValueError):
        return QueryOutcome(query=query, error=f"query returned a non-number: {cut(str(text), 80)}")
    if math.isnan(value):
        return QueryOutcome(query=query, error="query returned NaN (e.g. 0/0: nothing to divide by)")
    if math.isinf(value):
        return QueryOutcome(query=query, error=f"query returned {'+' if value > 0 else '-'}Inf")
    return QueryOutcome(query=query, value=value)


def _metric(item: Any) -> dict[str, Any]:
    metric = item.get("metric") if isinstance(item, dict) else None
    return metric if isinstance(metric, dict) else {}


def _differing_labels(result: list[Any]) -> set[str]:
    """The labels whose values tell the series apart (Istio series share most of their two dozen labels)."""
    metrics = [_metric(item) for item in result]
    names = {key for metric in metrics for key in metric}
    return {key for key in names if len({str(metric.get(key, "")) for metric in metrics}) > 1}


def _labels(item: Any, keys: set[str], limit: int) -> str:
    """``name{a="b",...}`` of one series with only the labels in ``keys`` (the others are ``...``), cut short.

    Labels that usually tell series apart (job, pod, reporter, workload...) come first.
    """
    metric = _metric(item)
    name = str(metric.get("__name__", ""))
    order = {key: index for index, key in enumerate(_IDENTIFYING)}
    shown = sorted((key for key in metric if key in keys and key != "__name__"), key=lambda k: (order.get(k, 99), k))
    pairs = [f'{key}="{metric[key]}"' for key in shown]
    if len(pairs) < len(metric) - ("__name__" in metric):
        pairs.append("...")
    return cut(name + "{" + ",".join(pairs) + "}", limit)
