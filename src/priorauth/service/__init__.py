"""The authorization service: the provider-facing FHIR API (PAS, CRD, DTR, Subscriptions), the reviewer API,
clocks and reporting, OAuth2 client-credentials access control and the audit trail, on the durable store."""

from priorauth.service.app import create_app
from priorauth.service.settings import ServiceSettings

__all__ = ["create_app", "ServiceSettings"]
