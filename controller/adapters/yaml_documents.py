"""Reading YAML streams with positions, so every problem can name its file and line.

Handles what real manifest files hold: many documents of many kinds, leading or trailing ``---``,
empty documents and comments. Duplicate keys, which PyYAML silently resolves to the last one, are
reported as problems instead.

Hostile input is bounded (``YamlLimits``): the file's size and type, the number of documents, aliases
and nodes (aliases counted as the nodes they stand for, so an alias bomb is refused before anything
expands it), the nesting depth, the digits of an integer, and optionally the time spent. Every node is
walked once. Whatever the input, the answer is documents and findings, never an exception.
"""

from __future__ import annotations

import os
import stat
import time
from dataclasses import dataclass
from pathlib import Path as FsPath
from typing import Any

import yaml

from controller.core.display import shown
from controller.core.policy import Path
from controller.core.problems import dotted_path

MIB = 1024 * 1024


@dataclass(frozen=True)
class YamlLimits:
    """Bounds on one file, so that no file can take unbounded time or memory.

    Attributes:
        max_bytes: size of the file (a ConfigMap, where the daemon's files come from, holds at most 1 MiB).
        max_documents: documents in the file.
        max_aliases: aliases (``*name``) in the file.
        max_nodes: nodes in the file, each alias counted as the whole node it stands for.
        max_depth: nesting of collections, through aliases too.
        max_integer_digits: characters of one integer (Python refuses more than 4,300 digits anyway).
        max_seconds: time to read the file, or None for no limit (``lint`` reads to the end; the daemon
            sets a budget so that one file cannot hold up the others).
    """

    max_bytes: int = MIB
    max_documents: int = 1000
    max_aliases: int = 1000
    max_nodes: int = 100_000
    max_depth: int = 100
    max_integer_digits: int = 100
    max_seconds: float | None = None


DEFAULT_LIMITS = YamlLimits()


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


class _Refused(Exception):
    """A limit was passed: the file is refused with this message, at this 0-based line."""

    def __init__(self, message: str, line: int) -> None:
        super().__init__(message)
        self.message = message
        self.line = line


def _count(number: int) -> str:
    return f"{number:,}"


class _BoundedLoader(yaml.SafeLoader):
    """PyYAML's safe loader, counting what it composes and refusing what passes the limits."""

    def __init__(self, text: str, limits: YamlLimits, deadline: float | None) -> None:
        self.limits = limits
        self.deadline = deadline
        self.depth = 0
        self.aliases = 0
        self.composed = 0
        super().__init__(text)

    def compose_node(self, parent: yaml.Node | None, index: int) -> yaml.Node | None:
        event = self.peek_event()  # type: ignore[no-untyped-call]
        line = int(event.start_mark.line) if event.start_mark else 0
        if isinstance(event, yaml.AliasEvent):
            self.aliases += 1
            if self.aliases > self.limits.max_aliases:
                raise _Refused(
                    f"refused: more than {_count(self.limits.max_aliases)} aliases (the limit per file)", line
                )
        else:
            self.composed += 1
            if self.composed > self.limits.max_nodes:
                raise _Refused(f"refused: more than {_count(self.limits.max_nodes)} nodes (the limit per file)", line)
        if self.deadline is not None and self.composed % 256 == 0 and time.monotonic() > self.deadline:
            raise _Refused(_too_slow(self.limits), line)
        self.depth += 1
        try:
            if self.depth > self.limits.max_depth:
                raise _Refused(f"refused: nested deeper than {self.limits.max_depth} levels (the limit)", line)
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1


def _too_slow(limits: YamlLimits) -> str:
    return f"refused: reading took longer than {limits.max_seconds:g} s (the limit per file)"


def _bounded_int(loader: _BoundedLoader, node: yaml.ScalarNode) -> Any:
    digits = len(str(node.value))
    if digits > loader.limits.max_integer_digits:
        raise _Refused(
            f"refused: an integer of {_count(digits)} characters (at most {loader.limits.max_integer_digits})",
            int(node.start_mark.line),
        )
    return yaml.SafeLoader.construct_yaml_int(loader, node)


def _checked_scalar(name: str) -> Any:
    construct = getattr(yaml.SafeLoader, name)

    def checked(loader: _BoundedLoader, node: yaml.ScalarNode) -> Any:
        try:
            return construct(loader, node)
        except (ValueError, OverflowError) as exc:
            raise _Refused(f"invalid value {_short(str(node.value))}: {exc}", int(node.start_mark.line)) from None

    return checked


_BoundedLoader.add_constructor("tag:yaml.org,2002:int", _bounded_int)
_BoundedLoader.add_constructor("tag:yaml.org,2002:float", _checked_scalar("construct_yaml_float"))
_BoundedLoader.add_constructor("tag:yaml.org,2002:timestamp", _checked_scalar("construct_yaml_timestamp"))


def _short(text: str, limit: int = 40) -> str:
    return shown(text, limit=limit)


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    return []


def _measure(root: yaml.Node) -> tuple[int, int]:
    """Nodes and depth of ``root`` with every alias expanded, visiting each distinct node once.

    Raises:
        _Refused: a node contains itself (a self-referencing anchor: expanding it never ends).
    """
    size: dict[int, int] = {}
    depth: dict[int, int] = {}
    open_nodes: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, done = stack.pop()
        key = id(node)
        if done:
            children = _children(node)
            size[key] = 1 + sum(size[id(child)] for child in children)
            depth[key] = 1 + max((depth[id(child)] for child in children), default=0)
            open_nodes.discard(key)
            continue
        if key in size:
            continue
        if key in open_nodes:
            raise _Refused(
                "refused: an alias refers to a node that contains it (a self-referencing anchor)",
                int(node.start_mark.line),
            )
        open_nodes.add(key)
        stack.append((node, True))
        for child in _children(node):
            if id(child) in open_nodes:
                raise _Refused(
                    "refused: an alias refers to a node that contains it (a self-referencing anchor)",
                    int(child.start_mark.line),
                )
            if id(child) not in size:
                stack.append((child, False))
    return size[id(root)], depth[id(root)]


def _duplicate_keys(root: yaml.Node, file: str) -> list[Finding]:
    """Duplicate keys of every mapping, each distinct node walked once (shared ones under their first path)."""
    findings: list[Finding] = []
    seen: set[int] = set()
    stack: list[tuple[yaml.Node, Path]] = [(root, ())]
    while stack:
        node, path = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        if isinstance(node, yaml.MappingNode):
            first_seen: dict[str, int] = {}
            children: list[tuple[yaml.Node, Path]] = []
            for key, value in node.value:
                if not isinstance(key, yaml.ScalarNode) or key.tag == "tag:yaml.org,2002:merge":
                    children.append((value, path))
                    continue
                line = int(key.start_mark.line) + 1
                if key.value in first_seen:
                    findings.append(
                        Finding(
                            file,
                            line,
                            dotted_path((*path, key.value)),
                            f"duplicate key {_short(key.value)} (first at line {first_seen[key.value]}); "
                            "YAML keeps only the last",
                        )
                    )
                else:
                    first_seen[key.value] = line
                children.append((value, (*path, key.value)))
            stack.extend(reversed(children))
        elif isinstance(node, yaml.SequenceNode):
            stack.extend(reversed([(item, (*path, index)) for index, item in enumerate(node.value)]))
    findings.sort(key=lambda finding: finding.line)
    return findings


def parse_yaml_stream(
    text: str, *, file: str, limits: YamlLimits = DEFAULT_LIMITS
) -> tuple[list[YamlDocument], list[Finding]]:
    """Parse every document of ``text``, within ``limits``.

    Returns:
        The non-empty documents, and findings: a syntax error or a limit passed (with line; the
        documents before it are still returned) and duplicate keys. Never raises.
    """
    documents: list[YamlDocument] = []
    findings: list[Finding] = []
    size = len(text.encode("utf-8", errors="surrogatepass"))
    if size > limits.max_bytes:
        return [], [Finding(file, 1, "(file)", _too_big(size, limits))]
    deadline = None if limits.max_seconds is None else time.monotonic() + limits.max_seconds
    loader: _BoundedLoader | None = None
    index = 0
    nodes = 0
    try:
        loader = _BoundedLoader(text, limits, deadline)
        while loader.check_node():
            if index >= limits.max_documents:
                raise _Refused(
                    f"refused: more than {_count(limits.max_documents)} documents (the limit per file)",
                    int(loader.peek_event().start_mark.line),  # type: ignore[no-untyped-call]
                )
            node = loader.get_node()
            if node is None:
                continue
            document_nodes, depth = _measure(node)
            nodes += document_nodes
            if nodes > limits.max_nodes:
                raise _Refused(
                    f"refused: its aliases expand to more than {_count(limits.max_nodes)} nodes "
                    "(the limit per file; an alias bomb?)",
                    int(node.start_mark.line),
                )
            if depth > limits.max_depth:
                raise _Refused(
                    f"refused: nested deeper than {limits.max_depth} levels through aliases (the limit)",
                    int(node.start_mark.line),
                )
            data = loader.construct_document(node)
            if data is not None:
                documents.append(YamlDocument(file, index, data, node))
                findings.extend(_duplicate_keys(node, file))
            index += 1
            if deadline is not None and time.monotonic() > deadline:
                raise _Refused(_too_slow(limits), int(node.end_mark.line))
    except _Refused as exc:
        findings.append(Finding(file, exc.line + 1, "yaml", exc.message))
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else 1
        column = f" (column {mark.column + 1})" if mark else ""
        context = f" {exc.context}" if exc.context else ""
        findings.append(Finding(file, line, "yaml", f"syntax error: {exc.problem}{context}{column}"))
    except yaml.reader.ReaderError as exc:
        line = text.count("\n", 0, exc.position) + 1
        column = exc.position - (text.rfind("\n", 0, exc.position) + 1) + 1
        findings.append(
            Finding(
                file,
                line,
                "yaml",
                f"syntax error: unacceptable character #x{exc.character:04x}: {exc.reason} (column {column})",
            )
        )
    except yaml.YAMLError as exc:
        findings.append(Finding(file, 1, "yaml", f"cannot parse: {_short(str(exc), 200)}"))
    except RecursionError:
        findings.append(Finding(file, 1, "yaml", "refused: nested too deeply to read"))
    except MemoryError:
        findings.append(Finding(file, 1, "yaml", "refused: not enough memory to read it"))
    except Exception as exc:  # the last guard: a file must end in findings, never in a traceback
        findings.append(Finding(file, 1, "yaml", f"cannot parse: {type(exc).__name__}: {_short(str(exc), 200)}"))
    finally:
        if loader is not None:
            loader.dispose()
    return documents, findings


def _too_big(size: int, limits: YamlLimits) -> str:
    return f"refused: {_count(size)} bytes, larger than {_bytes(limits.max_bytes)} (the limit)"


def _bytes(count: int) -> str:
    return f"{count / MIB:g} MiB" if count % (MIB // 4) == 0 else f"{_count(count)} bytes"


_KINDS = {
    stat.S_IFIFO: "a FIFO",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
    stat.S_IFSOCK: "a socket",
    stat.S_IFDIR: "a directory",
}


def file_kind(mode: int) -> str:
    """What a non-regular file is, in words (``a FIFO``)."""
    return _KINDS.get(stat.S_IFMT(mode), "not a regular file")


def read_bounded_text(path: FsPath, *, limits: YamlLimits = DEFAULT_LIMITS) -> str:
    """The text of a regular file of at most ``limits.max_bytes`` bytes.

    Opens without blocking (a FIFO would otherwise wait for a writer) and checks the opened file itself.

    Raises:
        ValueError: the file is not a regular file or is too big; the message says which.
        OSError, UnicodeDecodeError: it cannot be read.
    """
    descriptor = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    with os.fdopen(descriptor, "rb") as handle:
        mode = os.fstat(handle.fileno()).st_mode
        if not stat.S_ISREG(mode):
            raise ValueError(f"refused: {file_kind(mode)}, not a regular file")
        data = handle.read(limits.max_bytes + 1)
        if len(data) > limits.max_bytes:
            size = os.fstat(handle.fileno()).st_size
            raise ValueError(_too_big(max(size, len(data)), limits))
    return data.decode("utf-8")


def read_yaml_file(
    path: FsPath, *, display: str | None = None, limits: YamlLimits = DEFAULT_LIMITS
) -> tuple[list[YamlDocument], list[Finding]]:
    """Read and parse a YAML file; an unreadable, non-regular or too big file is a finding, not an exception."""
    name = display or str(path)
    try:
        text = read_bounded_text(path, limits=limits)
    except ValueError as exc:
        if isinstance(exc, UnicodeDecodeError):
            return [], [Finding(name, 1, "(file)", f"cannot read: not UTF-8 ({exc.reason} at byte {exc.start})")]
        return [], [Finding(name, 1, "(file)", str(exc))]
    except OSError as exc:
        reason = exc.strerror or str(exc)
        return [], [Finding(name, 1, "(file)", f"cannot read: {reason}")]
    return parse_yaml_stream(text, file=name, limits=limits)
