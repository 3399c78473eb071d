"""Reading a host's objects by declared attributes: the common ground of :class:`engage.RecordType`
and :class:`engage.UserMapping`.

A host says where a value is with a *spec*: an attribute name (``"email"``), a dotted path
through related objects (``"address.city"``), or a callable taking the object. Nothing here
needs an app.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from .records import Role

#: Where a value is on a host object: an attribute, a dotted path, or a callable.
Spec = str | Callable[[Any], Any]


def read(obj: Any, spec: Spec | None) -> Any:
    """The value ``spec`` points at on ``obj``; ``None`` where a step of the path is ``None``
    or missing."""
    if spec is None:
        return None
    if callable(spec):
        return spec(obj)
    value = obj
    for step in spec.split("."):
        if value is None:
            return None
        value = getattr(value, step, None)
    return value


def text(value: Any) -> str:
    """``value`` as text, ``""`` for ``None``."""
    return "" if value is None else str(value).strip()


def optional_text(value: Any) -> str | None:
    """``value`` as text, ``None`` for ``None`` or blank."""
    return text(value) or None


def roles_of(value: Any, role_map: Mapping[Any, str | Iterable[str]] | None) -> frozenset[Role]:
    """engage's roles for a host user's role value(s), through ``role_map`` when one is given.

    ``value`` is one role value or an iterable of them (names, enum members, …). With a
    ``role_map``, each value is looked up in it (a value may map to one role name or several)
    and values it lacks give no role; without one, the values are engage's role names
    themselves. Anything that is no engage role is left out, never an error.
    """
    if value is None:
        return frozenset()
    values = [value] if isinstance(value, str) or not isinstance(value, Iterable) else value
    names: list[str] = []
    for item in values:
        if role_map is None:
            names.append(str(getattr(item, "value", item)))
            continue
        mapped = role_map.get(item, role_map.get(str(getattr(item, "value", item))))
        if mapped is None:
            continue
        names.extend([mapped] if isinstance(mapped, str) else mapped)
    return frozenset(Role(n) for n in names if n in Role._value2member_map_)
