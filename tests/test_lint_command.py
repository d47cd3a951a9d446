"""canaryctl lint: files and directories, FILE:LINE: field.path: message, exit codes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from controller.cli import app
from tests.support.paths import REPO

runner = CliRunner()

GOOD = """\
apiVersion: canaryctl.dev/v1alpha1
kind: CanaryPolicy
metadata:
  name: tcp-echo
spec:
  target:
    virtualService:
      name: tcp-echo
    stable: {host: tcp-echo, subset: v1}
    canary: {host: tcp-echo, subset: v2}
  schedule:
    steps: [0, 20, 50, 100]
    stepDuration: 2m
"""


def _lint(*paths: Path | str) -> tuple[int, list[str]]:
    result = runner.invoke(app, ["lint", *map(str, paths)])
    return result.exit_code, result.stdout.splitlines()


def test_shipped_policies_lint_clean() -> None:
    code, lines = _lint(REPO / "policies")
    assert code == 0
    assert lines == ["2 policies OK"]


def test_problem_lines_name_file_line_and_field(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        GOOD.replace("steps: [0, 20, 50, 100]", "steps:\n    - 0\n    - 50\n    - 10\n    - 100").replace(
            "stepDuration: 2m", "stepDuraton: 2m"
        )
    )
    code, lines = _lint(bad)
    assert code == 1
    assert f"{bad}:15: spec.schedule.steps[2]: must be greater than the previous step (got 10 after 50)" in lines
    assert f"{bad}:17: spec.schedule.stepDuraton: unknown field 'stepDuraton' (did you mean 'stepDuration'?)" in lines
    assert f"{bad}:11: spec.schedule.stepDuration: required field is missing" in lines


def test_yaml_syntax_errors_give_line_and_column(tmp_path: Path) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text("apiVersion: canaryctl.dev/v1alpha1\nkind: CanaryPolicy\nmetadata:\n  name: [a\n")
    code, lines = _lint(broken)
    assert code == 1
    assert len(lines) == 1
    assert lines[0].startswith(f"{broken}:5: yaml: syntax error:")
    assert "(column 1)" in lines[0]


def test_a_bad_policy_does_not_hide_the_others(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(GOOD.replace("name: tcp-echo\nspec", "name: Bad_Name\nspec"))
    (tmp_path / "b.yml").write_text(
        "---\n"
        + GOOD.replace("name: tcp-echo\nspec", "name: two\nspec")
        + "---\n"
        + GOOD.replace("kind: CanaryPolicy", "kind: Canary")
        + "---\n"
    )
    (tmp_path / "notes.txt").write_text("not yaml: [")
    code, lines = _lint(tmp_path)
    assert code == 1
    assert any(line.startswith(f"{tmp_path / 'a.yaml'}:4: metadata.name: must be a DNS-1123 label") for line in lines)
    assert f"{tmp_path / 'b.yml'}:17: kind: must be 'CanaryPolicy' (got 'Canary')" in lines
    assert not any("notes.txt" in line for line in lines)


def test_multi_document_files_with_empty_documents_are_fine(tmp_path: Path) -> None:
    many = tmp_path / "many.yaml"
    many.write_text(
        "---\n---\n" + GOOD + "---\n# nothing here\n---\n" + GOOD.replace("name: tcp-echo\n", "name: b\n", 1) + "---\n"
    )
    code, lines = _lint(many)
    assert (code, lines) == (0, ["2 policies OK"])


def test_duplicate_policies_and_duplicate_keys_are_reported(tmp_path: Path) -> None:
    first = tmp_path / "first.yaml"
    first.write_text(GOOD)
    second = tmp_path / "second.yaml"
    second.write_text(GOOD.replace("stepDuration: 2m", "stepDuration: 2m\n    stepDuration: 5m"))
    code, lines = _lint(first, second)
    assert code == 1
    assert f"{second}:4: metadata.name: policy default/tcp-echo is already defined at {first}:1" in lines
    assert (
        f"{second}:14: spec.schedule.stepDuration: duplicate key 'stepDuration' (first at line 13); "
        "YAML keeps only the last" in lines
    )


def test_missing_paths_and_empty_input_fail(tmp_path: Path) -> None:
    code, lines = _lint(tmp_path / "nope.yaml")
    assert code == 1
    assert lines == [f"{tmp_path / 'nope.yaml'}:1: (file): no such file or directory"]
    empty = tmp_path / "empty.yaml"
    empty.write_text("# just a comment\n")
    code, _ = _lint(empty)
    assert code == 1


@pytest.mark.parametrize(
    ("replace", "by", "expected"),
    [
        ("stepDuration: 2m", "stepDuration: 1h30", "spec.schedule.stepDuration: must be a Go-style duration"),
        (
            "steps: [0, 20, 50, 100]",
            "steps: [0, 20, 50, 100.0]",
            "spec.schedule.steps[3]: must be an integer (got 100.0)",
        ),
        (
            "apiVersion: canaryctl.dev/v1alpha1",
            "apiVersion: v1",
            "apiVersion: must be 'canaryctl.dev/v1alpha1'",
        ),
        (
            "    virtualService:\n      name: tcp-echo\n",
            "",
            "spec.target: exactly one of virtualService or tcpRoute",
        ),
    ],
)
def test_lint_messages_for_common_mistakes(tmp_path: Path, replace: str, by: str, expected: str) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(GOOD.replace(replace, by))
    code, lines = _lint(path)
    assert code == 1
    assert any(expected in line for line in lines), lines


def test_canaryctl_console_command_is_installed() -> None:
    exe = Path(sys.executable).with_name("canaryctl")
    done = subprocess.run([str(exe), "lint", str(REPO / "policies")], capture_output=True, text=True, check=False)
    assert (done.returncode, done.stdout) == (0, "2 policies OK\n")
