"""Deny by default: a user is a viewer, trader or admin only if the settings say so."""

from __future__ import annotations

from collections.abc import Iterable
from enum import IntEnum


class Role(IntEnum):
    VIEWER = 1
    TRADER = 2
    ADMIN = 3


class RoleBook:
    def __init__(self, *, admins: Iterable[int] = (), traders: Iterable[int] = (),
                 viewers: Iterable[int] = ()) -> None:
        self._roles: dict[int, Role] = {}
        # The highest role wins when an id is listed twice.
        for role, ids in ((Role.VIEWER, viewers), (Role.TRADER, traders), (Role.ADMIN, admins)):
            for user_id in ids:
                self._roles[user_id] = role

    def role_of(self, user_id: int) -> Role | None:
        return self._roles.get(user_id)

    def admins(self) -> list[int]:
        return [uid for uid, role in self._roles.items() if role is Role.ADMIN]
