"""The service's settings: where the store is, the signing key for access tokens, the payer configuration and
policy, limits. ``ServiceSettings.from_options`` resolves them the way ``priorauth serve`` does."""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

from priorauth.config import PayerConfig

__all__ = ["ServiceSettings", "data_dir", "signing_key", "public_base_url"]

MAX_BODY_BYTES = 5 * 1024 * 1024       # as a case file or a request Bundle read from disk


def _utcnow() -> datetime:
    return datetime.now(timezone.utc)


def data_dir(path: str | Path | None = None) -> Path:
    """``path``, ``$PRIORAUTH_DATA_DIR`` or ``$XDG_DATA_HOME/priorauth`` (``~/.local/share/priorauth``)."""
    if path is None:
        path = os.environ.get("PRIORAUTH_DATA_DIR") or \
            Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share") / "priorauth"
    return Path(path).expanduser().resolve()


def signing_key(directory: Path) -> bytes:
    """The HMAC key that signs access tokens: ``$PRIORAUTH_SIGNING_KEY``, else ``<data dir>/signing.key``
    (created on first use, readable by its owner only). Every worker and host sharing a database must use the
    same key."""
    env = os.environ.get("PRIORAUTH_SIGNING_KEY")
    if env:
        if len(env) < 32:
            raise ValueError("PRIORAUTH_SIGNING_KEY: at least 32 characters")
        return env.encode("utf-8")
    path = directory / "signing.key"
    directory.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        key = path.read_text(encoding="ascii").strip()
        if len(key) < 32:
            raise ValueError(f"{path}: the signing key is shorter than 32 characters") from None
        return key.encode("ascii")
    key = secrets.token_urlsafe(48)
    with os.fdopen(fd, "w", encoding="ascii") as fh:
        fh.write(key + "\n")
    return key.encode("ascii")


@dataclass
class ServiceSettings:
    database_url: str
    signing_key: bytes
    config: PayerConfig = field(default_factory=PayerConfig)
    policy_path: Path | None = None
    issuer: str = "priorauth"
    audience: str = "priorauth"
    token_ttl_seconds: int = 3600
    max_body_bytes: int = MAX_BODY_BYTES
    seed_examples: bool = False
    examples_dir: Path | None = None
    deliver_notifications: bool = True
    delivery_interval_seconds: float = 1.0
    threads: int = 8                       # worker threads per process for the blocking work
    # where providers reach the service (scheme, host, any path prefix), for absolute references in what the
    # service sends out (subscription notifications); None: references relative to the FHIR base
    base_url: str | None = None
    now: Callable[[], datetime] = _utcnow
    # host names, addresses and networks a Subscription endpoint may be at besides public https hosts (over http
    # and at private addresses too): PRIORAUTH_SUBSCRIPTION_ALLOW, comma-separated
    subscription_allow: tuple[str, ...] = ()
    # token requests allowed per client id and per address (the limits library's notation), and where the counts
    # are kept: memory:// per process, or a shared store such as redis://127.0.0.1:6379 for several workers
    token_rate_per_client: str = "20/minute"
    token_rate_per_address: str = "60/minute"
    rate_limit_storage: str = "memory://"
    # the reviewer console: a session ends after this many idle minutes, and after this many hours in any case;
    # this many wrong passwords in a row lock an account for the lockout minutes
    console_idle_minutes: int = 15
    console_session_hours: int = 12
    console_max_failed_logins: int = 5
    console_lockout_minutes: int = 15
    # a directory of letter templates a plan edits (files named as the bundled ones in priorauth/letters/templates
    # replace them): PRIORAUTH_LETTER_TEMPLATES
    letter_templates: Path | None = None


def public_base_url(value: str) -> str:
    """The service's public address, checked: an absolute http(s) URL with a host, no query or fragment; returned
    without a trailing slash."""
    from urllib.parse import urlsplit

    try:
        u = urlsplit(value.strip())
        host = u.hostname
    except ValueError:
        host = None
    if host is None or u.scheme not in ("http", "https") or u.query or u.fragment:
        raise ValueError(f"PRIORAUTH_BASE_URL: an absolute http or https URL, such as https://pa.plan.example "
                         f"(got {value[:80]!r})")
    return value.strip().rstrip("/")


def examples_dir() -> Path | None:
    """The bundled example PAS requests: ``examples/fhir`` in the working directory or beside the source tree."""
    for base in (Path.cwd(), Path(__file__).resolve().parents[3]):
        d = base / "examples" / "fhir"
        if d.is_dir():
            return d
    return None


def settings_from_env(env: dict[str, str] | None = None) -> ServiceSettings:
    """Settings from ``PRIORAUTH_*`` variables, as ``priorauth serve`` hands them to its workers:
    ``DATABASE_URL``, ``DATA_DIR``, ``CONFIG`` (payer configuration YAML), ``POLICY``, ``SIGNING_KEY``,
    ``TOKEN_TTL`` (seconds), ``NOTIFY`` (0 turns notification delivery off), ``THREADS`` (worker threads per
    process, default ``ServiceSettings.threads``), ``BASE_URL`` (the service's public address, such as
    ``https://pa.plan.example``, for absolute references in notifications), ``SUBSCRIPTION_ALLOW`` (host names,
    addresses and networks, comma-separated, a Subscription endpoint may be at besides public https hosts),
    ``TOKEN_RATE_PER_CLIENT`` and ``TOKEN_RATE_PER_ADDRESS`` (such as ``20/minute``), ``RATE_LIMIT_STORAGE``
    (``memory://``, or ``redis://host:6379`` to count across workers), ``LETTER_TEMPLATES`` (a directory of
    letter templates that replace the bundled ones of the same name)."""
    from priorauth.config import load_config
    from priorauth.store import default_url

    env = dict(os.environ if env is None else env)
    ddir = data_dir(env.get("PRIORAUTH_DATA_DIR"))
    url = env.get("PRIORAUTH_DATABASE_URL") or default_url(ddir)
    cfg = env.get("PRIORAUTH_CONFIG")
    policy = env.get("PRIORAUTH_POLICY")
    ttl = env.get("PRIORAUTH_TOKEN_TTL", "3600")
    threads = env.get("PRIORAUTH_THREADS", str(ServiceSettings.threads))
    if not threads.isdigit() or not 1 <= int(threads) <= 256:
        raise ValueError("PRIORAUTH_THREADS: 1 to 256")
    if not ttl.isdigit() or not 60 <= int(ttl) <= 86400:
        raise ValueError("PRIORAUTH_TOKEN_TTL: seconds, 60 to 86400")
    base_url = public_base_url(env["PRIORAUTH_BASE_URL"]) if env.get("PRIORAUTH_BASE_URL") else None
    allow = tuple(a.strip() for a in env.get("PRIORAUTH_SUBSCRIPTION_ALLOW", "").split(",") if a.strip())
    rates = {k: env[f"PRIORAUTH_{k.upper()}"] for k in ("token_rate_per_client", "token_rate_per_address",
                                                         "rate_limit_storage") if env.get(f"PRIORAUTH_{k.upper()}")}
    letters = env.get("PRIORAUTH_LETTER_TEMPLATES")
    if letters and not Path(letters).is_dir():
        raise ValueError(f"PRIORAUTH_LETTER_TEMPLATES: {letters} is not a directory")
    return ServiceSettings(database_url=url, signing_key=signing_key(ddir),
                           letter_templates=Path(letters) if letters else None,
                           config=load_config(cfg) if cfg else PayerConfig(),
                           policy_path=Path(policy) if policy else None, token_ttl_seconds=int(ttl),
                           deliver_notifications=env.get("PRIORAUTH_NOTIFY", "1") != "0", threads=int(threads),
                           base_url=base_url, subscription_allow=allow, **rates)
