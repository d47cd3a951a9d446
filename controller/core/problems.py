"""Problems found in user input, each tied to the path of the field at fault.

``validate_policy`` is the one entry point that turns a parsed document into a ``CanaryPolicy`` or a
list of ``Problem`` records, with messages written for people (``must be an integer (got 20.5)``,
``unknown field 'stepDuraton' (did you mean 'stepDuration'?)``).
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from controller.core.display import is_plain, kind_of, shown
from controller.core.policy import (
    CanaryPolicy,
    GenericWebhookTarget,
    PagerDutyTarget,
    Path,
    SecretRef,
    TeamsTarget,
    WebhookUrlTarget,
)


@dataclass(frozen=True)
class Problem:
    """One thing wrong with an input, at ``path`` inside the document."""

    path: Path
    message: str

    @property
    def dotted(self) -> str:
        """``spec.schedule.steps[2]`` style path; ``(document)`` for the document itself."""
        return dotted_path(self.path)


def dotted_path(path: Path) -> str:
    """Render a path as ``a.b[2].c``; a key that would not print as itself is shown escaped: ``a['x\\ny']``."""
    text = ""
    for part in path:
        if isinstance(part, int):
            text += f"[{part}]"
        elif not is_plain(part) or not part:
            text += f"[{shown(part)}]"
        else:
            text += f".{part}" if text else part
    return text or "(document)"


def validate_policy(data: Any) -> tuple[CanaryPolicy | None, list[Problem]]:
    """Validate one parsed document as a CanaryPolicy.

    Returns:
        The policy and no problems, or ``None`` and every problem found, sorted by path.
    """
    try:
        return CanaryPolicy.model_validate(data), []
    except ValidationError as exc:
        return None, problems_from_validation_error(exc, CanaryPolicy)


def problems_from_validation_error(exc: ValidationError, model: type[BaseModel]) -> list[Problem]:
    """Translate pydantic's errors into ``Problem`` records with readable messages."""
    problems: list[Problem] = []
    for error in exc.errors():
        loc: Path = tuple(error["loc"])
        ctx = error.get("ctx") or {}
        if error["type"] == "policy_rules":
            problems.extend(Problem((*loc, *path), message) for path, message in ctx["problems"])
            continue
        problems.append(Problem(loc, _message(error, model)))
    return problems


def _show(value: Any) -> str:
    if isinstance(value, str):
        return shown(value)
    if isinstance(value, bool | dict | list) or value is None:
        return kind_of(value)
    return str(value)


def _message(error: ErrorDetails, model: type[BaseModel]) -> str:
    kind = error["type"]
    ctx = error.get("ctx") or {}
    value = error.get("input")
    got = f" (got {_show(value)})"
    loc = tuple(error["loc"])
    if kind == "missing":
        return "required field is missing"
    if kind == "extra_forbidden":
        return _unknown_field(model, loc)
    if kind == "literal_error":
        return f"must be {ctx.get('expected')}{got}"
    if kind in {"int_type", "int_from_float", "int_parsing"}:
        return f"must be an integer{got}"
    if kind in {"string_type"}:
        return f"must be a string{got}"
    if kind in {"model_type", "dict_type", "model_attributes_type"}:
        secret = _secret_hint(_model_at(model, loc))
        if secret is not None and isinstance(value, str):
            # Never echo it: a literal here is a webhook URL, a token or a password.
            return secret
        return f"must be a mapping{got}"
    if kind in {"float_type", "float_parsing"}:
        return _number_message(value, got)
    if kind == "string_pattern_mismatch":
        return f"must match the pattern {ctx.get('pattern')}{got}"
    if kind == "list_type":
        return f"must be a list{got}"
    if kind == "greater_than_equal":
        return f"must be at least {ctx.get('ge')}{got}"
    if kind == "less_than_equal":
        return f"must be at most {ctx.get('le')}{got}"
    if kind == "too_short" and ctx.get("min_length") == 1:
        return "must not be empty"
    if kind == "string_too_short" and ctx.get("min_length") == 1:
        return "must not be empty"
    return str(error["msg"])


_PERCENT = re.compile(r"\s*([-+]?(?:\d+(?:\.\d*)?|\.\d+))\s*%\s*")


def _number_message(value: Any, got: str) -> str:
    """``max: 1%`` is the usual slip: thresholds and ratios are fractions."""
    match = _PERCENT.fullmatch(value) if isinstance(value, str) else None
    if match is not None:
        try:
            fraction = format(Decimal(match.group(1)).scaleb(-2).normalize(), "f")
        except InvalidOperation:  # pragma: no cover - the pattern admits only decimal numbers
            fraction = "a fraction"
        return f"must be a number; ratios are fractions, so {match.group(1)}% is written {fraction}{got}"
    return f"must be a number{got}"


_SECRET_FORM = "{secretKeyRef: {name: SECRET, key: KEY}} or {env: VARIABLE}"


def _secret_hint(found: type[BaseModel] | None) -> str | None:
    """Why a literal string cannot stand here and how to reference it, or None where no secret belongs."""
    if found is SecretRef:
        return f"must not hold the secret itself: write {_SECRET_FORM}"
    hinted: tuple[tuple[type[BaseModel], str, str], ...] = (
        (WebhookUrlTarget, "webhookUrl", "webhook URL"),
        (TeamsTarget, "webhookUrl", "webhook URL"),
        (GenericWebhookTarget, "url", "URL"),
        (PagerDutyTarget, "routingKey", "routing key"),
    )
    for model, field, what in hinted:
        if found is model:
            forms = " or ".join(f"{{{field}: {form}}}" for form in _SECRET_FORM.split(" or "))
            return f"must not hold the {what} itself (it is a secret): write {forms}"
    return None


def _model_at(model: type[BaseModel], loc: Path) -> type[BaseModel] | None:
    """The model expected at ``loc`` (list indexes skipped), or None when ``loc`` holds no model."""
    current: type[BaseModel] | None = model
    for part in loc:
        if current is None:
            return None
        if isinstance(part, int):
            continue
        current = _submodel(current, part)
    return current


def _unknown_field(model: type[BaseModel], loc: Path) -> str:
    field = str(loc[-1])
    allowed = _allowed_fields(model, loc[:-1])
    message = f"unknown field {field!r}"
    if allowed:
        close = difflib.get_close_matches(field, allowed, n=1, cutoff=0.6)
        if close:
            return f"{message} (did you mean {close[0]!r}?)"
        return f"{message}; allowed here: {', '.join(sorted(allowed))}"
    return message


def _allowed_fields(model: type[BaseModel], path: Path) -> list[str]:
    """The field names users may write at ``path`` inside ``model``."""
    current: type[BaseModel] | None = model
    for part in path:
        if current is None or isinstance(part, int):
            continue
        current = _submodel(current, part)
    if current is None:
        return []
    return [info.alias or name for name, info in current.model_fields.items()]


def _submodel(model: type[BaseModel], alias: str) -> type[BaseModel] | None:
    for name, info in model.model_fields.items():
        if (info.alias or name) == alias:
            return _find_model(info.annotation)
    return None


def _find_model(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()):
        found = _find_model(arg)
        if found is not None:
            return found
    return None
