"""ObjectMeta rules every kind shares: names, generated names, labels, annotations, timestamps.

Emulates ``ValidateObjectMeta`` of apimachinery for the parts clients trip over: name formats (RFC 1123
subdomain, RFC 1123 label for namespaces, RFC 1035 label for services), ``generateName``, label keys and
values, string-only labels and annotations, and the pruning of unknown ``metadata`` fields.

Deliberately not emulated: ``managedFields`` (no field manager bookkeeping at all), owner-reference
validation and garbage collection, and the 256 KiB annotation size limit.
"""

from __future__ import annotations

import datetime as dt
import random
import re
from collections.abc import Mapping
from typing import Any

from canary_sandbox.kubeapi.status import Cause

KNOWN_FIELDS = frozenset(
    {
        "name",
        "generateName",
        "namespace",
        "selfLink",
        "uid",
        "resourceVersion",
        "generation",
        "creationTimestamp",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "labels",
        "annotations",
        "ownerReferences",
        "finalizers",
        "managedFields",
    }
)

_SUBDOMAIN = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*"
_LABEL = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_DNS1035 = r"[a-z]([-a-z0-9]*[a-z0-9])?"
_QUALIFIED_NAME = r"([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]"
_LABEL_VALUE = r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?"

NAME_RULES: dict[str, tuple[str, int, str]] = {
    "subdomain": (
        _SUBDOMAIN,
        253,
        "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', "
        "and must start and end with an alphanumeric character (e.g. 'example.com', regex used for "
        f"validation is '{_SUBDOMAIN}')",
    ),
    "label": (
        _LABEL,
        63,
        "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must "
        "start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for "
        f"validation is '{_LABEL}')",
    ),
    "dns1035": (
        _DNS1035,
        63,
        "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an "
        "alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', "
        f"regex used for validation is '{_DNS1035}')",
    ),
}

_GENERATED_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"


def now_rfc3339() -> str:
    """The current UTC time as ``metav1.Time`` serialises it (seconds precision, ``Z``)."""
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def generate_name(prefix: str) -> str:
    """``generateName`` plus five random characters from the alphabet the server uses."""
    return prefix[:58] + "".join(random.choice(_GENERATED_ALPHABET) for _ in range(5))


def name_problems(name: str, rule: str, field: str = "metadata.name") -> list[Cause]:
    """Why ``name`` is not a valid object name under ``rule`` (empty when it is)."""
    pattern, limit, explanation = NAME_RULES[rule]
    problems: list[Cause] = []
    if len(name) > limit:
        problems.append(
            Cause("FieldValueInvalid", f'Invalid value: "{name}": must be no more than {limit} characters', field)
        )
    if not re.fullmatch(pattern, name):
        problems.append(Cause("FieldValueInvalid", f'Invalid value: "{name}": {explanation}', field))
    return problems


def _qualified_name_problems(key: str, field: str) -> list[Cause]:
    prefix, _, name = key.rpartition("/")
    problems: list[Cause] = []
    if prefix and (len(prefix) > 253 or not re.fullmatch(_SUBDOMAIN, prefix)):
        problems.append(
            Cause("FieldValueInvalid", f'Invalid value: "{key}": prefix part must be a valid DNS subdomain', field)
        )
    if not name or len(name) > 63 or not re.fullmatch(_QUALIFIED_NAME, name):
        problems.append(
            Cause(
                "FieldValueInvalid",
                f"Invalid value: \"{key}\": name part must consist of alphanumeric characters, '-', '_' or "
                "'.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  "
                f"or '123-abc', regex used for validation is '{_QUALIFIED_NAME}') and be no more than 63 characters",
                field,
            )
        )
    return problems


def type_problems(meta: Mapping[str, Any]) -> str | None:
    """A decoding error the server answers with 400 (non-string label or annotation values)."""
    for section in ("labels", "annotations"):
        values = meta.get(section)
        if values is None:
            continue
        if not isinstance(values, Mapping):
            return f"json: cannot unmarshal {type(values).__name__} into Go struct field ObjectMeta.metadata.{section}"
        for key, value in values.items():
            if not isinstance(value, str):
                kind = (
                    "number"
                    if isinstance(value, (int, float)) and not isinstance(value, bool)
                    else type(value).__name__
                )
                return (
                    f"json: cannot unmarshal {kind} into Go struct field ObjectMeta.metadata.{section} of type string"
                    f" (key {key!r})"
                )
    finalizers = meta.get("finalizers")
    if finalizers is not None and (not isinstance(finalizers, list) or not all(isinstance(f, str) for f in finalizers)):
        return "json: cannot unmarshal into Go struct field ObjectMeta.metadata.finalizers of type []string"
    return None


def validation_problems(meta: Mapping[str, Any]) -> list[Cause]:
    """Label key/value and annotation key problems, worded as the server words them."""
    problems: list[Cause] = []
    for key, value in (meta.get("labels") or {}).items():
        problems.extend(_qualified_name_problems(key, "metadata.labels"))
        if len(value) > 63 or not re.fullmatch(_LABEL_VALUE, value):
            problems.append(
                Cause(
                    "FieldValueInvalid",
                    f'Invalid value: "{value}": a valid label must be an empty string or consist of alphanumeric '
                    "characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. "
                    "'MyValue',  or 'my_value',  or '12345', regex used for validation is "
                    f"'{_LABEL_VALUE}') and be no more than 63 characters",
                    "metadata.labels",
                )
            )
    for key in meta.get("annotations") or {}:
        problems.extend(_qualified_name_problems(key, "metadata.annotations"))
    return problems


def prune_unknown(meta: dict[str, Any]) -> list[str]:
    """Drop fields ObjectMeta does not have; returns their paths (``metadata.foo``)."""
    unknown = [key for key in meta if key not in KNOWN_FIELDS]
    for key in unknown:
        del meta[key]
    return [f"metadata.{key}" for key in unknown]
