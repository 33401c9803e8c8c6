"""Settings: the environment first, then the YAML file named by --config / SPACEAI_CONFIG."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import yaml

DEFAULT_DATABASE_URL = "sqlite:///./spaceai.db"


@dataclass(slots=True)
class Settings:
    """Everything a gateway process is configured with."""

    config_path: str | None = None
    database_url: str = DEFAULT_DATABASE_URL
    redis_url: str | None = None
    admin_key: str | None = None
    max_body_bytes: int = 4 * 1024 * 1024
    ledger_flush_interval_s: float = 0.2
    ledger_batch_size: int = 500
    ledger_dir: str | None = None  # the spool's folder (default: beside a SQLite file, or ./)
    ledger_fsync_s: float = 1.0  # what a machine crash can lose; a killed process loses nothing
    key_cache_ttl_s: float = 1.0
    local_parallel: int = 4
    local_threads: int = 2
    local_model_preload: bool = True
    responses_retention_days: float = 30.0  # stored Responses API answers are purged after it
    # client connections (see spaceai/api/connections.py)
    keep_alive_s: float = 5.0
    header_timeout_s: float = 10.0
    body_timeout_s: float = 60.0
    send_timeout_s: float = 60.0
    max_connections: int = 0  # 0: half the open-file limit, at most 10000
    # upstream connection pools, per origin
    upstream_max_idle: int = 256
    upstream_idle_s: float = 30.0
    upstream_max_per_host: int = 0  # connections open at once per origin; 0: no limit
    ca_bundle: str | None = None  # CA file for TLS upstreams; None: the system's

    def connection_cap(self) -> int:
        """Open client connections beyond which a new request is answered 503."""
        if self.max_connections > 0:
            return self.max_connections
        try:
            import resource

            soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
            if soft == resource.RLIM_INFINITY:
                soft = 20000
        except (ImportError, OSError, ValueError):
            soft = 1024
        # each request in flight holds a client socket and an upstream one
        return max(16, min(10000, soft // 2))
    alert_webhook: str | None = None  # budget alerts are POSTed here (Slack-compatible JSON)
    alert_thresholds: str = "50,80,100"  # percent of a key's budget, unless the key says
    alert_poll_s: float = 0.5
    alert_daily_report: bool = False  # a spend report to the webhook once each UTC day ends
    log_bodies: bool = False  # store request/response bodies (a key's log_bodies overrides)
    log_bodies_days: float = 7.0  # stored bodies are purged after it

    def secrets(self) -> list[str]:
        """Values no log line may show: the admin key, and passwords in the URLs."""
        found = [self.admin_key or ""]
        for url in (self.database_url, self.redis_url or ""):
            if "@" in url and "://" in url:
                credentials = url.split("://", 1)[1].rsplit("@", 1)[0]
                found.append(credentials.partition(":")[2])
        for name in ("OPENAI_API_KEY", "ANTHROPIC_API_KEY"):
            found.append(os.environ.get(name, ""))
        return [s for s in found if s]

    @classmethod
    def load(cls, config_path: str | None = None) -> Settings:
        """Settings from the environment, then the ``settings:`` block of the config file."""
        path = config_path or os.environ.get("SPACEAI_CONFIG") or None
        file_settings: dict[str, Any] = {}
        if path:
            with open(path, encoding="utf-8") as fh:
                data = yaml.safe_load(fh) or {}
            if isinstance(data, dict):
                file_settings = data.get("settings") or {}
        env = os.environ

        def pick(env_name: str, key: str, default: Any) -> Any:
            if env.get(env_name):
                return env[env_name]
            return file_settings.get(key, default)

        return cls(
            config_path=path,
            database_url=pick("SPACEAI_DATABASE_URL", "database_url", DEFAULT_DATABASE_URL),
            redis_url=pick("SPACEAI_REDIS_URL", "redis_url", None),
            admin_key=pick("SPACEAI_ADMIN_KEY", "admin_key", None),
            max_body_bytes=int(pick("SPACEAI_MAX_BODY_BYTES", "max_body_bytes", 4 * 1024 * 1024)),
            ledger_flush_interval_s=float(
                pick("SPACEAI_LEDGER_FLUSH_S", "ledger_flush_interval_s", 0.2)
            ),
            ledger_dir=pick("SPACEAI_LEDGER_DIR", "ledger_dir", None),
            ledger_fsync_s=float(pick("SPACEAI_LEDGER_FSYNC_S", "ledger_fsync_s", 1.0)),
            key_cache_ttl_s=float(pick("SPACEAI_KEY_CACHE_TTL_S", "key_cache_ttl_s", 1.0)),
            local_parallel=int(pick("SPACEAI_LOCAL_PARALLEL", "local_parallel", 4)),
            local_threads=int(pick("SPACEAI_LOCAL_THREADS", "local_threads", 2)),
            alert_webhook=pick("SPACEAI_ALERT_WEBHOOK", "alert_webhook", None),
            alert_thresholds=str(pick("SPACEAI_ALERT_THRESHOLDS", "alert_thresholds",
                                      "50,80,100")),
            alert_daily_report=str(
                pick("SPACEAI_ALERT_DAILY_REPORT", "alert_daily_report", "0")
            ).lower() in ("1", "true", "yes"),
            local_model_preload=str(
                pick("SPACEAI_LOCAL_PRELOAD", "local_model_preload", "1")
            ).lower() not in ("0", "false", "no"),
            responses_retention_days=float(
                pick("SPACEAI_RESPONSES_RETENTION_DAYS", "responses_retention_days", 30)
            ),
            keep_alive_s=float(pick("SPACEAI_KEEP_ALIVE_S", "keep_alive_s", 5.0)),
            header_timeout_s=float(pick("SPACEAI_HEADER_TIMEOUT_S", "header_timeout_s", 10.0)),
            body_timeout_s=float(pick("SPACEAI_BODY_TIMEOUT_S", "body_timeout_s", 60.0)),
            send_timeout_s=float(pick("SPACEAI_SEND_TIMEOUT_S", "send_timeout_s", 60.0)),
            max_connections=int(pick("SPACEAI_MAX_CONNECTIONS", "max_connections", 0)),
            upstream_max_idle=int(pick("SPACEAI_UPSTREAM_MAX_IDLE", "upstream_max_idle", 256)),
            upstream_idle_s=float(pick("SPACEAI_UPSTREAM_IDLE_S", "upstream_idle_s", 30.0)),
            upstream_max_per_host=int(
                pick("SPACEAI_UPSTREAM_MAX_PER_HOST", "upstream_max_per_host", 0)
            ),
            ca_bundle=pick("SPACEAI_CA_BUNDLE", "ca_bundle", None) or None,
            log_bodies=str(pick("SPACEAI_LOG_BODIES", "log_bodies", "0")).lower()
            in ("1", "true", "yes", "on"),
            log_bodies_days=float(pick("SPACEAI_LOG_BODIES_DAYS", "log_bodies_days", 7.0)),
        )
