// The SpaceAI operator console: plain DOM and SVG, no library, no build step.
// The admin key lives in this tab's sessionStorage and goes only to this server (same origin).
"use strict";

(() => {
  const STORE = "spaceai.adminKey";
  const COLORS = ["#2563eb", "#d97706", "#059669", "#db2777", "#7c3aed", "#0891b2",
    "#65a30d", "#dc2626", "#475569", "#ca8a04"];
  const $ = (sel, root = document) => root.querySelector(sel);
  const $$ = (sel, root = document) => Array.from(root.querySelectorAll(sel));
  const SVG = "http://www.w3.org/2000/svg";

  const state = { keys: [], models: [], names: {}, overview: null, requests: [], next: null };

  // ------------------------------------------------------------------ helpers

  function el(tag, attrs = {}, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs)) {
      if (v === null || v === undefined || v === false) continue;
      if (k === "class") node.className = v;
      else if (k === "text") node.textContent = v;
      else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
      else node.setAttribute(k, v === true ? "" : v);
    }
    for (const c of children.flat()) {
      if (c === null || c === undefined) continue;
      node.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return node;
  }

  function svg(tag, attrs = {}, ...children) {
    const node = document.createElementNS(SVG, tag);
    for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
    for (const c of children) if (c) node.append(c);
    return node;
  }

  function usd(v) {
    if (v === null || v === undefined) return "—";
    const text = Number(v).toFixed(9).replace(/0+$/, "").replace(/\.$/, "");
    const [whole, frac = ""] = text.split(".");
    return "$" + whole + "." + frac.padEnd(2, "0");
  }
  function shortUsd(v) {
    if (!v) return "$0";
    if (v >= 100) return "$" + Math.round(v);
    if (v >= 1) return "$" + v.toFixed(2);
    return "$" + Number(v.toPrecision(2)).toString();
  }
  function num(v) {
    return v === null || v === undefined ? "—" : Number(v).toLocaleString("en-US");
  }
  function short(v) {
    if (v >= 1e9) return (v / 1e9).toFixed(1).replace(/\.0$/, "") + "G";
    if (v >= 1e6) return (v / 1e6).toFixed(1).replace(/\.0$/, "") + "M";
    if (v >= 1e3) return (v / 1e3).toFixed(1).replace(/\.0$/, "") + "k";
    return String(Math.round(v * 100) / 100);
  }
  function ms(v) {
    if (v === null || v === undefined) return "—";
    if (v === 0) return "0 ms";
    return v >= 1000 ? (v / 1000).toFixed(2) + " s" : (v >= 10 ? Math.round(v) : v.toFixed(1)) + " ms";
  }
  function when(iso) {
    if (!iso) return "—";
    return iso.replace("T", " ").replace(/\.\d+/, "").replace(/\+00:00$/, "").replace(/Z$/, "");
  }
  function bucketLabel(iso, bucket) {
    const d = new Date(iso);
    const pad = (n) => String(n).padStart(2, "0");
    const day = `${pad(d.getUTCMonth() + 1)}-${pad(d.getUTCDate())}`;
    return bucket === "hour" ? `${day} ${pad(d.getUTCHours())}h` : day;
  }
  function keyName(id) {
    if (!id) return "(no key)";
    const k = state.keys.find((x) => x.id === id);
    const name = (k && k.name) || state.names[id];
    return name ? `${name}` : id;
  }
  function toast(text) {
    const t = $("#toast");
    t.textContent = text;
    t.classList.add("on");
    clearTimeout(toast.timer);
    toast.timer = setTimeout(() => t.classList.remove("on"), 2500);
  }

  // ------------------------------------------------------------------ the API

  class SignedOut extends Error {}

  async function api(path, options = {}) {
    const key = sessionStorage.getItem(STORE);
    if (!key) throw new SignedOut();
    const init = { method: options.method || "GET", credentials: "omit", cache: "no-store",
      headers: { Authorization: "Bearer " + key } };
    if (options.body !== undefined) {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(options.body);
    }
    const r = await fetch(new URL(path, location.origin), init);
    const data = await r.json().catch(() => ({}));
    if (r.status === 401 || r.status === 404 && data.error && data.error.code === "admin_disabled") {
      if (path.startsWith("/admin/")) {
        signOut(data.error ? data.error.message : "Signed out.");
        throw new SignedOut();
      }
    }
    if (!r.ok) throw new Error((data.error && data.error.message) || `HTTP ${r.status}`);
    return data;
  }

  function query(params) {
    const q = new URLSearchParams();
    for (const [k, v] of Object.entries(params)) if (v !== "" && v !== null && v !== undefined) q.set(k, v);
    const s = q.toString();
    return s ? "?" + s : "";
  }

  // ------------------------------------------------------------------ sign in, views

  function signOut(message) {
    sessionStorage.removeItem(STORE);
    $("#nav").hidden = true;
    $("#signout").hidden = true;
    $$(".view").forEach((v) => (v.hidden = true));
    $("#signin").hidden = false;
    $("#signin-error").textContent = message || "";
    $("#admin-key").focus();
  }

  async function signIn(key) {
    sessionStorage.setItem(STORE, key);
    try {
      await loadCatalogs();
    } catch (e) {
      if (!(e instanceof SignedOut)) signOut(e.message);
      return false;
    }
    $("#signin").hidden = true;
    $("#nav").hidden = false;
    $("#signout").hidden = false;
    show(location.hash.slice(1) || "overview");
    return true;
  }

  async function loadCatalogs() {
    const [keys, models, activity] = await Promise.all([
      api("/admin/keys"), api("/admin/models"), api("/admin/keys/activity")]);
    const used = Object.fromEntries(activity.data.map((a) => [a.id, a.last_used_at]));
    state.keys = keys.data.map((k) => ({ ...k, last_used_at: used[k.id] || null }));
    state.models = models.data;
    for (const k of state.keys) state.names[k.id] = k.name;
    for (const select of $$("select[data-keys]")) {
      const value = select.value;
      select.replaceChildren(el("option", { value: "", text: "all keys" }),
        ...state.keys.map((k) => el("option", { value: k.id, text: `${k.name || k.prefix + "…"} (${k.id})` })));
      select.value = value;
    }
    for (const select of $$("select[data-models]")) {
      const value = select.value;
      select.replaceChildren(el("option", { value: "", text: "all models" }),
        ...state.models.map((m) => el("option", { value: m.id, text: m.id })));
      select.value = value;
    }
  }

  const VIEWS = ["overview", "keys", "requests", "models"];
  const LOADERS = { overview: loadOverview, keys: loadKeys, requests: () => loadRequests(false),
    models: renderModels };

  function show(view) {
    if (!VIEWS.includes(view)) view = "overview";
    if (!sessionStorage.getItem(STORE)) return;
    for (const v of VIEWS) $("#view-" + v).hidden = v !== view;
    for (const a of $$("#nav a")) {
      if (a.dataset.view === view) a.setAttribute("aria-current", "page");
      else a.removeAttribute("aria-current");
    }
    if (location.hash !== "#" + view) history.replaceState(null, "", "#" + view);
    LOADERS[view]().catch(report);
  }

  function report(e) {
    if (e instanceof SignedOut) return;
    toast(e.message || String(e));
  }

  // ------------------------------------------------------------------ charts

  // a round step for about four gridlines up to v
  function niceStep(v) {
    if (!(v > 0)) return 0.25;
    const raw = v / 4;
    const p = 10 ** Math.floor(Math.log10(raw));
    for (const m of [1, 2, 5, 10]) if (m * p >= raw) return m * p;
    return 10 * p;
  }

  // series: [{name, values, color, kind: "bar"|"line"}]; bars of one chart are stacked
  function timeChart(target, labels, series, format, title) {
    const W = Math.max(280, target.clientWidth || 640), H = W < 500 ? 180 : 220;
    const L = 62, R = 12, T = 12, B = 30;
    const n = labels.length;
    const stacks = new Array(n).fill(0);
    let top = 0;
    for (const s of series) {
      s.values.forEach((v, i) => {
        if (s.kind === "line") top = Math.max(top, v || 0);
        else { stacks[i] += v || 0; top = Math.max(top, stacks[i]); }
      });
    }
    const step = niceStep(top);
    const lines = Math.max(1, Math.ceil(top / step - 1e-9));
    const max = step * lines;
    const x = (i) => L + (i + 0.5) * (W - L - R) / n;
    const y = (v) => T + (H - T - B) * (1 - v / max);
    const bw = Math.max(1, (W - L - R) / n * 0.72);
    const root = svg("svg", { viewBox: `0 0 ${W} ${H}`, width: W, height: H, role: "img",
      "aria-label": title, class: "plot" });
    for (let g = 0; g <= lines; g++) {
      const v = step * g;
      root.append(svg("line", { x1: L, x2: W - R, y1: y(v), y2: y(v), class: "grid" }));
      const t = svg("text", { x: L - 6, y: y(v) + 4, class: "axis", "text-anchor": "end" });
      t.textContent = format(v);
      root.append(t);
    }
    const every = Math.ceil(n / Math.max(2, Math.floor((W - L) / 70)));
    labels.forEach((lab, i) => {
      // the first and last labels are edge-aligned: keep the others clear (a label is ~60 px)
      if (i !== n - 1 && (i % every || W - R - x(i) < 100 || (i && x(i) - L < 100))) return;
      const anchor = i === n - 1 && n > 1 ? "end" : i === 0 && n > 1 ? "start" : "middle";
      const t = svg("text", { x: anchor === "end" ? W - R : anchor === "start" ? L : x(i),
        y: H - 10, class: "axis", "text-anchor": anchor });
      t.textContent = lab;
      root.append(t);
    });
    const base = new Array(n).fill(0);
    for (const s of series.filter((s) => s.kind !== "line")) {
      s.values.forEach((v, i) => {
        if (!v) return;
        const y0 = y(base[i]), y1 = y(base[i] + v);
        base[i] += v;
        const r = svg("rect", { x: x(i) - bw / 2, y: y1, width: bw, height: Math.max(0.5, y0 - y1),
          fill: s.color, class: "bar" });
        const tip = svg("title");
        tip.textContent = `${labels[i]} · ${s.name}: ${format(v, true)}`;
        r.append(tip);
        root.append(r);
      });
    }
    for (const s of series.filter((s) => s.kind === "line")) {
      const pts = s.values.map((v, i) => (v === null || v === undefined ? null : [x(i), y(v)]));
      let d = "";
      pts.forEach((p, i) => {
        if (!p) return;
        d += (i && pts[i - 1] ? "L" : "M") + p[0].toFixed(1) + " " + p[1].toFixed(1);
      });
      if (d) root.append(svg("path", { d, stroke: s.color, fill: "none", class: "line" }));
      pts.forEach((p, i) => {
        if (!p) return;
        const c = svg("circle", { cx: p[0], cy: p[1], r: 2.5, fill: s.color });
        const tip = svg("title");
        tip.textContent = `${labels[i]} · ${s.name}: ${format(s.values[i], true)}`;
        c.append(tip);
        root.append(c);
      });
    }
    target.replaceChildren(root);
  }

  function legend(target, series) {
    target.replaceChildren(...series.map((s) => el("span", { class: "item" },
      swatch(s.color), s.name)));
  }
  function swatch(color) {
    const s = el("span", { class: "swatch" });
    s.style.background = color;
    return s;
  }

  function barList(target, items, label) {
    const max = Math.max(...items.map((i) => i.value), 0) || 1;
    if (!items.length) {
      target.replaceChildren(el("p", { class: "note", text: "No requests in this window." }));
      return;
    }
    const W = Math.max(280, target.clientWidth || 640), row = 26;
    const L = Math.min(170, Math.round(W * 0.36)), R = 70;
    const H = items.length * row + 4;
    const root = svg("svg", { viewBox: `0 0 ${W} ${H}`, width: W, height: H, role: "img",
      "aria-label": label, class: "plot hbar" });
    items.forEach((it, i) => {
      const yy = i * row + 4;
      const name = svg("text", { x: L - 8, y: yy + 15, class: "axis name", "text-anchor": "end" });
      const fit = Math.max(6, Math.floor((L - 10) / 6.5));
      name.textContent = it.name.length > fit ? it.name.slice(0, fit - 1) + "…" : it.name;
      const w = Math.max(1, (W - L - R) * it.value / max);
      const r = svg("rect", { x: L, y: yy + 2, width: w, height: row - 8, fill: COLORS[i % COLORS.length],
        class: "bar" });
      const tip = svg("title");
      tip.textContent = `${it.name}: ${usd(it.value)} · ${num(it.requests)} requests`;
      r.append(tip);
      const v = svg("text", { x: L + w + 6, y: yy + 15, class: "axis" });
      v.textContent = shortUsd(it.value);
      root.append(name, r, v);
    });
    target.replaceChildren(root);
  }

  // ------------------------------------------------------------------ overview

  async function loadOverview() {
    const form = $("#overview-controls");
    const f = Object.fromEntries(new FormData(form));
    const data = await api("/admin/overview" + query({ window: f.window, bucket: f.bucket,
      key: f.key, model: f.model, split: f.split }));
    state.overview = data;
    Object.assign(state.names, data.names || {});
    renderOverview(data, f.split);
  }

  function renderOverview(d, split) {
    const t = d.totals;
    $("#overview-range").textContent = `From ${when(d.since)} UTC to now, per ${d.bucket}` +
      (d.key ? ` · key ${keyName(d.key)}` : "") + (d.model ? ` · model ${d.model}` : "") +
      ". Latency percentiles are read from a histogram (within about 20%).";
    const errRate = t.requests ? ` (${(100 * t.errors / t.requests).toFixed(1)}%)` : "";
    const stat = (label, value, name) => el("div", { class: "stat", "data-stat": name },
      el("span", { class: "label", text: label }), el("strong", { text: value }));
    $("#stats").replaceChildren(
      stat("Spend", usd(t.cost), "spend"),
      stat("Requests", num(t.requests), "requests"),
      stat("Errors", num(t.errors) + errRate, "errors"),
      stat("Tokens", num(t.prompt_tokens + t.completion_tokens), "tokens"),
      stat("p50 latency", ms(t.p50_latency_ms), "p50"),
      stat("p95 latency", ms(t.p95_latency_ms), "p95"));
    const labels = d.buckets.map((b) => bucketLabel(b.start, d.bucket));
    let spend;
    if (split && d.split === split) {
      spend = d.series
        .map((s, i) => ({ name: split === "model" ? s.model : keyName(s.key_id), values: s.cost,
          color: COLORS[i % COLORS.length] }));
    } else {
      spend = [{ name: "spend", values: d.buckets.map((b) => b.cost), color: COLORS[0] }];
    }
    timeChart($("#chart-spend"), labels, spend, (v, exact) => (exact ? usd(v) : shortUsd(v)), "Spend over time");
    legend($("#legend-spend"), spend);
    const reqs = [
      { name: "succeeded", values: d.buckets.map((b) => b.requests - b.errors), color: COLORS[0] },
      { name: "errors", values: d.buckets.map((b) => b.errors), color: COLORS[7] }];
    timeChart($("#chart-requests"), labels, reqs, short, "Requests and errors over time");
    legend($("#legend-requests"), reqs);
    const toks = [
      { name: "prompt", values: d.buckets.map((b) => b.prompt_tokens), color: COLORS[5] },
      { name: "completion", values: d.buckets.map((b) => b.completion_tokens), color: COLORS[1] }];
    timeChart($("#chart-tokens"), labels, toks, short, "Tokens over time");
    legend($("#legend-tokens"), toks);
    const lat = [
      { name: "p50", values: d.buckets.map((b) => b.p50_latency_ms), color: COLORS[2], kind: "line" },
      { name: "p95", values: d.buckets.map((b) => b.p95_latency_ms), color: COLORS[3], kind: "line" }];
    timeChart($("#chart-latency"), labels, lat, (v) => ms(v), "Latency percentiles over time");
    legend($("#legend-latency"), lat);
    barList($("#chart-by-key"), d.by_key.map((k) => ({ name: keyName(k.key_id), value: k.cost,
      requests: k.requests })), "Spend by key");
    barList($("#chart-by-model"), d.by_model.map((m) => ({ name: m.model, value: m.cost,
      requests: m.requests })), "Spend by model");
    const cols = [["Requests", "requests", num], ["Errors", "errors", num],
      ["Prompt tokens", "prompt_tokens", num], ["Completion tokens", "completion_tokens", num],
      ["Spend", "cost", usd], ["p50", "p50_latency_ms", ms], ["p95", "p95_latency_ms", ms]];
    figureTable($("#table-by-key"), "Key", d.by_key.map((k) => [keyName(k.key_id), k]), cols);
    figureTable($("#table-by-model"), "Model", d.by_model.map((m) => [m.model, m]), cols);
    figureTable($("#table-buckets"), d.bucket === "hour" ? "Hour (UTC)" : "Day (UTC)",
      d.buckets.slice().reverse().filter((b) => b.requests).map((b) => [when(b.start), b]), cols,
      [ "Total", t ]);
  }

  function figureTable(table, first, rows, cols, total) {
    const head = el("thead", {}, el("tr", {}, el("th", { scope: "col", text: first }),
      ...cols.map(([label]) => el("th", { scope: "col", class: "num", text: label }))));
    const line = ([name, r], cls) => el("tr", { class: cls }, el("th", { scope: "row", text: name }),
      ...cols.map(([label, field, f]) => el("td", { class: "num", "data-label": label, text: f(r[field]) })));
    const body = el("tbody", {}, rows.length ? rows.map((r) => line(r)) :
      el("tr", {}, el("td", { colspan: cols.length + 1, text: "No requests in this window." })));
    table.replaceChildren(head, body, total ? el("tfoot", {}, line(total, "total")) : "");
  }

  // ------------------------------------------------------------------ keys

  async function loadKeys() {
    const [, alerts] = await Promise.all([loadCatalogs(), api("/admin/alerts")]);
    renderKeys();
    renderAlerts(alerts);
  }

  function renderAlerts(alerts) {
    $("#alerts-note").textContent = alerts.webhook
      ? `Sent to the webhook (SPACEAI_ALERT_WEBHOOK) once per key, threshold and budget period; ` +
        `default thresholds ${alerts.default_thresholds} %.`
      : "Off: set SPACEAI_ALERT_WEBHOOK to have budget alerts sent to a webhook.";
    const head = el("thead", {}, el("tr", {}, ...["Crossed (UTC)", "Key", "Threshold",
      "Spend / budget", "Period", "Delivery"].map((h) => el("th", { scope: "col", text: h }))));
    const rows = alerts.data.map((a) => el("tr", { "data-alert-threshold": String(a.threshold) },
      el("td", { "data-label": "Crossed", text: when(a.created_at) }),
      el("td", { "data-label": "Key", text: a.kind === "daily_report" ? "every key"
        : a.key_name || a.key_id }),
      el("td", { "data-label": "Threshold", text: a.kind === "daily_report" ? "daily report"
        : `${a.threshold} %` }),
      el("td", { "data-label": "Spend / budget", text: a.kind === "daily_report"
        ? `${usd(a.spend)} spent` : `${usd(a.spend)} of ${usd(a.budget)}` }),
      el("td", { "data-label": "Period", text: a.period === "all" ? "lifetime" : a.period }),
      el("td", { "data-label": "Delivery" }, a.sent_at
        ? el("span", { class: "badge ok", text: `sent ${when(a.sent_at).slice(11)}` +
          (a.attempts > 1 ? ` (${a.attempts} attempts)` : "") })
        : el("span", { class: "badge " + (a.last_error ? "error" : "refused"),
          text: a.last_error ? `failed ×${a.attempts}: ${a.last_error}` : "sending" }))));
    $("#table-alerts").replaceChildren(head, el("tbody", {}, rows.length ? rows :
      el("tr", {}, el("td", { colspan: 6, text: "No alerts yet." }))));
  }

  function limitText(k) {
    const parts = [];
    if (k.rpm) parts.push(`${num(k.rpm)} rpm`);
    if (k.tpm) parts.push(`${num(k.tpm)} tpm`);
    return parts.join(" · ") || "none";
  }

  function budgetCell(k) {
    if (k.budget === null) return el("td", { "data-label": "Spend / budget" }, usd(k.spend),
      el("span", { class: "note", text: " (no budget)" }));
    const frac = k.budget > 0 ? Math.min(1, k.spend / k.budget) : 1;
    const meter = el("span", { class: "meter" + (frac >= 1 ? " full" : frac >= 0.8 ? " high" : ""),
      role: "meter", "aria-valuemin": "0", "aria-valuemax": String(k.budget),
      "aria-valuenow": String(k.spend), "aria-label": "spend against budget" });
    const fill = el("span", { class: "fill" });
    fill.style.width = (frac * 100).toFixed(1) + "%";
    meter.append(fill);
    return el("td", { "data-label": "Spend / budget" }, meter,
      el("span", { class: "budget-text", text: `${usd(k.spend)} of ${usd(k.budget)}` +
        (k.budget_period ? ` (${k.budget_period})` : "") }));
  }

  function renderKeys() {
    const table = $("#table-keys");
    const head = el("thead", {}, el("tr", {}, ...["Key", "Models", "Spend / budget", "Limits",
      "Expires", "Last used", "Status", ""].map((h) => el("th", { scope: "col", text: h }))));
    const now = Date.now();
    const rows = state.keys.slice().reverse().map((k) => {
      const expired = k.expires_at && Date.parse(k.expires_at) <= now;
      const status = k.revoked ? "revoked" : expired ? "expired" : "active";
      return el("tr", { "data-key-id": k.id, class: status },
        el("th", { scope: "row" }, el("span", { class: "key-name", text: k.name || "(unnamed)" }),
          el("br"), el("code", { text: k.prefix + "…" }), " ", el("span", { class: "note", text: k.id })),
        el("td", { "data-label": "Models", text: k.models ? k.models.join(", ") : "all" }),
        budgetCell(k),
        el("td", { "data-label": "Limits", text: limitText(k) }),
        el("td", { "data-label": "Expires", text: k.expires_at ? when(k.expires_at) : "never" }),
        el("td", { "data-label": "Last used", text: when(k.last_used_at) }),
        el("td", { "data-label": "Status" }, el("span", { class: "badge " + status, text: status })),
        el("td", { class: "row-actions" }, k.revoked ? "" : [
          el("button", { type: "button", class: "ghost", "data-edit": k.id, text: "Edit",
            "aria-label": `Edit ${k.name || k.id}`, onclick: () => openKeyDialog(k) }),
          el("button", { type: "button", class: "danger", "data-revoke": k.id, text: "Revoke",
            "aria-label": `Revoke ${k.name || k.id}`, onclick: () => revokeKey(k) })]));
    });
    table.replaceChildren(head, el("tbody", {}, rows.length ? rows :
      el("tr", {}, el("td", { colspan: 8, text: "No keys yet: create one." }))));
  }

  let editing = null;

  function openKeyDialog(k) {
    editing = k || null;
    const form = $("#key-form");
    form.reset();
    $("#key-form-error").textContent = "";
    $("#key-dialog-title").textContent = k ? `Edit ${k.name || k.id}` : "New key";
    $("#key-save").textContent = k ? "Save" : "Create";
    $("#key-models").replaceChildren(...state.models.map((m) => el("label", { class: "check" },
      el("input", { type: "checkbox", name: "models", value: m.id,
        checked: k && k.models ? k.models.includes(m.id) : false }), m.id)));
    if (k) {
      form.elements.name.value = k.name || "";
      form.elements.budget.value = k.budget ?? "";
      form.elements.rpm.value = k.rpm ?? "";
      form.elements.tpm.value = k.tpm ?? "";
      form.elements.expires.value = k.expires_at || "";
      form.elements.alerts.value = (k.alert_thresholds || []).join(",");
    }
    $("#key-dialog").showModal();
    form.elements.name.focus();
  }

  async function saveKey(event) {
    event.preventDefault();
    const form = $("#key-form");
    const f = form.elements;
    const models = $$("input[name=models]:checked", form).map((c) => c.value);
    const numberOrNull = (v, int) => (v.trim() === "" ? null : int ? parseInt(v, 10) : Number(v));
    const body = { name: f.name.value.trim() || null, models: models.length ? models : null,
      budget: numberOrNull(f.budget.value), rpm: numberOrNull(f.rpm.value, true),
      tpm: numberOrNull(f.tpm.value, true) };
    const expires = f.expires.value.trim();
    const alerts = f.alerts.value.trim();
    try {
      if (editing) {
        if (alerts !== (editing.alert_thresholds || []).join(",")) body.alert_thresholds = alerts || null;
        if (expires !== (editing.expires_at || "")) body.expires_at = expires || null;
        await api(`/admin/keys/${encodeURIComponent(editing.id)}`, { method: "PATCH", body });
        $("#key-dialog").close();
        toast("Key updated: the new limits hold from its next request.");
      } else {
        for (const k of Object.keys(body)) if (body[k] === null) delete body[k];
        if (expires) body.expires = expires;
        const created = await api("/admin/keys", { method: "POST", body });
        if (alerts) {
          await api(`/admin/keys/${encodeURIComponent(created.id)}`, { method: "PATCH",
            body: { alert_thresholds: alerts } });
        }
        $("#key-dialog").close();
        $("#secret-value").textContent = created.key;
        $("#copy-status").textContent = "";
        $("#secret-dialog").showModal();
        $("#copy-secret").focus();
      }
      await loadKeys();
    } catch (e) {
      if (!(e instanceof SignedOut)) $("#key-form-error").textContent = e.message;
    }
  }

  async function revokeKey(k) {
    if (!confirm(`Revoke ${k.name || k.id}? Every request with it is refused within a second.`)) return;
    try {
      await api(`/admin/keys/${encodeURIComponent(k.id)}`, { method: "DELETE" });
      toast(`Revoked ${k.name || k.id}.`);
      await loadKeys();
    } catch (e) { report(e); }
  }

  async function copySecret() {
    const text = $("#secret-value").textContent;
    try {
      await navigator.clipboard.writeText(text);
      $("#copy-status").textContent = "Copied.";
    } catch {
      const range = document.createRange();
      range.selectNodeContents($("#secret-value"));
      const sel = getSelection();
      sel.removeAllRanges();
      sel.addRange(range);
      $("#copy-status").textContent = "Selected: press Ctrl+C (⌘C) to copy.";
    }
  }

  // ------------------------------------------------------------------ request log

  function utcParam(local) {
    return local ? new Date(local + "Z").toISOString() : "";
  }

  async function loadRequests(more) {
    const f = Object.fromEntries(new FormData($("#request-filters")));
    const data = await api("/admin/requests" + query({ key: f.key, model: f.model, status: f.status,
      since: utcParam(f.since), until: utcParam(f.until), before: more ? state.next : "",
      limit: 50 }));
    state.requests = more ? state.requests.concat(data.data) : data.data;
    state.next = data.next_before;
    $("#requests-more").hidden = !data.has_more;
    renderRequests();
  }

  function statusBadge(r) {
    // refused and invalid requests are the client's to fix; the other failures are upstream's or ours
    const cls = r.status === "ok" ? "ok"
      : r.status === "refused" || r.status === "invalid_request" ? "refused" : "error";
    return el("span", { class: "badge " + cls, text: `${r.http_status} ${r.status}` });
  }

  // the model asked for, and the one that served when a fallback did ("asked → served")
  function modelCell(r) {
    const asked = r.model_requested;
    if (!r.model) return el("td", { "data-label": "Model", text: asked || "—" });
    if (!asked || asked === r.model) return el("td", { "data-label": "Model", text: r.model });
    return el("td", { "data-label": "Model", "data-served-by": r.model,
      title: `asked for ${asked}, served by ${r.model}` }, asked, el("span", { class: "served",
      text: ` → ${r.model}` }));
  }

  // retries and fallbacks taken ("—" for rows from before they were recorded)
  function routing(r) {
    if (r.retries === null || r.retries === undefined) return "—";
    return `${r.retries} / ${r.fallbacks}`;
  }

  function renderRequests() {
    const cols = ["Time (UTC)", "Key", "Model", "Endpoint", "Status", "Tokens in / out", "Cost",
      "Latency", "TTFT", "Upstream", "Overhead", "Retries / fallbacks"];
    const head = el("thead", {}, el("tr", {}, ...cols.map((h) => el("th", { scope: "col",
      class: /Tokens|Cost|Latency|TTFT|Upstream|Overhead|Retries/.test(h) ? "num" : null,
      text: h }))));
    const rows = state.requests.map((r, i) => el("tr", { tabindex: "0", "data-request-id": r.request_id,
      "aria-label": `Request ${r.request_id}: open details`,
      onclick: () => openRequest(i), onkeydown: (e) => rowKeys(e, i) },
    el("td", { "data-label": "Time", class: "when" }, ...when(r.created_at).split(" ").map(
      (part) => el("span", { text: part + " " }))),
    el("td", { "data-label": "Key", text: r.key_id ? (r.key_name || r.key_id) : "(no key)" }),
    modelCell(r),
    el("td", { "data-label": "Endpoint", text: r.endpoint }),
    el("td", { "data-label": "Status" }, statusBadge(r)),
    el("td", { class: "num", "data-label": "Tokens", "data-tokens": "",
      text: `${num(r.prompt_tokens)} / ${num(r.completion_tokens)}` }),
    el("td", { class: "num", "data-label": "Cost", "data-cost": "", text: usd(r.cost) }),
    el("td", { class: "num", "data-label": "Latency", text: ms(r.latency_ms) }),
    el("td", { class: "num", "data-label": "TTFT", text: ms(r.ttft_ms) }),
    el("td", { class: "num", "data-label": "Upstream", "data-upstream": "",
      title: "spent on upstreams: every attempt, the backoff between them, a stream to its end",
      text: ms(r.upstream_ms) }),
    el("td", { class: "num", "data-label": "Overhead", "data-overhead": "",
      title: "the gateway's own share of the latency", text: ms(r.overhead_ms) }),
    el("td", { class: "num", "data-label": "Retries / fallbacks", "data-routing": "",
      text: routing(r) })));
    $("#table-requests").replaceChildren(head, el("tbody", {}, rows.length ? rows :
      el("tr", {}, el("td", { colspan: cols.length, text: "No requests match." }))));
  }

  function rowKeys(e, i) {
    const rows = $$("#table-requests tbody tr[tabindex]");
    if (e.key === "Enter" || e.key === " ") { e.preventDefault(); openRequest(i); }
    else if (e.key === "ArrowDown" || e.key === "j") { e.preventDefault(); rows[Math.min(i + 1, rows.length - 1)].focus(); }
    else if (e.key === "ArrowUp" || e.key === "k") { e.preventDefault(); rows[Math.max(i - 1, 0)].focus(); }
  }

  function openRequest(i) {
    const r = state.requests[i];
    const fmt = { cost: usd, latency_ms: ms, ttft_ms: ms, upstream_ms: ms, overhead_ms: ms,
      created_at: (v) => when(v) + " UTC" };
    const dl = $("#request-details");
    dl.replaceChildren(...Object.entries(r).flatMap(([k, v]) => [
      el("dt", { text: k }),
      el("dd", { "data-field": k, text: v === null ? "—" : fmt[k] ? fmt[k](v) : String(v) })]));
    $("#request-title").textContent = `Request ${r.request_id}`;
    $("#request-dialog").showModal();
    // bodies, when the operator logs them (SPACEAI_LOG_BODIES or the key's log_bodies)
    api(`/admin/requests/${encodeURIComponent(r.request_id)}/bodies`).then((b) => {
      if (!b.logged || $("#request-title").textContent !== `Request ${r.request_id}`) return;
      for (const part of ["request", "response"]) {
        if (b[part] === null || b[part] === undefined) continue;
        let text = b[part];
        try { text = JSON.stringify(JSON.parse(text), null, 2); } catch (e) { /* streamed text */ }
        dl.append(el("dt", { text: part + " body" }),
          el("dd", { "data-field": part + "_body" }, el("pre", { class: "body", text })));
      }
    }).catch(() => { /* none logged for this request */ });
  }

  // ------------------------------------------------------------------ models

  function modelStatus(m) {
    if (!m.configured) return el("span", { class: "badge refused", text: `needs ${m.missing}` });
    const cooling = (m.deployments || []).filter((d) => d.cooling_down_s > 0);
    if (cooling.length === (m.deployments || []).length && cooling.length) {
      return el("span", { class: "badge refused",
        text: `cooling down ${Math.max(...cooling.map((d) => d.cooling_down_s))} s` });
    }
    if (cooling.length) {
      return el("span", { class: "badge", text: `${cooling.length} cooling down` });
    }
    return el("span", { class: "badge ok", text: "ready" });
  }

  async function renderModels() {
    await loadCatalogs();
    const per1k = (p) => (p === undefined || p === null ? "—" : usd(p * 1000));
    const head = el("thead", {}, el("tr", {}, ...["Model", "Provider", "Capabilities",
      "Input $/1K", "Output $/1K", "Context", "Fallbacks", "Deployments", "Status"].map((h) =>
      el("th", { scope: "col", text: h }))));
    const rows = state.models.map((m) => el("tr", { "data-model-id": m.id },
      el("th", { scope: "row" }, el("code", { text: m.id })),
      el("td", { "data-label": "Provider", text: m.provider }),
      el("td", { "data-label": "Capabilities" }, ...(m.capabilities || []).map((c) =>
        el("span", { class: "chip", text: c }))),
      el("td", { class: "num", "data-label": "Input $/1K", text: per1k(m.pricing && m.pricing.input) }),
      el("td", { class: "num", "data-label": "Output $/1K", text: per1k(m.pricing && m.pricing.output) }),
      el("td", { class: "num", "data-label": "Context", text: m.context_window ? num(m.context_window) : "—" }),
      el("td", { "data-label": "Fallbacks", text: (m.fallbacks || []).join(", ") || "—" }),
      el("td", { "data-label": "Deployments" }, ...(m.deployments || []).map((d) =>
        el("div", { class: "deployment", "data-deployment": d.upstream || "in-process",
          text: `${d.upstream || "in-process"}: ${d.in_flight} in flight` +
            (d.recent_error_rate === null ? "" :
              `, ${Math.round(d.recent_error_rate * 100)}% errors of last ${d.recent_attempts}`) }))),
      el("td", { "data-label": "Status" }, modelStatus(m))));
    $("#table-models").replaceChildren(head, el("tbody", {}, rows));
  }

  // ------------------------------------------------------------------ wiring

  function typing(e) {
    const t = e.target;
    return t instanceof HTMLInputElement || t instanceof HTMLSelectElement ||
      t instanceof HTMLTextAreaElement || document.querySelector("dialog[open]");
  }

  document.addEventListener("DOMContentLoaded", () => {
    $("#signin-form").addEventListener("submit", async (e) => {
      e.preventDefault();
      const key = $("#admin-key").value.trim();
      if (await signIn(key)) $("#admin-key").value = "";
    });
    $("#signout").addEventListener("click", () => signOut(""));
    for (const a of $$("#nav a")) a.addEventListener("click", (e) => {
      e.preventDefault();
      show(a.dataset.view);
    });
    window.addEventListener("hashchange", () => show(location.hash.slice(1)));
    let resized = null;
    window.addEventListener("resize", () => {
      clearTimeout(resized);
      resized = setTimeout(() => {
        if (state.overview && !$("#view-overview").hidden) {
          renderOverview(state.overview, $("#overview-controls").elements.split.value);
        }
      }, 150);
    });
    $("#overview-controls").addEventListener("change", () => loadOverview().catch(report));
    $("#overview-controls").addEventListener("submit", (e) => e.preventDefault());
    $("#request-filters").addEventListener("change", () => loadRequests(false).catch(report));
    $("#request-filters").addEventListener("submit", (e) => e.preventDefault());
    $("#requests-refresh").addEventListener("click", () => loadRequests(false).catch(report));
    $("#requests-more").addEventListener("click", () => loadRequests(true).catch(report));
    $("#new-key").addEventListener("click", () => openKeyDialog(null));
    $("#key-form").addEventListener("submit", saveKey);
    $("#copy-secret").addEventListener("click", copySecret);
    for (const b of $$("dialog [data-close]")) b.addEventListener("click", () => b.closest("dialog").close());
    $("#secret-dialog").addEventListener("close", () => { $("#secret-value").textContent = ""; });
    document.addEventListener("keydown", (e) => {
      if (e.ctrlKey || e.metaKey || e.altKey || typing(e) || !sessionStorage.getItem(STORE)) return;
      const view = { 1: "overview", 2: "keys", 3: "requests", 4: "models" }[e.key];
      if (view) { e.preventDefault(); show(view); $("#view-" + view + " h1").focus(); }
      else if (e.key === "n" && !$("#view-keys").hidden) { e.preventDefault(); openKeyDialog(null); }
      else if (e.key === "r") { e.preventDefault(); show(location.hash.slice(1)); }
    });
    for (const h of $$(".view h1")) h.setAttribute("tabindex", "-1");
    const saved = sessionStorage.getItem(STORE);
    if (saved) signIn(saved);
    else $("#admin-key").focus();
  });
})();
