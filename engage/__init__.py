"""engage: email engagement for any Flask CRM.

The public API is what this module exports; everything else is engage's own business.

The host's types (:mod:`engage.records`) are imported at once; the rest is loaded on first use,
so that importing a part of engage (``engage.models`` in a host's Alembic ``env.py``, say) does
not load the web layer and every feature with it.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

from .records import (
    EngageUser,
    FollowPreference,
    PostalAddress,
    Record,
    RecordAdapter,
    RecordRef,
    Role,
)
from .storage import AttachmentStore, LocalFolderStore

if TYPE_CHECKING:
    from .bulk import BulkResult, send_bulk
    from .context import UserMapping, current_engage, flask_login_user, user_from_attributes
    from .database_store import DatabaseStore
    from .extension import Engage
    from .model_records import ModelAdapter, RecordType
    from .template_performance import note_opportunity_won

#: Where each lazily loaded name of the public API lives.
_LAZY = {
    "BulkResult": "engage.bulk",
    "send_bulk": "engage.bulk",
    "Engage": "engage.extension",
    "DatabaseStore": "engage.database_store",
    "current_engage": "engage.context",
    "flask_login_user": "engage.context",
    "user_from_attributes": "engage.context",
    "UserMapping": "engage.context",
    "ModelAdapter": "engage.model_records",
    "RecordType": "engage.model_records",
    "note_opportunity_won": "engage.template_performance",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'engage' has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value
    return value


__all__ = [
    "AttachmentStore",
    "BulkResult",
    "DatabaseStore",
    "Engage",
    "EngageUser",
    "FollowPreference",
    "LocalFolderStore",
    "ModelAdapter",
    "PostalAddress",
    "Record",
    "RecordAdapter",
    "RecordRef",
    "RecordType",
    "Role",
    "UserMapping",
    "current_engage",
    "send_bulk",
    "flask_login_user",
    "note_opportunity_won",
    "user_from_attributes",
]
