"""canaryctl lint beside other manifests, and the advice lint and plan give on valid policies (issue 12)."""

from __future__ import annotations

import shutil
from pathlib import Path

import yaml
from typer.testing import CliRunner

from controller.cli import app
from controller.core.advice import advise
from controller.core.problems import validate_policy
from tests.support.paths import REPO, SHARED_ISTIO
from tests.support.policies import policy_doc

runner = CliRunner()
SEED_POLICY = REPO / "policies" / "tcp-echo.yaml"
MANIFESTS = ("tcp-echo-all-v1.yaml", "tcp-echo-services.yaml")


def _run(*args: str | Path) -> tuple[int, list[str], list[str]]:
    result = runner.invoke(app, [str(arg) for arg in args])
    return result.exit_code, result.stdout.splitlines(), result.stderr.splitlines()


def _folder_with_istio_manifests(tmp_path: Path, policy_text: str) -> Path:
    for name in MANIFESTS:
        shutil.copy(SHARED_ISTIO / name, tmp_path / name)
    (tmp_path / "policy.yaml").write_text(policy_text, encoding="utf-8")
    return tmp_path


def _line_of(path: Path, needle: str, nth: int = 0) -> int:
    """1-based line of the ``nth`` line starting with ``needle``; a document's line is that of its first key."""
    numbers = [n for n, line in enumerate(path.read_text().splitlines(), 1) if line.startswith(needle)]
    return numbers[nth]


def test_lint_notes_each_other_kind_in_one_line_and_passes_when_the_policies_are_valid(tmp_path: Path) -> None:
    folder = _folder_with_istio_manifests(tmp_path, SEED_POLICY.read_text())

    code, out, _ = _run("lint", folder)

    all_v1, services = folder / MANIFESTS[0], folder / MANIFESTS[1]
    assert code == 0
    assert out == [
        f"{all_v1}:{_line_of(all_v1, 'apiVersion', 0)}: (document): skipped: kind Gateway",
        f"{all_v1}:{_line_of(all_v1, 'apiVersion', 1)}: (document): skipped: kind DestinationRule",
        f"{all_v1}:{_line_of(all_v1, 'apiVersion', 2)}: (document): skipped: kind VirtualService",
        f"{services}:{_line_of(services, 'apiVersion', 0)}: (document): skipped: kind Service",
        f"{services}:{_line_of(services, 'apiVersion', 1)}: (document): skipped: kind Deployment",
        f"{services}:{_line_of(services, 'apiVersion', 2)}: (document): skipped: kind Deployment",
        "1 policy OK",
    ]


def test_lint_still_fails_on_a_canary_policy_with_errors_beside_other_kinds(tmp_path: Path) -> None:
    folder = _folder_with_istio_manifests(
        tmp_path, SEED_POLICY.read_text().replace("steps: [0, 20, 50, 100]", "steps: [0, 50, 20]")
    )

    code, out, _ = _run("lint", folder)

    assert code == 1
    assert sum("skipped: kind" in line for line in out) == 6
    assert any("spec.schedule.steps[2]: must be greater than the previous step" in line for line in out), out
    assert not any("policies OK" in line or "policy OK" in line for line in out)


def test_a_canaryctl_document_with_a_mistyped_kind_is_checked_not_skipped(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump({**policy_doc(), "kind": "CanaryPolcy"}, sort_keys=False))
    wrong_group = tmp_path / "q.yaml"
    wrong_group.write_text(yaml.safe_dump({**policy_doc(), "kind": "Canary"}, sort_keys=False))

    code, out, _ = _run("lint", path, wrong_group)

    assert code == 1
    assert f"{path}:2: kind: must be 'CanaryPolicy' (got 'CanaryPolcy')" in out
    assert any(line.startswith(f"{wrong_group}:2: kind: must be 'CanaryPolicy'") for line in out), out
    assert not any("skipped" in line for line in out)


def test_a_kind_holding_a_control_character_is_shown_escaped(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump(policy_doc(), sort_keys=False))
    (tmp_path / "x.yaml").write_text('apiVersion: v1\nkind: "Config\\x1b[2J\\nMap"\n')

    code, out, _ = _run("lint", tmp_path)

    assert code == 0
    assert f"{tmp_path / 'x.yaml'}:1: (document): skipped: kind 'Config\\x1b[2J\\nMap'" in out


def test_lint_warns_on_stderr_when_a_policy_has_no_analysis_and_still_exits_0(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump(policy_doc(steps=[10, 50, 100]), sort_keys=False))

    code, out, err = _run("lint", path)

    assert (code, out) == (0, ["1 policy OK"])
    assert err == [
        f"{path}:1: warning: spec.analysis: no analysis: the rollout stays at its first step (canary weight 10) "
        "and can only advance by `canaryctl promote`; add spec.analysis for steps to advance on their own"
    ]


def test_lint_gives_no_warning_for_a_policy_with_analysis() -> None:
    code, out, err = _run("lint", SEED_POLICY)

    assert (code, out, err) == (0, ["1 policy OK"], [])


def test_plan_warns_on_stderr_when_the_policy_has_no_analysis_and_still_plans(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump(policy_doc(namespace="istio-io-tcp-traffic-shifting"), sort_keys=False))

    code, out, err = _run("plan", "--policy", path, "--target", SHARED_ISTIO / "tcp-echo-all-v1.yaml")

    assert code == 0
    assert len(list(yaml.safe_load_all("\n".join(out)))) == 5
    assert len(err) == 1
    assert err[0].startswith(f"{path}:1: warning: spec.analysis: no analysis: the rollout stays at its first step")


def test_plan_gives_no_warning_for_a_policy_with_analysis() -> None:
    code, _, err = _run("plan", "--policy", SEED_POLICY, "--target", SHARED_ISTIO / "tcp-echo-all-v1.yaml")

    assert (code, err) == (0, [])


def test_advice_names_the_first_weight_and_promote_when_there_is_no_analysis() -> None:
    policy, problems = validate_policy(policy_doc(steps=[5, 100]))
    assert policy is not None, problems

    advice = advise(policy)

    assert [(item.field, item.message) for item in advice] == [
        (
            "spec.analysis",
            "no analysis: the rollout stays at its first step (canary weight 5) and can only advance by "
            "`canaryctl promote`; add spec.analysis for steps to advance on their own",
        )
    ]


def test_advice_is_empty_for_a_policy_with_analysis() -> None:
    document = yaml.safe_load(SEED_POLICY.read_text())
    policy, problems = validate_policy(document)
    assert policy is not None, problems

    assert advise(policy) == []
