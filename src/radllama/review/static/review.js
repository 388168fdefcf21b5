// RadLlama rater page: one case at a time, every answer saved at once, keyboard friendly.
// Plain JS, no dependencies, so the page works offline. All text goes in via textContent.
"use strict";

const token = decodeURIComponent(location.pathname.split("/").filter(Boolean).pop() || "");
const api = (path) => `/api/r/${encodeURIComponent(token)}${path}`;
const $ = (id) => document.getElementById(id);

const state = { criteria: [], progress: null, position: null, finished: false, pending: 0 };

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") node.className = v;
    else if (k === "text") node.textContent = v;
    else if (k.startsWith("data-")) node.setAttribute(k, v);
    else node[k] = v;
  }
  for (const c of children) if (c) node.append(c);
  return node;
}

async function request(path, body) {
  const opts = body === undefined ? {} : {
    method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
  };
  const res = await fetch(api(path), opts);
  const data = await res.json().catch(() => ({}));
  if (!res.ok) {
    const err = new Error(typeof data.detail === "string" ? data.detail : `HTTP ${res.status}`);
    err.status = res.status;
    err.data = data;
    throw err;
  }
  return data;
}

function toast(text, bad = false) {
  const t = $("toast");
  t.textContent = text;
  t.className = bad ? "bad" : "";
  t.hidden = false;
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => { t.hidden = true; }, 2500);
}

function showView(id) {
  for (const v of ["case-view", "done-view", "error-view"]) $(v).hidden = v !== id;
}

function fatal(text) {
  $("error-text").textContent = text;
  showView("error-view");
}

function renderProgress(p) {
  state.progress = p;
  $("progress-text").textContent = `${p.done} / ${p.total} cases complete`;
  $("progress-fill").style.width = `${p.total ? (100 * p.done) / p.total : 0}%`;
  $("progress-bar").setAttribute("aria-valuemax", p.total);
  $("progress-bar").setAttribute("aria-valuenow", p.done);
  const pills = $("case-pills");
  pills.replaceChildren();
  for (let i = 1; i <= p.total; i++) {
    const b = el("button", { type: "button", class: "pill", text: String(i), title: `Case ${i}` });
    if (p.completed.includes(i)) b.classList.add("complete");
    if (i === state.position) b.setAttribute("aria-current", "step");
    b.addEventListener("click", () => openCase(i));
    pills.append(b);
  }
  const last = state.position === p.total;
  $("next").textContent = last ? "Finish review ✓" : "Next case →";
  $("prev").disabled = state.position === 1;
}

function setStatus(card, kind, text) {
  const s = card.querySelector(".status");
  s.className = `status ${kind}`;
  s.textContent = text;
}

function updateCount(card) {
  const n = card.querySelectorAll("input[type=radio]:checked").length;
  const total = state.criteria.length;
  card.querySelector(".count").textContent = `${n} / ${total} scored`;
  card.classList.toggle("complete", n === total);
}

// Save with retries: a dropped connection must not lose an answer.
async function save(card, path, body) {
  state.pending++;
  setStatus(card, "saving", "Saving…");
  for (let attempt = 0; ; attempt++) {
    try {
      const data = await request(path, body);
      state.pending--;
      setStatus(card, "saved", "Saved");
      if (data.progress) renderProgress(data.progress);
      return;
    } catch (err) {
      if (err.status && err.status < 500) {
        state.pending--;
        setStatus(card, "error", `Not saved: ${err.message}`);
        return;
      }
      setStatus(card, "error", "Not saved — retrying…");
      await new Promise((r) => setTimeout(r, Math.min(8000, 500 * 2 ** attempt)));
    }
  }
}

function scaleRow(cand, crit, pos) {
  const name = `${cand.candidate_id}:${crit.key}`;
  const row = el("fieldset", { class: "scale", "data-criterion": crit.key });
  row.append(el("legend", {}, el("span", { class: "crit", text: crit.label }),
    el("span", { class: "help", text: crit.help })));
  const opts = el("div", { class: "opts" });
  for (let v = 1; v <= 5; v++) {
    // A finished review is final (the server answers 409): shown, not editable.
    const input = el("input", { type: "radio", name, value: String(v), disabled: state.finished });
    input.setAttribute("aria-label", `${crit.label} ${v}`);
    if (cand.scores[crit.key] === v) input.checked = true;
    input.addEventListener("change", () => {
      const card = row.closest(".candidate");
      updateCount(card);
      save(card, `/cases/${pos}/ratings`, { candidate_id: cand.candidate_id, criterion: crit.key, score: v });
    });
    opts.append(el("label", { class: "opt" }, input, el("span", { text: String(v) })));
  }
  row.append(opts);
  return row;
}

function candidateCard(cand, pos) {
  const card = el("section", { class: "panel candidate", "data-candidate": cand.candidate_id });
  card.append(el("header", {},
    el("h2", { text: `Impression ${cand.label}` }),
    el("span", { class: "count" }),
    el("span", { class: "status" })));
  card.append(el("blockquote", { class: "impression", text: cand.text }));
  const scales = el("div", { class: "scales" });
  scales.append(el("div", { class: "anchors" }, el("span", { text: "1 poor" }), el("span", { text: "5 excellent" })));
  for (const crit of state.criteria) scales.append(scaleRow(cand, crit, pos));
  card.append(scales);
  const area = el("textarea", { rows: 2, maxLength: 4000, placeholder: "Optional comment", readOnly: state.finished });
  area.value = cand.comment || "";
  let timer = null;
  const flush = () => {
    clearTimeout(timer);
    if (area.value === area.dataset.saved) return;
    area.dataset.saved = area.value;
    save(card, `/cases/${pos}/comments`, { candidate_id: cand.candidate_id, comment: area.value });
  };
  area.dataset.saved = area.value;
  area.addEventListener("input", () => { clearTimeout(timer); timer = setTimeout(flush, 700); });
  area.addEventListener("blur", flush);
  card.append(el("label", { class: "comment" }, el("span", { text: "Comment" }), area));
  updateCount(card);
  return card;
}

async function openCase(pos) {
  if (!state.progress || pos < 1 || pos > state.progress.total) return;
  document.activeElement?.blur?.(); // flush a comment being typed
  let data;
  try {
    data = await request(`/cases/${pos}`);
  } catch (err) {
    return toast(`Could not load case ${pos}: ${err.message}`, true);
  }
  state.position = pos;
  history.replaceState(null, "", `#case-${pos}`);
  $("case-num").textContent = String(pos);
  $("case-total").textContent = String(data.progress.total);
  $("findings").textContent = data.findings;
  const list = $("candidates");
  list.replaceChildren(...data.candidates.map((c) => candidateCard(c, pos)));
  renderProgress(data.progress);
  $("case-status").textContent = state.finished ? "Your review is finished: answers are shown, not editable." : "";
  showView("case-view");
  window.scrollTo(0, 0);
  const first = list.querySelector("input[type=radio]:checked, input[type=radio]");
  first?.focus({ preventScroll: true });
}

async function finish() {
  try {
    await request("/finish", {});
  } catch (err) {
    const next = err.data?.progress?.first_unfinished;
    if (next) {
      toast(`Case ${next} still has unscored items`, true);
      if (next !== state.position) return openCase(next);
      $("case-status").textContent = "Some items on this case are not scored yet.";
      return;
    }
    return toast(`Could not finish: ${err.message}`, true);
  }
  state.finished = true;
  history.replaceState(null, "", location.pathname);
  showView("done-view");
}

function move(delta) {
  const target = state.position + delta;
  if (delta > 0 && state.position === state.progress.total) return finish();
  openCase(target);
}

// Keyboard: 1-5 score the focused row and step to the next one; n/p change case.
document.addEventListener("keydown", (ev) => {
  if (ev.ctrlKey || ev.metaKey || ev.altKey) return;
  const t = ev.target;
  if (t.tagName === "TEXTAREA" || (t.tagName === "INPUT" && t.type !== "radio")) return;
  if ($("case-view").hidden) return;
  if (/^[1-5]$/.test(ev.key) && t.type === "radio") {
    ev.preventDefault();
    const group = t.closest(".opts").querySelectorAll("input[type=radio]");
    const chosen = group[Number(ev.key) - 1];
    if (!chosen.checked) {
      chosen.checked = true;
      chosen.dispatchEvent(new Event("change", { bubbles: true }));
    }
    const rows = [...document.querySelectorAll("#candidates .opts")];
    const next = rows[rows.indexOf(t.closest(".opts")) + 1];
    const nextRadio = next?.querySelector("input:checked") || next?.querySelector("input");
    (nextRadio || chosen).focus();
  } else if (ev.key === "n") {
    ev.preventDefault();
    move(1);
  } else if (ev.key === "p") {
    ev.preventDefault();
    if (state.position > 1) move(-1);
  }
});

window.addEventListener("beforeunload", (ev) => {
  if (state.pending > 0) ev.preventDefault();
});

async function start() {
  $("prev").addEventListener("click", () => move(-1));
  $("next").addEventListener("click", () => move(1));
  $("review-again").addEventListener("click", () => openCase(1));
  let s;
  try {
    s = await request("/state");
  } catch (err) {
    return fatal(err.status === 403 ? "This review link is not valid." : `The server did not answer (${err.message}).`);
  }
  state.criteria = s.criteria;
  state.progress = s.progress;
  state.finished = s.finished;
  $("rater-name").textContent = s.rater;
  renderProgress(s.progress);
  const m = location.hash.match(/^#case-(\d+)$/);
  const fromHash = m ? Number(m[1]) : 0;
  if (fromHash >= 1 && fromHash <= s.progress.total) return openCase(fromHash);
  if (s.finished) return showView("done-view");
  // Resume at the first unfinished case (or the last one when all are scored but not yet finished).
  openCase(s.progress.first_unfinished || s.progress.total);
}

start();
