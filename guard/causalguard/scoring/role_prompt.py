"""The chat system prompt of a survey condition: the role's own prompt, then the steering note."""

from __future__ import annotations

from causalguard.roles.role import Role
from causalguard.steering_conditions import SteeringCondition


def role_system_prompt(role: Role, steering: SteeringCondition) -> str | None:
    note = steering.prompt_note()
    if role.system_prompt and note:
        return f"{role.system_prompt} {note}"
    return role.system_prompt or note
