"""Reading YAML streams with positions, so every problem can name its file and line.

Handles what real manifest files hold: many documents of many kinds, leading or trailing ``---``,
empty documents and comments. Duplicate keys, which PyYAML silently resolves to the last one, are
reported as problems instead.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path as FsPath
from typing import Any

import yaml

from controller.core.policy import Path
from controller.core.problems import dotted_path


@dataclass(frozen=True)
class Finding:
    """A problem at a place in a file, printed as ``FILE:LINE: field.path: message``."""

    file: str
    line: int
    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.path}: {self.message}"


@dataclass(frozen=True)
class YamlDocument:
    """One non-empty document of a YAML stream."""

    file: str
    index: int
    data: Any
    node: yaml.Node

    @property
    def line(self) -> int:
        """1-based line where the document's content starts."""
        return int(self.node.start_mark.line) + 1

    @property
    def where(self) -> str:
        """``file:line`` of the document."""
        return f"{self.file}:{self.line}"

    def line_of(self, path: Path) -> int:
        """1-based line of the field at ``path``, or of its closest existing ancestor."""
        node = self.node
        line = self.line
        for part in path:
            child = _child(node, part)
            if child is None:
                break
            key_line, node = child
            line = key_line
        return line


def _child(node: yaml.Node, part: str | int) -> tuple[int, yaml.Node] | None:
    if isinstance(node, yaml.MappingNode) and isinstance(part, str):
        for key, value in node.value:
            if isinstance(key, yaml.ScalarNode) and key.value == part:
                return int(key.start_mark.line) + 1, value
    if isinstance(node, yaml.SequenceNode) and isinstance(part, int) and 0 <= part < len(node.value):
        item = node.value[part]
        return int(item.start_mark.line) + 1, item
    return None


def _duplicate_keys(node: yaml.Node, file: str, path: Path = ()) -> list[Finding]:
    findings: list[Finding] = []
    if isinstance(node, yaml.MappingNode):
        first_seen: dict[str, int] = {}
        for key, value in node.value:
            if not isinstance(key, yaml.ScalarNode) or key.tag == "tag:yaml.org,2002:merge":
                continue
            line = int(key.start_mark.line) + 1
            if key.value in first_seen:
                findings.append(
                    Finding(
                        file,
                        line,
                        dotted_path((*path, key.value)),
                        f"duplicate key {key.value!r} (first at line {first_seen[key.value]}); "
                        "YAML keeps only the last",
                    )
                )
            else:
                first_seen[key.value] = line
            findings.extend(_duplicate_keys(value, file, (*path, key.value)))
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            findings.extend(_duplicate_keys(item, file, (*path, index)))
    return findings


def parse_yaml_stream(text: str, *, file: str) -> tuple[list[YamlDocument], list[Finding]]:
    """Parse every document of ``text``.

    Returns:
        The non-empty documents, and findings: a syntax error (with line and column; the documents
        before it are still returned) and duplicate keys.
    """
    documents: list[YamlDocument] = []
    findings: list[Finding] = []
    loader = yaml.SafeLoader(text)
    index = 0
    try:
        while loader.check_node():
            node = loader.get_node()
            if node is None:
                continue
            data = loader.construct_document(node)
            if data is not None:
                documents.append(YamlDocument(file, index, data, node))
                findings.extend(_duplicate_keys(node, file))
            index += 1
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else 1
        column = f" (column {mark.column + 1})" if mark else ""
        context = f" {exc.context}" if exc.context else ""
        findings.append(Finding(file, line, "yaml", f"syntax error: {exc.problem}{context}{column}"))
    except yaml.YAMLError as exc:
        findings.append(Finding(file, 1, "yaml", f"cannot parse: {exc}"))
    finally:
        loader.dispose()
    return documents, findings


def read_yaml_file(path: FsPath, *, display: str | None = None) -> tuple[list[YamlDocument], list[Finding]]:
    """Read and parse a YAML file; an unreadable file is a finding, not an exception."""
    name = display or str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        return [], [Finding(name, 1, "(file)", f"cannot read: {reason}")]
    return parse_yaml_stream(text, file=name)
