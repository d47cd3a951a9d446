"""Policy files: find them, parse them, validate them, and say exactly where each problem is.

Used by ``canaryctl lint`` and ``canaryctl plan``. A bad document never hides the problems of the
others: every file and every document is checked.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path as FsPath

from controller.adapters.yaml_documents import Finding, YamlDocument, read_yaml_file
from controller.core.policy import CanaryPolicy
from controller.core.problems import validate_policy

YAML_SUFFIXES = (".yaml", ".yml")


@dataclass(frozen=True)
class LoadedPolicy:
    """A valid policy and the document it came from."""

    policy: CanaryPolicy
    document: YamlDocument


@dataclass
class LintReport:
    """Everything ``lint`` found: valid policies and findings, in file order."""

    policies: list[LoadedPolicy] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when there is no finding."""
        return not self.findings


def expand_paths(paths: Iterable[str]) -> tuple[list[FsPath], list[Finding]]:
    """Files as given, plus every ``*.yaml`` / ``*.yml`` under given directories, sorted."""
    files: list[FsPath] = []
    findings: list[Finding] = []
    for raw in paths:
        path = FsPath(raw)
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix in YAML_SUFFIXES)
            if not found:
                findings.append(Finding(raw, 1, "(directory)", "holds no .yaml or .yml file"))
            files.extend(found)
        elif path.exists():
            files.append(path)
        else:
            findings.append(Finding(raw, 1, "(file)", "no such file or directory"))
    return files, findings


def check_documents(documents: Iterable[YamlDocument]) -> LintReport:
    """Validate each document as a CanaryPolicy; report duplicates of namespace/name."""
    report = LintReport()
    seen: dict[tuple[str, str], YamlDocument] = {}
    for document in documents:
        if not isinstance(document.data, dict):
            report.findings.append(
                Finding(document.file, document.line, "(document)", "must be a mapping (a CanaryPolicy)")
            )
            continue
        policy, problems = validate_policy(document.data)
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


def lint_paths(paths: Iterable[str]) -> LintReport:
    """Lint files and directories: YAML syntax, schema, and the policy rules."""
    files, findings = expand_paths(paths)
    documents: list[YamlDocument] = []
    for path in files:
        docs, parse_findings = read_yaml_file(path)
        documents.extend(docs)
        findings.extend(parse_findings)
    report = check_documents(documents)
    report.findings = sorted([*findings, *report.findings], key=lambda f: (f.file, f.line))
    return report
