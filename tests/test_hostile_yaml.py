"""Hostile YAML (issue 13, items 2 and 3): every file ends in findings naming it, never a traceback or a hang.

Each case is a file a careless or hostile author could put in a policy directory: an alias bomb, nesting
past Python's recursion limit, an integer past Python's 4,300 digits, a self-referencing anchor, control
characters, a FIFO, a device, a file past the size cap.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from controller.adapters.yaml_documents import YamlLimits, parse_yaml_stream, read_yaml_file
from controller.cli import app
from tests.support.policies import policy_doc

runner = CliRunner()


def alias_bomb(levels: int, width: int = 9) -> str:
    """The billion-laughs document: each level is ``width`` aliases of the one before (a few hundred bytes)."""
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * width) + "]" for i in range(1, levels + 1)]
    return "\n".join(lines) + "\n"


def _lint(*paths: Path) -> tuple[int, list[str]]:
    result = runner.invoke(app, ["lint", *map(str, paths)])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result.exit_code, result.stdout.splitlines()


def _only(findings: Sequence[object]) -> str:
    assert len(findings) == 1, findings
    return str(findings[0])


# A bomb of 9 levels took about 150 s to walk before (the duplicate-key walk revisited shared nodes); the
# timeout makes a regression fail instead of hanging the suite.
@pytest.mark.timeout(20)
def test_an_alias_bomb_is_refused_naming_the_limit() -> None:
    documents, findings = parse_yaml_stream(alias_bomb(9), file="bomb.yaml")

    assert documents == []
    assert _only(findings) == (
        "bomb.yaml:1: yaml: refused: its aliases expand to more than 100,000 nodes (the limit per file; an alias bomb?)"
    )


@pytest.mark.timeout(20)
def test_shared_nodes_are_walked_once_and_their_duplicate_keys_reported_once() -> None:
    text = "base: &b {port: 1, port: 2}\n" + "".join(f"use{i}: *b\n" for i in range(50))

    documents, findings = parse_yaml_stream(text, file="f.yaml")

    assert len(documents) == 1
    assert [str(f) for f in findings] == [
        "f.yaml:1: base.port: duplicate key 'port' (first at line 1); YAML keeps only the last"
    ]


def test_too_many_aliases_are_refused_naming_the_limit() -> None:
    text = "a: &a 1\nb: [" + ", ".join(["*a"] * 11) + "]\n"

    _, findings = parse_yaml_stream(text, file="f.yaml", limits=YamlLimits(max_aliases=10))

    assert _only(findings) == "f.yaml:2: yaml: refused: more than 10 aliases (the limit per file)"


@pytest.mark.parametrize(
    ("text", "line"),
    [
        ("a: " + "[" * 600 + "]" * 600 + "\n", 1),
        ("".join("  " * i + f"k{i}:\n" for i in range(150)) + "  " * 150 + "x: 1\n", 100),
    ],
    ids=["flow", "block"],
)
def test_nesting_past_the_depth_limit_is_refused_not_a_recursion_error(text: str, line: int) -> None:
    _, findings = parse_yaml_stream(text, file="deep.yaml")

    assert _only(findings) == f"deep.yaml:{line}: yaml: refused: nested deeper than 100 levels (the limit)"


def test_nesting_through_aliases_counts_too() -> None:
    inner = "[" * 60 + "1" + "]" * 60
    text = f"a: &a {inner}\nb: " + "[" * 50 + "*a" + "]" * 50 + "\n"

    _, findings = parse_yaml_stream(text, file="f.yaml")

    assert _only(findings) == "f.yaml:1: yaml: refused: nested deeper than 100 levels through aliases (the limit)"


def test_an_integer_past_pythons_digit_limit_is_a_finding_at_its_line() -> None:
    _, findings = parse_yaml_stream("a: 1\nsteps: [" + "9" * 5000 + "]\n", file="int.yaml")

    assert _only(findings) == "int.yaml:2: yaml: refused: an integer of 5,000 characters (at most 100)"


def test_a_date_python_cannot_hold_is_a_finding_at_its_line() -> None:
    _, findings = parse_yaml_stream("a: 1\nwhen: 0000-01-01\n", file="d.yaml")

    assert _only(findings) == "d.yaml:2: yaml: invalid value '0000-01-01': year 0 is out of range"


@pytest.mark.parametrize("text", ["a: &a [1, *a]\n", "a: &a {b: *a}\n", "&a [*a]\n"])
def test_a_self_referencing_anchor_is_refused(text: str) -> None:
    _, findings = parse_yaml_stream(text, file="loop.yaml")

    assert _only(findings) == (
        "loop.yaml:1: yaml: refused: an alias refers to a node that contains it (a self-referencing anchor)"
    )


@pytest.mark.parametrize(("char", "code"), [("\x00", "0000"), ("\x07", "0007"), ("\x1b", "001b"), ("\ud800", "d800")])
def test_a_control_character_is_a_syntax_error_at_its_line_and_column(char: str, code: str) -> None:
    _, findings = parse_yaml_stream(f"a: 1\nb: x{char}\n", file="c.yaml")

    assert _only(findings) == (
        f"c.yaml:2: yaml: syntax error: unacceptable character #x{code}: special characters are not allowed (column 5)"
    )


def test_too_many_documents_are_refused_and_the_ones_before_are_kept() -> None:
    documents, findings = parse_yaml_stream("---\na: 1\n" * 12, file="m.yaml", limits=YamlLimits(max_documents=10))

    assert len(documents) == 10
    assert _only(findings) == "m.yaml:21: yaml: refused: more than 10 documents (the limit per file)"


def test_too_many_nodes_are_refused_naming_the_limit() -> None:
    text = "a: [" + ", ".join(["1"] * 200) + "]\n"

    _, findings = parse_yaml_stream(text, file="n.yaml", limits=YamlLimits(max_nodes=100))

    assert _only(findings) == "n.yaml:1: yaml: refused: more than 100 nodes (the limit per file)"


def test_a_file_over_the_size_cap_is_refused_by_name(tmp_path: Path) -> None:
    path = tmp_path / "big.yaml"
    path.write_text("# padding\n" * 120_000)

    _, findings = read_yaml_file(path)

    assert _only(findings) == f"{path}:1: (file): refused: 1,200,000 bytes, larger than 1 MiB (the limit)"


@pytest.mark.timeout(20)
def test_a_fifo_is_refused_by_name_without_waiting_for_a_writer(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe.yaml"
    os.mkfifo(fifo)
    (tmp_path / "good.yaml").write_text(yaml.safe_dump(policy_doc(), sort_keys=False))

    code, lines = _lint(tmp_path)

    assert code == 1
    assert lines == [f"{fifo}:1: (file): refused: a FIFO, not a regular file"]


@pytest.mark.timeout(20)
def test_a_device_given_by_name_is_refused(tmp_path: Path) -> None:
    code, lines = _lint(Path("/dev/zero"))

    assert (code, lines) == (1, ["/dev/zero:1: (file): refused: a character device, not a regular file"])


def test_a_file_that_is_not_utf8_is_a_finding(tmp_path: Path) -> None:
    path = tmp_path / "latin.yaml"
    path.write_bytes(b"a: caf\xe9\n")

    _, findings = read_yaml_file(path)

    assert _only(findings) == f"{path}:1: (file): cannot read: not UTF-8 (invalid continuation byte at byte 6)"


@pytest.mark.timeout(60)
def test_lint_of_a_directory_reports_every_hostile_file_and_still_checks_the_good_one(tmp_path: Path) -> None:
    hostile = {
        "bomb.yaml": alias_bomb(9),
        "deep.yaml": "a: " + "[" * 2000 + "]" * 2000 + "\n",
        "int.yaml": "a: " + "1" * 5000 + "\n",
        "loop.yaml": "a: &a [*a]\n",
        "ctrl.yaml": "a: \x01\n",
    }
    for name, text in hostile.items():
        (tmp_path / name).write_text(text)
    (tmp_path / "good.yaml").write_text(yaml.safe_dump(policy_doc(steps=[0, 50, 20]), sort_keys=False))

    code, lines = _lint(tmp_path)

    assert code == 1
    for name in hostile:
        assert sum(line.startswith(f"{tmp_path / name}:") for line in lines) == 1, (name, lines)
    assert any(line.startswith(f"{tmp_path / 'good.yaml'}:") and "steps[2]" in line for line in lines), lines
