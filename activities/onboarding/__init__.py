"""customer-onboarding's activities: provisioning through the connectors (activities/connectors/),
and the welcome e-mail with its one-time activation link."""
