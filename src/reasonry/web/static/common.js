// Helpers shared by the steer pages, loaded before each page's own script. Text is set with textContent only.
"use strict";

const $ = (selector, root = document) => root.querySelector(selector);

function el(tag, text, className) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = String(text);
  if (className) node.className = className;
  return node;
}

// A table row of text cells.
function textRow(cells, className) {
  const row = el("tr", null, className);
  for (const value of cells) row.appendChild(el("td", value));
  return row;
}

// The error a failed response carries: the API's {"error": {"message": ...}} or the HTTP status text.
async function responseError(response) {
  const data = await response.json().catch(() => ({}));
  return new Error((data.error && data.error.message) || response.statusText);
}

async function api(path, body) {
  const options = { credentials: "same-origin", headers: { "X-Reasonry": "1" } };
  if (body !== undefined) {
    options.method = "POST";
    options.headers["Content-Type"] = "application/json";
    options.body = JSON.stringify(body);
  }
  const response = await fetch(path, options);
  if (!response.ok) throw await responseError(response);
  return response.json().catch(() => ({}));
}

function setStatus(text, isError) {
  const status = $("#status");
  status.textContent = text;
  status.classList.toggle("error", Boolean(isError));
}
