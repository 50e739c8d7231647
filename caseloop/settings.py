"""Configuration from the environment (names: DESIGN.md §5)."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from datetime import date
from pathlib import Path

from caseloop.calendars import with_library_calendar
from caseloop.crypto import Keyring, KeyringError
from domain.errors import validation_message
from domain.policy import DEFAULT_POLICY, DeadlinePolicy
from domain.talkdays import TalkDays

DEFAULT_TASK_QUEUE = "grievance-cases"


class SettingsError(ValueError):
    """A setting is missing or malformed; the message names the variable."""


@dataclass(frozen=True)
class Settings:
    temporal_address: str = "localhost:7233"
    temporal_namespace: str = "default"
    temporal_api_key: str | None = None
    temporal_tls_cert: Path | None = None
    temporal_tls_key: Path | None = None
    database_url: str | None = None
    task_queue: str = DEFAULT_TASK_QUEUE
    policy_file: Path | None = None
    log_level: str = "info"
    log_format: str = "console"
    keyring: Keyring | None = None  # CASE_ENCRYPTION_KEYS; None: payloads in clear text
    codec_token: str | None = None  # CASE_CODEC_TOKEN: what the codec server requires
    codec_ui_origin: str | None = None  # CASE_CODEC_UI_ORIGIN: a UI origin let in without it
    talk_days_file: Path | None = None  # CASE_TALK_DAYS: the communities' talk days (JSON)
    # CASE_WORKER_CACHE: cases a worker process keeps in memory (the SDK's sticky cache);
    # a case beyond it is replayed from its history when it next has work
    worker_cache: int = 1000

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> Settings:
        e = dict(os.environ if env is None else env)

        def path(name: str) -> Path | None:
            value = e.get(name)
            if not value:
                return None
            p = Path(value)
            if not p.is_file():
                raise SettingsError(f"{name}: no such file: {value}")
            return p

        level = e.get("LOG_LEVEL", "info").lower()
        if level not in ("debug", "info", "warning", "error"):
            raise SettingsError("LOG_LEVEL: must be one of debug, info, warning, error")
        fmt = e.get("LOG_FORMAT") or ("console" if sys.stderr.isatty() else "json")
        if fmt not in ("console", "json"):
            raise SettingsError("LOG_FORMAT: must be console or json")
        url = e.get("DATABASE_URL") or None
        if url is not None and not url.startswith(("postgresql://", "postgres://")):
            raise SettingsError("DATABASE_URL: must start with postgresql://")
        cert, key = path("TEMPORAL_TLS_CERT"), path("TEMPORAL_TLS_KEY")
        if (cert is None) != (key is None):
            raise SettingsError("TEMPORAL_TLS_CERT and TEMPORAL_TLS_KEY: set both or neither")
        try:
            keys = e.get("CASE_ENCRYPTION_KEYS")
            keyring = Keyring.parse(keys) if keys else None
        except KeyringError as exc:
            raise SettingsError(str(exc)) from None
        cache_value = e.get("CASE_WORKER_CACHE") or str(cls.worker_cache)
        if not cache_value.isdigit() or not 10 <= int(cache_value) <= 1_000_000:
            raise SettingsError("CASE_WORKER_CACHE: must be a whole number from 10 to 1000000")
        token = e.get("CASE_CODEC_TOKEN") or None
        if token is not None and len(token) < 16:
            raise SettingsError("CASE_CODEC_TOKEN: must be at least 16 characters")
        return cls(
            temporal_address=e.get("TEMPORAL_ADDRESS") or cls.temporal_address,
            temporal_namespace=e.get("TEMPORAL_NAMESPACE") or cls.temporal_namespace,
            temporal_api_key=e.get("TEMPORAL_API_KEY") or None,
            temporal_tls_cert=cert,
            temporal_tls_key=key,
            database_url=url,
            task_queue=e.get("CASE_TASK_QUEUE") or DEFAULT_TASK_QUEUE,
            policy_file=path("CASE_POLICY"),
            log_level=level,
            log_format=fmt,
            keyring=keyring,
            codec_token=token,
            codec_ui_origin=e.get("CASE_CODEC_UI_ORIGIN") or None,
            talk_days_file=path("CASE_TALK_DAYS"),
            worker_cache=int(cache_value),
        )

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
