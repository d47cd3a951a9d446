"""Seeded mutations of real YAML files: the mistakes and attacks a policy directory may see."""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

HOSTILE_SNIPPETS = [
    "\x00",
    "\x1b[2J",
    "\x07",
    "\t",
    "\ufeff",
    "\u202e",
    "\ud800",
    ": ",
    "- ",
    "&a ",
    "*a",
    "*undefined",
    "<<: *a\n",
    "!!binary ",
    "!!python/object:os.system ",
    "!!timestamp ",
    "!!set ",
    "? ",
    "'",
    '"',
    "{",
    "[",
    "]",
    "}",
    "|\n",
    ">-\n",
    "---\n",
    "...\n",
    "%YAML 1.1\n",
    "9" * 5000,
    "1" + "0" * 400,
    "-1e999",
    ".nan",
    "0000-00-00",
    "0x" + "f" * 300,
    "1:" * 200 + "1",
    "~",
    "null",
    "yes",
    "00:00:00",
]


def _replace_char(text: str, r: random.Random) -> str:
    at = r.randrange(len(text) + 1)
    return text[:at] + r.choice(HOSTILE_SNIPPETS) + text[at + 1 :]


def _insert(text: str, r: random.Random) -> str:
    at = r.randrange(len(text) + 1)
    return text[:at] + r.choice(HOSTILE_SNIPPETS) + text[at:]


def _delete_span(text: str, r: random.Random) -> str:
    at = r.randrange(len(text) + 1)
    return text[:at] + text[at + r.randint(1, 40) :]


def _truncate(text: str, r: random.Random) -> str:
    return text[: r.randrange(len(text) + 1)]


def _lines(function: Callable[[list[str], random.Random], list[str]]) -> Callable[[str, random.Random], str]:
    def apply(text: str, r: random.Random) -> str:
        lines = text.splitlines(keepends=True) or [""]
        return "".join(function(lines, r))

    return apply


@_lines
def _duplicate_line(lines: list[str], r: random.Random) -> list[str]:
    at = r.randrange(len(lines))
    return [*lines[: at + 1], lines[at], *lines[at + 1 :]]


@_lines
def _swap_lines(lines: list[str], r: random.Random) -> list[str]:
    a, b = r.randrange(len(lines)), r.randrange(len(lines))
    lines[a], lines[b] = lines[b], lines[a]
    return lines


@_lines
def _indent_line(lines: list[str], r: random.Random) -> list[str]:
    at = r.randrange(len(lines))
    lines[at] = (" " * r.choice([1, 2, 4]) + lines[at]) if r.random() < 0.5 else lines[at].lstrip()
    return lines


@_lines
def _anchor_and_alias(lines: list[str], r: random.Random) -> list[str]:
    name = r.choice(["a", "b", "x"])
    at = r.randrange(len(lines))
    line = lines[at]
    if ": " in line:
        key, _, value = line.partition(": ")
        lines[at] = f"{key}: &{name} {value}"
    target = r.randrange(len(lines))
    line = lines[target]
    if ": " in line:
        key, _, _ = line.partition(": ")
        lines[target] = f"{key}: *{name}\n"
    return lines


def _deep_nesting(text: str, r: random.Random) -> str:
    depth = r.choice([50, 99, 101, 600, 3000])
    at = r.randrange(len(text) + 1)
    return text[:at] + "[" * depth + "]" * depth + text[at:]


def _alias_bomb(text: str, r: random.Random) -> str:
    levels = r.randint(3, 12)
    bomb = ["bomb0: &b0 [x, x, x, x, x, x, x, x, x]\n"]
    bomb += [f"bomb{i}: &b{i} [" + ", ".join([f"*b{i - 1}"] * 9) + "]\n" for i in range(1, levels + 1)]
    return text + "".join(bomb)


def _number(text: str, r: random.Random) -> str:
    digits = [i for i, char in enumerate(text) if char.isdigit()]
    if not digits:
        return _insert(text, r)
    at = r.choice(digits)
    numbers = ["9" * 5000, "-1", "1e999", "0.5", "1_000", "0o777", ".inf", "101", "1" * 30]
    return text[:at] + r.choice(numbers) + text[at:]


MUTATIONS: list[Callable[[str, random.Random], str]] = [
    _replace_char,
    _insert,
    _delete_span,
    _truncate,
    _duplicate_line,
    _swap_lines,
    _indent_line,
    _anchor_and_alias,
    _deep_nesting,
    _alias_bomb,
    _number,
]


def mutate(text: str, r: random.Random) -> tuple[str, list[str]]:
    """``text`` after one to four random mutations, and their names."""
    names = []
    for _ in range(r.randint(1, 4)):
        mutation = r.choice(MUTATIONS)
        text = mutation(text, r)
        names.append(mutation.__name__.lstrip("_"))
    return text, names


HOSTILE_VALUES: list[Any] = [
    None,
    -1,
    101,
    10**40,
    0.5,
    float("nan"),
    float("inf"),
    True,
    "",
    "x" * 5000,
    "50",
    "\x1b[2J\nforged: line",
    [],
    {},
    [None],
    {"": None},
]


def mutate_structure(obj: Any, r: random.Random) -> Any:
    """``obj`` (a parsed manifest) with one value somewhere replaced, deleted or duplicated."""
    paths: list[tuple[Any, Any]] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for key in list(node):
                paths.append((node, key))
                walk(node[key])
        elif isinstance(node, list):
            for index in range(len(node)):
                paths.append((node, index))
                walk(node[index])

    walk(obj)
    if not paths:
        return r.choice(HOSTILE_VALUES)
    parent, key = r.choice(paths)
    action = r.random()
    if action < 0.6:
        parent[key] = r.choice(HOSTILE_VALUES)
    elif action < 0.8:
        del parent[key]
    elif isinstance(parent, list):
        parent.append(parent[key])
    else:
        parent[key] = [parent[key], parent[key]]
    return obj
