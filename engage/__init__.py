"""engage: email engagement for any Flask CRM.

The public API is what this module exports; everything else is engage's own business.
"""

from __future__ import annotations

from .bulk import BulkResult, send_bulk
from .extension import Engage, current_engage, flask_login_user, user_from_attributes
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
from .template_stats import note_opportunity_won

__all__ = [
    "AttachmentStore",
    "BulkResult",
    "Engage",
    "EngageUser",
    "FollowPreference",
    "LocalFolderStore",
    "PostalAddress",
    "Record",
    "RecordAdapter",
    "RecordRef",
    "Role",
    "current_engage",
    "send_bulk",
    "flask_login_user",
    "note_opportunity_won",
    "user_from_attributes",
]
