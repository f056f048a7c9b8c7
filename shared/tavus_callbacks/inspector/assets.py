"""The page's one stylesheet and one script, inlined in every page and allowed by their hash alone.

The script polls the page's JSON endpoint and rebuilds the tables, fields and transcript from it with
`textContent`: data never reaches an HTML parser in the browser (the CSP enforces it with Trusted Types).
"""

from __future__ import annotations

import base64
import hashlib

STYLE = """
:root { color-scheme: light dark; --line: #8884; --soft: #8881; --new: #f5c54266; --bad: #c0392b; }
body { font: 14px/1.45 system-ui, sans-serif; margin: 0 auto; padding: 0 1.5rem 3rem; max-width: 90rem; }
header { display: flex; flex-wrap: wrap; align-items: baseline; gap: .4rem 1.5rem; padding: 1rem 0 .5rem;
         border-bottom: 1px solid var(--line); }
h1 { font-size: 1.2rem; margin: 0; } h1 a { color: inherit; text-decoration: none; }
h2 { font-size: 1.05rem; margin: 1.6rem 0 .3rem; }
.where, .note { color: GrayText; margin: 0; }
#live { margin: 0 0 0 auto; font-size: .9rem; } #live.bad { color: var(--bad); }
table { border-collapse: collapse; width: 100%; margin-top: .4rem; }
th, td { text-align: left; vertical-align: top; padding: .25rem .6rem .25rem 0; border-bottom: 1px solid var(--line); }
th { font-weight: 600; font-size: .85rem; color: GrayText; }
td { overflow-wrap: anywhere; }
td:first-child, .when { font-family: ui-monospace, monospace; font-size: .85rem; white-space: nowrap; }
tr.new > td { animation: arrived 6s ease-out; }
@keyframes arrived { from { background: var(--new); } to { background: transparent; } }
tr.payload > td { background: var(--soft); padding: .4rem; }
pre { margin: 0; white-space: pre-wrap; overflow-wrap: anywhere; font: .85rem/1.4 ui-monospace, monospace; }
button { font: inherit; font-size: .8rem; cursor: pointer; }
dl { display: grid; grid-template-columns: max-content 1fr; gap: .15rem 1.2rem; margin: .6rem 0; }
dt { font-weight: 600; grid-column: 1; } dd { margin: 0; grid-column: 2; overflow-wrap: anywhere; }
ol.turns { list-style: none; padding: 0; margin: .4rem 0; }
ol.turns li { padding: .3rem 0; border-bottom: 1px solid var(--line); }
ol.turns .who { font-weight: 600; margin-right: .6rem; } ol.turns .when { color: GrayText; }
ol.turns li[data-role="user"] .who { color: #2e7d32; } ol.turns li[data-role="assistant"] .who { color: #1565c0; }
ol.turns p { margin: .1rem 0 0; white-space: pre-wrap; }
#perception { padding: .5rem; background: var(--soft); }
"""

SCRIPT = """
"use strict";
(() => {
  const main = document.querySelector("main[data-api]");
  if (!main) return;
  const status = document.getElementById("live");
  const every = Number(main.dataset.poll) || 2000;
  let version = main.dataset.version;
  const seen = new Set(), open = new Set(), payloads = new Map();
  for (const tr of document.querySelectorAll("tbody tr[data-id]")) {
    seen.add(tr.closest("tbody").id + " " + tr.dataset.id);
  }

  function el(tag, text, className) {
    const node = document.createElement(tag);
    if (text !== undefined && text !== null) node.textContent = String(text);
    if (className) node.className = className;
    return node;
  }
  function say(text, bad) { status.textContent = text; status.classList.toggle("bad", Boolean(bad)); }

  function row(table, r) {
    const tr = el("tr");
    tr.dataset.id = r.id;
    r.cells.forEach((text, i) => {
      const td = el("td");
      if (i === r.link && typeof r.href === "string" && r.href.startsWith("/_/")) {
        const a = el("a", text);
        a.href = r.href;
        td.append(a);
      } else {
        td.textContent = text;
      }
      tr.append(td);
    });
    if (r.key) {
      tr.dataset.key = r.key;
      const button = el("button", open.has(r.key) ? "hide" : "payload", "show");
      button.type = "button";
      const td = el("td");
      td.append(button);
      tr.append(td);
    }
    const mark = table + " " + r.id;
    if (!seen.has(mark)) { tr.classList.add("new"); seen.add(mark); }
    return tr;
  }
  function payloadRow(tr) {
    const p = el("tr", null, "payload"), td = el("td"), key = tr.dataset.key;
    td.colSpan = tr.children.length;
    td.append(el("pre", payloads.has(key) ? payloads.get(key) : "loading..."));
    p.append(td);
    return p;
  }
  function fill(tbody, rows) {
    const nodes = [];
    for (const r of rows) {
      const tr = row(tbody.id, r);
      nodes.push(tr);
      if (r.key && open.has(r.key)) nodes.push(payloadRow(tr));
    }
    tbody.replaceChildren(...nodes);
  }
  function fields(dl, list) {
    const nodes = [];
    for (const [label, lines] of list) {
      nodes.push(el("dt", label));
      for (const line of lines) nodes.push(el("dd", line));
    }
    dl.replaceChildren(...nodes);
  }
  function turns(ol, list) {
    ol.replaceChildren(...list.map(([role, when, text]) => {
      const li = el("li");
      li.dataset.role = role;
      li.append(el("span", role, "who"), el("span", when, "when"), el("p", text));
      return li;
    }));
  }
  function render(data) {
    for (const [name, rows] of Object.entries(data.tables || {})) {
      const tbody = document.getElementById(name);
      if (tbody) fill(tbody, rows);
    }
    for (const [name, text] of Object.entries(data.notes || {})) {
      const note = document.getElementById("note-" + name);
      if (note) note.textContent = text;
    }
    const dl = document.getElementById("fields"), ol = document.getElementById("turns");
    const perception = document.getElementById("perception");
    if (dl && data.fields) fields(dl, data.fields);
    if (ol && data.turns) turns(ol, data.turns);
    if (perception && "perception" in data) perception.textContent = data.perception;
  }

  async function showPayload(tr, button) {
    const key = tr.dataset.key, next = tr.nextElementSibling;
    if (next && next.classList.contains("payload")) {
      next.remove();
      open.delete(key);
      button.textContent = "payload";
      return;
    }
    open.add(key);
    button.textContent = "hide";
    const shown = payloadRow(tr);
    tr.after(shown);
    if (payloads.has(key)) return;
    let text;
    try {
      const answer = await fetch("/_/api/event?key=" + encodeURIComponent(key), {cache: "no-store"});
      if (!answer.ok) throw new Error("HTTP " + answer.status);
      const doc = await answer.json();
      const payload = doc && doc.data && "payload" in doc.data ? doc.data.payload : doc;
      text = JSON.stringify(payload, null, 2) + "\\n\\nstored as " + key;
      payloads.set(key, text);
    } catch (error) {
      text = "could not load the payload: " + error.message;
    }
    for (const p of document.querySelectorAll("tr.payload")) {
      const above = p.previousElementSibling;
      if (above && above.dataset.key === key) p.querySelector("pre").textContent = text;
    }
  }
  document.addEventListener("click", (event) => {
    const button = event.target.closest("button.show");
    if (button) showPayload(button.closest("tr"), button);
  });

  async function poll() {
    try {
      const answer = await fetch(main.dataset.api + "?version=" + encodeURIComponent(version), {cache: "no-store"});
      if (answer.status === 401) { say("signed out: open the inspector's URL with ?token= again", true); return; }
      if (!answer.ok) throw new Error("HTTP " + answer.status);
      const data = await answer.json();
      if (data.version !== version) { render(data); version = data.version; main.dataset.version = version; }
      say("live, checked " + new Date().toLocaleTimeString());
    } catch (error) {
      say("cannot reach the server (" + error.message + "); retrying", true);
    }
    setTimeout(poll, every);
  }
  say("live");
  setTimeout(poll, every);
})();
"""


def _source(text: str) -> str:
    """A CSP source expression allowing exactly this inline text."""
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


CONTENT_SECURITY_POLICY = "; ".join((
    "default-src 'none'",
    f"script-src {_source(SCRIPT)}",
    f"style-src {_source(STYLE)}",
    "connect-src 'self'",
    "img-src data:",
    "base-uri 'none'",
    "form-action 'none'",
    "frame-ancestors 'none'",
    "require-trusted-types-for 'script'",
    "trusted-types 'none'",
))
