"""The Prometheus adapter against a real Prometheus: values, no data, and every way a query can fail.

Header checks go through a recording proxy in front of the real server; failures Prometheus cannot be made
to produce on demand (a slow answer, a 500, its own timeout) come from a canned Prometheus-shaped server.
"""

from __future__ import annotations

import base64
import logging
import os
import stat
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from urllib3.exceptions import InsecureRequestWarning

from canary_sandbox.kubeapi import KubeApiEmulator
from canary_sandbox.processes import free_port
from controller.adapters.kubernetes.api import KubeApi
from controller.adapters.kubernetes.secrets import SecretReader
from controller.adapters.prometheus import PrometheusMetricsSource
from controller.core.measurement import QueryOutcome
from controller.core.policy import CanaryPolicy, SecretRef
from controller.errors import SecretError
from tests.prom.servers import CannedServer, PrometheusServer, RecordingProxy, self_signed_tls
from tests.support.policies import policy_doc

UH_SERIES = 'istio_tcp_connections_closed_total{job="istio-scrape-04"}'  # 88 in metrics-04
TOKEN = "tok-5ecret-7f3a9c"
PASSWORD = "pw-5ecret-b41d"


def policy(prometheus: dict[str, Any] | None = None, *, namespace: str = "default") -> CanaryPolicy:
    """The seed policy with one custom check and the given ``spec.analysis.prometheus``."""
    doc = policy_doc(namespace=namespace)
    doc["spec"]["analysis"] = {"metrics": [{"name": "up", "query": "vector(1)", "min": 1}]}
    if prometheus is not None:
        doc["spec"]["analysis"]["prometheus"] = prometheus
    return CanaryPolicy.model_validate(doc)


def now() -> datetime:
    """The current time, timezone-aware."""
    return datetime.now(UTC)


def put_secret(emulator: KubeApiEmulator, namespace: str, name: str, values: dict[str, str]) -> None:
    """Create or replace an Opaque Secret in the emulator (values base64-encoded, as the API stores them)."""
    data = {key: base64.b64encode(value.encode()).decode() for key, value in values.items()}
    metadata = {"name": name, "namespace": namespace}
    emulator.put({"apiVersion": "v1", "kind": "Secret", "metadata": metadata, "data": data})


@pytest.fixture
def source(prometheus: PrometheusServer) -> Iterator[PrometheusMetricsSource]:
    """The adapter with the session's Prometheus as its default, and only environment secrets."""
    adapter = PrometheusMetricsSource(
        default_url=prometheus.url,
        default_timeout_seconds=5.0,
        secrets=SecretReader(environ={"PROM_TOKEN": TOKEN, "PROM_PASSWORD": PASSWORD}),
    )
    yield adapter
    adapter.close()


@pytest.fixture
def canned() -> Iterator[list[CannedServer]]:
    """Canned servers a test starts; closed after it."""
    servers: list[CannedServer] = []
    yield servers
    for server in servers:
        server.close()


def start_canned(servers: list[CannedServer], **options: Any) -> CannedServer:
    """Start a canned server, closed when the test ends."""
    server = CannedServer(**options)
    servers.append(server)
    return server


# ------------------------------------------------------------------------------------------------ answers


def test_a_query_returning_one_series_gives_its_value(source: PrometheusMetricsSource) -> None:
    outcome = source.query(query=UH_SERIES, at=now())
    assert (outcome.value, outcome.error, outcome.query) == (88.0, None, UH_SERIES)


def test_a_scalar_result_is_accepted_as_a_value(source: PrometheusMetricsSource) -> None:
    assert source.query(query="scalar(vector(2)) * 1.5", at=now()).value == 3.0


def test_a_query_matching_nothing_is_no_data_not_an_error(source: PrometheusMetricsSource) -> None:
    outcome = source.query(query='istio_tcp_connections_opened_total{destination_workload="nobody"}', at=now())
    assert outcome.no_data
    assert (outcome.value, outcome.error) == (None, None)


def test_a_query_is_evaluated_at_the_given_time(source: PrometheusMetricsSource) -> None:
    """``at`` is sent as Prometheus's ``time``: ``time()`` evaluates to it."""
    at = datetime(2024, 5, 1, 12, 0, 30, tzinfo=UTC)
    assert source.query(query="time()", at=at).value == at.timestamp()


def test_several_series_where_one_is_expected_is_an_error_naming_how_many_and_which(
    source: PrometheusMetricsSource,
) -> None:
    outcome = source.query(query='{__name__=~"istio_tcp_connections_.*",job=~"istio-scrape-.*"}', at=now())
    assert outcome.value is None
    assert outcome.error is not None
    assert outcome.error.startswith("query returned 4 series where one was expected (the first 3): ")
    assert outcome.error.count("istio_tcp_connections_") == 3
    assert outcome.error.count('{job="istio-scrape-0') == 3  # the labels that tell them apart come first
    assert len(outcome.error) <= 300


@pytest.mark.parametrize(
    ("query", "reported"),
    [("0/0", "NaN"), ("vector(0) / 0", "NaN"), ("1/0", "+Inf"), ("vector(-1) / 0", "-Inf")],
)
def test_nan_and_infinities_are_errors_not_values(source: PrometheusMetricsSource, query: str, reported: str) -> None:
    outcome = source.query(query=query, at=now())
    assert outcome.value is None
    assert outcome.error is not None
    assert reported in outcome.error


def test_a_promql_syntax_error_reports_the_400_and_prometheus_message(source: PrometheusMetricsSource) -> None:
    outcome = source.query(query="sum(rate(istio_tcp_connections_opened_total[1m])", at=now())
    assert outcome.error is not None
    assert "HTTP 400" in outcome.error
    assert "bad_data" in outcome.error
    assert "parse error" in outcome.error


def test_an_unreachable_prometheus_is_an_error_naming_the_url_without_credentials() -> None:
    port = free_port()  # nothing listens there
    adapter = PrometheusMetricsSource(
        default_url=f"http://scraper:{PASSWORD}@127.0.0.1:{port}", default_timeout_seconds=2.0, secrets=SecretReader()
    )
    started = time.monotonic()
    try:
        outcome = adapter.query(query="vector(1)", at=now())
    finally:
        adapter.close()
    assert time.monotonic() - started < 2.0
    assert outcome.error == f"Prometheus at http://127.0.0.1:{port} unreachable: connection refused"
    assert PASSWORD not in repr(adapter)


def test_a_slow_prometheus_times_out_after_the_policy_timeout(
    source: PrometheusMetricsSource, canned: list[CannedServer]
) -> None:
    """The timeout bounds the HTTP request and is also sent as Prometheus's own ``timeout``."""
    slow = start_canned(canned, delay=10.0)
    started = time.monotonic()
    outcome = source.query(query="vector(1)", at=now(), connection=policy({"url": slow.url, "timeout": "300ms"}))
    elapsed = time.monotonic() - started
    assert outcome.error == f"Prometheus at {slow.url}: query timed out after 0.3s"
    assert elapsed < 1.5
    sent = parse_qs(urlsplit(slow.requests[0].path).query)
    assert sent["timeout"] == ["0.3"]


def test_prometheus_own_timeout_answer_reads_as_timed_out(
    source: PrometheusMetricsSource, canned: list[CannedServer]
) -> None:
    server = start_canned(
        canned,
        status=503,
        body={"status": "error", "errorType": "timeout", "error": "query timed out in expression evaluation"},
    )
    outcome = source.query(query="vector(1)", at=now(), connection=policy({"url": server.url, "timeout": "2s"}))
    assert outcome.error is not None
    assert outcome.error.startswith(f"Prometheus at {server.url}: query timed out after 2s")
    assert "query timed out in expression evaluation" in outcome.error


def test_a_server_error_keeps_the_status_and_prometheus_message_cut_short(
    source: PrometheusMetricsSource, canned: list[CannedServer]
) -> None:
    message = "storage failure: " + "x" * 2000
    server = start_canned(canned, status=500, body={"status": "error", "errorType": "internal", "error": message})
    outcome = source.query(query="vector(1)", at=now(), connection=policy({"url": server.url}))
    assert outcome.error is not None
    assert outcome.error.startswith(f"Prometheus at {server.url} answered HTTP 500: internal: storage failure: xxx")
    assert outcome.error.endswith("...")
    assert len(outcome.error) < 400


def test_an_answer_without_data_is_a_malformed_answer(
    source: PrometheusMetricsSource, canned: list[CannedServer]
) -> None:
    server = start_canned(canned, body={"status": "success"})
    outcome = source.query(query="vector(1)", at=now(), connection=policy({"url": server.url}))
    assert outcome.error == f"malformed answer from Prometheus at {server.url}: KeyError"


def test_a_range_vector_answer_is_an_error(source: PrometheusMetricsSource) -> None:
    outcome = source.query(query=f"{UH_SERIES}[10m]", at=now())
    assert outcome.error == "query returned a range vector; an instant vector or a scalar is expected"


def test_no_url_anywhere_is_an_error_not_an_exception() -> None:
    adapter = PrometheusMetricsSource(default_url=None, secrets=SecretReader())
    outcome = adapter.query(query="vector(1)", at=now(), connection=policy())
    adapter.close()
    assert outcome.error is not None
    assert "no Prometheus URL" in outcome.error


# ------------------------------------------------------------------------------------- connection settings


def test_the_policy_overrides_the_defaults_field_by_field(source: PrometheusMetricsSource) -> None:
    defaults = source.connection(None)
    assert (defaults.url, defaults.timeout_seconds, defaults.verify) == (source.default_url, 5.0, True)
    # ``timeout`` has a schema default (10s), but only a timeout the user wrote overrides the controller's.
    only_url = source.connection(policy({"url": "http://prometheus.istio-system:9090/"}))
    assert (only_url.url, only_url.timeout_seconds) == ("http://prometheus.istio-system:9090", 5.0)
    only_timeout = source.connection(policy({"timeout": "750ms"}))
    assert (only_timeout.url, only_timeout.timeout_seconds) == (source.default_url, 0.75)


def test_one_client_serves_each_distinct_connection_and_its_key_holds_no_secret(
    source: PrometheusMetricsSource,
) -> None:
    bearer = {"bearerToken": {"env": "PROM_TOKEN"}}
    same = source.connection(policy(bearer)).cache_key()
    assert same == source.connection(policy(bearer)).cache_key()
    assert same != source.connection(policy({**bearer, "headers": {"X-Scope-OrgID": "tenant-a"}})).cache_key()
    assert same != source.connection(policy()).cache_key()
    assert TOKEN not in repr(same)
    assert TOKEN not in repr(source.connection(policy(bearer)))


def test_tls_verification_follows_the_ca_bundle_and_the_insecure_flag(tmp_path: Path) -> None:
    """No flag: system CAs. ``caBundle``: the PEM in a private file (0600). ``insecureSkipVerify``: off."""
    pem_path, _ = self_signed_tls(tmp_path)
    pem = pem_path.read_text()
    adapter = PrometheusMetricsSource(
        default_url="https://prometheus.example:9090",
        secrets=SecretReader(environ={"PROM_CA": pem, "NOT_PEM": "hello"}),
    )
    try:
        assert adapter.connection(policy()).verify is True
        assert adapter.connection(policy({"insecureSkipVerify": True})).verify is False
        bundle = adapter.connection(policy({"caBundle": {"env": "PROM_CA"}})).verify
        assert isinstance(bundle, str)
        assert Path(bundle).read_text() == pem
        assert stat.S_IMODE(os.stat(bundle).st_mode) == 0o600
        assert adapter.connection(policy({"caBundle": {"env": "PROM_CA"}})).verify == bundle  # one file per PEM
        with pytest.raises(SecretError, match="caBundle env var NOT_PEM holds no PEM certificate"):
            adapter.connection(policy({"caBundle": {"env": "NOT_PEM"}}))
    finally:
        adapter.close()
    assert not Path(bundle).exists()


@pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning")
def test_https_prometheus_is_trusted_through_the_ca_bundle_only(tmp_path: Path, canned: list[CannedServer]) -> None:
    pem_path, server_tls = self_signed_tls(tmp_path)
    body = {"status": "success", "data": {"resultType": "scalar", "result": [0, "7"]}}
    server = start_canned(canned, body=body, tls=server_tls)
    adapter = PrometheusMetricsSource(
        default_url=server.url, secrets=SecretReader(environ={"PROM_CA": pem_path.read_text()})
    )
    try:
        system_cas = adapter.query(query="vector(7)", at=now(), connection=policy())
        with_bundle = adapter.query(query="vector(7)", at=now(), connection=policy({"caBundle": {"env": "PROM_CA"}}))
        with pytest.warns(InsecureRequestWarning):
            insecure = adapter.query(query="vector(7)", at=now(), connection=policy({"insecureSkipVerify": True}))
    finally:
        adapter.close()
    assert system_cas.error is not None
    assert system_cas.error.startswith(f"Prometheus at {server.url} unreachable: TLS error:")
    assert "CERTIFICATE_VERIFY_FAILED" in system_cas.error
    assert with_bundle.value == 7.0
    assert insecure.value == 7.0


# ---------------------------------------------------------------------------------- credentials on the wire


def test_a_bearer_token_from_the_environment_is_sent_as_authorization(
    source: PrometheusMetricsSource, prometheus: PrometheusServer
) -> None:
    with RecordingProxy(prometheus.url, require={"Authorization": f"Bearer {TOKEN}"}) as proxy:
        outcome = source.query(
            query=UH_SERIES, at=now(), connection=policy({"url": proxy.url, "bearerToken": {"env": "PROM_TOKEN"}})
        )
    assert outcome.value == 88.0
    assert proxy.header_values("Authorization") == [f"Bearer {TOKEN}"]


def test_basic_auth_with_a_password_from_a_kubernetes_secret_is_sent(
    prometheus: PrometheusServer, emulator: KubeApiEmulator, kube: KubeApi, namespace: str
) -> None:
    put_secret(emulator, namespace, "prometheus-auth", {"password": PASSWORD})
    expected = "Basic " + base64.b64encode(f"canary:{PASSWORD}".encode()).decode()
    adapter = PrometheusMetricsSource(default_url=prometheus.url, secrets=SecretReader(kube=kube))
    spec = {"username": "canary", "password": {"secretKeyRef": {"name": "prometheus-auth", "key": "password"}}}
    with RecordingProxy(prometheus.url, require={"Authorization": expected}) as proxy:
        outcome = adapter.query(
            query=UH_SERIES,
            at=now(),
            connection=policy({"url": proxy.url, "basicAuth": spec}, namespace=namespace),
        )
    adapter.close()
    assert outcome.value == 88.0
    assert proxy.header_values("Authorization") == [expected]


def test_extra_headers_are_sent_with_every_query(source: PrometheusMetricsSource, prometheus: PrometheusServer) -> None:
    with RecordingProxy(prometheus.url, require={"X-Scope-OrgID": "tenant-a"}) as proxy:
        connection = policy({"url": proxy.url, "headers": {"X-Scope-OrgID": "tenant-a"}})
        first = source.query(query=UH_SERIES, at=now(), connection=connection)
        second = source.query(query="vector(1)", at=now(), connection=connection)
    assert (first.value, second.value) == (88.0, 1.0)
    assert proxy.header_values("X-Scope-OrgID") == ["tenant-a", "tenant-a"]


def test_a_secret_never_appears_in_errors_logs_or_reprs(
    source: PrometheusMetricsSource, prometheus: PrometheusServer, caplog: pytest.LogCaptureFixture
) -> None:
    """Even a gateway that repeats the Authorization header in its 401 answer cannot leak it through us."""
    caplog.set_level(logging.DEBUG)
    outcomes: list[QueryOutcome] = []
    with RecordingProxy(prometheus.url, require={"Authorization": "Bearer other"}, echo_header="Authorization") as gw:
        bearer = policy({"url": gw.url, "bearerToken": {"env": "PROM_TOKEN"}})
        basic = policy({"url": gw.url, "basicAuth": {"username": "canary", "password": {"env": "PROM_PASSWORD"}}})
        outcomes.append(source.query(query="vector(1)", at=now(), connection=bearer))
        outcomes.append(source.query(query="vector(1)", at=now(), connection=basic))
    closed = policy({"url": f"http://127.0.0.1:{free_port()}", "bearerToken": {"env": "PROM_TOKEN"}})
    outcomes.append(source.query(query="vector(1)", at=now(), connection=closed))
    assert [o.error is not None for o in outcomes] == [True, True, True]
    assert "HTTP 401" in str(outcomes[0].error)
    assert "***" in str(outcomes[0].error)  # the echoed header was there, and was scrubbed
    basic_header = base64.b64encode(f"canary:{PASSWORD}".encode()).decode()
    texts = [str(o.error) for o in outcomes]
    texts += [record.getMessage() for record in caplog.records]
    texts += [repr(source), repr(source.connection(bearer)), repr(source.connection(basic))]
    for secret in (TOKEN, PASSWORD, basic_header):
        assert not [text for text in texts if secret in text], secret


# ------------------------------------------------------------------------------------------ secret reader


def test_the_secret_reader_reads_environment_variables_and_names_a_missing_one() -> None:
    reader = SecretReader(environ={"PROM_TOKEN": TOKEN})
    assert reader.read(SecretRef.model_validate({"env": "PROM_TOKEN"}), namespace="apps") == TOKEN
    with pytest.raises(SecretError, match="env var PROM_MISSING is not set in the controller"):
        reader.read(SecretRef.model_validate({"env": "PROM_MISSING"}), namespace="apps")


def test_the_secret_reader_reads_a_kubernetes_secret_key_and_caches_it_briefly(
    emulator: KubeApiEmulator, kube: KubeApi, namespace: str
) -> None:
    clock = [1000.0]
    reader = SecretReader(kube=kube, ttl_seconds=30.0, clock=lambda: clock[0])
    ref = SecretRef.model_validate({"secretKeyRef": {"name": "prom", "key": "token"}})
    put_secret(emulator, namespace, "prom", {"token": "first-token"})
    assert reader.read(ref, namespace=namespace) == "first-token"
    put_secret(emulator, namespace, "prom", {"token": "rotated-token"})
    clock[0] += 29.0
    assert reader.read(ref, namespace=namespace) == "first-token"
    clock[0] += 2.0
    assert reader.read(ref, namespace=namespace) == "rotated-token"


def test_secret_reader_errors_name_the_reference_but_never_a_value(
    emulator: KubeApiEmulator, kube: KubeApi, namespace: str
) -> None:
    put_secret(emulator, namespace, "prom", {"token": TOKEN})
    reader = SecretReader(kube=kube)
    problems = []
    for name, key in (("absent", "token"), ("prom", "password")):
        ref = SecretRef.model_validate({"secretKeyRef": {"name": name, "key": key}})
        with pytest.raises(SecretError) as caught:
            reader.read(ref, namespace=namespace)
        problems.append(str(caught.value))
    assert problems[0].startswith(f"cannot read Secret {namespace}/absent: ")
    assert "not found" in problems[0]
    assert problems[1] == f"Secret {namespace}/prom key 'password': the Secret has no such key (its keys: token)"
    assert not [problem for problem in problems if TOKEN in problem]
    with pytest.raises(SecretError, match="no Kubernetes API is configured"):
        SecretReader().read(SecretRef.model_validate({"secretKeyRef": {"name": "prom", "key": "t"}}), namespace="x")


def test_a_missing_secret_makes_the_query_an_error_naming_the_reference(source: PrometheusMetricsSource) -> None:
    outcome = source.query(query="vector(1)", at=now(), connection=policy({"bearerToken": {"env": "PROM_UNSET"}}))
    assert outcome.error == "env var PROM_UNSET is not set in the controller"
