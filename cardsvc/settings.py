"""Issuer settings: one object, built from the environment (``CARDSVC_*``) or by tests.

Nothing reads settings at import time; the app factory and the CLI build a
:class:`Settings` and pass it down.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from ipaddress import IPv4Network, IPv6Network
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    IPvAnyNetwork,
    SecretStr,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from cardsvc.core.keys import KeyPurpose
from cardsvc.errors import ConfigurationError
from cardsvc.keystore.open import FileStoreConfig, KeyStoreConfig, Pkcs11Config
from cardsvc.keystore.service import KeyPolicy

log = logging.getLogger(__name__)

#: Used only with ``dev_mode``; never protects a production key.
DEV_PASSPHRASE = b"cardsvc-development-only"


#: Requests per minute, one limit.
PerMinute = Annotated[int, Field(ge=1, le=1_000_000)]


def _is_node_url(url: str) -> bool:
    """A ``redis://`` or ``rediss://`` URL naming a host (and a port in range, if any)."""
    try:
        parts = urlsplit(url)
        _ = parts.port  # raises ValueError for a port out of range
    except ValueError:
        return False
    return parts.scheme in ("redis", "rediss") and bool(parts.hostname)


class RateLimits(BaseModel):
    """Requests per minute (fixed 60-second windows) on the endpoints that do expensive
    work, per key; over a limit the caller gets 429 problem+json with ``Retry-After``.

    Shared by every issuer process when ``redis_url`` or ``redis_cluster_nodes`` is set,
    per process otherwise. Set one from the environment as ``CARDSVC_RATE_LIMITS__<NAME>``
    (e.g. ``CARDSVC_RATE_LIMITS__TOKEN_PER_ADDRESS=60``). The source address is the ASGI
    client's (uvicorn's ``--proxy-headers``/``--forwarded-allow-ips`` decide whether it
    is a trusted proxy's ``X-Forwarded-For``).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    verify_per_client: PerMinute = Field(
        default=6000,
        description="POST /v1/verify per client without a policy of its own (terminals, "
        "operators); "
        "a partner's limit is its registered policy (rate_limit_per_minute)",
    )
    token_per_address: PerMinute = Field(
        default=120,
        description="POST /v1/oauth/token per source address, counted before the assertion "
        "is checked",
    )
    token_per_client: PerMinute = Field(
        default=20,
        description="POST /v1/oauth/token per client id, counted once its assertion verified",
    )
    activation_per_address: PerMinute = Field(
        default=60,
        description="POST /v1/ecards/activations (code, no credential) per source address",
    )
    activation_per_citizen_id: PerMinute = Field(
        default=10,
        description="POST /v1/ecards/activations per citizen ID number named in the request",
    )
    counter_activation_per_client: PerMinute = Field(
        default=60,
        description="POST /v1/ecards/counter-activations per terminal client",
    )
    bundle_delta_per_client: PerMinute = Field(
        default=120,
        description="GET /v1/bundles/latest?since=N (a delta) per authenticated client",
    )
    bundle_delta_per_address: PerMinute = Field(
        default=60,
        description="GET /v1/bundles/latest?since=N per source address, without a valid "
        "bearer token",
    )


class Settings(BaseSettings):
    """Every knob of the issuer, with embedded defaults that need no servers."""

    model_config = SettingsConfigDict(
        env_prefix="CARDSVC_", env_nested_delimiter="__", frozen=True, extra="forbid"
    )

    issuer: str = Field(
        default="http://127.0.0.1:8000",
        description="The issuer's identifier and public base URL (iss of everything signed)",
    )
    database_url: str = Field(
        default="sqlite:///var/cardsvc.db", description="SQLAlchemy URL (SQLite or PostgreSQL)"
    )
    key_dir: Path = Field(default=Path("keys"), description="File key store directory")
    offline_root: bool = Field(
        default=False,
        description="The root key is offline (made by `cardsvc ceremony run`): the issuer "
        "pins root_key_file and serves the trust list installed by `cardsvc keys "
        "import-trust-list`; it never signs one itself",
    )
    root_key_file: Path | None = Field(
        default=None,
        description="Offline root: the root public JWK the ceremony wrote (default "
        "KEY_DIR/root.jwk)",
    )
    trust_list_file: Path | None = Field(
        default=None,
        description="Offline root: where the installed trust list is kept (default "
        "KEY_DIR/trust-list.jws)",
    )
    previous_key_dir: Path | None = Field(
        default=None,
        description="While moving to another backend: the file key store whose keys are "
        "being retired (they sign until their successors activate and stay published "
        "until their verify_until)",
    )
    scanner_dir: Path = Field(
        default=Path(__file__).resolve().parents[1] / "js" / "scan" / "dist",
        description="The scanner page's built files (js/scan/build.mjs writes them); /scan "
        "answers a problem while they are missing",
    )
    key_passphrase: SecretStr | None = Field(
        default=None, description="Passphrase that encrypts private keys at rest"
    )
    key_passphrase_file: Path | None = Field(
        default=None, description="File holding the key passphrase (first line)"
    )
    dev_mode: bool = Field(
        default=False, description="Development mode: a built-in key passphrase, with a warning"
    )
    key_backend: Literal["file", "pkcs11"] = Field(
        default="file",
        description="Where private keys live: encrypted files in key_dir, or a PKCS#11 token "
        "(an HSM); never one in place of the other",
    )
    pkcs11_module: Path | None = Field(
        default=None, description="PKCS#11 module (shared library) of the HSM"
    )
    pkcs11_token_label: str | None = Field(
        default=None, min_length=1, max_length=32, description="Label of the issuer's token"
    )
    pkcs11_pin_file: Path | None = Field(
        default=None,
        description="File holding the token's user PIN (first line); read again at each login",
    )
    pkcs11_pin: SecretStr | None = Field(
        default=None, description="The token's user PIN (prefer the PIN file)"
    )
    pkcs11_sessions: int = Field(
        default=4, ge=1, le=256, description="PKCS#11 sessions signing in parallel"
    )
    pkcs11_session_wait_seconds: float = Field(
        default=5.0, gt=0, le=60, description="Longest wait for a free session (503 after)"
    )
    pkcs11_reopen_interval_seconds: float = Field(
        default=1.0,
        ge=0,
        le=300,
        description="Least time between two attempts to reopen a token that failed",
    )
    pkcs11_retry_after_seconds: int = Field(
        default=5, ge=1, le=3600, description="Retry-After of a 503 signing-unavailable"
    )
    signing_algorithm: Literal["ES256", "SM2SM3"] = Field(
        default="ES256",
        description="Algorithm of new issuing keys, every purpose (SM2SM3: SM2 with SM3, "
        "needs the cardsvc[sm] extra; docs/sm2.md). Changing it rotates the purposes whose "
        "key has the other one at the next start",
    )
    purpose_algorithms: dict[KeyPurpose, Literal["ES256", "SM2SM3"]] = Field(
        default_factory=dict,
        description="Per-purpose exceptions to signing_algorithm, e.g. {\"ecard\": \"SM2SM3\"}",
    )
    redis_url: str | None = Field(default=None, description="Redis for replay cache and limits")
    redis_cluster_nodes: Annotated[tuple[str, ...], NoDecode] = Field(
        default=(),
        description="A Redis Cluster instead of redis_url: comma-separated redis:// (or "
        "rediss://) URLs of some of its nodes, the clients discover the rest; the first "
        "URL's credentials and TLS apply to every node",
    )
    redis_prefix: str = Field(
        default="cardsvc:",
        min_length=1,
        max_length=64,
        pattern=r"^[^{}]+$",
        description="Prefix of every Redis key (one-time use, rate limits): issuers that "
        "share a Redis server keep apart by it (no braces: on a cluster a {hash tag} in "
        "it would put every key in one slot)",
    )
    rate_limits: RateLimits = Field(
        default_factory=RateLimits, description="Per-client and per-address request limits"
    )
    metrics_allow: tuple[IPvAnyNetwork, ...] = Field(
        default=(IPv4Network("127.0.0.0/8"), IPv6Network("::1/128")),
        description="Source addresses that may read GET /metrics (JSON list of networks, "
        'e.g. ["10.0.0.5/32"]); every other caller gets 403, whatever its credentials. '
        "The address is the ASGI client's (behind a proxy: FORWARDED_ALLOW_IPS decides)",
    )
    log_format: Literal["json", "text"] = Field(
        default="json",
        description="`cardsvc serve`: JSON lines with the request id (json) or plain text; "
        "both redacted",
    )
    access_log: bool = Field(
        default=True,
        description="One log line per request (method, route template, status, duration, "
        "request id); metrics and request ids stay when off",
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        default="INFO", description="`cardsvc serve`: the least level logged"
    )
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)
    cache_ttl_seconds: int = Field(default=300, ge=1, description="Cache TTL of published data")
    trust_list_lifetime_hours: int = Field(default=168, ge=1)
    leeway_seconds: int = Field(default=30, ge=0, le=300)
    card_validity_years: int = Field(default=10, ge=1, le=50, description="Card validity")
    temporary_loss_lapse_days: int = Field(
        default=14,
        ge=1,
        le=365,
        description="Days after which a temporary loss report lapses (card active again)",
    )
    status_shard_size: int = Field(
        default=1 << 20,
        ge=131_072,
        le=1 << 24,
        description="Entries per status list shard (at least 131,072 for herd privacy)",
    )
    status_shard_max_fill: float = Field(
        default=0.5,
        gt=0,
        le=0.9,
        description="Share of a shard's entries allocated before the next shard opens",
    )
    status_list_lifetime_hours: int = Field(
        default=24, ge=1, le=24 * 30, description="exp - iat of a served status list"
    )
    bundle_retention_hours: int = Field(
        default=24 * 7,
        ge=1,
        le=24 * 366,
        description="Verifier bundle versions (and stored shard lists) kept for deltas; a "
        "verifier holding an older version gets a full bundle. The newest is always kept",
    )
    status_sync_interval_seconds: float = Field(
        default=1.0,
        ge=0,
        le=300,
        description="How often a served status list picks up other processes' changes",
    )
    max_request_bytes: int = Field(
        default=64 * 1024, ge=1024, description="Largest request body accepted (413 above)"
    )
    body_timeout_seconds: float = Field(
        default=10.0,
        gt=0,
        le=300,
        description="Time a request body has to arrive in full from the request's start (408 "
        "after)",
    )
    head_timeout_seconds: float = Field(
        default=10.0,
        gt=0,
        le=300,
        description="Time a request line and headers have to arrive in full (408 after; an "
        "idle connection is closed)",
    )
    ecard_token_lifetime_seconds: int = Field(
        default=60, ge=10, le=3600, description="Validity window of one e-card QR token"
    )
    ecard_offline_hours: float = Field(
        default=4.0, gt=0, le=72, description="Period an offline batch of QR tokens covers"
    )
    ecard_activation_code_minutes: int = Field(
        default=60 * 24, ge=1, le=60 * 24 * 30, description="Lifetime of an activation code"
    )
    ecard_activation_attempts: int = Field(
        default=5, ge=1, le=20, description="Wrong activation codes before the code is locked"
    )
    ecard_proof_max_age_seconds: int = Field(
        default=60, ge=5, le=600, description="Oldest device proof (iat) and server nonce"
    )
    ecard_nonce_secret: SecretStr | None = Field(
        default=None,
        description="Secret keying server nonces and counter challenges (shared by every "
        "node); unset: one random secret kept in the database, shared the same way",
    )

    wallet_developer_aids: bool = Field(
        default=False,
        description="Show developer aids on the wallet page (the QR code's text, to paste "
        "into a counter without a scanner); the demo turns it on",
    )
    wallet_hotline: str = Field(
        default="12333",
        pattern=r"^\+?[0-9][0-9 -]{1,23}$",
        description="The hotline the wallet names after a loss report (a tel: link)",
    )
    wallet_loss_next_steps: dict[str, str] = Field(
        default_factory=dict,
        description="What the wallet tells a holder after a loss report, per language "
        '(JSON, e.g. {"zh-CN": "...", "en": "..."}); unset: the catalogue\'s text '
        "(bring your ID card to the nearest service hall, or call the hotline)",
    )

    @field_validator("redis_cluster_nodes", mode="before")
    @classmethod
    def _cluster_nodes(cls, value: object) -> object:
        if isinstance(value, str):  # from the environment: comma-separated
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value

    @field_validator("redis_cluster_nodes")
    @classmethod
    def _cluster_urls(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for url in value:
            if not _is_node_url(url):
                raise ValueError(
                    "redis_cluster_nodes: each node is a redis://host:port or rediss:// URL"
                )
        return value

    @model_validator(mode="after")
    def _one_redis(self) -> Settings:
        if self.redis_url and self.redis_cluster_nodes:
            raise ValueError("set redis_url (one server) or redis_cluster_nodes, not both")
        return self

    @field_validator("wallet_loss_next_steps")
    @classmethod
    def _next_steps(cls, value: dict[str, str]) -> dict[str, str]:
        for lang, words in value.items():
            if lang not in ("zh-CN", "en"):
                raise ValueError(f"wallet_loss_next_steps: {lang!r} is not zh-CN or en")
            if not words.strip() or len(words) > 500:
                raise ValueError(f"wallet_loss_next_steps[{lang!r}]: 1 to 500 characters")
        return value

    def offline_root_files(self) -> tuple[Path, Path]:
        """The pinned root JWK and the installed trust list (offline-root mode)."""
        return (
            self.root_key_file or self.key_dir / "root.jwk",
            self.trust_list_file or self.key_dir / "trust-list.jws",
        )

    def key_policy(self) -> KeyPolicy:
        return KeyPolicy(
            cache_ttl=timedelta(seconds=self.cache_ttl_seconds),
            trust_list_lifetime=timedelta(hours=self.trust_list_lifetime_hours),
            algorithms={
                purpose: self.purpose_algorithms.get(purpose, self.signing_algorithm)
                for purpose in KeyPurpose
            },
        )

    def key_store(self) -> KeyStoreConfig:
        """The configured key store backend; a PKCS#11 one must name module and token."""
        if self.key_backend == "file":
            return FileStoreConfig(directory=self.key_dir, passphrase=self.passphrase())
        module, label = self.pkcs11_module, self.pkcs11_token_label
        if module is None or label is None:
            missing = [
                name
                for name, value in (
                    ("CARDSVC_PKCS11_MODULE", module),
                    ("CARDSVC_PKCS11_TOKEN_LABEL", label),
                )
                if value is None
            ]
            raise ConfigurationError(f"CARDSVC_KEY_BACKEND=pkcs11 needs {' and '.join(missing)}")
        sm2 = sorted(p.value for p, alg in self.key_policy().algorithms.items() if alg != "ES256")
        if sm2:
            raise ConfigurationError(
                "CARDSVC_KEY_BACKEND=pkcs11 makes ES256 keys only (PKCS#11 has no standard "
                f"SM2 mechanism): these purposes are set to SM2SM3: {', '.join(sm2)}"
            )
        if self.pkcs11_pin_file is not None and self.pkcs11_pin is not None:
            raise ConfigurationError(
                "set one of CARDSVC_PKCS11_PIN_FILE and CARDSVC_PKCS11_PIN, not both"
            )
        return Pkcs11Config(
            module=module,
            token_label=label,
            pin_file=self.pkcs11_pin_file,
            pin=self.pkcs11_pin.get_secret_value() if self.pkcs11_pin is not None else None,
            sessions=self.pkcs11_sessions,
            session_wait_seconds=self.pkcs11_session_wait_seconds,
            reopen_interval_seconds=self.pkcs11_reopen_interval_seconds,
            retry_after_seconds=self.pkcs11_retry_after_seconds,
        )

    def passphrase(self) -> bytes | None:
        """The key store passphrase, or ``None`` if none is configured.

        Order: explicit passphrase, passphrase file, then the development passphrase,
        which only ``dev_mode`` allows and which logs a warning.
        """
        if self.key_passphrase is not None:
            value = self.key_passphrase.get_secret_value().encode()
            if not value:
                raise ConfigurationError("CARDSVC_KEY_PASSPHRASE is empty")
            return value
        if self.key_passphrase_file is not None:
            try:
                lines = self.key_passphrase_file.read_bytes().splitlines()
            except OSError as exc:
                raise ConfigurationError(
                    f"cannot read key passphrase file {self.key_passphrase_file}: {exc.strerror}"
                ) from None
            if not lines or not lines[0]:
                raise ConfigurationError(f"key passphrase file {self.key_passphrase_file} is empty")
            return lines[0]
        if self.dev_mode:
            log.warning(
                "development mode: private keys use the built-in development passphrase; "
                "never use this key store in production"
            )
            return DEV_PASSPHRASE
        return None
