"""Connectors: the outside systems a workflow provisions, one small interface per kind of system.

base.py holds the interfaces (CRM, identity, billing) and picks the implementation the settings
name. Each kind has an implementation on the protocol the market uses and an embedded default:

- CRM: http_crm.py, plain JSON over HTTP (docs/connectors.md shows how to write one for a
  specific CRM); identity: scim.py, SCIM 2.0 (Okta, Entra ID, Keycloak, most SaaS); billing:
  stripe_billing.py, the Stripe API through Stripe's library.
- embedded.py: all three in one SQLite database under the data dir, so `make up` works alone.

The rules every connector keeps (models.py, errors.py): it never retries (Temporal does); every
call that changes something carries an idempotency key derived from workflow id + step, and a
create first looks for what an earlier attempt may already have made; undoing something that
does not exist is success (a saga may undo a step that never happened); a 4xx that retrying
cannot fix is a non-retryable ApplicationError with a type name. Activities that call connectors
live with the workflow that uses them (activities/onboarding/).
"""
