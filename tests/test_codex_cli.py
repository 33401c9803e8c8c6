"""The real Codex CLI (``@openai/codex`` from npm, pinned) against SpaceAI's Responses API.

``codex exec`` runs offline with a custom model provider in a temporary CODEX_HOME
(``wire_api = "responses"``), once on an OpenAI model and once on a Claude model behind the
fake upstreams. The CLI is installed by ``scripts/test`` into ``tests/agents``, or by the
fixture below when it is missing; failing to install or run it is a failure, not a skip.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import httpx
import pytest
from support.backends import chat_models
from support.server import GatewayServer

CODEX_VERSION = "0.169.0"
NPM_PREFIX = Path(__file__).parent / "agents"  # pinned in its package.json
CODEX_BIN = NPM_PREFIX / "node_modules" / ".bin" / "codex"

CONFIG = """\
model = "{model}"
model_provider = "spaceai"
check_for_update_on_startup = false

[analytics]
enabled = false

[features]
plugins = false
apps = false

[model_providers.spaceai]
name = "SpaceAI"
base_url = "{base_url}"
wire_api = "responses"
env_key = "SPACEAI_API_KEY"
"""


def _installed_version() -> str | None:
    if not CODEX_BIN.exists():
        return None
    out = subprocess.run([str(CODEX_BIN), "--version"], capture_output=True, text=True,
                         timeout=60)
    return out.stdout.strip().rsplit(" ", 1)[-1] if out.returncode == 0 else None


@pytest.fixture(scope="session")
def codex() -> Path:
    """The pinned Codex CLI, installed from npm into tests/agents when it is not there yet."""
    if _installed_version() != CODEX_VERSION:
        npm = shutil.which("npm")
        assert npm, "npm is needed to install the Codex CLI (apt-get install nodejs npm)"
        subprocess.run([npm, "ci", "--prefix", str(NPM_PREFIX), "--no-audit", "--no-fund"],
                       check=True, timeout=600)
    assert _installed_version() == CODEX_VERSION
    return CODEX_BIN


@pytest.fixture(scope="module")
def gateway(tmp_path_factory, fakes):
    oai, ant = fakes
    models = [
        *chat_models(oai, ant),
    ]
    with GatewayServer(tmp_path_factory.mktemp("codex"), models=models) as gw:
        yield gw


def _run_codex(codex: Path, gateway: GatewayServer, tmp_path: Path, model: str, key: str):
    home = tmp_path / "codex-home"
    home.mkdir()
    (home / "config.toml").write_text(CONFIG.format(model=model, base_url=gateway.api_url))
    work = tmp_path / "work"
    work.mkdir()
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(tmp_path),
           "CODEX_HOME": str(home), "SPACEAI_API_KEY": key, "NO_COLOR": "1"}
    return subprocess.run([str(codex), "exec", "--skip-git-repo-check", "--strict-config",
                           "say hi"], env=env, cwd=work, capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, timeout=120)


@pytest.mark.parametrize(("model", "answer"), [("gpt-test", "Hello from fake-openai"),
                                               ("claude-test", "Hello from fake-anthropic")])
def test_codex_exec_answers_through_spaceai(codex, gateway, fakes, tmp_path, model, answer):
    key = gateway.create_key(name=f"codex-{model}")
    done = _run_codex(codex, gateway, tmp_path, model, key)
    assert done.returncode == 0, done.stderr[-3000:]
    assert answer in done.stdout
    oai, ant = fakes
    upstream = (oai if model == "gpt-test" else ant).last_request.body
    assert "say hi" in str(upstream["messages"])  # Codex's prompt reached the model
    key_id = httpx.get(gateway.api_url + "/key", headers={"Authorization": f"Bearer {key}"},
                       timeout=30).json()["id"]
    gateway.flush_ledger()
    rows = gateway.usage_rows(key=key_id)["data"]
    assert rows and {r["endpoint"] for r in rows} == {"/v1/responses"}
    assert {r["model"] for r in rows} == {model} and all(r["status"] == "ok" for r in rows)
    assert all(r["prompt_tokens"] > 0 and r["cost"] > 0 for r in rows)
