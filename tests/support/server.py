"""A real SpaceAI server on loopback for tests: uvicorn (uvloop, httptools) in a thread."""

from __future__ import annotations

import socket
import threading
import time
from typing import Any

import httpx
import uvicorn
import yaml

from spaceai.api.app import create_app
from spaceai.api.connections import server_options
from spaceai.catalog import Catalog
from spaceai.config import Settings
from spaceai.gateway import Gateway

ADMIN_KEY = "test-admin-key"
LOCAL_MODEL = {"id": "smollm2-135m-instruct", "provider": "local",
               "capabilities": ["chat", "completions"], "pricing": {"input": 0, "output": 0}}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class GatewayServer:
    """Start with ``with GatewayServer(tmp_path, models=[...]) as gw:``; ``gw.base_url``."""

    def __init__(self, tmp_path, models: list[dict[str, Any]] | None = None,
                 database_url: str | None = None, redis_url: str | None = None,
                 settings: dict[str, Any] | None = None) -> None:
        self.tmp_path = tmp_path
        self.models = models
        self.port = free_port()
        self.settings = Settings(
            config_path=None,
            database_url=database_url or f"sqlite:///{tmp_path}/spaceai.db",
            redis_url=redis_url,
            admin_key=ADMIN_KEY,
            ledger_flush_interval_s=0.05,
            **(settings or {}),
        )
        if models is not None:
            path = tmp_path / f"catalog-{self.port}.yaml"
            path.write_text(yaml.safe_dump({"models": models}))
            self.settings.config_path = str(path)
        self.catalog = Catalog.load(self.settings.config_path)
        self.gateway = Gateway(self.settings, self.catalog)
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def api_url(self) -> str:
        return f"{self.base_url}/v1"

    def start(self) -> GatewayServer:
        config = uvicorn.Config(create_app(gateway=self.gateway), host="127.0.0.1",
                                port=self.port, loop="uvloop", log_level="warning",
                                access_log=False, lifespan="on",
                                **server_options(self.settings))
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self._server.started:
                return self
            if not self._thread.is_alive():
                raise RuntimeError("gateway failed to start")
            time.sleep(0.02)
        raise RuntimeError("gateway did not start within 60 s")

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
            self._thread.join(timeout=30)
            self._server = None

    def __enter__(self) -> GatewayServer:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def admin(self, method: str, path: str, **kw: Any) -> httpx.Response:
        return httpx.request(method, self.base_url + path,
                             headers={"Authorization": f"Bearer {ADMIN_KEY}"}, timeout=30, **kw)

    def create_key(self, **fields: Any) -> str:
        """A new API key's secret, made through the admin API."""
        r = self.admin("POST", "/admin/keys", json=fields)
        r.raise_for_status()
        return r.json()["key"]

    def flush_ledger(self) -> None:
        assert self.gateway.ledger.flush(10)

    def usage_rows(self, **params: Any) -> dict[str, Any]:
        r = self.admin("GET", "/admin/usage", params=params)
        r.raise_for_status()
        return r.json()
