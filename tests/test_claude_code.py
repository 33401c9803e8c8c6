"""The real Claude Code CLI (npm ``@anthropic-ai/claude-code``, pinned in tests/agents/package.json)
pointed at SpaceAI, on Claude models and on an OpenAI model behind the fake upstreams.

The CLI is a native binary shipped inside the npm package (its platform package, an optional
dependency), so ``npm ci --prefix tests/agents`` is the whole install; scripts/test runs it, and
the ``claude_cli`` fixture runs it too when the binary is missing. Without npm this module
fails: a missing CLI is a failure, never a skip.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import httpx
import pytest
from fakes import Reply
from support.server import GatewayServer

AGENTS = Path(__file__).resolve().parent / "agents"
CLAUDE = AGENTS / "node_modules" / ".bin" / "claude"
PINNED = json.loads((AGENTS / "package.json").read_text())["dependencies"][
    "@anthropic-ai/claude-code"]

# a Claude model Claude Code knows, one it does not know (it then sends role: system entries
# inside messages), and an OpenAI model
KNOWN_CLAUDE, OTHER_CLAUDE, OPENAI = "claude-sonnet-4-6", "claude-gateway-test", "gpt-test"


@pytest.fixture(scope="session")
def claude_cli() -> Path:
    """The pinned Claude Code binary, installed from npm if it is not there yet."""
    if not CLAUDE.exists():
        npm = shutil.which("npm")
        assert npm, "npm is needed to install Claude Code (apt-get install npm)"
        subprocess.run([npm, "ci", "--prefix", str(AGENTS), "--no-audit", "--no-fund"],
                       check=True, timeout=600)
    version = subprocess.run([str(CLAUDE), "--version"], capture_output=True, text=True,
                             timeout=60, check=True).stdout
    assert version.startswith(PINNED), version
    return CLAUDE


@pytest.fixture(scope="module")
def gateway(tmp_path_factory, fakes):
    oai, ant = fakes
    claude = {"provider": "anthropic", "upstream_model": "claude-sonnet-4-6",
              "base_url": ant.base_url, "api_key": ant.api_key, "capabilities": ["chat"],
              "pricing": {"input": 0.000003, "output": 0.000015}, "max_retries": 0}
    models = [
        {"id": KNOWN_CLAUDE, **claude},
        {"id": OTHER_CLAUDE, **claude},
        {"id": OPENAI, "provider": "openai", "upstream_model": "gpt-4o-mini",
         "base_url": oai.base_url, "api_key": oai.api_key, "capabilities": ["chat"],
         "pricing": {"input": 0.00001, "output": 0.00003}, "max_retries": 0},
    ]
    with GatewayServer(tmp_path_factory.mktemp("claude-code"), models=models) as gw:
        yield gw


pytestmark = pytest.mark.usefixtures("fresh_fakes")


def claude_env(home: Path, base_url: str, key: str) -> dict[str, str]:
    """The environment README.md gives for Claude Code on SpaceAI: offline, no telemetry."""
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "CLAUDE_CONFIG_DIR": str(home / ".claude"),
        "ANTHROPIC_BASE_URL": base_url,
        "ANTHROPIC_API_KEY": key,
        "DISABLE_TELEMETRY": "1",
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
        "DISABLE_AUTOUPDATER": "1",
    }


def run_claude(cli: Path, env: dict[str, str], *args: str,
               cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(cli), *args], env=env, cwd=cwd, capture_output=True, text=True,
                          timeout=180)


def new_key(gateway, name: str) -> tuple[str, str]:
    """(secret, id) of a new key."""
    r = gateway.admin("POST", "/admin/keys", json={"name": name})
    r.raise_for_status()
    return r.json()["key"], r.json()["id"]


def ledger_rows(gateway, key_id: str) -> list[dict]:
    gateway.flush_ledger()
    return gateway.usage_rows(key=key_id)["data"]


@pytest.mark.parametrize("model,answer", [
    (KNOWN_CLAUDE, "Hello from fake-anthropic"),
    (OTHER_CLAUDE, "Hello from fake-anthropic"),
    (OPENAI, "Hello from fake-openai"),
])
def test_claude_code_prints_the_answer_and_is_metered(claude_cli, gateway, fakes, tmp_path,
                                                      model, answer):
    key, key_id = new_key(gateway, f"claude-code-{model}")
    env = claude_env(tmp_path, gateway.base_url, key)
    started = time.monotonic()
    done = run_claude(claude_cli, env, "-p", "say hi", "--model", model, cwd=tmp_path)
    seconds = time.monotonic() - started
    assert done.returncode == 0, (done.stdout, done.stderr)
    assert done.stdout.strip() == answer
    print(f"claude -p on {model}: {seconds:.2f} s")

    [row] = ledger_rows(gateway, key_id)  # one request: `claude -p` makes no other call
    assert row["model"] == model and row["endpoint"] == "/v1/messages"
    assert row["status"] == "ok" and row["http_status"] == 200 and row["streamed"]
    assert row["prompt_tokens"] > 1000  # Claude Code's system prompt and tools
    assert row["completion_tokens"] == 3 and row["cost"] > 0  # the fakes' three words

    oai, ant = fakes
    if model == OPENAI:
        sent = oai.requests_to("/v1/chat/completions")[-1]
        roles = [m["role"] for m in sent.body["messages"]]
        assert roles[0] == "system" and "user" in roles
        assert sent.body["stream"] is True and sent.body["tools"]
        # deferred tools stay out of sight until tool search loads them
        names = {t["function"]["name"] for t in sent.body["tools"]}
        assert "Bash" in names and "DeferredToolPlaceholder" not in names
    else:
        sent = ant.requests_to("/v1/messages")[-1]
        assert all(m["role"] in ("user", "assistant") for m in sent.body["messages"])
        assert sent.body["model"] == "claude-sonnet-4-6"
        assert "claude-code-20250219" in sent.headers["anthropic-beta"]
        assert sent.headers["anthropic-version"] == "2023-06-01"
        assert sent.headers["x-api-key"] == ant.api_key  # never the client's SpaceAI key
        assert "thinking" in sent.body and "context_management" in sent.body


def test_claude_code_system_entries_are_folded_in_order(claude_cli, gateway, fakes, tmp_path):
    """Claude Code sends ``role: system`` entries to a model name it does not know; the
    Claude upstream gets them appended to ``system``, after Claude Code's own system text."""
    _, ant = fakes
    key = gateway.create_key(name="claude-code-fold")
    done = run_claude(claude_cli, claude_env(tmp_path, gateway.base_url, key),
                      "-p", "say hi", "--model", OTHER_CLAUDE, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    system = ant.requests_to("/v1/messages")[-1].body["system"]
    texts = [b["text"] for b in system]
    assert texts[0].startswith("x-anthropic-billing-header")
    assert any("You are powered by the model" in t for t in texts[1:])


@pytest.mark.parametrize("model", [KNOWN_CLAUDE, OPENAI])
def test_claude_code_runs_a_tool_and_answers_from_its_result(claude_cli, gateway, fakes,
                                                              tmp_path, model):
    """Two turns: the model asks for Bash, Claude Code runs it and sends the result back."""
    oai, ant = fakes
    fake = oai if model == OPENAI else ant
    fake.script(Reply(tool_calls=[{"name": "Bash", "arguments": {
        "command": "echo spaceai-tool-ok", "description": "print a marker"}}]))
    key, key_id = new_key(gateway, f"claude-code-tool-{model}")
    done = run_claude(claude_cli, claude_env(tmp_path, gateway.base_url, key),
                      "-p", "run echo", "--model", model, "--allowedTools", "Bash(echo:*)",
                      cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().startswith("Hello from fake-")
    rows = ledger_rows(gateway, key_id)
    assert len(rows) == 2 and all(r["status"] == "ok" for r in rows)
    if model == OPENAI:
        last = oai.requests_to("/v1/chat/completions")[-1].body["messages"]
        assert last[-2]["tool_calls"][0]["function"]["name"] == "Bash"
        assert last[-1]["role"] == "tool" and last[-1]["content"] == "spaceai-tool-ok"
    else:
        result = ant.requests_to("/v1/messages")[-1].body["messages"][-1]["content"][0]
        assert result["type"] == "tool_result"
        assert "spaceai-tool-ok" in str(result["content"])


def test_claude_code_tool_search_loads_a_deferred_tool_on_openai(claude_cli, gateway, fakes,
                                                                 tmp_path):
    """Claude Code's ToolSearch answers with tool_reference blocks; the OpenAI model sees the
    deferred tool from then on (and never before)."""
    oai, _ = fakes
    oai.script(Reply(tool_calls=[{"name": "ToolSearch",
                                  "arguments": {"query": "select:WebFetch", "max_results": 5}}]))
    key, _ = new_key(gateway, "claude-code-tool-search")
    done = run_claude(claude_cli, claude_env(tmp_path, gateway.base_url, key),
                      "-p", "fetch something", "--model", OPENAI, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    first, second = (r.body for r in oai.requests_to("/v1/chat/completions"))
    names = [{t["function"]["name"] for t in body["tools"]} for body in (first, second)]
    assert "WebFetch" not in names[0] and "WebFetch" in names[1]
    call = second["messages"][-2]["tool_calls"][0]
    assert second["messages"][-1] == {"role": "tool", "tool_call_id": call["id"],
                                      "content": "Tool loaded: WebFetch"}


def test_claude_code_with_its_default_traffic_checks_in_first(claude_cli, gateway, tmp_path):
    """Without CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC it first sends ``HEAD /api/hello``
    to the base URL (its connectivity check); SpaceAI answers it."""
    key, key_id = new_key(gateway, "claude-code-default-traffic")
    env = claude_env(tmp_path, gateway.base_url, key)
    del env["CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC"]
    done = run_claude(claude_cli, env, "-p", "say hi", "--model", KNOWN_CLAUDE, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "Hello from fake-anthropic"
    assert httpx.head(gateway.base_url + "/api/hello", timeout=10).status_code == 200
    assert len(ledger_rows(gateway, key_id)) == 1


def test_claude_code_with_auth_token_instead_of_api_key(claude_cli, gateway, tmp_path):
    """``ANTHROPIC_AUTH_TOKEN`` makes Claude Code send ``Authorization: Bearer``."""
    key = gateway.create_key(name="claude-code-bearer")
    env = claude_env(tmp_path, gateway.base_url, key)
    env["ANTHROPIC_AUTH_TOKEN"] = env.pop("ANTHROPIC_API_KEY")
    done = run_claude(claude_cli, env, "-p", "say hi", "--model", OPENAI, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "Hello from fake-openai"


def test_claude_code_with_a_wrong_key_says_invalid_api_key(claude_cli, gateway, tmp_path):
    env = claude_env(tmp_path, gateway.base_url, "sk-space-not-a-key")
    env["CLAUDE_CODE_MAX_RETRIES"] = "0"  # it retries a 401 (10 times, with backoff) otherwise
    done = run_claude(claude_cli, env, "-p", "say hi", "--model", OPENAI, cwd=tmp_path)
    assert done.returncode == 1
    assert "Invalid API key" in done.stdout + done.stderr
