"""The provisioning service: partners, co-sell referrals, customers, plans, subscriptions,
terminals, entitlements, the event feed and the audit trail (`skybridge.provisioning.v1`)."""
