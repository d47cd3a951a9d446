"""What a decision asks the world to do: plain data the service applies after persisting the new status.

Every effect is idempotent (applying one twice, after a crash between persisting and applying, changes
nothing more), and ``type`` names each kind for logs. An alert is the status model's
:class:`~controller.core.status.Alert`: the same object waits in the status's outbox for delivery.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from controller.core.status import Alert, RolloutStatus


class _Effect(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_camel, validate_by_name=True, validate_by_alias=True, serialize_by_alias=True
    )


class WriteRoute(_Effect):
    """Replace the selected route's destination list, only if it still equals ``expect``."""

    type: Literal["WriteRoute"] = "WriteRoute"
    pointer: str
    destinations: list[Any]
    expect: list[Any]
    purpose: Literal["step", "restore"]
    weight: int | None = None


class RecordEvent(_Effect):
    """A Kubernetes Event on the policy (or the target in file mode)."""

    type: Literal["RecordEvent"] = "RecordEvent"
    reason: str
    message: str
    event_type: Literal["Normal", "Warning"] = "Normal"


Effect = WriteRoute | RecordEvent | Alert


class Decision(_Effect):
    """The new status and the effects to apply after it is persisted."""

    status: RolloutStatus
    effects: list[Effect] = Field(default_factory=list)
