// Batch steering page. Model output and user text are set with textContent only.
"use strict";
// $, el, textRow, api and setStatus come from common.js.

let current = null;

function showReport(report) {
  current = report;
  $("#report").hidden = false;
  $("#batch-id").textContent = "batch " + report.batch_id + " on run " + report.run_id;
  $("#headline").textContent = report.headline;
  const body = $("#rows tbody");
  body.replaceChildren();
  for (const row of report.per_row) {
    const tr = textRow([row.row_id, row.changed ? "yes" : "", "−" + row.response_diff.delete + " +" + row.response_diff.insert,
      row.flags_before.join(", "), row.flags_after.join(", "), "#" + row.original_id + " → #" + row.edited_id],
    row.changed ? "changed" : "");
    tr.dataset.row = row.row_id;
    tr.appendChild(el("td", row.reasoning.slice(0, 300), "preview"));
    tr.appendChild(el("td", (row.response || "").slice(0, 300), "preview"));
    body.appendChild(tr);
  }
}

async function runBatch(event) {
  event.preventDefault();
  const text = $("#edit-text").value;
  if (!text) { setStatus("Write the edit first.", true); return; }
  const body = {
    run: $("#run").value, model: $("#model").value, run_model: $("#run-model").value,
    edit: { kind: $("#kind").value, text, replacement: $("#replacement").value },
    limit: $("#limit").value, params: { max_new_tokens: Number($("#p-max_new_tokens").value) },
  };
  $("#run-batch").disabled = true;
  setStatus("Regenerating the edited rows…");
  try {
    showReport(await api("/api/batch", body));
    setStatus("Done.");
  } catch (error) {
    setStatus(error.message, true);
  } finally {
    $("#run-batch").disabled = false;
  }
}

async function acceptRows(withoutFlags) {
  if (!current) return;
  try {
    const data = await api("/api/batch/" + encodeURIComponent(current.batch_id) + "/accept",
      { without_flags: withoutFlags });
    setStatus("Accepted " + data.accepted.length + " versions: " + (data.accepted.join(", ") || "none") + ".");
  } catch (error) {
    setStatus(error.message, true);
  }
}

function showRunModels(runs) {
  const run = runs.find((r) => r.id === $("#run").value);
  const select = $("#run-model");
  select.replaceChildren(el("option", "all models of the run"));
  select.firstChild.value = "";
  for (const model of run ? run.models : []) {
    const option = el("option", model);
    option.value = model;
    select.appendChild(option);
  }
}

async function init() {
  $("#batch-form").addEventListener("submit", runBatch);
  $("#accept-changed").addEventListener("click", () => acceptRows([]));
  $("#accept-clean").addEventListener("click", () => acceptRows(["leakage"]));
  try {
    const data = await api("/api/batch/runs");
    for (const run of data.runs) {
      const option = el("option", run.id + " · " + run.kind + " · " + run.models.join(", "));
      option.value = run.id;
      $("#run").appendChild(option);
    }
    if (!data.runs.length) setStatus("No generate run in this database yet.", true);
    $("#run").addEventListener("change", () => showRunModels(data.runs));
    showRunModels(data.runs);
  } catch (error) {
    setStatus(error.message, true);
  }
}

init();
