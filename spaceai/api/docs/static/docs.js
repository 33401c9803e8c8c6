/* SpaceAI docs: code tabs (ARIA tabs pattern), copy buttons, syntax colours, mobile nav. */
(function () {
  "use strict";

  var LANG_KEY = "spaceai.docs.lang";

  function storedLang() {
    try { return window.localStorage.getItem(LANG_KEY); } catch (e) { return null; }
  }
  function storeLang(lang) {
    try { window.localStorage.setItem(LANG_KEY, lang); } catch (e) { /* storage disabled */ }
  }

  /* ---------- tabs ---------- */
  var groups = [];
  var uid = 0;

  function selectTab(group, lang, focus) {
    group.tabs.forEach(function (tab, i) {
      var on = tab.getAttribute("data-lang") === lang;
      tab.setAttribute("aria-selected", on ? "true" : "false");
      tab.tabIndex = on ? 0 : -1;
      group.panels[i].hidden = !on;
      if (on && focus) tab.focus();
    });
  }

  function selectEverywhere(lang) {
    groups.forEach(function (g) {
      if (g.tabs.some(function (t) { return t.getAttribute("data-lang") === lang; })) selectTab(g, lang, false);
    });
    storeLang(lang);
  }

  function initTabs(root) {
    var tabs = Array.prototype.slice.call(root.querySelectorAll('[role="tab"]'));
    var panels = tabs.map(function (tab) {
      return root.querySelector('[role="tabpanel"][data-lang="' + tab.getAttribute("data-lang") + '"]');
    });
    var group = { root: root, tabs: tabs, panels: panels };
    tabs.forEach(function (tab, i) {
      var n = ++uid;
      tab.id = "tab-" + n;
      panels[i].id = "tabpanel-" + n;
      tab.setAttribute("aria-controls", panels[i].id);
      panels[i].setAttribute("aria-labelledby", tab.id);
      panels[i].tabIndex = 0;
      tab.addEventListener("click", function () {
        var lang = tab.getAttribute("data-lang");
        var top = tab.getBoundingClientRect().top;
        selectEverywhere(lang);
        // keep the clicked tab where it was although other groups changed height
        window.scrollBy(0, tab.getBoundingClientRect().top - top);
      });
      tab.addEventListener("keydown", function (ev) {
        var j = null;
        if (ev.key === "ArrowRight") j = (i + 1) % tabs.length;
        else if (ev.key === "ArrowLeft") j = (i - 1 + tabs.length) % tabs.length;
        else if (ev.key === "Home") j = 0;
        else if (ev.key === "End") j = tabs.length - 1;
        if (j === null) return;
        ev.preventDefault();
        selectTab(group, tabs[j].getAttribute("data-lang"), true);
        storeLang(tabs[j].getAttribute("data-lang"));
      });
    });
    var bar = root.querySelector(".codetabs-bar");
    bar.appendChild(copyButton(function () {
      for (var k = 0; k < panels.length; k++) if (!panels[k].hidden) return panels[k].textContent;
      return "";
    }, "Copy code"));
    groups.push(group);
    selectTab(group, tabs[0].getAttribute("data-lang"), false);
  }

  /* ---------- copy ---------- */
  function copyText(text) {
    if (navigator.clipboard && window.isSecureContext) {
      return navigator.clipboard.writeText(text);
    }
    return new Promise(function (resolve, reject) {
      var ta = document.createElement("textarea");
      ta.value = text;
      ta.setAttribute("readonly", "");
      ta.style.position = "fixed";
      ta.style.opacity = "0";
      document.body.appendChild(ta);
      ta.select();
      var ok = false;
      try { ok = document.execCommand("copy"); } catch (e) { ok = false; }
      document.body.removeChild(ta);
      if (ok) resolve(); else reject(new Error("copy failed"));
    });
  }

  function copyButton(getText, label) {
    var btn = document.createElement("button");
    btn.type = "button";
    btn.className = "copy-btn";
    btn.textContent = "Copy";
    btn.setAttribute("aria-label", label);
    btn.addEventListener("click", function () {
      copyText(getText()).then(function () {
        btn.textContent = "Copied";
      }, function () {
        btn.textContent = "Select to copy";
      }).then(function () {
        setTimeout(function () { btn.textContent = "Copy"; }, 1600);
      });
    });
    return btn;
  }

  /* ---------- syntax colours ---------- */
  var RULES = {
    json: /("(?:[^"\\]|\\.)*")(\s*:)?|(-?\b\d+(?:\.\d+)?(?:[eE][+-]?\d+)?\b)|\b(true|false|null)\b/g,
    sse: /("(?:[^"\\]|\\.)*")(\s*:)?|(-?\b\d+(?:\.\d+)?(?:[eE][+-]?\d+)?\b)|\b(true|false|null)\b|^(data:)/gm,
    bash: /(#[^\n]*)|('(?:[^'])*'|"(?:[^"\\]|\\.)*")|(^|\s)(curl|export|spaceai)\b|(\s-{1,2}[A-Za-z][\w-]*)/gm,
    python: /(#[^\n]*)|("(?:[^"\\\n]|\\.)*"|'(?:[^'\\\n]|\\.)*')|\b(import|from|as|for|in|if|try|except|print|True|False|None|def|return|with|end)\b|(\b\d+(?:\.\d+)?\b)/g,
    javascript: /(\/\/[^\n]*)|("(?:[^"\\\n]|\\.)*"|'(?:[^'\\\n]|\\.)*'|`(?:[^`\\]|\\.)*`)|\b(import|from|const|let|await|for|of|if|new|return|async|true|false|null)\b|(\b\d+(?:\.\d+)?\b)/g
  };

  function esc(s) {
    return s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
  }
  function span(cls, s) { return '<span class="' + cls + '">' + esc(s) + "</span>"; }

  function highlight(code) {
    var m = /lang-(\w+)/.exec(code.className);
    var lang = m && m[1];
    var re = RULES[lang];
    if (!re) return;
    var src = code.textContent;
    var out = "";
    var last = 0;
    src.replace(re, function (match) {
      var g = Array.prototype.slice.call(arguments, 1, -2);
      var offset = arguments[arguments.length - 2];
      out += esc(src.slice(last, offset));
      last = offset + match.length;
      if (lang === "json" || lang === "sse") {
        if (g[0]) out += span(g[1] ? "tok-key" : "tok-str", g[0]) + esc(g[1] || "");
        else if (g[2]) out += span("tok-num", g[2]);
        else if (g[3]) out += span("tok-lit", g[3]);
        else if (g[4]) out += span("tok-kw", g[4]);
        else out += esc(match);
      } else if (lang === "bash") {
        if (g[0]) out += span("tok-com", g[0]);
        else if (g[1]) out += span("tok-str", g[1]);
        else if (g[3]) out += esc(g[2]) + span("tok-kw", g[3]);
        else if (g[4]) out += span("tok-key", g[4]);
        else out += esc(match);
      } else {
        if (g[0]) out += span("tok-com", g[0]);
        else if (g[1]) out += span("tok-str", g[1]);
        else if (g[2]) out += span("tok-kw", g[2]);
        else if (g[3]) out += span("tok-num", g[3]);
        else out += esc(match);
      }
      return match;
    });
    out += esc(src.slice(last));
    code.innerHTML = out;
  }
  window.SpaceAIDocs = { highlight: highlight, copyText: copyText };

  /* ---------- navigation ---------- */
  function initNav() {
    var toggle = document.getElementById("menu-toggle");
    var nav = document.getElementById("sidebar");
    if (!toggle || !nav) return;
    function setOpen(open) {
      toggle.setAttribute("aria-expanded", open ? "true" : "false");
      nav.classList.toggle("collapsed", !open);
    }
    setOpen(false);
    toggle.addEventListener("click", function () {
      setOpen(toggle.getAttribute("aria-expanded") !== "true");
    });
    nav.addEventListener("click", function (ev) {
      if (ev.target.closest("a")) setOpen(false);
    });
    document.addEventListener("keydown", function (ev) {
      if (ev.key === "Escape" && toggle.getAttribute("aria-expanded") === "true") {
        setOpen(false);
        toggle.focus();
      }
    });

    // highlight the section being read
    var links = Array.prototype.slice.call(nav.querySelectorAll('a[href^="#"]'));
    var byId = {};
    links.forEach(function (a) { byId[a.getAttribute("href").slice(1)] = a; });
    if (!("IntersectionObserver" in window)) return;
    var visible = {};
    var observer = new IntersectionObserver(function (entries) {
      entries.forEach(function (e) { visible[e.target.id] = e.isIntersecting; });
      var current = null;
      for (var i = 0; i < links.length; i++) {
        var id = links[i].getAttribute("href").slice(1);
        if (visible[id]) current = id;
      }
      if (!current) return;
      links.forEach(function (a) {
        if (a.getAttribute("href") === "#" + current) a.setAttribute("aria-current", "true");
        else a.removeAttribute("aria-current");
      });
    }, { rootMargin: "-64px 0px -55% 0px" });
    Object.keys(byId).forEach(function (id) {
      var el = document.getElementById(id);
      if (el) observer.observe(el);
    });
  }

  function init() {
    Array.prototype.forEach.call(document.querySelectorAll("pre code[class*=lang-]"), highlight);
    Array.prototype.forEach.call(document.querySelectorAll(".codetabs"), initTabs);
    Array.prototype.forEach.call(document.querySelectorAll(".codeblock"), function (block) {
      var pre = block.querySelector("pre");
      if (pre.id === "pg-curl") return;
      block.appendChild(copyButton(function () { return pre.textContent; }, "Copy code"));
    });
    var lang = storedLang();
    if (lang) selectEverywhere(lang);
    initNav();
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", init);
  else init();
})();
