// The demo dashboard: each panel talks to one route of the demo and shows what arrives, live.
"use strict";

const MAX_LOG_LINES = 60;

function log(id, text, kind) {
  const box = document.getElementById(id);
  const line = document.createElement("div");
  line.textContent = text;
  if (kind) line.className = kind;
  box.append(line);
  while (box.childElementCount > MAX_LOG_LINES) box.firstElementChild.remove();
  box.scrollTop = box.scrollHeight;
}

function clock() {
  return new Date().toTimeString().slice(0, 8);
}

for (const span of document.querySelectorAll(".origin")) span.textContent = location.origin;

// The streamed page and the clock load once the dashboard has: a frame still streaming would
// keep the browser's "loading" indicator spinning for its 30 seconds.
window.addEventListener("load", () => {
  for (const frame of document.querySelectorAll("iframe[data-src]")) frame.src = frame.dataset.src;
});

// -- EventSourceResponse: read the stream with fetch, so that the pings (comments, which
// EventSource hides) show too; a dropped connection is resumed with Last-Event-ID, as
// EventSource itself would do.
const events = { lastId: null, controller: null, dropped: false };

async function connectEvents() {
  const headers = events.lastId === null ? {} : { "Last-Event-ID": events.lastId };
  const resumedAfter = events.lastId;
  events.controller = new AbortController();
  events.dropped = false;
  const status = document.getElementById("events-status");
  try {
    const response = await fetch("/events", { headers, signal: events.controller.signal });
    status.textContent = resumedAfter === null
      ? "connected" : `reconnected with Last-Event-ID: ${resumedAfter}`;
    if (resumedAfter !== null) log("events-log", `${clock()} reconnected, Last-Event-ID: ${resumedAfter}`, "mark");
    const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = "";
    let first = resumedAfter !== null;
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += value;
      let end;
      while ((end = buffer.indexOf("\n\n")) >= 0) {
        const block = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        first = showEventBlock(block, first);
      }
    }
    log("events-log", `${clock()} the server ended the stream`, "mark");
  } catch (error) {
    if (!events.dropped) log("events-log", `${clock()} ${error.name}: ${error.message}`, "bad");
  }
  setTimeout(connectEvents, 1000);
}

function showEventBlock(block, first) {
  const fields = {};
  const comments = [];
  for (const line of block.split("\n")) {
    if (line.startsWith(":")) comments.push(line.slice(1).trim());
    else {
      const colon = line.indexOf(":");
      const name = colon < 0 ? line : line.slice(0, colon);
      fields[name] = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
    }
  }
  if (fields.id === undefined && fields.data === undefined) {
    const what = comments.filter(Boolean).join(" ") || "(an empty comment: the stream is open)";
    log("events-log", `${clock()} : ${what}`, "ping");
    return first;
  }
  const resumed = first && events.lastId !== null && Number(fields.id) === Number(events.lastId) + 1;
  if (fields.id !== undefined) events.lastId = fields.id;
  log("events-log", `${clock()} id ${fields.id}  ${fields.event || "message"}  ${fields.data}`);
  if (resumed) log("events-log", `${clock()} resumed at id ${fields.id}, right after the last one seen`, "mark");
  return false;
}

document.getElementById("events-drop").addEventListener("click", () => {
  events.dropped = true;
  events.controller.abort();
  log("events-log", `${clock()} dropped the connection (last id seen: ${events.lastId})`, "bad");
  document.getElementById("events-status").textContent = "dropped; reconnecting…";
});
connectEvents();

// -- EventBroker: an EventSource on the feed, and a publish form that stays on the page.
const feed = new EventSource("/feed/events");
feed.onopen = () => { document.getElementById("feed-status").textContent = "subscribed"; };
feed.onmessage = (event) => log("feed-log", `${clock()} id ${event.lastEventId}  ${event.data}`);
document.getElementById("feed-form").addEventListener("submit", async (submit) => {
  submit.preventDefault();
  const text = document.getElementById("feed-text").value;
  const response = await fetch(`/publish?text=${encodeURIComponent(text)}`, { method: "POST" });
  const published = await response.json();
  document.getElementById("feed-status").textContent =
    `published id ${published.id} to ${published.subscribers} subscriber(s)`;
});

// -- Downloads: fetch each one, count its bytes, read its framing from the headers.
const DOWNLOADS = [
  ["CSVResponse", "/rows.csv", {}],
  ["JSONLinesResponse", "/rows.jsonl", {}],
  ["FileResponse, a range", "/file", { Range: "bytes=0-99" }],
  ["StreamingResponse, declared length", "/sized", {}],
  ["StreamingResponse, small body", "/small", {}],
];

async function download([label, path, headers]) {
  const row = document.createElement("tr");
  const cells = [label, "…", "", ""].map((text) => {
    const cell = document.createElement("td");
    cell.textContent = text;
    row.append(cell);
    return cell;
  });
  cells[2].className = "num";
  const link = document.createElement("a");
  link.href = path;
  link.textContent = path;
  cells[0].append(" ", link);
  document.getElementById("downloads-rows").append(row);
  const response = await fetch(path, { headers });
  const body = new Uint8Array(await response.arrayBuffer());
  const length = response.headers.get("content-length");
  cells[1].textContent = `${response.status}${response.status === 206 ? " " + response.headers.get("content-range") : ""}`;
  cells[2].textContent = body.length.toLocaleString("en");
  cells[3].textContent = length === null ? "chunked" : `Content-Length: ${length}`;
  row.dataset.bytes = String(body.length);
  if (path === "/rows.jsonl") {
    const lines = new TextDecoder().decode(body.slice(0, 400)).split("\n").slice(0, 3);
    document.getElementById("downloads-preview").textContent = `rows.jsonl, the first lines:\n${lines.join("\n")}`;
  }
}
(async () => { for (const item of DOWNLOADS) await download(item); })();

// -- /broken: what arrives, then what the browser says when the connection is cut.
async function fetchBroken() {
  log("broken-log", `${clock()} GET /broken`, "mark");
  try {
    const response = await fetch("/broken");
    log("broken-log", `${clock()} status ${response.status}, the body so far:`);
    const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      log("broken-log", `${clock()} ${JSON.stringify(value)}`);
    }
    log("broken-log", `${clock()} the body ended normally (it should not have)`, "bad");
  } catch (error) {
    log("broken-log", `${clock()} ${error.name}: ${error.message}: the body never completed`, "bad");
  }
}
document.getElementById("broken-again").addEventListener("click", fetchBroken);
fetchBroken();

// -- Outcomes: the on_outcome records, polled once a second.
async function refreshOutcomes() {
  try {
    const rows = await (await fetch("/outcomes")).json();
    const body = document.getElementById("outcomes-rows");
    body.replaceChildren(...rows.map((outcome) => {
      const row = document.createElement("tr");
      for (const key of ["path", "outcome", "status", "bytes", "seconds", "framing", "client_gone", "error"]) {
        const cell = document.createElement("td");
        const value = outcome[key];
        cell.textContent = value === null ? "" : typeof value === "number" ? value.toLocaleString("en") : value;
        if (key === "bytes" || key === "seconds") cell.className = "num";
        if (key === "outcome" && value !== "complete") cell.className = value === "disconnected" ? "mark" : "bad";
        row.append(cell);
      }
      return row;
    }));
  } finally {
    setTimeout(refreshOutcomes, 1000);
  }
}
refreshOutcomes();
