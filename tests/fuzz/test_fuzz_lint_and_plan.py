"""Fuzzing lint and plan (issue 13, item 6): schema-generated and mutated policies, mutated plan targets.

Seeded and bounded in ``make test`` (a few hundred cases); ``make fuzz`` runs the nightly size. A breach of
the contract (see ``contract.py``) fails the test with every breaching case and how to replay it
(``FUZZ_SEED`` and the case's number).
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis_jsonschema import from_schema

from controller.core.policy import policy_json_schema
from tests.fuzz.contract import NIGHTLY, SEED, check_lint, check_plan, crashed, rng, scaled
from tests.fuzz.mutations import mutate, mutate_structure
from tests.support.paths import REPO, SHARED_ISTIO

pytestmark = pytest.mark.timeout(0 if NIGHTLY else 120)

SEED_POLICY = REPO / "policies" / "tcp-echo.yaml"
POLICIES = [SEED_POLICY, REPO / "policies" / "tcp-echo-gateway-api.yaml"]
MANIFESTS = [
    SHARED_ISTIO / name for name in ("tcp-echo-all-v1.yaml", "vs-06-argo-rollouts-docs-http-tls-tcp-host-split.yaml")
]
TARGETS = [
    SHARED_ISTIO / name
    for name in (
        "tcp-echo-all-v1.yaml",
        "tcp-echo-20-v2.yaml",
        "vs-01-mysql-tcp-80-20-external-dns.yaml",
        "vs-06-argo-rollouts-docs-http-tls-tcp-host-split.yaml",
        "gateway-api-tcp-echo-all-v1.yaml",
    )
]


def _write(path: Path, text: str) -> Path:
    path.write_bytes(text.encode("utf-8", errors="surrogatepass"))
    return path


def test_mutated_policies_and_manifests_keep_the_lint_contract(tmp_path: Path) -> None:
    corpus = [*POLICIES, *MANIFESTS]
    breaches: list[str] = []
    for number in range(scaled(300, 20_000)):
        source = corpus[number % len(corpus)]
        text, names = mutate(source.read_text(encoding="utf-8"), rng("lint", number))
        path = _write(tmp_path / f"case-{number}.yaml", text)
        case = f"FUZZ_SEED={SEED} lint case {number} ({source.name}: {', '.join(names)})"
        breaches += check_lint((path,), kind="mutated policy", case=case)
        path.unlink()
    assert crashed(breaches) == []


def test_mutated_plan_targets_keep_the_plan_contract(tmp_path: Path) -> None:
    breaches: list[str] = []
    for number in range(scaled(100, 10_000)):
        source = TARGETS[number % len(TARGETS)]
        text, names = mutate(source.read_text(encoding="utf-8"), rng("plan-text", number))
        target = _write(tmp_path / f"target-{number}.yaml", text)
        case = f"FUZZ_SEED={SEED} plan text case {number} ({source.name}: {', '.join(names)})"
        breaches += check_plan(_policy_for(source), target, kind="mutated plan target", case=case)
        target.unlink()
    assert crashed(breaches) == []


def test_plan_targets_with_hostile_values_keep_the_plan_contract(tmp_path: Path) -> None:
    documents = {source: list(yaml.safe_load_all(source.read_text(encoding="utf-8"))) for source in TARGETS}
    breaches: list[str] = []
    for number in range(scaled(120, 10_000)):
        source = TARGETS[number % len(TARGETS)]
        r = rng("plan-values", number)
        mutated: list[Any] = copy.deepcopy(documents[source])
        for _ in range(r.randint(1, 3)):
            index = r.randrange(len(mutated))
            mutated[index] = mutate_structure(mutated[index], r)
        target = tmp_path / f"target-{number}.yaml"
        target.write_text(yaml.safe_dump_all(mutated, allow_unicode=True), encoding="utf-8")
        case = f"FUZZ_SEED={SEED} plan value case {number} ({source.name})"
        breaches += check_plan(_policy_for(source), target, kind="hostile plan values", case=case)
        target.unlink()
    assert crashed(breaches) == []


def _policy_for(target: Path) -> Path:
    return POLICIES[1] if target.name.startswith("gateway-api") else SEED_POLICY


# The schema without the editor-only cross-field rules (oneOf/if/contains over sibling fields): with them,
# hypothesis-jsonschema spent over 14 minutes canonicalising 25 examples and then raised
# FlakyStrategyDefinition. The documents still follow every field's type, pattern and bounds, and lint
# judges the cross-field rules on them (the published schema's rules are measured by
# benchmarks/schema_coverage.py).
SCHEMA = policy_json_schema(editor_rules=False)


@settings(
    max_examples=scaled(25, 1_000),
    derandomize=not NIGHTLY,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
)
@given(document=from_schema(SCHEMA), extra=st.sampled_from([None, "mutate"]), number=st.integers(0, 10**6))
def test_schema_generated_policies_keep_the_lint_and_plan_contracts(
    tmp_path_factory: pytest.TempPathFactory, document: dict[str, Any], extra: str | None, number: int
) -> None:
    folder = tmp_path_factory.mktemp("schema")
    text = yaml.safe_dump(document, allow_unicode=True, sort_keys=False)
    if extra == "mutate":
        text, _ = mutate(text, rng("schema", number))
    policy = _write(folder / "policy.yaml", text)
    case = f"schema-generated document {text[:300]!r}"
    breaches = check_lint((policy,), kind="schema-generated", case=case)
    breaches += check_plan(policy, TARGETS[0], kind="schema-generated plan", case=case)
    assert crashed(breaches) == []
