"""Roles put into the prompt: synthetic personas, value roles and operator-supplied roles."""

from causalguard.roles.personas import generate_personas
from causalguard.roles.role import BASELINE, Role, RoleKind
from causalguard.roles.roles_file import load_anchor_roles, load_roles_file
from causalguard.roles.value_roles import value_role, value_roles

__all__ = [
    "BASELINE",
    "Role",
    "RoleKind",
    "generate_personas",
    "load_anchor_roles",
    "load_roles_file",
    "value_role",
    "value_roles",
]
