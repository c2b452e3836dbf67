// Steer page. Every piece of model output or user text is set with textContent / value, never as HTML.
"use strict";
// $, el, textRow, api, responseError and setStatus come from common.js.

const state = { thread: null, versions: [], columns: new Map(), busy: false };
const PARAMS = ["max_new_tokens", "temperature", "top_p", "top_k", "repetition_penalty", "seed"];

async function streamSteer(body, onText) {
  const response = await fetch("/api/steer/stream", {
    method: "POST", credentials: "same-origin",
    headers: { "Content-Type": "application/json", "X-Reasonry": "1" }, body: JSON.stringify(body),
  });
  if (!response.ok) throw await responseError(response);
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  let version = null;
  const handle = (line) => {
    if (!line.trim()) return;
    const event = JSON.parse(line);
    if (event.type === "text") onText(event.text);
    else if (event.type === "version") version = event.version;
    else if (event.type === "error") throw new Error(event.message);
  };
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, { stream: true });
    let newline;
    while ((newline = buffer.indexOf("\n")) >= 0) {
      handle(buffer.slice(0, newline));
      buffer = buffer.slice(newline + 1);
    }
  }
  handle(buffer);
  if (!version) throw new Error("the stream ended without a version");
  return version;
}

function params() {
  const out = {};
  for (const name of PARAMS) {
    const value = $("#p-" + name).value;
    if (value !== "") out[name] = Number(value);
  }
  return out;
}

function selectedModels() {
  return [...document.querySelectorAll("#models input[name=model]:checked")].map((box) => box.value);
}

function column(model) {
  if (state.columns.has(model)) return state.columns.get(model);
  const node = $("#column-template").content.firstElementChild.cloneNode(true);
  node.dataset.model = model;
  $(".col-model", node).textContent = model;
  const col = { model, node, version: null };
  $(".regen", node).addEventListener("click", () => regenerate(col));
  $(".continue", node).addEventListener("click", () => continueFromCursor(col));
  $(".accept", node).addEventListener("click", () => col.version && toggleAccept(col.version));
  $("#columns").appendChild(node);
  state.columns.set(model, col);
  return col;
}

function showVersion(col, version) {
  col.version = version;
  $(".reasoning", col.node).value = version.reasoning || "";
  $(".response", col.node).textContent = version.response || "(no response yet: regenerate it from the reasoning)";
  const parts = ["#" + version.id, version.mode, Number(version.seconds || 0).toFixed(2) + " s",
    (version.completion_tokens || 0) + " tokens"];
  if (version.edited) parts.push("edited reasoning");
  if (version.accepted) parts.push("accepted");
  $(".meta", col.node).textContent = parts.join(" · ");
  $(".accept", col.node).textContent = version.accepted ? "Unaccept" : "Accept";
  col.node.classList.toggle("accepted", Boolean(version.accepted));
  $(".live", col.node).hidden = true;
}

function setBusy(busy) {
  state.busy = busy;
  for (const button of document.querySelectorAll("button")) button.disabled = busy;
}

function setThread(thread) {
  state.thread = thread;
  $("#thread-id").textContent = thread ? "thread " + thread : "";
  const url = new URL(window.location.href);
  if (thread) url.searchParams.set("thread", thread); else url.searchParams.delete("thread");
  url.searchParams.delete("token");
  window.history.replaceState(null, "", url.pathname + url.search);
}

async function runOne(col, body, label) {
  const live = $(".live", col.node);
  live.hidden = false;
  live.textContent = "";
  setStatus(label + " with " + col.model + "…");
  const budget = $("#budget").value;
  const extra = budget && (body.mode === "reasoning" || body.mode === "continue") ? { reasoning_budget: budget } : {};
  const version = await streamSteer({ ...body, ...extra, model: col.model, params: params() }, (text) => {
    live.appendChild(document.createTextNode(text));
    live.scrollTop = live.scrollHeight;
  });
  if (!state.thread) setThread(version.thread);
  showVersion(col, version);
  return version;
}

const LABELS = { vanilla: "Vanilla response", reasoning: "Reasoning", special: "Response from the reasoning",
  continue: "Continuing the reasoning" };

async function generate(mode) {
  const question = $("#question").value;
  if (!question.trim()) { setStatus("Write a question first.", true); return; }
  const reasoning = $("#given-reasoning").value;
  if ((mode === "special" || mode === "continue") && !reasoning.trim()) {
    setStatus("Type a reasoning (or its first steps) first.", true);
    return;
  }
  const models = selectedModels();
  if (!models.length) { setStatus("Choose a model.", true); return; }
  setBusy(true);
  try {
    for (const model of models) {
      const body = { question, input: $("#input").value, mode, thread: state.thread };
      if (mode === "special" || mode === "continue") body.reasoning = reasoning;
      await runOne(column(model), body, LABELS[mode]);
    }
    setStatus("Done.");
    await refresh();
  } catch (error) {
    setStatus(error.message, true);
  } finally {
    setBusy(false);
  }
}

// Runs a column again from its (edited) reasoning, as a child of the version it shows, then diffs the two.
async function rerun(col, mode, reasoning, label) {
  const parent = col.version;
  setBusy(true);
  try {
    const version = await runOne(col, {
      question: $("#question").value || (parent ? parent.question : ""),
      input: $("#input").value || (parent ? parent.input : ""),
      mode, reasoning, thread: state.thread, parent: parent ? parent.id : null,
    }, label);
    setStatus("Done.");
    await refresh();
    if (parent) await showDiff(parent.id, version.id);
  } catch (error) {
    setStatus(error.message, true);
  } finally {
    setBusy(false);
  }
}

async function regenerate(col) {
  const reasoning = $(".reasoning", col.node).value;
  if (!reasoning.trim()) { setStatus("The reasoning is empty.", true); return; }
  await rerun(col, "special", reasoning, "Response from the edited reasoning");
}

async function continueFromCursor(col) {
  const area = $(".reasoning", col.node);
  const prefix = area.value.slice(0, area.selectionStart);
  if (!prefix.trim()) { setStatus("Place the cursor after the part of the reasoning to keep.", true); return; }
  await rerun(col, "continue", prefix, LABELS.continue);
}

async function toggleAccept(version) {
  try {
    const updated = await api("/api/versions/" + version.id + "/accept", { accepted: !version.accepted });
    for (const col of state.columns.values()) {
      if (col.version && col.version.id === updated.id) showVersion(col, updated);
    }
    setStatus(updated.accepted ? "Version #" + updated.id + " accepted as a training example." : "Unaccepted.");
    await refresh();
  } catch (error) {
    setStatus(error.message, true);
  }
}

function renderVersions() {
  const body = $("#versions tbody");
  body.replaceChildren();
  for (const version of state.versions) {
    const row = textRow([version.id, version.parent_id || "", version.model, version.mode, version.edited ? "yes" : "",
      Number(version.seconds || 0).toFixed(2), version.completion_tokens || 0, version.accepted ? "✓" : ""],
    version.accepted ? "accepted" : "");
    row.dataset.id = version.id;
    row.appendChild(el("td", (version.response || "").slice(0, 200), "preview"));
    const actions = el("td");
    const open = el("button", "Open");
    open.type = "button";
    open.addEventListener("click", () => showVersion(column(version.model), version));
    const accept = el("button", version.accepted ? "Unaccept" : "Accept", "accept-version");
    accept.type = "button";
    accept.addEventListener("click", () => toggleAccept(version));
    actions.append(open, " ", accept);
    row.appendChild(actions);
    body.appendChild(row);
  }
  for (const id of ["#diff-a", "#diff-b"]) {
    const select = $(id);
    const keep = select.value;
    select.replaceChildren();
    for (const version of state.versions) {
      const option = el("option", "#" + version.id + " " + version.model + " " + version.mode);
      option.value = version.id;
      select.appendChild(option);
    }
    if (keep && state.versions.some((v) => String(v.id) === keep)) select.value = keep;
  }
  if (state.versions.length >= 2 && !$("#diff-a").dataset.chosen) {
    $("#diff-a").value = state.versions[state.versions.length - 2].id;
    $("#diff-b").value = state.versions[state.versions.length - 1].id;
  }
}

function renderDiff(target, segments) {
  target.replaceChildren();
  for (const [op, text] of segments) {
    const tag = op === "delete" ? "del" : op === "insert" ? "ins" : "span";
    target.appendChild(el(tag, text));
  }
  if (!segments.length) target.appendChild(el("span", "(both empty)", "muted"));
}

async function showDiff(a, b) {
  $("#diff-a").value = a;
  $("#diff-b").value = b;
  const data = await api("/api/diff?a=" + encodeURIComponent(a) + "&b=" + encodeURIComponent(b));
  renderDiff($("#diff-reasoning"), data.reasoning);
  renderDiff($("#diff-response"), data.response);
  const r = data.stats.response;
  $("#diff-stats").textContent = "#" + a + " → #" + b + ": response −" + r.delete + " +" + r.insert + " words";
}

async function loadThreads() {
  const data = await api("/api/threads");
  const list = $("#threads");
  list.replaceChildren();
  for (const thread of data.threads) {
    const item = el("li");
    const link = el("a", thread.question.slice(0, 80) || "(empty)");
    link.href = "/steer?thread=" + encodeURIComponent(thread.thread);
    link.title = thread.thread;
    const when = new Date(thread.updated_at * 1000);
    const details = [when.toLocaleString(), thread.versions + (thread.versions === 1 ? " version" : " versions")];
    if (thread.accepted) details.push(thread.accepted + " accepted");
    details.push(thread.thread.slice(-4));  // threads on the same question still differ here
    link.appendChild(el("small", details.join(" · "), "thread-meta"));
    if (thread.thread === state.thread) link.className = "current";
    item.appendChild(link);
    list.appendChild(item);
  }
}

async function refresh() {
  if (state.thread) {
    const data = await api("/api/threads/" + encodeURIComponent(state.thread));
    state.versions = data.versions;
  } else {
    state.versions = [];
  }
  renderVersions();
  await loadThreads();
}

async function openThread(thread) {
  setThread(thread);
  const data = await api("/api/threads/" + encodeURIComponent(thread));
  state.versions = data.versions;
  if (state.versions.length) {
    const first = state.versions[0];
    $("#question").value = first.question;
    $("#input").value = first.input;
    const latest = new Map();
    for (const version of state.versions) latest.set(version.model, version);
    for (const [model, version] of latest) showVersion(column(model), version);
  }
  renderVersions();
  await loadThreads();
}

function newThread() {
  setThread(null);
  state.versions = [];
  state.columns.clear();
  $("#columns").replaceChildren();
  $("#question").value = "";
  $("#input").value = "";
  $("#given-reasoning").value = "";
  for (const id of ["#diff-reasoning", "#diff-response", "#diff-stats"]) $(id).replaceChildren();
  delete $("#diff-a").dataset.chosen;
  renderVersions();
  loadThreads();
}

function init() {
  $("#ask-form").addEventListener("submit", (event) => { event.preventDefault(); generate("reasoning"); });
  $("#vanilla").addEventListener("click", () => generate("vanilla"));
  $("#from-reasoning").addEventListener("click", () => generate("special"));
  $("#continue-given").addEventListener("click", () => generate("continue"));
  $("#new-thread").addEventListener("click", newThread);
  $("#diff-button").addEventListener("click", () => {
    $("#diff-a").dataset.chosen = "1";
    showDiff($("#diff-a").value, $("#diff-b").value).catch((error) => setStatus(error.message, true));
  });
  const thread = new URLSearchParams(window.location.search).get("thread");
  (thread ? openThread(thread) : refresh()).catch((error) => setStatus(error.message, true));
}

init();
