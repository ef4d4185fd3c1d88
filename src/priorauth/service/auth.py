"""OAuth2 client credentials (RFC 6749 section 4.4) and the bearer tokens the service accepts.

Clients are registered in the store (``priorauth client add``) with one role: ``provider`` (its organization's
cases only), ``reviewer`` (reads every case, decides) or ``admin`` (everything, and client registration).
Tokens are JWTs signed with HMAC-SHA256 (PyJWT) carrying ``sub`` (the client), ``role`` and ``org``; they are
checked for signature, issuer, audience and expiry on every request. A disabled client keeps any token it
holds until it expires (``token_ttl_seconds``, one hour by default).
"""

from __future__ import annotations

import base64
import binascii
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Iterable
from urllib.parse import parse_qs

import jwt

from priorauth.service.errors import ApiError
from priorauth.service.settings import ServiceSettings
from priorauth.store import Actor, Store

__all__ = ["Principal", "TokenIssuer", "parse_token_request"]

_ALGORITHM = "HS256"


@dataclass(frozen=True)
class Principal:
    """Who calls: an OAuth2 client (``kind`` "client", ``client_id`` its id) or a person signed in to the
    reviewer console (``kind`` "user", ``client_id`` the user's name, role ``reviewer``)."""

    client_id: str
    role: str
    organization: str | None
    kind: str = "client"

    @property
    def actor(self) -> Actor:
        return Actor(f"{self.kind}:{self.client_id}", self.role)

    def may_see(self, organization: str) -> bool:
        return self.role in ("reviewer", "admin") or (self.role == "provider" and self.organization == organization)


class OAuthError(Exception):
    """An RFC 6749 section 5.2 error response."""

    def __init__(self, status: int, error: str, description: str, retry_after: int | None = None):
        super().__init__(description)
        self.status, self.error, self.description = status, error, description
        self.retry_after = retry_after

    def body(self) -> dict[str, str]:
        return {"error": self.error, "error_description": self.description}


def parse_token_request(body: bytes, content_type: str, authorization: str | None) -> tuple[str, str, str | None]:
    """``(client_id, client_secret, scope)`` from a token request: form-encoded body, the client authenticated
    with HTTP Basic or ``client_id``/``client_secret`` in the body."""
    if content_type.split(";")[0].strip().lower() != "application/x-www-form-urlencoded":
        raise OAuthError(400, "invalid_request", "the token request is form-encoded "
                                                 "(Content-Type: application/x-www-form-urlencoded)")
    try:
        form = parse_qs(body.decode("utf-8"), keep_blank_values=True, strict_parsing=False, max_num_fields=20)
    except (UnicodeDecodeError, ValueError):
        raise OAuthError(400, "invalid_request", "the token request body is not form-encoded UTF-8") from None
    for key, values in form.items():
        if len(values) > 1:
            raise OAuthError(400, "invalid_request", f"{key}: given more than once")
    one = {k: v[0] for k, v in form.items()}
    grant = one.get("grant_type")
    if grant is None:
        raise OAuthError(400, "invalid_request", "grant_type is required (client_credentials)")
    if grant != "client_credentials":
        raise OAuthError(400, "unsupported_grant_type", "only the client_credentials grant is supported")
    client_id, secret = one.get("client_id"), one.get("client_secret")
    if authorization:
        scheme, _, value = authorization.partition(" ")
        if scheme.lower() != "basic":
            raise OAuthError(401, "invalid_client", "client authentication is HTTP Basic or client_secret in the body")
        try:
            decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            raise OAuthError(401, "invalid_client", "the Basic credentials are not base64 of client_id:secret") from None
        basic_id, sep, basic_secret = decoded.partition(":")
        if not sep:
            raise OAuthError(401, "invalid_client", "the Basic credentials are not client_id:secret")
        if client_id is not None and client_id != basic_id:
            raise OAuthError(400, "invalid_request", "client_id differs between the body and the Basic credentials")
        client_id, secret = basic_id, basic_secret
    if not client_id or secret is None:
        raise OAuthError(401, "invalid_client", "client_id and client_secret are required")
    if "\x00" in client_id or "\x00" in secret:      # no client has one, and PostgreSQL cannot even look it up
        raise OAuthError(400, "invalid_request", "client_id and client_secret carry no NUL characters")
    return client_id, secret, one.get("scope")


class TokenLimiter:
    """Token requests per client id and per address, counted in a moving window (the ``limits`` library), so
    that secrets cannot be guessed at speed; the counts live in ``settings.rate_limit_storage``."""

    def __init__(self, settings: ServiceSettings):
        from limits import parse
        from limits.storage import storage_from_string
        from limits.strategies import MovingWindowRateLimiter

        try:
            self.per_client = parse(settings.token_rate_per_client)
            self.per_address = parse(settings.token_rate_per_address)
        except ValueError as exc:
            raise ValueError(f"token rate limit: {exc}") from None
        self.limiter = MovingWindowRateLimiter(storage_from_string(settings.rate_limit_storage))

    def check(self, client_id: str, address: str) -> None:
        """Count one request; raises OAuthError 429 when the client id or the address is over its rate."""
        for item, key in ((self.per_address, f"address:{address}"), (self.per_client, f"client:{client_id[:128]}")):
            if not self.limiter.hit(item, "priorauth-token", key):
                reset = self.limiter.get_window_stats(item, "priorauth-token", key).reset_time
                wait = max(1, int(reset - time.time()) + 1)
                raise OAuthError(429, "temporarily_unavailable",
                                 f"too many token requests from this client or address; retry in {wait} seconds",
                                 retry_after=wait)


class TokenIssuer:
    def __init__(self, settings: ServiceSettings, store: Store):
        self.settings = settings
        self.store = store

    def issue(self, client_id: str, secret: str) -> dict:
        client = self.store.authenticate(client_id, secret)
        if client is None:
            self.store.audit(f"client:{client_id[:128]}", "unknown", "token.refused", None, {})
            raise OAuthError(401, "invalid_client", "unknown client or wrong secret")
        now: datetime = self.settings.now()
        ttl = self.settings.token_ttl_seconds
        claims = {"iss": self.settings.issuer, "aud": self.settings.audience, "sub": client.client_id,
                  "role": client.role, "org": client.organization, "iat": int(now.timestamp()),
                  "exp": int((now + timedelta(seconds=ttl)).timestamp()), "jti": str(uuid.uuid4())}
        token = jwt.encode(claims, self.settings.signing_key, algorithm=_ALGORITHM)
        self.store.audit(f"client:{client.client_id}", client.role, "token.issue", None, {})
        return {"access_token": token, "token_type": "Bearer", "expires_in": ttl, "scope": client.role}

    def principal(self, authorization: str | None, roles: Iterable[str]) -> Principal:
        """The caller of a request with this Authorization header, if its role is one of ``roles``."""
        challenge = {"WWW-Authenticate": 'Bearer realm="priorauth"'}
        if not authorization:
            raise ApiError(401, "a bearer token is required (POST /oauth/token with client credentials)",
                           headers=challenge)
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise ApiError(401, "Authorization: expected 'Bearer <token>'", headers=challenge)
        try:
            claims = jwt.decode(token.strip(), self.settings.signing_key, algorithms=[_ALGORITHM],
                                audience=self.settings.audience, issuer=self.settings.issuer,
                                options={"require": ["exp", "iat", "sub", "iss", "aud"], "verify_exp": False,
                                         "verify_iat": False, "verify_nbf": False})
        except jwt.PyJWTError as exc:
            raise ApiError(401, f"the bearer token is not valid: {type(exc).__name__}", headers=challenge) from None
        # times are checked against the service's clock (settings.now), with 5 seconds of leeway
        now = self.settings.now().timestamp()
        exp, iat = claims.get("exp"), claims.get("iat")
        if not isinstance(exp, (int, float)) or not isinstance(iat, (int, float)) or isinstance(exp, bool):
            raise ApiError(401, "the bearer token's exp and iat are not times", headers=challenge)
        if now > exp + 5:
            raise ApiError(401, "the bearer token has expired", headers=challenge)
        if iat > now + 5:
            raise ApiError(401, "the bearer token is issued in the future", headers=challenge)
        nbf = claims.get("nbf")      # optional (RFC 7519 4.1.5); when given, the token is not accepted before it
        if nbf is not None and (not isinstance(nbf, (int, float)) or isinstance(nbf, bool)):
            raise ApiError(401, "the bearer token's nbf is not a time", headers=challenge)
        if nbf is not None and nbf > now + 5:
            raise ApiError(401, "the bearer token is not valid yet (nbf)", headers=challenge)
        role, org, sub = claims.get("role"), claims.get("org"), claims.get("sub")
        if role not in ("provider", "reviewer", "admin") or not isinstance(sub, str) \
                or (role == "provider" and not isinstance(org, str)):
            raise ApiError(401, "the bearer token does not carry a role and organization", headers=challenge)
        p = Principal(sub, role, org if isinstance(org, str) else None)
        allowed = tuple(roles)
        if role not in allowed:    # separation of duties: an admin administers; it does not submit or decide
            raise ApiError(403, f"the {role} role may not use this endpoint (it needs {' or '.join(allowed)})")
        return p
