"""The chart's values for the in-cluster web dashboard: its port, its settings and the review RBAC."""

from __future__ import annotations

from tests.helm.conftest import Outcome
from tests.helm.test_chart import container, env_values, fullname, installed, objects, role, rules_of

REVIEW_RULES = {
    (("authentication.k8s.io",), ("tokenreviews",), frozenset({"create"}), ()),
    (("authorization.k8s.io",), ("subjectaccessreviews",), frozenset({"create"}), ()),
}


def test_the_dashboard_is_off_by_default(helm_results: dict[str, Outcome]) -> None:
    outcome = installed(helm_results, "default")
    assert "CANARY_DASHBOARD" not in env_values(outcome)
    assert [port["name"] for port in container(outcome)["ports"]] == ["http"]
    assert all(not obj["metadata"]["name"].endswith("-dashboard-reviews") for obj in objects(outcome, "ClusterRole"))


def test_enabled_it_serves_its_port_and_may_create_token_and_access_reviews_cluster_wide(
    helm_results: dict[str, Outcome],
) -> None:
    outcome = installed(helm_results, "web-dashboard")
    env = env_values(outcome)
    assert env["CANARY_DASHBOARD"] == "true"
    assert env["CANARY_DASHBOARD_PORT"] == "3101"
    assert {"name": "dashboard", "containerPort": 3101, "protocol": "TCP"} in container(outcome)["ports"]
    service = objects(outcome, "Service")[0]
    assert {p["name"]: p["port"] for p in service["spec"]["ports"]} == {"http": 8080, "dashboard": 3101}
    policy = objects(outcome, "NetworkPolicy")[0]
    assert {p["port"] for p in policy["spec"]["ingress"][0]["ports"]} == {8080, 3101}
    # Reviews are cluster-scoped: a ClusterRole even when the controller serves chosen namespaces only.
    name = f"{fullname(outcome)}-dashboard-reviews"
    assert rules_of(role(outcome, "ClusterRole", name)) == REVIEW_RULES
    binding = next(o for o in objects(outcome, "ClusterRoleBinding") if o["metadata"]["name"] == name)
    assert binding["roleRef"]["name"] == name


def test_notes_say_how_to_open_the_dashboard(helm_results: dict[str, Outcome]) -> None:
    enabled = installed(helm_results, "web-dashboard")
    assert f"port-forward service/{fullname(enabled)} 3101" in enabled.notes
    assert "kubectl create token" in enabled.notes
    assert "canaryctl dashboard" in installed(helm_results, "default").notes
