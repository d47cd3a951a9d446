"""Policy files: find them, parse them, validate them, and say exactly where each problem is.

Used by ``canaryctl lint`` and ``canaryctl plan``. A bad document never hides the problems of the
others: every file and every document is checked. Documents of other kinds (the VirtualService beside
the policy) are skipped with one note each; a document that means to be a CanaryPolicy (its kind says
so, or its apiVersion is canaryctl.dev's) is validated.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path as FsPath
from typing import Any

from controller.adapters.yaml_documents import DEFAULT_LIMITS, Finding, YamlDocument, YamlLimits, read_yaml_file
from controller.core.display import plain
from controller.core.policy import CanaryPolicy
from controller.core.problems import validate_policy

YAML_SUFFIXES = (".yaml", ".yml")
POLICY_KIND = "CanaryPolicy"
POLICY_GROUP = "canaryctl.dev"


@dataclass(frozen=True)
class LoadedPolicy:
    """A valid policy and the document it came from."""

    policy: CanaryPolicy
    document: YamlDocument


@dataclass
class LintReport:
    """Everything ``lint`` found: valid policies, findings, and the documents of other kinds, in file order."""

    policies: list[LoadedPolicy] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    skipped: list[Finding] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when there is no finding."""
        return not self.findings


def expand_paths(paths: Iterable[str]) -> tuple[list[FsPath], list[Finding]]:
    """Files as given, plus every ``*.yaml`` / ``*.yml`` under given directories, sorted.

    Under a directory, an entry named like a YAML file that is not a regular file (a FIFO, a device, a
    dangling link) is kept, so that reading it reports it by name rather than skipping it silently.
    """
    files: list[FsPath] = []
    findings: list[Finding] = []
    for raw in paths:
        path = FsPath(raw)
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.suffix in YAML_SUFFIXES and not p.is_dir())
            if not found:
                findings.append(Finding(raw, 1, "(directory)", "holds no .yaml or .yml file"))
            files.extend(found)
        elif path.exists() or os.path.islink(path):
            files.append(path)
        else:
            findings.append(Finding(raw, 1, "(file)", "no such file or directory"))
    return files, findings


def is_policy_document(data: dict[Any, Any]) -> bool:
    """Whether a document means to be a CanaryPolicy: its kind says so, or its apiVersion is canaryctl.dev's.

    A document without a kind counts as one too (it is most likely a policy missing its kind), so only
    documents that clearly name another kind are skipped.
    """
    kind = data.get("kind")
    api_version = data.get("apiVersion")
    if isinstance(api_version, str) and api_version.split("/", 1)[0] == POLICY_GROUP:
        return True
    if not isinstance(kind, str) or not kind:
        return True
    return kind.replace("-", "").replace("_", "").lower().startswith("canary")


def check_documents(documents: Iterable[YamlDocument]) -> LintReport:
    """Validate each CanaryPolicy document; note the others; report duplicates of namespace/name."""
    report = LintReport()
    seen: dict[tuple[str, str], YamlDocument] = {}
    for document in documents:
        if not isinstance(document.data, dict):
            report.findings.append(
                Finding(document.file, document.line, "(document)", "must be a mapping (a CanaryPolicy)")
            )
            continue
        if not is_policy_document(document.data):
            report.skipped.append(
                Finding(document.file, document.line, "(document)", f"skipped: kind {plain(document.data['kind'])}")
            )
            continue
        try:
            policy, problems = validate_policy(document.data)
        except Exception as exc:  # the last guard: lint answers with findings, never a traceback
            report.findings.append(
                Finding(
                    document.file,
                    document.line,
                    "(document)",
                    f"internal error while validating: {type(exc).__name__}: {plain(str(exc), limit=200)}",
                )
            )
            continue
        for problem in problems:
            report.findings.append(
                Finding(document.file, document.line_of(problem.path), problem.dotted, problem.message)
            )
        if policy is None:
            continue
        key = (policy.metadata.namespace, policy.metadata.name)
        if key in seen:
            report.findings.append(
                Finding(
                    document.file,
                    document.line_of(("metadata", "name")),
                    "metadata.name",
                    f"policy {key[0]}/{key[1]} is already defined at {seen[key].where}",
                )
            )
            continue
        seen[key] = document
        report.policies.append(LoadedPolicy(policy, document))
    return report


def lint_paths(paths: Iterable[str], *, limits: YamlLimits = DEFAULT_LIMITS) -> LintReport:
    """Lint files and directories: YAML syntax and limits, schema, and the policy rules."""
    files, findings = expand_paths(paths)
    documents: list[YamlDocument] = []
    for path in files:
        docs, parse_findings = read_yaml_file(path, limits=limits)
        documents.extend(docs)
        findings.extend(parse_findings)
    report = check_documents(documents)
    report.findings = sorted([*findings, *report.findings], key=lambda f: (f.file, f.line))
    return report
