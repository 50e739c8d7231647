"""Configuration from the environment: the variables of the README's Configuration table,
declared once with their defaults and checks (pydantic-settings). A bad value raises
SettingsError naming its variable."""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from datetime import date
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import AfterValidator, BeforeValidator, Field, ValidationError, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from domain.catalogue import ServiceCatalogue
from domain.errors import DomainError, validation_message
from domain.model import Source
from domain.notifications import Webhooks
from domain.policy import DEFAULT_POLICY, DeadlinePolicy
from domain.talkdays import TalkDays
from infra.calendars import with_library_calendar
from infra.catalogue import BUILT_IN, load_catalogue
from infra.crypto import Keyring
from infra.sso import ALGORITHMS as SSO_ALGORITHMS

DEFAULT_TASK_QUEUE = "grievance-cases"
# CASE_WORKER_CACHE: cases a worker process keeps in memory (the SDK's sticky cache);
# a case beyond it is replayed from its history when it next has work
DEFAULT_WORKER_CACHE = 1000


class SettingsError(ValueError):
    """A setting is missing or malformed; the message names the variable."""


def _existing_file(path: Path) -> Path:
    if not path.is_file():
        raise ValueError(f"no such file: {path}")
    return path


def _postgres_url(url: str) -> str:
    if not url.startswith(("postgresql://", "postgres://")):
        raise ValueError("must start with postgresql://")
    return url


def _keyring(value: Any) -> Any:
    return Keyring.parse(value) if isinstance(value, str) else value


def _jwks_url(url: str) -> str:
    host = urlsplit(url).hostname or ""
    if url.startswith("https://") or (
        url.startswith("http://") and host in ("localhost", "127.0.0.1", "::1")
    ):
        return url
    raise ValueError("must be an https:// URL (http:// only on this machine)")


def _algorithms(value: Any) -> Any:
    if not isinstance(value, str):
        return value
    names = [name.strip() for name in value.split(",") if name.strip()]
    unknown = sorted(set(names) - SSO_ALGORITHMS)
    if unknown or not names:
        raise ValueError(
            f"{', '.join(unknown) or 'none given'}: not among {', '.join(sorted(SSO_ALGORITHMS))}"
        )
    return names
# (calling system, its API key): the system is an OpenCase source
GatewayKeys = tuple[tuple[Source, str], ...]


def _gateway_keys(value: Any) -> Any:
    """`hotline_12345=KEY,mini_program=KEY`: each key at least 24 characters, each system
    and each key once."""
    if not isinstance(value, str):
        return value
    pairs: list[tuple[Source, str]] = []
    for item in value.split(","):
        name, sep, key = item.strip().partition("=")
        if not sep or name not in {s.value for s in Source}:
            raise ValueError(
                "each entry must be source=key with a source of "
                + ", ".join(s.value for s in Source)
            )
        if len(key) < 24 or not key.isascii() or not key.isprintable():
            raise ValueError(f"the key of {name} must be 24 or more printable ASCII characters")
        pairs.append((Source(name), key))
    if len({s for s, _ in pairs}) != len(pairs) or len({k for _, k in pairs}) != len(pairs):
        raise ValueError("each source and each key may be named once")
    return tuple(pairs)


LogFormat = Literal["console", "json"]


def _log_format() -> LogFormat:
    return "console" if sys.stderr.isatty() else "json"


def _named(exc: ValidationError) -> str:
    """Each error with the variable it is about, named once."""
    messages = []
    for error in exc.errors():
        name = str(error["loc"][0]) if error["loc"] else ""
        cause = error.get("ctx", {}).get("error")
        message = str(cause) if isinstance(cause, ValueError) else error["msg"]
        messages.append(message if message.startswith(name) else f"{name}: {message}")
    return "; ".join(messages)


File = Annotated[Path, AfterValidator(_existing_file)]


class Settings(BaseSettings):
    """Each field is read from the variable named by its alias; an empty variable counts
    as unset."""

    model_config = SettingsConfigDict(
        case_sensitive=True,
        env_ignore_empty=True,
        extra="ignore",
        frozen=True,
        arbitrary_types_allowed=True,
    )

    temporal_address: str = Field("localhost:7233", alias="TEMPORAL_ADDRESS")
    temporal_namespace: str = Field("default", alias="TEMPORAL_NAMESPACE")
    temporal_api_key: str | None = Field(None, alias="TEMPORAL_API_KEY")
    temporal_tls_cert: File | None = Field(None, alias="TEMPORAL_TLS_CERT")
    temporal_tls_key: File | None = Field(None, alias="TEMPORAL_TLS_KEY")
    database_url: Annotated[str, AfterValidator(_postgres_url)] | None = Field(
        None, alias="DATABASE_URL"
    )
    task_queue: str = Field(DEFAULT_TASK_QUEUE, alias="CASE_TASK_QUEUE")
    policy_file: File | None = Field(None, alias="CASE_POLICY")
    log_level: Annotated[
        Literal["debug", "info", "warning", "error"], BeforeValidator(str.lower)
    ] = Field("info", alias="LOG_LEVEL")
    log_format: LogFormat = Field(default_factory=_log_format, alias="LOG_FORMAT")
    # None: payloads in clear text
    keyring: Annotated[Keyring | None, BeforeValidator(_keyring)] = Field(
        None, alias="CASE_ENCRYPTION_KEYS"
    )
    # what the codec server requires
    codec_token: str | None = Field(None, min_length=16, alias="CASE_CODEC_TOKEN")
    # a UI origin the codec server lets in without the token
    codec_ui_origin: str | None = Field(None, alias="CASE_CODEC_UI_ORIGIN")
    # single sign-on at the codec server (infra/sso.py): set, every request needs a valid
    # JWT of this issuer and audience, and only the entitled role sees personal data
    sso_issuer: str | None = Field(None, alias="CASE_CODEC_SSO_ISSUER")
    sso_audience: str | None = Field(None, alias="CASE_CODEC_SSO_AUDIENCE")
    sso_jwks_url: Annotated[str, AfterValidator(_jwks_url)] | None = Field(
        None, alias="CASE_CODEC_SSO_JWKS_URL"
    )
    sso_public_key: File | None = Field(None, alias="CASE_CODEC_SSO_PUBLIC_KEY")
    sso_algorithms: Annotated[list[str], NoDecode, BeforeValidator(_algorithms)] = Field(
        ["RS256"], alias="CASE_CODEC_SSO_ALGORITHMS"
    )
    pii_claim: str = Field("roles", min_length=1, alias="CASE_CODEC_PII_CLAIM")
    pii_value: str = Field("case-pii-reader", min_length=1, alias="CASE_CODEC_PII_VALUE")
    # the communities' talk days (JSON)
    talk_days_file: File | None = Field(None, alias="CASE_TALK_DAYS")
    worker_cache: int = Field(DEFAULT_WORKER_CACHE, ge=10, le=1_000_000, alias="CASE_WORKER_CACHE")
    # run the workflows in the SDK's sandbox (workflows/sandbox.py); off, the worker
    # spends about a sixth less CPU per case (benchmarks/cpu_profile.py)
    workflow_sandbox: bool = Field(False, alias="CASE_WORKFLOW_SANDBOX")
    # notifications (notifier/, README "Notifications"): the webhook of each source system
    # (JSON file), attempts before a notification is parked, the exponential backoff
    # (first wait and longest wait, seconds), each request's timeout, the idle poll and
    # how many notifications (of as many cases) one round claims and posts at once
    # the webhooks' JSON itself (it starts with "{"), or the path of a file holding it
    webhooks_setting: str | None = Field(None, alias="CASE_WEBHOOKS", repr=False)
    notify_max_attempts: int = Field(10, ge=1, le=1000, alias="CASE_NOTIFY_MAX_ATTEMPTS")
    notify_backoff: float = Field(2.0, gt=0, le=3600, alias="CASE_NOTIFY_BACKOFF")
    notify_backoff_max: float = Field(600.0, gt=0, le=86400, alias="CASE_NOTIFY_BACKOFF_MAX")
    notify_timeout: float = Field(10.0, gt=0, le=300, alias="CASE_NOTIFY_TIMEOUT")
    notify_poll: float = Field(1.0, gt=0, le=60, alias="CASE_NOTIFY_POLL")
    notify_batch: int = Field(100, ge=1, le=1000, alias="CASE_NOTIFY_BATCH")
    # the service catalogue (JSON); the built-in domain/catalogue.json when unset
    catalogue_file: File | None = Field(None, alias="CASE_CATALOGUE")
    # the Open311 gateway: one API key per calling system, `source=key,source=key`
    gateway_keys: Annotated[GatewayKeys, NoDecode, BeforeValidator(_gateway_keys)] = Field(
        (), alias="CASE_GATEWAY_KEYS"
    )
    gateway_port: int = Field(8311, ge=1, le=65535, alias="CASE_GATEWAY_PORT")

    @model_validator(mode="after")
    def _tls_pair(self) -> Settings:
        if (self.temporal_tls_cert is None) != (self.temporal_tls_key is None):
            raise ValueError("TEMPORAL_TLS_CERT and TEMPORAL_TLS_KEY: set both or neither")
        return self

    @model_validator(mode="after")
    def _sso_complete(self) -> Settings:
        given = [self.sso_issuer, self.sso_audience, self.sso_jwks_url, self.sso_public_key]
        if all(v is None for v in given):
            return self
        if self.sso_issuer is None or self.sso_audience is None:
            raise ValueError(
                "CASE_CODEC_SSO_ISSUER and CASE_CODEC_SSO_AUDIENCE: set both to turn on "
                "single sign-on at the codec server"
            )
        if (self.sso_jwks_url is None) == (self.sso_public_key is None):
            raise ValueError(
                "CASE_CODEC_SSO_JWKS_URL or CASE_CODEC_SSO_PUBLIC_KEY: set one (the keys "
                "that verify the tokens), not both"
            )
        return self

    @property
    def sso(self) -> bool:
        """Whether the codec server verifies single sign-on tokens."""
        return self.sso_issuer is not None

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """The settings of the process's environment, or of the variables in `env`."""
        try:
            if env is None:
                return cls()
            return cls.model_validate({name: value for name, value in env.items() if value})
        except ValidationError as exc:
            raise SettingsError(_named(exc)) from None

    def policy(self, today: date | None = None) -> DeadlinePolicy:
        """The built-in 7135 policy, or the one in CASE_POLICY (JSON). A policy without a
        calendar of its own gets the chinese-calendar package's holidays, from last year
        on (the policy travels in every case's history: it carries no more years than
        needed)."""
        policy = DEFAULT_POLICY
        if self.policy_file is not None:
            try:
                policy = DeadlinePolicy.model_validate_json(self.policy_file.read_bytes())
            except ValueError as exc:
                raise SettingsError(
                    validation_message(f"CASE_POLICY {self.policy_file}", exc)
                ) from None
        if policy.calendar is None:
            policy = with_library_calendar(policy, today or date.today())
        return policy

    def catalogue(self) -> ServiceCatalogue:
        """The service catalogue: CASE_CATALOGUE's, or the built-in one."""
        try:
            return load_catalogue(self.catalogue_file or BUILT_IN)
        except DomainError as exc:
            raise SettingsError(f"CASE_CATALOGUE: {exc}") from None

    def talk_days(self) -> TalkDays:
        """The communities' talk days in CASE_TALK_DAYS (JSON, docs/talk-days.md); none
        when it is not set."""
        if self.talk_days_file is None:
            return TalkDays()
        try:
            return TalkDays.model_validate_json(self.talk_days_file.read_bytes())
        except ValueError as exc:
            raise SettingsError(
                validation_message(f"CASE_TALK_DAYS {self.talk_days_file}", exc)
            ) from None

    @property
    def webhooks_file(self) -> Path | None:
        """The file CASE_WEBHOOKS names (None: unset, or the JSON itself)."""
        value = self.webhooks_setting
        return None if value is None or value.lstrip().startswith("{") else Path(value)

    def webhooks(self) -> Webhooks:
        """The source systems' webhooks in CASE_WEBHOOKS (JSON: source -> url, secret,
        given inline or in a file); none when it is not set. Errors name the variable and
        the field, never a value (the JSON holds secrets)."""
        value, path = self.webhooks_setting, self.webhooks_file
        if value is None:
            return Webhooks({})
        if path is not None and not path.is_file():
            raise SettingsError(
                "CASE_WEBHOOKS: neither the webhooks' JSON (starting with {) nor a file"
            )
        what = "CASE_WEBHOOKS" if path is None else f"CASE_WEBHOOKS {path}"
        try:
            text = value if path is None else path.read_text(encoding="utf-8")
            return Webhooks.model_validate_json(text)
        except (ValueError, OSError) as exc:
            raise SettingsError(validation_message(what, exc)) from None


def data_dir() -> Path:
    return Path(
        os.environ.get("CASELOOP_DATA", Path(__file__).resolve().parent.parent / ".data")
    ).resolve()


def local_settings() -> Settings:
    """Settings for a client of the local `make run` stack: the environment, plus the
    keys, token and PostgreSQL URL `make run` keeps in its data directory when the
    environment has none (the URL only while the stack runs)."""
    data = data_dir()
    env = dict(os.environ)
    for name, file in (
        ("CASE_ENCRYPTION_KEYS", "encryption-keys"),
        ("CASE_CODEC_TOKEN", "codec-token"),
        ("DATABASE_URL", "database-url"),
    ):
        if not env.get(name) and (data / file).is_file():
            env[name] = (data / file).read_text(encoding="utf-8").strip()
    return Settings.from_env(env)
