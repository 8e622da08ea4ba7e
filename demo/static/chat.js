// The chat page: POST a question to start an answer, then follow it with EventSource.
//
// The answer's id is kept in the page's address (?answer=...), so a reload (or the same address
// in another tab) attaches to it again: without a Last-Event-ID the server replays the answer
// from its start, then follows it live. A dropped connection is resumed by EventSource itself,
// which sends Last-Event-ID: the server sends only what came after it. The final "end" event
// says how the answer ended; only "complete" is a whole answer.
"use strict";

const ENDINGS = {
  complete: "complete",
  cancelled: "stopped: the generation was cancelled",
  error: "cut: the generation failed",
  abandoned: "cut: nobody was watching",
  timeout: "cut: it ran too long",
  shutdown: "cut: the server restarted",
  lost: "cut: too long to replay from here",
};

const form = document.getElementById("chat-form");
const prompt = document.getElementById("chat-prompt");
const stop = document.getElementById("chat-stop");
const status = document.getElementById("chat-status");
const question = document.getElementById("chat-question");
const answer = document.getElementById("chat-answer");
const meta = document.getElementById("chat-meta");

let source = null;
let current = null;

function show(text, kind) {
  status.textContent = text;
  status.className = kind || "note";
}

function attach(id, reloaded) {
  if (source !== null) source.close();
  current = id;
  answer.textContent = "";
  const seen = new Set();
  let tokens = 0;
  let duplicates = 0;
  let opens = 0;
  answer.dataset.tokens = "0";
  answer.dataset.duplicates = "0";
  stop.disabled = false;
  show("streaming…", "live");
  source = new EventSource(`/chat/answers/${id}/events`);
  source.onopen = () => {
    opens += 1;
    meta.textContent = opens === 1
      ? (reloaded ? "attached again after a reload: what was said so far is replayed, then the rest follows live" : "attached")
      : `reconnected ${opens - 1} time(s) with Last-Event-ID: nothing missed, nothing twice`;
  };
  source.onmessage = (event) => {
    if (seen.has(event.lastEventId)) {
      duplicates += 1;
      answer.dataset.duplicates = String(duplicates);
      return;
    }
    seen.add(event.lastEventId);
    answer.append(JSON.parse(event.data).text);
    tokens += 1;
    answer.dataset.tokens = String(tokens);
  };
  source.addEventListener("end", (event) => {
    const outcome = JSON.parse(event.data).outcome;
    source.close();
    stop.disabled = true;
    answer.dataset.outcome = outcome;
    show(ENDINGS[outcome] || `ended: ${outcome}`, outcome === "complete" ? "note" : "bad");
  });
  source.onerror = () => {
    if (source.readyState === EventSource.CLOSED) {
      // A 404: the answer expired (or never existed). EventSource does not retry a 404.
      stop.disabled = true;
      show("this answer is gone (it expired)", "bad");
    } else {
      show("connection lost; reconnecting…", "bad");
    }
  };
}

form.addEventListener("submit", async (submit) => {
  submit.preventDefault();
  const text = prompt.value;
  // The same key for a retry of this very question: the server starts it once.
  const key = crypto.randomUUID ? crypto.randomUUID() : String(Math.random());
  const response = await fetch("/chat/answers", {
    method: "POST",
    headers: { "Content-Type": "application/json", "Idempotency-Key": key },
    body: JSON.stringify({ prompt: text }),
  });
  const body = await response.json();
  if (!response.ok) {
    show(body.error, "bad");
    return;
  }
  sessionStorage.setItem(`prompt:${body.id}`, text);
  history.replaceState(null, "", `?answer=${body.id}`);
  question.textContent = text;
  attach(body.id, false);
});

stop.addEventListener("click", async () => {
  if (current === null) return;
  stop.disabled = true;
  show("stopping…", "live");
  await fetch(`/chat/answers/${current}/stop`, { method: "POST" });
});

const reloaded = new URLSearchParams(location.search).get("answer");
if (reloaded) {
  question.textContent = sessionStorage.getItem(`prompt:${reloaded}`) || "";
  attach(reloaded, true);
}
