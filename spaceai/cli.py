"""The ``spaceai`` command line: serve, keys, models, usage. Every command takes --json."""

from __future__ import annotations

import os
import sys
from typing import Any

import click
import orjson

from spaceai.config import Settings
from spaceai.logs import LEVELS


def _emit(data: Any) -> None:
    click.echo(orjson.dumps(data, option=orjson.OPT_INDENT_2).decode())


def _table(headers: list[str], rows: list[list[Any]]) -> None:
    cells = [[("" if c is None else str(c)) for c in row] for row in rows]
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(headers)]
    click.echo("  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=False)).rstrip())
    click.echo("  ".join("-" * w for w in widths))
    for r in cells:
        click.echo("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=False)).rstrip())


def _store(config: str | None):  # noqa: ANN202
    from spaceai.keys import KeyStore
    from spaceai.storage.db import create_engine, migrate

    settings = Settings.load(config)
    migrate(settings.database_url)
    return KeyStore(create_engine(settings.database_url))


json_option = click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
config_option = click.option("--config", "config", default=None, type=click.Path(dir_okay=False),
                             help="Catalog/config YAML (default: SPACEAI_CONFIG or built-in).")


@click.group()
@click.version_option(package_name="spaceai")
def main() -> None:
    """SpaceAI: one OpenAI-compatible API in front of many models."""


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=int)
@config_option
@click.option("--workers", default=1, show_default=True, type=int)
@click.option("--log-level", default="warning", show_default=True,
              type=click.Choice(LEVELS),
              help="info (or debug) adds one access line per request.")
@click.option("--log-json", is_flag=True, help="Log JSON lines (one object a line).")
@json_option
def serve(host: str, port: int, config: str | None, workers: int, log_level: str,
          log_json: bool, as_json: bool) -> None:
    """Run the gateway."""
    import uvicorn

    from spaceai.api.connections import server_options
    from spaceai.logs import configure
    from spaceai.storage.db import migrate

    # the workers configure their logging from these (spaceai.api.app.app_factory)
    os.environ["SPACEAI_LOG_LEVEL"] = log_level
    os.environ["SPACEAI_LOG_JSON"] = "1" if log_json else "0"
    if config:
        os.environ["SPACEAI_CONFIG"] = os.path.abspath(config)
    settings = Settings.load(config)
    configure(log_level, log_json, settings.secrets())
    problem = multi_process_problem(settings, workers)
    if problem:
        raise click.UsageError(problem)
    from spaceai.catalog import Catalog

    try:
        catalog = Catalog.load(settings.config_path)
    except (OSError, ValueError) as exc:
        raise click.UsageError(f"catalog: {exc}") from None
    migrate(settings.database_url)
    info = {"url": f"http://{host}:{port}", "workers": workers, "models": [m.id for m in catalog],
            "database": _redact(settings.database_url), "redis": bool(settings.redis_url)}
    if as_json:
        _emit(info)
    else:
        click.echo(f"SpaceAI on {info['url']}  ({workers} worker{'s' if workers > 1 else ''}, "
                   f"database {info['database']})")
        click.echo(f"Models: {', '.join(info['models'])}")
        click.echo("Get an API key with:  spaceai keys create --name me")
        click.echo(f"Docs and playground:  {info['url']}/")
    uvicorn.run("spaceai.api.app:app_factory", factory=True, host=host, port=port,
                workers=workers, loop="uvloop", access_log=False,
                log_level=log_level, log_config=None, timeout_graceful_shutdown=30, lifespan="on",
                proxy_headers=False, server_header=False, **server_options(settings))


def _redact(url: str) -> str:
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        return f"{scheme}://***@{rest.split('@', 1)[1]}"
    return url


def multi_process_problem(settings: Settings, workers: int) -> str | None:
    """Why this setting cannot keep the gateway's promises across processes, or None."""
    if workers < 1:
        return "--workers must be at least 1"
    if workers == 1:
        return None
    missing = []
    if settings.database_url.startswith("sqlite"):
        missing.append("SPACEAI_DATABASE_URL=postgresql://... (a shared PostgreSQL database)")
    if not settings.redis_url:
        missing.append("SPACEAI_REDIS_URL=redis://... (shared budgets, rate limits, key cache)")
    if missing:
        return (f"--workers {workers} needs state shared by every process, so budgets and rate "
                "limits hold: set " + " and ".join(missing) + ", or run one worker.")
    return None


@main.group()
def keys() -> None:
    """Create, list, update and revoke API keys."""


@keys.command("create")
@click.option("--name", default=None)
@click.option("--models", default=None, help="Comma-separated model ids this key may use.")
@click.option("--budget", default=None, type=float, help="Budget in USD.")
@click.option("--budget-period", default=None, type=click.Choice(["monthly"]),
              help="Reset the budget every month.")
@click.option("--rpm", default=None, type=int, help="Requests per minute.")
@click.option("--tpm", default=None, type=int, help="Tokens per minute.")
@click.option("--expires", default=None, help="ISO 8601 date/time, or a duration like 30d.")
@click.option("--log-bodies/--no-log-bodies", "log_bodies", default=None,
              help="Store this key's request and response bodies (default: SPACEAI_LOG_BODIES).")
@config_option
@json_option
def keys_create(name, models, budget, budget_period, rpm, tpm, expires, log_bodies, config, as_json) -> None:  # noqa: ANN001, E501
    """Print a new key once; only its hash is stored."""
    from spaceai.catalog import Catalog
    from spaceai.keys import parse_expiry

    model_list = [m.strip() for m in models.split(",") if m.strip()] if models else None
    if model_list:
        catalog = Catalog.load(Settings.load(config).config_path)
        unknown = [m for m in model_list if catalog.get(m) is None]
        if unknown:
            raise click.UsageError(f"unknown models: {', '.join(unknown)}")
    try:
        secret, record = _store(config).create(
            name=name, models=model_list, budget=budget, rpm=rpm, tpm=tpm,
            expires_at=parse_expiry(expires), budget_period=budget_period,
            log_bodies=log_bodies)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    if as_json:
        _emit({**record.to_public(), "key": secret})
        return
    click.echo(secret)
    click.echo(f"(key id {record.id}; this is the only time the key is shown: store it now)",
               err=True)


@keys.command("list")
@config_option
@json_option
def keys_list(config: str | None, as_json: bool) -> None:
    """Table of keys (never the secret)."""
    records = [r.to_public() for r in _store(config).list()]
    if as_json:
        _emit({"object": "list", "data": records})
        return
    _table(["ID", "NAME", "PREFIX", "MODELS", "BUDGET", "SPEND", "RPM", "TPM", "EXPIRES",
            "REVOKED"],
           [[r["id"], r["name"], r["prefix"] + "…", ",".join(r["models"]) if r["models"] else "all",
             r["budget"], r["spend"], r["rpm"], r["tpm"], r["expires_at"], r["revoked"]]
            for r in records])


@keys.command("revoke")
@click.argument("key_id")
@config_option
@json_option
def keys_revoke(key_id: str, config: str | None, as_json: bool) -> None:
    """Revoke a key: it stops working in every gateway process within a second."""
    record = _store(config).revoke(key_id)
    if record is None:
        raise click.ClickException(f"no key with id {key_id}")
    if as_json:
        _emit(record.to_public())
    else:
        click.echo(f"revoked {key_id}")


def _clearable(value: str | None, convert, label: str):  # noqa: ANN001, ANN202
    """(given, value): ``none`` removes the limit."""
    if value is None:
        return False, None
    if value.strip().lower() in ("none", "null", ""):
        return True, None
    try:
        return True, convert(value)
    except ValueError:
        raise click.UsageError(f"{label}: expected a number or 'none', got {value!r}") from None


@keys.command("update")
@click.argument("key_id")
@click.option("--name", default=None)
@click.option("--models", default=None,
              help="Comma-separated model ids this key may use ('all' for every model).")
@click.option("--budget", default=None, help="Budget in USD ('none' removes it).")
@click.option("--rpm", default=None, help="Requests per minute ('none' removes the limit).")
@click.option("--tpm", default=None, help="Tokens per minute ('none' removes the limit).")
@click.option("--expires", default=None,
              help="ISO 8601 date/time, a duration like 30d, or 'never'.")
@click.option("--alerts", default=None,
              help="Budget alert thresholds in percent, like 50,80,100 ('default' for the "
                   "gateway's).")
@click.option("--log-bodies/--no-log-bodies", "log_bodies", default=None,
              help="Store this key's request and response bodies, or never.")
@config_option
@json_option
def keys_update(key_id, name, models, budget, rpm, tpm, expires, alerts, log_bodies, config, as_json) -> None:  # noqa: ANN001, E501
    """Change an existing key's limits; they hold from its next request, in every process."""
    from spaceai.catalog import Catalog
    from spaceai.keys import parse_expiry

    changes: dict[str, Any] = {}
    if name is not None:
        changes["name"] = name
    if models is not None:
        model_list = [m.strip() for m in models.split(",") if m.strip()]
        if model_list in ([], ["all"]):
            changes["models"] = None
        else:
            catalog = Catalog.load(Settings.load(config).config_path)
            unknown = [m for m in model_list if catalog.get(m) is None]
            if unknown:
                raise click.UsageError(f"unknown models: {', '.join(unknown)}")
            changes["models"] = model_list
    for label, raw, convert in (("budget", budget, float), ("rpm", rpm, int), ("tpm", tpm, int)):
        given, value = _clearable(raw, convert, label)
        if given:
            changes[label] = value
    if expires is not None:
        try:
            changes["expires_at"] = (None if expires.strip().lower() in ("never", "none")
                                     else parse_expiry(expires))
        except ValueError as exc:
            raise click.UsageError(str(exc)) from None
    if alerts is not None:
        changes["alert_thresholds"] = None if alerts.strip().lower() in ("default", "none") \
            else alerts
    if log_bodies is not None:
        changes["log_bodies"] = log_bodies
    try:
        record = _store(config).update(key_id, **changes)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    if record is None:
        raise click.ClickException(f"no key with id {key_id}")
    if as_json:
        _emit(record.to_public())
    else:
        click.echo(f"updated {key_id}")


@main.command()
@config_option
@json_option
def models(config: str | None, as_json: bool) -> None:
    """The catalog, with prices per 1K tokens."""
    from spaceai.catalog import Catalog

    catalog = Catalog.load(Settings.load(config).config_path)
    if as_json:
        _emit({"object": "list", "data": [{**m.to_openai(), "provider": m.provider,
                                           "configured": m.missing_credential() is None}
                                          for m in catalog]})
        return
    _table(["MODEL", "PROVIDER", "CAPABILITIES", "INPUT $/1K", "OUTPUT $/1K", "STATUS"],
           [[m.id, m.provider, ",".join(m.all_capabilities()), f"{m.input_price * 1000:.4g}",
             f"{m.output_price * 1000:.4g}",
             "ready" if not m.missing_credential() else f"needs {m.missing_credential()}"]
            for m in catalog])


@main.command()
@click.option("--key", "key_id", default=None, help="Only this key id.")
@click.option("--model", default=None, help="Only this model.")
@click.option("--since", default=None, help="ISO 8601 date or time.")
@click.option("--limit", default=100, show_default=True, type=int, help="Rows in --json output.")
@config_option
@json_option
def usage(key_id, model, since, limit, config, as_json) -> None:  # noqa: ANN001
    """Requests, tokens and cost, per key and model."""
    from spaceai.metering.usage import query_usage
    from spaceai.storage.db import create_engine, migrate

    settings = Settings.load(config)
    migrate(settings.database_url)
    try:
        report = query_usage(create_engine(settings.database_url), key_id=key_id, model=model,
                             since=since, limit=limit)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    if as_json:
        _emit(report)
        return
    rows = [[g["key_id"], g["model"], g["requests"], g["prompt_tokens"], g["completion_tokens"],
             f"{g['cost']:.6f}"] for g in report["by_key_model"]]
    t = report["totals"]
    rows.append(["TOTAL", "", t["requests"], t["prompt_tokens"], t["completion_tokens"],
                 f"{t['cost']:.6f}"])
    _table(["KEY", "MODEL", "REQUESTS", "PROMPT TOKENS", "COMPLETION TOKENS", "COST (USD)"], rows)


if __name__ == "__main__":
    sys.exit(main())
