"""Every setting of ``canaryctl run`` as people read it: its environment variable, its default, what it does.

The list is made from :class:`controller.settings.Settings` itself, so a new setting appears in
``canaryctl run --help`` without anyone remembering to add it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic_core import PydanticUndefined

from controller.settings import Settings

ENV_PREFIX = "CANARY_"


@dataclass(frozen=True)
class SettingHelp:
    """One setting: ``CANARY_TICK_SECONDS``, ``5``, and its description."""

    env: str
    default: str
    description: str


def _shown(value: Any) -> str:
    if value is None:
        return "unset"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, (list, dict, tuple)) and not value:
        return "empty"
    return str(value)


def settings_reference() -> list[SettingHelp]:
    """Every setting, in the order Settings declares them."""
    found = []
    for name, info in Settings.model_fields.items():
        if info.default_factory is not None:
            default: Any = info.default_factory()  # type: ignore[call-arg]
        elif info.default is PydanticUndefined:
            default = "required"
        else:
            default = info.default
        found.append(
            SettingHelp(env=ENV_PREFIX + name.upper(), default=_shown(default), description=info.description or "")
        )
    return found


def settings_help() -> str:
    """The settings as help paragraphs, one per setting: ``CANARY_X (default: D): what it does``."""
    return "\n\n".join(f"{s.env} (default: {s.default}): {s.description}" for s in settings_reference())
