# Email engagement for the donor CRM (README "Embed engage in 10 minutes", step 2).
from engage import Engage, ModelAdapter, RecordType, UserMapping

from .models import Donor, db

ROLES = {"admin": "admin", "manager": "sales_manager", "fundraiser": "salesperson"}
donors = RecordType(
    Donor, address="address", follow="allow_email_tracking", endpoint="donors.detail"
)
users = UserMapping(name="username", roles="role", role_map=ROLES)
engage = Engage(db=db, records=ModelAdapter(donors), current_user=users)
