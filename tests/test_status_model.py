"""The status model reads what earlier versions persisted and writes it back unchanged, typed in between."""

from __future__ import annotations

import json
from typing import Any

import pytest
from pydantic import BaseModel

from controller.core.crd import status_schema
from controller.core.status import (
    Alert,
    CheckRecord,
    LastVerdict,
    PauseReason,
    Phase,
    RolloutStatus,
    Verdict,
    copy_status,
)

CHECK: dict[str, Any] = {
    "name": "connect-errors",
    "verdict": "fail",
    "reason": "canary 3 errors in 300 connections (1.0000%); stable 0/900",
    "canaryValue": 0.01,
    "stableValue": 0,
    "canaryErrors": 3,
    "canaryConnections": 300,
    "stableErrors": None,
    "stableConnections": 900.0,
    "threshold": "binomial test at 99%",
    "queries": ["sum(increase(envoy_cluster_upstream_cx_connect_fail[1m]))"],
}

# A status as the controller persisted it before the status was typed (pausedReason, lastVerdict and checks
# were plain strings and objects then), with every retyped field set.
PERSISTED: dict[str, Any] = {
    "phase": "Paused",
    "revision": "0123456789abcdef",
    "runId": "01234567-1",
    "runNumber": 1,
    "stepIndex": 1,
    "weight": 20,
    "pausedReason": "inconclusive",
    "lastVerdict": "inconclusive: connect-errors: too few connections: 12 < minConnections 100",
    "lastAnalysisAt": "2026-01-01T00:01:00Z",
    "lastChecks": [CHECK, {"name": "custom", "verdict": "pass", "sampleSize": 7}],
    "pendingAlerts": [
        {
            "key": "01234567-1/CanaryPaused/3",
            "name": "CanaryPaused",
            "severity": "warning",
            "summary": "2 inconclusive analyses in a row (maxInconclusive 2); paused",
            "reason": "AnalysisInconclusive",
            "fromPhase": "Progressing",
            "toPhase": "Paused",
            "stepIndex": 1,
            "weight": 20,
            "runId": "01234567-1",
            "createdAt": "2026-01-01T00:01:00Z",
            "checks": [CHECK],
        }
    ],
}


def test_a_status_persisted_before_the_typing_reads_as_typed_values() -> None:
    status = RolloutStatus.model_validate(PERSISTED)
    assert status.paused_reason == PauseReason.INCONCLUSIVE
    assert status.last_verdict == LastVerdict(
        verdict=Verdict.INCONCLUSIVE, reason="connect-errors: too few connections: 12 < minConnections 100"
    )
    assert status.last_checks[0].canary_connections == 300
    assert status.last_checks[0].verdict == Verdict.FAIL
    assert isinstance(status.pending_alerts[0], Alert)
    assert status.pending_alerts[0].checks[0].threshold == "binomial test at 99%"


def test_a_status_is_written_back_exactly_as_it_was_read() -> None:
    status = RolloutStatus.model_validate(PERSISTED)
    written = json.loads(status.model_dump_json())
    for key, value in PERSISTED.items():
        assert written[key] == value, key
    again = RolloutStatus.model_validate_json(status.model_dump_json())
    assert again == status


def _mutable_parts(value: Any, found: dict[int, Any]) -> dict[int, Any]:
    """Every list, dict and model reachable from ``value``, by id (kept alive in the dict)."""
    if isinstance(value, BaseModel):
        found[id(value)] = value
        for name in type(value).model_fields:
            _mutable_parts(getattr(value, name), found)
        for extra in (value.model_extra or {}).values():
            _mutable_parts(extra, found)
    elif isinstance(value, dict):
        found[id(value)] = value
        for item in value.values():
            _mutable_parts(item, found)
    elif isinstance(value, list):
        found[id(value)] = value
        for item in value:
            _mutable_parts(item, found)
    return found


def test_a_copied_status_is_equal_writes_the_same_and_shares_nothing_with_the_original() -> None:
    # The status stores share the status they parsed between passes: a decision changes only its copy.
    persisted = {
        **PERSISTED,
        "original": {
            "pointer": "/spec/tcp/0/route",
            "destinations": [{"destination": {"host": "tcp-echo", "subset": "v1"}, "weight": 100}],
            "target": "0123456789abcdef",
        },
        "history": [{"time": "2026-01-01T00:00:00Z", "from": "Pending", "to": "Progressing", "reason": "Started"}],
    }
    status = RolloutStatus.model_validate(persisted)
    copied = copy_status(status)
    assert copied == status
    assert copied.model_dump_json(exclude_none=True) == status.model_dump_json(exclude_none=True)
    shared = _mutable_parts(status, {}).keys() & _mutable_parts(copied, {}).keys()
    assert not shared
    assert copied.original is not None
    copied.original.destinations[0]["weight"] = 0
    copied.last_checks[0].reason = "changed"
    copied.history.clear()
    assert status == RolloutStatus.model_validate(persisted)


def test_a_check_keeps_exactly_its_keys_unknown_ones_included() -> None:
    check = CheckRecord.model_validate({"name": "custom", "sampleSize": 7})
    assert check.model_dump(mode="json") == {"name": "custom", "sampleSize": 7}
    assert CheckRecord.model_validate(CHECK).model_dump(mode="json") == CHECK


@pytest.mark.parametrize(
    ("text", "verdict", "reason"),
    [
        ("pass", Verdict.PASS, ""),
        ("pass: 0 errors in 200 connections", Verdict.PASS, "0 errors in 200 connections"),
        ("fail: connect-errors: canary 5 errors", Verdict.FAIL, "connect-errors: canary 5 errors"),
        ("inconclusive: no data", Verdict.INCONCLUSIVE, "no data"),
    ],
)
def test_a_last_verdict_reads_its_verdict_and_reason_and_writes_the_same_text(
    text: str, verdict: Verdict, reason: str
) -> None:
    status = RolloutStatus.model_validate({"lastVerdict": text})
    assert status.last_verdict == LastVerdict(verdict=verdict, reason=reason)
    assert status.model_dump(mode="json")["lastVerdict"] == text
    assert str(status.last_verdict) == text


def test_every_pause_reason_reads_and_writes_its_persisted_string() -> None:
    for reason in ("manual", "drift", "inconclusive", "awaiting-promote", "promote"):
        status = RolloutStatus.model_validate({"phase": Phase.PAUSED, "pausedReason": reason})
        assert isinstance(status.paused_reason, PauseReason)
        assert status.model_dump(mode="json")["pausedReason"] == reason


def test_the_crd_describes_the_retyped_fields_as_before() -> None:
    properties = status_schema()["properties"]
    assert properties["pausedReason"] == {"type": "string", "nullable": True}
    assert properties["lastVerdict"] == {"type": "string", "nullable": True}
    free_form = {"type": "array", "items": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}}
    assert properties["lastChecks"] == free_form
    assert properties["pendingAlerts"]["items"]["properties"]["checks"] == free_form
