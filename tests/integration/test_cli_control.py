"""canaryctl pause|resume|promote|abort|retry and status, against the emulator through a kubeconfig.

Every test gets a policy namespace and a controller namespace of its own on one emulator for the module;
canaryctl finds the emulator through the kubeconfig the emulator writes, as it would find a cluster.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import typer
from kubernetes import client
from rich.console import Console
from typer.testing import CliRunner, Result

from canary_sandbox.kubeapi import KubeApiEmulator
from controller import cli_control
from controller.adapters.kubernetes.api import KubeApi
from controller.adapters.kubernetes.status import (
    COMMANDS_ANNOTATION,
    COMMANDS_KEPT,
    LABEL_NAME,
    LABEL_NAMESPACE,
    ConfigMapStatusStore,
    CrdStatusStore,
    configmap_name,
)
from controller.cli_control import register
from controller.core.status import HistoryEntry, Phase, RolloutStatus, with_conditions
from controller.core.status_view import ITEM_KEYS, NOT_SEEN, TABLE_HEADERS
from controller.ports import PolicyRef
from tests.sandbox.conftest import close_api_client
from tests.support.paths import REPO
from tests.support.policies import policy_doc

CRD_FILE = REPO / "helm" / "crds" / "canarypolicies.canaryctl.dev.yaml"
COMMANDS = ("pause", "resume", "promote", "abort", "retry")
HELD = "step 2/4 held: no Prometheus URL (set CANARY_PROMETHEUS_URL or spec.analysis.prometheus.url)"
LONG_ERROR = "route write failed: " + "the API server answered 500 Internal Server Error; " * 4
# What register() adds is tested on an app of its own, whether or not controller.cli has registered it too.
app = typer.Typer(no_args_is_help=True)
register(app)
runner = CliRunner()

# A CanaryPolicy CRD that keeps whatever it is given, for when the generated manifest cannot be loaded.


# -- fixtures ----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cluster() -> Iterator[KubeApiEmulator]:
    """An emulator serving the chart's CanaryPolicy CRD."""
    with KubeApiEmulator(crds=[CRD_FILE]) as emulator:
        yield emulator


@pytest.fixture(autouse=True)
def no_faults_left(cluster: KubeApiEmulator) -> Iterator[None]:
    """Faults a test injects end with it."""
    yield
    cluster.faults.clear()


@pytest.fixture(autouse=True)
def real_sleep_is_never_needed(monkeypatch: pytest.MonkeyPatch) -> None:
    """Watch tests drive refreshes themselves; an unexpected wait would only slow the suite down."""
    monkeypatch.setattr(cli_control, "sleep", lambda seconds: None)


ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


@pytest.fixture
def terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    """canaryctl believes its output is a terminal (colours, rich tables, live refresh)."""

    def terminal_console() -> Console:
        return Console(force_terminal=True, width=250, color_system="truecolor")

    monkeypatch.setattr(cli_control, "Console", terminal_console)


@pytest.fixture
def kubeconfig(cluster: KubeApiEmulator, tmp_path: Path) -> Path:
    """A kubeconfig for the emulator, as a cluster's would be."""
    return cluster.write_kubeconfig(tmp_path / "kubeconfig", context_name="canary-test")


@pytest.fixture
def kube(cluster: KubeApiEmulator) -> Iterator[KubeApi]:
    """The project's API wrapper on the emulator, to write statuses as the controller does."""
    api_client = client.ApiClient(cluster.client_configuration())
    yield KubeApi(api_client, timeout_seconds=5.0)
    close_api_client(api_client)


def _fresh_namespace(cluster: KubeApiEmulator, prefix: str) -> str:
    name = f"{prefix}-{uuid.uuid4().hex[:8]}"
    cluster.put({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    return name


@pytest.fixture
def ns(cluster: KubeApiEmulator) -> str:
    """The policies' namespace for one test."""
    return _fresh_namespace(cluster, "shop")


@pytest.fixture
def controller_ns(cluster: KubeApiEmulator) -> str:
    """The controller's namespace for one test (where file-mode statuses live)."""
    return _fresh_namespace(cluster, "canary")


@dataclass
class Canaryctl:
    """Runs canaryctl with KUBECONFIG, CANARY_NAMESPACE and USER set, as a shell would."""

    kubeconfig: Path
    controller_namespace: str

    def __call__(self, *args: str, user: str = "alice") -> Result:
        env = {"KUBECONFIG": str(self.kubeconfig), "CANARY_NAMESPACE": self.controller_namespace, "USER": user}
        return runner.invoke(app, list(args), env=env)


@pytest.fixture
def canaryctl(kubeconfig: Path, controller_ns: str) -> Canaryctl:
    """canaryctl pointed at the emulator."""
    return Canaryctl(kubeconfig, controller_ns)


@dataclass
class Policy:
    """A policy in one of the two modes, and where its commands are recorded."""

    cluster: KubeApiEmulator
    kube: KubeApi
    source: str
    namespace: str
    name: str
    controller_namespace: str

    @property
    def ref(self) -> PolicyRef:
        return PolicyRef(namespace=self.namespace, name=self.name, source=self.source)

    def holder(self) -> dict[str, Any]:
        """The object holding the status and the commands."""
        if self.source == "crd":
            found = self.cluster.get("canarypolicies.canaryctl.dev", self.name, namespace=self.namespace)
        else:
            found = self.cluster.get("configmaps", configmap_name(self.ref), namespace=self.controller_namespace)
        assert found is not None
        return found

    def annotations(self) -> dict[str, str]:
        return dict(self.holder()["metadata"].get("annotations") or {})

    def commands(self) -> list[dict[str, Any]]:
        """The commands annotation, parsed."""
        raw = self.annotations().get(COMMANDS_ANNOTATION)
        return list(json.loads(raw)) if raw else []

    def set_annotations(self, annotations: dict[str, str]) -> None:
        holder = self.holder()
        holder["metadata"]["annotations"] = annotations
        self.cluster.put(holder)

    def save_status(self, status: RolloutStatus) -> None:
        """Write the status as the controller does (the status subresource, or the ConfigMap)."""
        if self.source == "crd":
            store: CrdStatusStore | ConfigMapStatusStore = CrdStatusStore(self.kube)
        else:
            store = ConfigMapStatusStore(self.kube, namespace=self.controller_namespace)
        version = store.load(policy=self.ref).version
        store.save(policy=self.ref, status=status, version=version)


def make_policy(
    cluster: KubeApiEmulator,
    kube: KubeApi,
    *,
    source: str,
    namespace: str,
    controller_namespace: str,
    name: str = "tcp-echo",
    status: RolloutStatus | None = None,
) -> Policy:
    """A CanaryPolicy resource, or the status ConfigMap of a policy file (which the controller creates)."""
    policy = Policy(cluster, kube, source, namespace, name, controller_namespace)
    if source == "crd":
        cluster.put(policy_doc(name=name, namespace=namespace))
    else:
        ConfigMapStatusStore(kube, namespace=controller_namespace).save(
            policy=policy.ref, status=RolloutStatus(), version=None
        )
    if status is not None:
        policy.save_status(status)
    return policy


@pytest.fixture(params=["crd", "file"])
def policy(
    request: pytest.FixtureRequest, cluster: KubeApiEmulator, kube: KubeApi, ns: str, controller_ns: str
) -> Policy:
    """The policy tcp-echo, once as a CanaryPolicy resource and once as a file-mode policy."""
    source = str(request.param)
    return make_policy(cluster, kube, source=source, namespace=ns, controller_namespace=controller_ns)


def progressing_status(*, started_seconds_ago: float = 65, history: int = 12) -> RolloutStatus:
    """A run at step 2/4 (weight 20) with a long error and more history than status shows."""
    now = datetime.now(UTC)
    start = now - timedelta(hours=1)
    entries = [
        HistoryEntry(
            time=start + timedelta(minutes=n),
            from_phase=Phase.PENDING if n else None,
            to_phase=Phase.PROGRESSING,
            reason=f"Step{n}",
            message=f"entry {n}",
        )
        for n in range(history)
    ]
    status = RolloutStatus(
        phase=Phase.PROGRESSING,
        revision="0123456789abcdef",
        run_id="01234567-1",
        run_number=1,
        step_index=1,
        weight=20,
        step_started_at=now - timedelta(seconds=started_seconds_ago),
        last_verdict="pass: no TCP connection errors in the last 2m at weight 20",
        last_error=LONG_ERROR,
        message="step 2/4: 55s left",
        history=entries,
    )
    return with_conditions(status, now, 4)


def table_rows(output: str) -> list[list[str]]:
    """The plain table's lines split into cells (columns are at least two spaces apart)."""
    return [re.split(r"\s{2,}", line.strip()) for line in output.splitlines() if line.strip()]


def json_items(result: Result) -> list[dict[str, Any]]:
    document = json.loads(result.stdout)
    assert document["apiVersion"] == "canaryctl.dev/v1alpha1"
    assert document["kind"] == "StatusList"
    items: list[dict[str, Any]] = document["items"]
    return items


# -- pause, resume, promote, abort, retry ------------------------------------------------------------------


class TestCommands:
    def test_every_command_is_appended_with_a_unique_id_and_who_asked(
        self, canaryctl: Canaryctl, policy: Policy, ns: str
    ) -> None:
        allowed_in = {
            "pause": Phase.PROGRESSING,
            "resume": Phase.PAUSED,
            "promote": Phase.PROGRESSING,
            "abort": Phase.PROGRESSING,
            "retry": Phase.ROLLED_BACK,
        }
        for kind in COMMANDS:
            consumed = [c["id"] for c in policy.commands()]
            update = {"phase": allowed_in[kind], "processed_commands": consumed}
            policy.save_status(progressing_status().model_copy(update=update))
            result = canaryctl(kind, "tcp-echo", "-n", ns, "--by", f"{kind}-person")
            assert result.exit_code == 0, result.output
        recorded = policy.commands()
        assert [c["kind"] for c in recorded] == list(COMMANDS)
        assert [c["by"] for c in recorded] == [f"{kind}-person" for kind in COMMANDS]
        assert len({c["id"] for c in recorded}) == len(COMMANDS)
        assert all(c["at"].endswith("Z") or "+00:00" in c["at"] for c in recorded)

    def test_the_confirmation_names_the_command_the_policy_and_the_id(
        self, canaryctl: Canaryctl, policy: Policy, ns: str, controller_ns: str
    ) -> None:
        policy.save_status(progressing_status())
        result = canaryctl("pause", "tcp-echo", "-n", ns)
        assert result.exit_code == 0
        command_id = policy.commands()[0]["id"]
        mode = "" if policy.source == "crd" else f" (file mode, ConfigMap {controller_ns}/canary-{ns}-tcp-echo)"
        assert result.stdout == (
            f"pause recorded for CanaryPolicy {ns}/tcp-echo{mode} (id {command_id}); "
            "the controller applies it on its next pass: the rollout pauses at weight 20: the weight stays and "
            "the step's clock stops until resume\n"
        )

    def test_who_asked_defaults_to_the_local_user(self, canaryctl: Canaryctl, policy: Policy, ns: str) -> None:
        assert canaryctl("abort", "tcp-echo", "-n", ns, user="bob").exit_code == 0
        assert policy.commands()[0]["by"] == "bob"

    def test_the_annotation_keeps_only_the_most_recent_commands(
        self, canaryctl: Canaryctl, policy: Policy, ns: str
    ) -> None:
        old = [{"id": f"old{n:02d}", "kind": "pause", "by": "ci"} for n in range(COMMANDS_KEPT)]
        policy.set_annotations({COMMANDS_ANNOTATION: json.dumps(old)})
        assert canaryctl("resume", "tcp-echo", "-n", ns).exit_code == 0
        recorded = policy.commands()
        assert len(recorded) == COMMANDS_KEPT
        assert recorded[0]["id"] == "old01"
        assert recorded[-1]["kind"] == "resume"

    def test_other_annotations_are_left_alone(self, canaryctl: Canaryctl, policy: Policy, ns: str) -> None:
        policy.save_status(progressing_status())
        policy.set_annotations({"team": "payments"})
        assert canaryctl("promote", "tcp-echo", "-n", ns).exit_code == 0
        assert policy.annotations()["team"] == "payments"

    def test_the_resource_is_used_when_a_file_mode_status_of_the_same_name_also_exists(
        self, cluster: KubeApiEmulator, kube: KubeApi, canaryctl: Canaryctl, ns: str, controller_ns: str
    ) -> None:
        resource = make_policy(cluster, kube, source="crd", namespace=ns, controller_namespace=controller_ns)
        file_mode = make_policy(cluster, kube, source="file", namespace=ns, controller_namespace=controller_ns)
        assert canaryctl("pause", "tcp-echo", "-n", ns).exit_code == 0
        assert [c["kind"] for c in resource.commands()] == ["pause"]
        assert file_mode.commands() == []

    def test_the_controller_namespace_option_finds_file_mode_statuses_elsewhere(
        self, cluster: KubeApiEmulator, kube: KubeApi, kubeconfig: Path, ns: str
    ) -> None:
        elsewhere = _fresh_namespace(cluster, "ops")
        policy = make_policy(
            cluster,
            kube,
            source="file",
            namespace=ns,
            controller_namespace=elsewhere,
            status=RolloutStatus(phase=Phase.ROLLED_BACK, run_id="r-1", step_index=1, weight=20),
        )
        result = runner.invoke(
            app,
            ["retry", "tcp-echo", "-n", ns, "--controller-namespace", elsewhere, "--kubeconfig", str(kubeconfig)],
        )
        assert result.exit_code == 0, result.output
        assert [c["kind"] for c in policy.commands()] == ["retry"]

    @pytest.mark.parametrize(
        ("phase", "kind", "why"),
        [
            (Phase.ROLLED_BACK, "pause", "the run is RolledBack; retry or a new revision starts a new run"),
            (Phase.PROMOTED, "promote", "the run is Promoted; retry or a new revision starts a new run"),
            (Phase.PROGRESSING, "resume", "only a Paused rollout can be resumed (it is Progressing)"),
            (Phase.PROGRESSING, "retry", "only a RolledBack, Failed or Aborted run can be retried (it is Progressing)"),
        ],
    )
    def test_a_command_the_phase_does_not_allow_is_refused_with_exit_1_and_nothing_recorded(
        self, canaryctl: Canaryctl, policy: Policy, ns: str, phase: Phase, kind: str, why: str
    ) -> None:
        policy.save_status(progressing_status().model_copy(update={"phase": phase}))
        result = canaryctl(kind, "tcp-echo", "-n", ns)
        assert result.exit_code == 1
        assert result.stderr == f"{kind} refused for CanaryPolicy {ns}/tcp-echo: {why}; nothing recorded\n"
        assert result.stdout == ""
        assert policy.commands() == []

    def test_a_command_is_judged_after_the_ones_still_pending(
        self, canaryctl: Canaryctl, policy: Policy, ns: str
    ) -> None:
        policy.save_status(progressing_status())
        assert canaryctl("pause", "tcp-echo", "-n", ns).exit_code == 0
        again = canaryctl("pause", "tcp-echo", "-n", ns)
        assert again.exit_code == 1
        assert "only a Pending or Progressing rollout can be paused (it is Paused)" in again.stderr
        resumed = canaryctl("resume", "tcp-echo", "-n", ns)
        assert resumed.exit_code == 0, resumed.output
        assert resumed.stdout.endswith(
            "the controller applies it on its next pass: the rollout resumes at weight 20: the step's clock "
            "continues where it stopped\n"
        )
        assert [c["kind"] for c in policy.commands()] == ["pause", "resume"]

    def test_a_missing_policy_exits_1_naming_both_places_looked_at(
        self, canaryctl: Canaryctl, ns: str, controller_ns: str
    ) -> None:
        result = canaryctl("pause", "nope", "-n", ns)
        assert result.exit_code == 1
        assert result.stderr == (
            f"no CanaryPolicy {ns}/nope (neither a resource nor a file-mode status in namespace {controller_ns})\n"
        )
        assert result.stdout == ""

    def test_a_forbidden_patch_exits_1_naming_the_rbac_permission(
        self, cluster: KubeApiEmulator, canaryctl: Canaryctl, policy: Policy, ns: str, controller_ns: str
    ) -> None:
        resource, group, where = (
            ("canarypolicies", "canaryctl.dev", ns) if policy.source == "crd" else ("configmaps", "core", controller_ns)
        )
        cluster.faults.add(verb="PATCH", resource=resource, namespace=where, status=403)
        result = canaryctl("pause", "tcp-echo", "-n", ns)
        assert result.exit_code == 1
        assert f"RBAC must allow verb 'patch' on resource '{resource}' in API group '{group}'" in result.stderr
        assert f"in namespace {where}" in result.stderr
        assert "cannot patch resource" in result.stderr
        assert policy.commands() == []

    def test_an_unreachable_api_server_exits_1_naming_its_address(self, tmp_path: Path, ns: str) -> None:
        with KubeApiEmulator() as gone:
            kubeconfig = gone.write_kubeconfig(tmp_path / "gone")
            url = gone.url
        result = runner.invoke(app, ["pause", "tcp-echo", "-n", ns, "--kubeconfig", str(kubeconfig)])
        assert result.exit_code == 1
        assert f"cannot reach the Kubernetes API server at {url}" in result.stderr
        assert "no answer from the API server" in result.stderr

    def test_a_missing_kubeconfig_exits_1_with_a_clear_message(self, tmp_path: Path, ns: str) -> None:
        missing = tmp_path / "no-such-kubeconfig"
        result = runner.invoke(app, ["pause", "tcp-echo", "-n", ns, "--kubeconfig", str(missing)])
        assert result.exit_code == 1
        assert result.stderr == f"cannot load a Kubernetes configuration from {missing}: no such file\n"

    def test_a_context_is_chosen_by_name(self, canaryctl: Canaryctl, policy: Policy, ns: str) -> None:
        assert canaryctl("pause", "tcp-echo", "-n", ns, "--context", "canary-test").exit_code == 0
        result = canaryctl("pause", "tcp-echo", "-n", ns, "--context", "no-such-context")
        assert result.exit_code == 1
        assert "(context no-such-context)" in result.stderr
        assert len(policy.commands()) == 1

    def test_the_help_says_what_the_controller_does_with_each_command(self) -> None:
        expected = {
            "pause": "step's clock stops",
            "resume": "continues where it stopped",
            "promote": "jump to the last step",
            "abort": "restore the original route",
            "retry": "RolledBack, Failed or Aborted",
        }
        for kind, phrase in expected.items():
            result = runner.invoke(app, [kind, "--help"], env={"COLUMNS": "200"})
            assert result.exit_code == 0
            assert phrase in " ".join(result.stdout.split()), kind


# -- status ------------------------------------------------------------------------------------------------


class TestStatusTable:
    def test_a_policy_in_each_mode_is_listed_with_its_step_weight_time_and_errors(
        self, cluster: KubeApiEmulator, kube: KubeApi, canaryctl: Canaryctl, ns: str, controller_ns: str
    ) -> None:
        make_policy(
            cluster,
            kube,
            source="crd",
            namespace=ns,
            controller_namespace=controller_ns,
            status=progressing_status(),
        )
        make_policy(
            cluster,
            kube,
            source="file",
            namespace=ns,
            controller_namespace=controller_ns,
            name="tcp-echo-file",
            status=RolloutStatus(phase=Phase.PROMOTED, step_index=3, weight=100, step="4/4"),
        )
        result = canaryctl("status", "-n", ns)
        assert result.exit_code == 0, result.output
        header, first, second = table_rows(result.stdout)
        assert header == list(TABLE_HEADERS)
        assert first[:6] == [ns, "tcp-echo", "crd", "Progressing", "2/4", "20"]
        assert re.fullmatch(r"1m0[5-9]s", first[6])
        assert first[7] == "pass"
        assert first[8] == f"step 2/4: 55s left; last error: {LONG_ERROR.strip()}"
        assert second == [ns, "tcp-echo-file", "file", "Promoted", "4/4", "100", "-", "-", "-"]

    def test_a_command_not_yet_consumed_is_shown_beside_the_phase(
        self, canaryctl: Canaryctl, policy: Policy, ns: str
    ) -> None:
        policy.save_status(progressing_status())
        assert canaryctl("pause", "tcp-echo", "-n", ns).exit_code == 0
        rows = table_rows(canaryctl("status", "-n", ns).stdout)
        assert rows[1][3] == "Progressing (pause pending)"

    def test_a_consumed_command_is_no_longer_pending(self, canaryctl: Canaryctl, policy: Policy, ns: str) -> None:
        assert canaryctl("pause", "tcp-echo", "-n", ns).exit_code == 0
        consumed = [policy.commands()[0]["id"]]
        policy.save_status(progressing_status().model_copy(update={"processed_commands": consumed}))
        rows = table_rows(canaryctl("status", "-n", ns).stdout)
        assert rows[1][3] == "Progressing"

    def test_a_policy_the_controller_has_not_seen_yet_shows_dashes(
        self, cluster: KubeApiEmulator, canaryctl: Canaryctl, ns: str
    ) -> None:
        cluster.put(policy_doc(name="new", namespace=ns))
        rows = table_rows(canaryctl("status", "-n", ns).stdout)
        assert rows[1] == [ns, "new", "crd", "-", "-", "-", "-", "-", NOT_SEEN]

    def test_only_the_chosen_namespace_is_listed_unless_all_are_asked_for(
        self, cluster: KubeApiEmulator, kube: KubeApi, canaryctl: Canaryctl, ns: str, controller_ns: str
    ) -> None:
        other = _fresh_namespace(cluster, "other")
        for namespace in (ns, other):
            for source in ("crd", "file"):
                make_policy(cluster, kube, source=source, namespace=namespace, controller_namespace=controller_ns)
        mine = table_rows(canaryctl("status", "-n", ns).stdout)[1:]
        assert [(row[0], row[2]) for row in mine] == [(ns, "crd"), (ns, "file")]
        everywhere = [row[:3] for row in table_rows(canaryctl("status", "-A").stdout)[1:]]
        ours = [row for row in everywhere if row[0] in {ns, other}]
        assert ours == sorted([[n, "tcp-echo", s] for n in (ns, other) for s in ("crd", "file")])

    def test_a_name_picks_one_policy(self, canaryctl: Canaryctl, policy: Policy, ns: str) -> None:
        result = canaryctl("status", "tcp-echo", "-n", ns)
        assert result.exit_code == 0
        assert [row[1] for row in table_rows(result.stdout)[1:]] == ["tcp-echo"]
        assert canaryctl("status", "tcp-echo", "-A").exit_code == 0

    def test_a_name_that_is_not_found_exits_1(self, canaryctl: Canaryctl, ns: str, controller_ns: str) -> None:
        result = canaryctl("status", "nope", "-n", ns)
        assert result.exit_code == 1
        assert result.stderr == (
            f"no CanaryPolicy {ns}/nope (neither a resource nor a file-mode status in namespace {controller_ns})\n"
        )

    def test_no_policies_anywhere_is_said_plainly(self, tmp_path: Path) -> None:
        with KubeApiEmulator(crds=[CRD_FILE]) as empty:
            empty.put({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "canary-system"}})
            kubeconfig = empty.write_kubeconfig(tmp_path / "empty")
            result = runner.invoke(app, ["status", "-n", "shop", "--kubeconfig", str(kubeconfig)])
        assert result.exit_code == 0, result.output
        assert result.stdout == "No canary policies found.\n"

    def test_no_policies_in_the_namespace_hints_at_all_namespaces_when_others_have_some(
        self, cluster: KubeApiEmulator, kube: KubeApi, canaryctl: Canaryctl, ns: str, controller_ns: str
    ) -> None:
        other = _fresh_namespace(cluster, "other")
        make_policy(cluster, kube, source="crd", namespace=other, controller_namespace=controller_ns)
        result = canaryctl("status", "-n", ns)
        assert result.exit_code == 0
        assert result.stdout.startswith(f"No canary policies found in namespace {ns}; ")
        assert other in result.stdout
        assert result.stdout.endswith(": canaryctl status -A lists them.\n")

    def test_a_missing_controller_namespace_is_an_error_not_an_empty_list(self, kubeconfig: Path, ns: str) -> None:
        result = Canaryctl(kubeconfig, "canary-gone")("status", "-n", ns)
        assert result.exit_code == 1
        assert "No canary policies found" not in result.output
        assert result.stderr.startswith(
            "error: namespace canary-gone does not exist, so the controller cannot keep the status of file-mode "
            "policies"
        )

    def test_with_a_missing_controller_namespace_the_resources_are_still_listed_with_a_warning(
        self, cluster: KubeApiEmulator, kube: KubeApi, kubeconfig: Path, ns: str, controller_ns: str
    ) -> None:
        make_policy(cluster, kube, source="crd", namespace=ns, controller_namespace=controller_ns)
        result = Canaryctl(kubeconfig, "canary-gone")("status", "-n", ns)
        assert result.exit_code == 0, result.output
        assert [row[1] for row in table_rows(result.stdout)[1:]] == ["tcp-echo"]
        assert result.stderr.startswith("warning: namespace canary-gone does not exist")

    def test_when_rbac_hides_namespaces_nothing_is_concluded_about_them(
        self, cluster: KubeApiEmulator, kubeconfig: Path, ns: str
    ) -> None:
        cluster.faults.add(verb="GET", resource="namespaces", status=403)
        result = Canaryctl(kubeconfig, "canary-gone")("status", "-n", ns)
        assert result.exit_code == 0, result.output
        assert "does not exist" not in result.output

    def test_an_unreadable_file_mode_status_is_shown_as_its_error(
        self, cluster: KubeApiEmulator, canaryctl: Canaryctl, ns: str, controller_ns: str
    ) -> None:
        cluster.put(
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {
                    "name": f"canary-{ns}-broken",
                    "namespace": controller_ns,
                    "labels": {LABEL_NAME: "broken", LABEL_NAMESPACE: ns},
                },
                "data": {"status": "{not json"},
            }
        )
        rows = table_rows(canaryctl("status", "-n", ns).stdout)
        assert rows[1][:4] == [ns, "broken", "file", "-"]
        assert rows[1][8] == f"last error: ConfigMap {controller_ns}/canary-{ns}-broken: data.status is not JSON"
        (item,) = json_items(canaryctl("status", "-n", ns, "-o", "json"))
        assert item["lastError"] == f"ConfigMap {controller_ns}/canary-{ns}-broken: data.status is not JSON"

    def test_when_rbac_hides_file_mode_statuses_the_resources_are_still_listed(
        self, cluster: KubeApiEmulator, canaryctl: Canaryctl, policy: Policy, ns: str, controller_ns: str
    ) -> None:
        cluster.faults.add(verb="LIST", resource="configmaps", namespace=controller_ns, status=403)
        result = canaryctl("status", "-n", ns)
        assert result.exit_code == 0
        assert "warning: file-mode statuses not shown:" in result.stderr
        assert "RBAC must allow verb 'list' on resource 'configmaps'" in result.stderr
        shown = table_rows(result.stdout)[1:]
        assert [row[2] for row in shown] == (["crd"] if policy.source == "crd" else [])

    def test_when_rbac_forbids_both_lists_status_exits_1(
        self, cluster: KubeApiEmulator, canaryctl: Canaryctl, ns: str
    ) -> None:
        cluster.faults.add(verb="LIST", status=403)
        result = canaryctl("status", "-n", ns)
        assert result.exit_code == 1
        assert "RBAC must allow verb 'list' on resource 'canarypolicies'" in result.stderr
        assert "RBAC must allow verb 'list' on resource 'configmaps'" in result.stderr

    def test_an_unreachable_api_server_exits_1(self, tmp_path: Path) -> None:
        with KubeApiEmulator() as gone:
            kubeconfig = gone.write_kubeconfig(tmp_path / "gone")
            url = gone.url
        result = runner.invoke(app, ["status", "-A", "--kubeconfig", str(kubeconfig)])
        assert result.exit_code == 1
        assert f"cannot reach the Kubernetes API server at {url}" in result.stderr

    def test_on_a_terminal_the_table_is_drawn_with_rich(
        self, canaryctl: Canaryctl, policy: Policy, ns: str, terminal: None
    ) -> None:
        policy.save_status(progressing_status())
        result = canaryctl("status", "-n", ns)
        assert result.exit_code == 0, result.output
        assert "\x1b[" in result.stdout
        assert "─" in result.stdout
        plain = ANSI.sub("", result.stdout)
        assert all(header in plain for header in TABLE_HEADERS)
        assert "Progressing" in plain

    @pytest.mark.parametrize("width", [80, 120])
    def test_a_held_steps_reason_is_shown_in_full_on_a_narrow_terminal(
        self, monkeypatch: pytest.MonkeyPatch, canaryctl: Canaryctl, policy: Policy, ns: str, width: int
    ) -> None:
        monkeypatch.setattr(cli_control, "Console", lambda: Console(force_terminal=True, width=width))
        policy.save_status(progressing_status().model_copy(update={"message": HELD, "last_error": None}))
        result = canaryctl("status", "-n", ns)
        assert result.exit_code == 0, result.output
        flat = " ".join(ANSI.sub("", result.stdout).split())
        assert HELD in flat
        assert "…" not in flat

    def test_a_held_steps_reason_is_shown_in_full_off_a_terminal(
        self, canaryctl: Canaryctl, policy: Policy, ns: str
    ) -> None:
        policy.save_status(progressing_status().model_copy(update={"message": HELD, "last_error": None}))
        rows = table_rows(canaryctl("status", "-n", ns).stdout)
        assert rows[1][8] == HELD


class TestStatusJson:
    def test_the_document_has_the_documented_keys_and_the_status_values(
        self, canaryctl: Canaryctl, policy: Policy, ns: str
    ) -> None:
        status = progressing_status()
        policy.save_status(status)
        assert canaryctl("pause", "tcp-echo", "-n", ns).exit_code == 0
        result = canaryctl("status", "-n", ns, "-o", "json")
        assert result.exit_code == 0, result.output
        (item,) = json_items(result)
        assert tuple(item) == ITEM_KEYS
        assert item["namespace"] == ns
        assert item["name"] == "tcp-echo"
        assert item["source"] == policy.source
        assert item["phase"] == "Progressing"
        assert item["step"] == "2/4"
        assert item["stepIndex"] == 1
        assert item["weight"] == 20
        assert status.step_started_at is not None
        assert datetime.fromisoformat(item["stepStartedAt"]) == status.step_started_at
        assert 65 <= item["secondsInStep"] < 95
        assert item["lastVerdict"] == str(status.last_verdict)
        assert item["lastError"] == LONG_ERROR
        assert item["message"] == "step 2/4: 55s left"
        assert item["runId"] == "01234567-1"
        assert [c["kind"] for c in item["pendingCommands"]] == ["pause"]
        assert item["pendingCommands"][0]["by"] == "alice"
        assert item["pendingCommands"][0]["id"] == policy.commands()[0]["id"]
        assert [h["reason"] for h in item["history"]] == [f"Step{n}" for n in range(2, 12)]
        assert set(item["history"][0]) == {"time", "from", "to", "reason", "message"}
        assert [(c["type"], c["status"]) for c in item["conditions"]] == [
            ("Ready", "True"),
            ("Succeeded", "Unknown"),
            ("Reconciling", "True"),
        ]

    def test_no_annotation_other_than_the_commands_is_printed(
        self, canaryctl: Canaryctl, policy: Policy, ns: str
    ) -> None:
        policy.set_annotations({"kubectl.kubernetes.io/last-applied-configuration": '{"password": "hunter2"}'})
        result = canaryctl("status", "-n", ns, "-o", "json")
        assert result.exit_code == 0
        assert "hunter2" not in result.stdout
        assert "last-applied" not in result.stdout

    def test_no_policies_is_an_empty_list(self, canaryctl: Canaryctl, ns: str) -> None:
        result = canaryctl("status", "-n", ns, "-o", "json")
        assert result.exit_code == 0
        assert json_items(result) == []


class TestStatusWatch:
    def test_json_watch_prints_one_document_per_line_per_refresh(
        self, canaryctl: Canaryctl, policy: Policy, ns: str, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        phases = iter([Phase.PAUSED, Phase.PROMOTED])

        def next_pass(seconds: float) -> None:
            assert seconds == 0.5
            policy.save_status(RolloutStatus(phase=next(phases)))

        policy.save_status(RolloutStatus(phase=Phase.PROGRESSING))
        monkeypatch.setattr(cli_control, "sleep", next_pass)
        result = canaryctl("status", "-n", ns, "-o", "json", "--watch", "--interval", "0.5", "--max-refreshes", "3")
        assert result.exit_code == 0, result.output
        lines = result.stdout.splitlines()
        assert len(lines) == 3
        documents = [json.loads(line) for line in lines]
        assert [d["items"][0]["phase"] for d in documents] == ["Progressing", "Paused", "Promoted"]
        assert all(d["kind"] == "StatusList" for d in documents)

    def test_ctrl_c_ends_the_watch_with_exit_0(
        self, canaryctl: Canaryctl, policy: Policy, ns: str, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        def interrupted(seconds: float) -> None:
            raise KeyboardInterrupt

        monkeypatch.setattr(cli_control, "sleep", interrupted)
        result = canaryctl("status", "-n", ns, "-o", "json", "--watch")
        assert result.exit_code == 0
        assert len(result.stdout.splitlines()) == 1

    def test_a_table_watch_off_a_terminal_prints_the_table_on_every_refresh(
        self, canaryctl: Canaryctl, policy: Policy, ns: str
    ) -> None:
        result = canaryctl("status", "-n", ns, "--watch", "--max-refreshes", "2")
        assert result.exit_code == 0
        assert result.stdout.count("NAMESPACE") == 2

    def test_on_a_terminal_the_watch_redraws_the_table_in_place(
        self, canaryctl: Canaryctl, policy: Policy, ns: str, terminal: None, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        phases = iter([Phase.PAUSED])
        policy.save_status(RolloutStatus(phase=Phase.PROGRESSING))
        monkeypatch.setattr(cli_control, "sleep", lambda seconds: policy.save_status(RolloutStatus(phase=next(phases))))
        result = canaryctl("status", "-n", ns, "--watch", "--max-refreshes", "2")
        assert result.exit_code == 0, result.output
        plain = ANSI.sub("", result.stdout)
        assert "Progressing" in plain
        assert "Paused" in plain
        assert "every 2s; Ctrl-C to stop" in plain

    def test_a_failed_refresh_is_reported_and_the_watch_goes_on(
        self, cluster: KubeApiEmulator, canaryctl: Canaryctl, policy: Policy, ns: str, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        outage = cluster.faults.add(verb="LIST", status=503, times=0)

        def api_server_hiccups(seconds: float) -> None:
            outage.times = None if outage.times == 0 else 0

        monkeypatch.setattr(cli_control, "sleep", api_server_hiccups)
        result = canaryctl("status", "-n", ns, "-o", "json", "--watch", "--max-refreshes", "3")
        assert result.exit_code == 0, result.output
        assert len(result.stdout.splitlines()) == 2
        assert "refresh failed:" in result.stderr

    def test_a_first_refresh_that_fails_exits_1(self, canaryctl: Canaryctl, ns: str) -> None:
        result = canaryctl("status", "nope", "-n", ns, "-o", "json", "--watch", "--max-refreshes", "3")
        assert result.exit_code == 1
        assert result.stdout == ""
