// RadLlama assistant page: plain JS against the server's own API (no libraries, no CDN).
"use strict";

const $ = (id) => document.getElementById(id);
let history = [];

function headers() {
  const h = { "Content-Type": "application/json" };
  const key = $("api-key").value.trim();
  if (key) h.Authorization = `Bearer ${key}`;
  return h;
}

function maxTokens() {
  const n = parseInt($("max-tokens").value, 10);
  return Number.isFinite(n) && n > 0 ? n : 128;
}

async function errorText(resp) {
  try {
    const body = await resp.json();
    return body.error ? body.error.message : `HTTP ${resp.status}`;
  } catch {
    return `HTTP ${resp.status}`;
  }
}

function showTab(name) {
  for (const t of ["impression", "chat"]) {
    $(`tab-${t}`).setAttribute("aria-selected", String(t === name));
    $(`view-${t}`).hidden = t !== name;
  }
  (name === "chat" ? $("chat-input") : $("findings")).focus();
}

async function generateImpression() {
  const findings = $("findings").value.trim();
  const status = $("impression-status");
  status.className = "status";
  if (!findings) {
    status.textContent = "Enter the findings first.";
    status.classList.add("error");
    return;
  }
  $("generate").disabled = true;
  status.textContent = "Generating…";
  const started = performance.now();
  try {
    const resp = await fetch("/v1/impressions", {
      method: "POST", headers: headers(), body: JSON.stringify({ findings: [findings], max_tokens: maxTokens() }),
    });
    if (!resp.ok) throw new Error(await errorText(resp));
    const body = await resp.json();
    $("impression").textContent = body.impressions[0] || "(empty answer)";
    showProblems(body);
    const secs = ((performance.now() - started) / 1000).toFixed(1);
    $("impression-meta").textContent = `${body.model} · ${body.usage.completion_tokens} tokens · ${secs} s`;
    $("impression-panel").hidden = false;
    status.textContent = "";
  } catch (err) {
    status.textContent = err.message;
    status.classList.add("error");
  } finally {
    $("generate").disabled = false;
  }
}

// The server's consistency check of the impression (omitted / unsupported / wrong-side findings, hedged
// findings dropped or asserted: radllama.consistency.FIELDS).
const PROBLEMS = {
  omitted: (names) => `Omitted: the findings state ${names}; the impression does not.`,
  unsupported: (names) => `Unsupported: the impression states ${names}; the findings do not.`,
  side_mismatch: (names) => `Wrong side: the impression puts ${names} on another side than the findings.`,
  hedge_dropped: (names) => `Hedge dropped: the findings raise the possibility of ${names}; the impression does not mention it.`,
  hedge_asserted: (names) => `Hedge asserted: the impression states ${names} as certain; the findings only raise the possibility.`,
};

function showProblems(body) {
  const list = $("impression-problems");
  list.replaceChildren();
  for (const [key, sentence] of Object.entries(PROBLEMS)) {
    const names = (body[key] && body[key][0]) || [];
    if (!names.length) continue;
    const item = document.createElement("li");
    item.textContent = sentence(names.join(", "));
    list.appendChild(item);
  }
  $("impression-warning").hidden = list.children.length === 0;
}

function addMessage(role, text) {
  const empty = document.querySelector("#messages .empty");
  if (empty) empty.remove();
  const div = document.createElement("div");
  div.className = `msg ${role}`;
  div.textContent = text;
  $("messages").appendChild(div);
  $("messages").scrollTop = $("messages").scrollHeight;
  return div;
}

// Reads the server-sent events of a streaming chat completion, calling onText per delta.
async function readStream(resp, onText) {
  const reader = resp.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += decoder.decode(value, { stream: true });
    let cut;
    while ((cut = buffer.indexOf("\n\n")) >= 0) {
      const event = buffer.slice(0, cut).trim();
      buffer = buffer.slice(cut + 2);
      if (!event.startsWith("data: ")) continue;
      const data = event.slice(6);
      if (data === "[DONE]") return;
      const chunk = JSON.parse(data);
      if (chunk.error) throw new Error(chunk.error.message);
      for (const c of chunk.choices || []) if (c.delta && c.delta.content) onText(c.delta.content);
    }
  }
}

async function sendChat(event) {
  event.preventDefault();
  const text = $("chat-input").value.trim();
  if (!text) return;
  $("chat-input").value = "";
  addMessage("user", text);
  history.push({ role: "user", content: text });
  const bubble = addMessage("assistant", "…");
  $("send").disabled = true;
  let answer = "";
  try {
    const resp = await fetch("/v1/chat/completions", {
      method: "POST", headers: headers(),
      body: JSON.stringify({ messages: history, max_tokens: maxTokens(), stream: true }),
    });
    if (!resp.ok) throw new Error(await errorText(resp));
    await readStream(resp, (delta) => {
      answer += delta;
      bubble.textContent = answer;
      $("messages").scrollTop = $("messages").scrollHeight;
    });
    if (!answer) bubble.textContent = "(empty answer)";
    history.push({ role: "assistant", content: answer });
  } catch (err) {
    history.pop();
    bubble.textContent = err.message;
    bubble.classList.add("error");
  } finally {
    $("send").disabled = false;
    $("chat-input").focus();
  }
}

function resetChat() {
  history = [];
  $("messages").innerHTML = '<p class="empty">New conversation.</p>';
  $("chat-input").focus();
}

// The model card from /v1/models: what the model is, what it was trained on and for, what was measured.
function describeData(data) {
  if (!data) return null;
  const source = { openi: "OpenI", "mimic-cxr": "MIMIC-CXR" }[data.source] || data.source || data.split;
  return data.reports ? `${data.reports.toLocaleString("en-US")} ${source} reports` : source;
}

function showCard(card) {
  const facts = [
    ["Base", card.base],
    ["Training", card.method],
    ["Parameters", card.parameters ? card.parameters.toLocaleString("en-US") : null],
    ["Trained on", describeData(card.data)],
    ["Tasks", card.tasks ? card.tasks.join(", ") : null],
    ["Served by default", card.serving ? card.serving.default_decoding : null],
  ];
  const list = $("card-facts");
  list.replaceChildren();
  for (const [name, value] of facts) {
    const dt = document.createElement("dt");
    dt.textContent = name;
    const dd = document.createElement("dd");
    dd.textContent = value || "not recorded";
    list.append(dt, dd);
  }
  $("card-description").textContent = card.description || "";
  $("card-description").hidden = !card.description;
  $("card-serving").textContent = card.serving ? card.serving.description : "";
  $("card-serving").hidden = !card.serving;
  // Each figure holds for one decoding: grouped by it, the decoding this API serves by default first.
  const marks = $("card-benchmarks");
  marks.replaceChildren();
  const groups = new Map();
  for (const b of card.benchmarks || []) {
    const key = b.decoding || "";
    if (!groups.has(key)) groups.set(key, { decoding: b.decoding, byDefault: b.served_by_default, rows: [] });
    groups.get(key).rows.push(b);
  }
  for (const group of groups.values()) {
    const head = document.createElement("li");
    head.className = "bench-group";
    const title = document.createElement("strong");
    title.textContent = group.decoding ? `Decoding: ${group.decoding}` : "Decoding not recorded";
    head.appendChild(title);
    if (group.decoding) {
      head.append(group.byDefault ? " — what this API serves by default" : " — only when a request asks for it");
    }
    const list = document.createElement("ul");
    for (const b of group.rows) {
      const item = document.createElement("li");
      const value = b.value === null || b.value === undefined ? "not measured" : b.value;
      item.textContent = `${b.figure || b.name}: ${value}` + (b.on ? ` (${b.on})` : "");
      list.appendChild(item);
    }
    head.appendChild(list);
    marks.appendChild(head);
  }
  $("card-benchmarks-block").hidden = marks.children.length === 0;
  // A model trained only to write impressions does not pretend to chat: no chat tab, and the card says why.
  $("tab-chat").hidden = !card.chat;
  $("chat-note").hidden = card.chat;
  if (!card.chat && !$("view-chat").hidden) showTab("impression");
  $("model-card").hidden = false;
}

async function showModel() {
  try {
    const resp = await fetch("/v1/models", { headers: headers() });
    if (resp.ok) {
      const model = (await resp.json()).data[0];
      $("model-name").textContent = model.id;
      if (model.card) showCard(model.card);
    } else $("model-name").textContent = resp.status === 401 ? "API key needed (Settings)" : "";
  } catch {
    $("model-name").textContent = "";
  }
}

document.addEventListener("DOMContentLoaded", () => {
  $("tab-impression").addEventListener("click", () => showTab("impression"));
  $("tab-chat").addEventListener("click", () => showTab("chat"));
  $("generate").addEventListener("click", generateImpression);
  $("findings").addEventListener("keydown", (e) => {
    if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) generateImpression();
  });
  $("chat-form").addEventListener("submit", sendChat);
  $("chat-input").addEventListener("keydown", (e) => {
    if (e.key === "Enter" && !e.shiftKey) sendChat(e);
  });
  $("reset").addEventListener("click", resetChat);
  $("api-key").addEventListener("change", showModel);
  showModel();
});
