/* SpaceAI playground: chat with this gateway from the docs page.
 *
 * The API key lives only in this page's memory and sessionStorage and is sent only to this
 * origin's /v1 API in the Authorization header. Nothing is validated client-side on purpose:
 * the server's own error (e.g. 400 naming "temperature") is what the user should see.
 */
(function () {
  "use strict";

  var KEY_STORE = "spaceai.playground.key";
  var PLACEHOLDER = "Response will appear here after you send a request.";

  function $(id) { return document.getElementById(id); }

  var el = {};
  var state = {
    history: [],        // [{role, content}] of completed turns
    modelsKey: null,    // the key the model list was last loaded with
    controller: null,   // AbortController of the request in flight
    lastBody: null,     // the last request body sent
    busy: false
  };

  /* ---------- helpers ---------- */
  function apiKey() { return el.key.value.trim(); }

  function headers(json) {
    var h = {};
    var key = apiKey();
    if (key) h.Authorization = "Bearer " + key;
    if (json) h["Content-Type"] = "application/json";
    return h;
  }

  function saveKey() {
    try {
      if (apiKey()) window.sessionStorage.setItem(KEY_STORE, apiKey());
      else window.sessionStorage.removeItem(KEY_STORE);
    } catch (e) { /* storage disabled: the key stays in memory only */ }
  }

  function restoreKey() {
    try { return window.sessionStorage.getItem(KEY_STORE) || ""; } catch (e) { return ""; }
  }

  function formatCost(value) {
    var n = Number(value);
    if (value === null || value === undefined || value === "" || !isFinite(n)) return null;
    if (n === 0) return "$0.00";
    var s = n.toFixed(10).replace(/0+$/, "").replace(/\.$/, "");
    var parts = s.split(".");
    var frac = parts[1] || "";
    while (frac.length < 2) frac += "0";
    return "$" + parts[0] + "." + frac;
  }

  function setStatus(node, text, kind) {
    node.textContent = text || "";
    node.className = "hint" + (kind ? " " + kind : "");
  }

  function finishNote(reason) {
    if (reason === "length") return "Cut off at max tokens";
    if (reason === "content_filter") return "Stopped by the content filter";
    return "";
  }

  function isAbort(err) { return err && (err.name === "AbortError"); }

  /* ---------- error region ---------- */
  function clearError() {
    el.error.hidden = true;
    el.error.textContent = "";
  }

  function showError(info) {
    el.error.textContent = "";
    var title = document.createElement("p");
    title.className = "err-title";
    title.textContent = info.title;
    el.error.appendChild(title);
    if (info.message) {
      var msg = document.createElement("p");
      msg.className = "err-message";
      msg.textContent = info.message;
      el.error.appendChild(msg);
    }
    var rows = [
      ["Status", info.status],
      ["Type", info.type],
      ["Code", info.code],
      ["Param", info.param],
      ["Retry-After", info.retryAfter],
      ["Request ID", info.requestId]
    ].filter(function (r) { return r[1] !== undefined && r[1] !== null && r[1] !== ""; });
    if (rows.length) {
      var dl = document.createElement("dl");
      rows.forEach(function (r) {
        var dt = document.createElement("dt");
        dt.textContent = r[0];
        var dd = document.createElement("dd");
        dd.textContent = String(r[1]);
        dl.appendChild(dt);
        dl.appendChild(dd);
      });
      el.error.appendChild(dl);
    }
    el.error.hidden = false;
  }

  function errorFields(err) {
    if (typeof err === "string") return { message: err };
    err = err || {};
    return {
      message: err.message || "",
      type: err.type,
      code: err.code,
      param: err.param
    };
  }

  async function showHttpError(res) {
    var text = "";
    try { text = await res.text(); } catch (e) { text = ""; }
    var fields = { message: text.slice(0, 1000) || res.statusText };
    try {
      var data = JSON.parse(text);
      if (data && data.error) fields = errorFields(data.error);
      else if (data && data.detail) fields = { message: typeof data.detail === "string" ? data.detail : JSON.stringify(data.detail) };
    } catch (e) { /* not JSON: show the raw text */ }
    fields.title = "HTTP " + res.status + (res.statusText ? " " + res.statusText : "");
    fields.status = res.status;
    fields.retryAfter = res.headers.get("retry-after");
    fields.requestId = res.headers.get("x-request-id");
    showError(fields);
  }

  function showNetworkError(err) {
    showError({
      title: "Network error",
      message: "Could not reach the server: " + (err && err.message ? err.message : String(err)),
      type: "network_error"
    });
  }

  /* ---------- models ---------- */
  function fillModels(models) {
    var chat = models.filter(function (m) {
      return !Array.isArray(m.capabilities) || m.capabilities.indexOf("chat") !== -1;
    });
    if (!chat.length) chat = models;
    var previous = el.model.value;
    var ids = chat.map(function (m) { return String(m.id); });
    el.model.textContent = "";
    ids.forEach(function (id) {
      var opt = document.createElement("option");
      opt.value = id;
      opt.textContent = id;
      el.model.appendChild(opt);
    });
    if (ids.indexOf(previous) !== -1) el.model.value = previous;
    return ids.length;
  }

  async function loadModels(force) {
    var key = apiKey();
    if (!key) {
      if (force) {
        showError({ title: "API key required", message: "Enter an API key to load the models it can use." });
        el.key.focus();
      }
      return;
    }
    if (!force && key === state.modelsKey) return;
    state.modelsKey = key;
    setStatus(el.modelsStatus, "Loading models…");
    el.loadModels.disabled = true;
    var res;
    try {
      res = await fetch("/v1/models", { headers: headers(false) });
    } catch (err) {
      state.modelsKey = null;
      setStatus(el.modelsStatus, "Could not load models.", "error");
      showNetworkError(err);
      return;
    } finally {
      el.loadModels.disabled = false;
    }
    if (!res.ok) {
      state.modelsKey = null;
      setStatus(el.modelsStatus, "Could not load models (HTTP " + res.status + ").", "error");
      await showHttpError(res);
      return;
    }
    var data;
    try { data = await res.json(); } catch (err) {
      state.modelsKey = null;
      setStatus(el.modelsStatus, "The model list was not valid JSON.", "error");
      return;
    }
    var n = fillModels((data && data.data) || []);
    clearError();
    setStatus(el.modelsStatus, n + (n === 1 ? " model" : " models") + " available to this key.", "ok");
  }

  /* ---------- conversation ---------- */
  function addTurn(role, content) {
    var li = document.createElement("li");
    li.className = "pg-turn " + role;
    var who = document.createElement("span");
    who.className = "who";
    who.textContent = role === "user" ? "You" : "Assistant";
    var text = document.createElement("span");
    text.className = "text";
    text.textContent = content;
    li.appendChild(who);
    li.appendChild(text);
    el.history.appendChild(li);
    el.historyEmpty.hidden = true;
    el.history.scrollTop = el.history.scrollHeight;
    return li;
  }

  function clearConversation() {
    if (state.controller) state.controller.abort();
    state.history = [];
    state.lastBody = null;
    el.history.textContent = "";
    el.historyEmpty.hidden = false;
    resetResponse();
    clearError();
    el.curlWrap.hidden = true;
    el.message.focus();
  }

  /* ---------- response region ---------- */
  function resetResponse(text) {
    el.responseText.textContent = "";
    var span = document.createElement("span");
    span.className = "placeholder";
    span.textContent = text || PLACEHOLDER;
    el.responseText.appendChild(span);
    el.usage.hidden = true;
    el.meta.hidden = true;
    el.meta.textContent = "";
  }

  function showUsage(usage, costHeader) {
    usage = usage || {};
    el.usagePrompt.textContent = usage.prompt_tokens != null ? String(usage.prompt_tokens) : "–";
    el.usageCompletion.textContent = usage.completion_tokens != null ? String(usage.completion_tokens) : "–";
    el.usageTotal.textContent = usage.total_tokens != null ? String(usage.total_tokens) : "–";
    var cost = formatCost(usage.cost != null ? usage.cost : costHeader);
    el.cost.textContent = cost || "–";
    el.usage.hidden = false;
  }

  function showMeta(parts) {
    parts = parts.filter(Boolean);
    el.meta.textContent = parts.join(" · ");
    el.meta.hidden = !parts.length;
  }

  /* ---------- request ---------- */
  function buildBody(text) {
    var messages = [];
    var system = el.system.value;
    if (system.trim()) messages.push({ role: "system", content: system });
    state.history.forEach(function (m) { messages.push({ role: m.role, content: m.content }); });
    messages.push({ role: "user", content: text });
    var body = { model: el.model.value, messages: messages };
    var temperature = el.temperature.value.trim();
    if (temperature !== "") body.temperature = Number(temperature);
    var maxTokens = el.maxTokens.value.trim();
    if (maxTokens !== "") body.max_tokens = Number(maxTokens);
    body.stream = el.stream.checked;
    if (body.stream) body.stream_options = { include_usage: true };
    return body;
  }

  function setBusy(busy) {
    state.busy = busy;
    el.send.disabled = busy;
    el.stop.hidden = !busy;
    el.response.setAttribute("aria-busy", busy ? "true" : "false");
  }

  async function readStream(res, onDelta) {
    var reader = res.body.getReader();
    var decoder = new TextDecoder();
    var buffer = "";
    var result = { usage: null, error: null, done: false, finishReason: null };

    function handleLine(line) {
      if (line.slice(0, 5) !== "data:") return;
      var data = line.slice(5);
      if (data.charAt(0) === " ") data = data.slice(1);
      if (data.trim() === "[DONE]") { result.done = true; return; }
      var obj;
      try { obj = JSON.parse(data); } catch (e) { return; }
      if (obj && obj.error) { result.error = obj.error; result.done = true; return; }
      (obj.choices || []).forEach(function (choice) {
        if (choice.index && choice.index !== 0) return;
        var delta = choice.delta || {};
        if (typeof delta.content === "string" && delta.content) onDelta(delta.content);
        if (choice.finish_reason) result.finishReason = choice.finish_reason;
      });
      if (obj.usage) result.usage = obj.usage;
    }

    while (!result.done) {
      var chunk = await reader.read();
      if (chunk.done) break;
      buffer += decoder.decode(chunk.value, { stream: true });
      var lines = buffer.split(/\r\n|\r|\n/);
      buffer = lines.pop();
      for (var i = 0; i < lines.length && !result.done; i++) handleLine(lines[i]);
    }
    buffer += decoder.decode();
    if (!result.done && buffer) handleLine(buffer);
    if (result.done) reader.cancel().catch(function () { /* already closed */ });
    return result;
  }

  async function send() {
    if (state.busy) return;
    var text = el.message.value;
    if (!text.trim()) {
      showError({ title: "Nothing to send", message: "Write a message first." });
      el.message.focus();
      return;
    }
    var body = buildBody(text);
    state.lastBody = body;
    if (!el.curlWrap.hidden) renderCurl();

    clearError();
    var userTurn = addTurn("user", text);
    var answerTurn = addTurn("assistant", "");
    answerTurn.classList.add("pending");
    var answerText = answerTurn.querySelector(".text");
    el.message.value = "";
    el.responseText.textContent = "";
    el.usage.hidden = true;
    showMeta([]);
    setBusy(true);

    var controller = new AbortController();
    state.controller = controller;
    var started = performance.now();
    var content = "";
    var res = null;

    function rollback() {
      userTurn.remove();
      answerTurn.remove();
      if (!el.history.children.length) el.historyEmpty.hidden = false;
      if (!el.message.value) el.message.value = text;
      resetResponse("No response.");
    }

    function finish(usage, costHeader, note) {
      answerTurn.classList.remove("pending");
      state.history.push({ role: "user", content: text });
      state.history.push({ role: "assistant", content: content });
      if (!content) el.responseText.textContent = "";
      showUsage(usage, costHeader);
      var secs = ((performance.now() - started) / 1000).toFixed(2) + " s";
      showMeta([
        note,
        "Model " + body.model,
        secs,
        res && res.headers.get("x-request-id") ? "Request ID " + res.headers.get("x-request-id") : ""
      ]);
    }

    function append(delta) {
      content += delta;
      answerText.textContent = content;
      el.responseText.textContent = content;
    }

    try {
      try {
        res = await fetch("/v1/chat/completions", {
          method: "POST",
          headers: headers(true),
          body: JSON.stringify(body),
          signal: controller.signal
        });
      } catch (err) {
        rollback();
        if (isAbort(err)) resetResponse("Request stopped.");
        else showNetworkError(err);
        return;
      }
      var costHeader = res.headers.get("x-spaceai-cost");
      if (!res.ok) {
        rollback();
        await showHttpError(res);
        return;
      }
      var ctype = res.headers.get("content-type") || "";
      if (ctype.indexOf("text/event-stream") !== -1 && res.body) {
        var result;
        try {
          result = await readStream(res, append);
        } catch (err) {
          if (isAbort(err)) {
            if (content) finish(null, null, "Stopped");
            else { rollback(); resetResponse("Request stopped."); }
            return;
          }
          if (content) finish(null, null, "Interrupted");
          else rollback();
          showNetworkError(err);
          return;
        }
        if (result.error) {
          if (content) finish(result.usage, costHeader, "Interrupted");
          else rollback();
          var fields = errorFields(result.error);
          fields.title = "Stream error: the answer was cut off";
          fields.requestId = res.headers.get("x-request-id");
          showError(fields);
          return;
        }
        finish(result.usage, costHeader,
               result.done ? finishNote(result.finishReason) : "Stream ended without [DONE]");
      } else {
        var data;
        try { data = await res.json(); } catch (err) {
          rollback();
          if (isAbort(err)) { resetResponse("Request stopped."); return; }
          showError({ title: "Invalid response (HTTP " + res.status + ")", message: "The answer was not valid JSON.", status: res.status });
          return;
        }
        if (data && data.error) {
          rollback();
          var f = errorFields(data.error);
          f.title = "Error (HTTP " + res.status + ")";
          f.status = res.status;
          showError(f);
          return;
        }
        var choice = (data.choices || [])[0] || {};
        var message = choice.message || {};
        var answer = message.content;
        if (answer == null && message.tool_calls) answer = JSON.stringify(message.tool_calls, null, 2);
        append(answer == null ? "" : String(answer));
        finish(data.usage, costHeader, finishNote(choice.finish_reason));
      }
    } finally {
      if (state.controller === controller) state.controller = null;
      setBusy(false);
    }
  }

  /* ---------- copy as curl ---------- */
  function shellDouble(s) { return s.replace(/[\\"$`]/g, "\\$&"); }

  function curlCommand(body) {
    var origin = /^https?:/.test(window.location.protocol) ? window.location.origin : document.body.getAttribute("data-base-url");
    var key = apiKey();
    var shown = el.showKey.checked && key ? shellDouble(key) : "$SPACEAI_API_KEY";
    var json = JSON.stringify(body, null, 2).replace(/'/g, "'\\''");
    return [
      "curl " + (body.stream ? "-N " : "") + origin + "/v1/chat/completions \\",
      '  -H "Authorization: Bearer ' + shown + '" \\',
      '  -H "Content-Type: application/json" \\',
      "  -d '" + json + "'"
    ].join("\n");
  }

  function currentBody() {
    if (!el.message.value && state.lastBody) return state.lastBody;
    return buildBody(el.message.value);
  }

  function renderCurl() {
    var cmd = curlCommand(currentBody());
    var code = el.curl.querySelector("code");
    code.textContent = cmd;
    if (window.SpaceAIDocs) window.SpaceAIDocs.highlight(code);
    el.curlWrap.hidden = false;
    return cmd;
  }

  function copyCurl() {
    var cmd = renderCurl();
    el.curlStatus.textContent = "";
    var copy = window.SpaceAIDocs && window.SpaceAIDocs.copyText;
    if (!copy) return;
    copy(cmd).then(function () {
      el.curlStatus.textContent = "Copied to clipboard";
    }, function () {
      el.curlStatus.textContent = "Select the command below to copy it";
    });
  }

  /* ---------- wiring ---------- */
  function init() {
    [
      ["key", "pg-key"], ["loadModels", "pg-load-models"], ["model", "pg-model"],
      ["modelsStatus", "pg-models-status"], ["temperature", "pg-temperature"],
      ["maxTokens", "pg-max-tokens"], ["stream", "pg-stream"], ["system", "pg-system"],
      ["message", "pg-message"], ["send", "pg-send"], ["stop", "pg-stop"], ["clear", "pg-clear"],
      ["copyCurl", "pg-copy-curl"], ["showKey", "pg-show-key"], ["error", "pg-error"],
      ["response", "pg-response"], ["responseText", "pg-response-text"], ["usage", "pg-usage"],
      ["usagePrompt", "pg-usage-prompt"], ["usageCompletion", "pg-usage-completion"],
      ["usageTotal", "pg-usage-total"], ["cost", "pg-cost"], ["meta", "pg-meta"],
      ["history", "pg-history"], ["historyEmpty", "pg-history-empty"],
      ["curlWrap", "pg-curl-wrap"], ["curl", "pg-curl"], ["curlStatus", "pg-curl-status"]
    ].forEach(function (pair) { el[pair[0]] = $(pair[1]); });
    if (!el.key || !el.send) return;

    el.key.addEventListener("input", saveKey);
    el.key.addEventListener("change", function () { loadModels(false); });
    el.key.addEventListener("blur", function () { loadModels(false); });
    el.key.addEventListener("keydown", function (ev) {
      if (ev.key === "Enter") { ev.preventDefault(); loadModels(true); }
    });
    el.loadModels.addEventListener("click", function () { loadModels(true); });
    el.send.addEventListener("click", send);
    el.stop.addEventListener("click", function () { if (state.controller) state.controller.abort(); });
    el.clear.addEventListener("click", clearConversation);
    el.message.addEventListener("keydown", function (ev) {
      if (ev.key === "Enter" && (ev.ctrlKey || ev.metaKey)) {
        ev.preventDefault();
        send();
      }
    });
    el.copyCurl.addEventListener("click", copyCurl);
    el.showKey.addEventListener("change", function () { if (!el.curlWrap.hidden) renderCurl(); });

    var saved = restoreKey();
    if (saved) {
      el.key.value = saved;
      loadModels(false);
    }
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", init);
  else init();
})();
