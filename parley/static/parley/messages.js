// The message list of the room page: one <li> per message, kept in seq order, and one per
// send still waiting for its ack. Text is set with textContent only; the single HTML
// insertion is the server's sanitised rendering of a finished assistant answer (renderBody).

import { isMine } from "./client.js";

const STATUS_LABELS = {
  streaming: "Writing…",
  cancelled: "Stopped",
  failed: "Failed",
  interrupted: "Interrupted",
};

const STATUS_NOTES = {
  interrupted: "The answer was cut off when its server stopped.",
};

function element(tag, className, text) {
  const el = document.createElement(tag);
  if (className) el.className = className;
  if (text !== undefined) el.textContent = text;
  return el;
}

export class MessageList {
  /** `list` is the <ol>; `me()` returns the logged-in user ({id, name}) once known. */
  constructor(list, me) {
    this.list = list;
    this.me = me;
    this.nodes = new Map(); // seq -> <li>
    this.pending = new Map(); // client_id -> <li>
  }

  /** Draw `message` (a payload from RoomState), creating its <li> if new. */
  render(message) {
    if (!message) return;
    let li = this.nodes.get(message.seq);
    if (!li) {
      li = this.build(message);
      this.nodes.set(message.seq, li);
      this.insertInOrder(li, message.seq);
    }
    li.dataset.status = message.status;
    renderBody(li.querySelector(".msg-body"), message);
    renderStatus(li, message);
  }

  /** Show the outbox (sends not yet acknowledged) after the messages, each with `label`. */
  renderOutbox(outbox, label) {
    for (const [clientId, li] of this.pending) {
      if (!outbox.has(clientId)) {
        li.remove();
        this.pending.delete(clientId);
      }
    }
    for (const entry of outbox.values()) {
      let li = this.pending.get(entry.client_id);
      if (!li) {
        li = element("li", "msg msg-user msg-mine msg-pending");
        li.dataset.clientId = entry.client_id;
        const meta = element("div", "msg-meta");
        meta.append(element("span", "msg-author", "You"), element("span", "badge badge-pending"));
        li.append(meta, element("div", "msg-body plain", entry.text));
        this.list.append(li);
        this.pending.set(entry.client_id, li);
      }
      li.querySelector(".badge").textContent = label(entry);
    }
  }

  build(message) {
    const mine = isMine(message, this.me());
    const li = element("li", `msg msg-${message.role}${mine ? " msg-mine" : ""}`);
    li.id = `message-${message.seq}`;
    li.dataset.seq = String(message.seq);
    li.dataset.role = message.role;

    const meta = element("div", "msg-meta");
    let who = message.author?.name ?? "Someone";
    if (message.role === "assistant") who = "Assistant";
    else if (mine) who = "You";
    meta.append(element("span", "msg-author", who));
    if (message.created_at) {
      const when = new Date(message.created_at);
      const time = element("time", "", when.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" }));
      time.dateTime = message.created_at;
      time.title = when.toLocaleString();
      meta.append(time);
    }
    const badge = element("span", "badge");
    badge.hidden = true;
    meta.append(badge);
    const error = element("p", "msg-error");
    error.hidden = true;
    li.append(meta, element("div", "msg-body"), error);
    return li;
  }

  insertInOrder(li, seq) {
    // Messages mostly arrive in order: walk back from the end. Pending sends stay last.
    let before = null;
    for (let node = this.list.lastElementChild; node; node = node.previousElementSibling) {
      if (node.dataset.seq !== undefined && Number(node.dataset.seq) < seq) break;
      before = node;
    }
    this.list.insertBefore(li, before);
  }
}

function renderBody(el, message) {
  if (message.role === "assistant" && message.status !== "streaming" && typeof message.html === "string") {
    if (el.dataset.rendered === "html" && el.parleyHtml === message.html) return;
    // The only HTML Parley ever inserts: the server's rendering of the assistant's Markdown,
    // sanitised by nh3 (parley/rendering.py). Never build HTML from strings anywhere.
    el.innerHTML = message.html;
    el.parleyHtml = message.html;
    el.dataset.rendered = "html";
    el.classList.remove("plain");
    return;
  }
  // Everything else, user text above all, is text: it can never become markup.
  if (el.dataset.rendered !== "text" || el.textContent !== message.text) {
    el.textContent = message.text;
    el.dataset.rendered = "text";
    el.classList.add("plain");
  }
}

function renderStatus(li, message) {
  const badge = li.querySelector(".badge");
  const label = STATUS_LABELS[message.status];
  badge.hidden = !label;
  badge.textContent = label ?? "";
  badge.className = `badge badge-${message.status}`;
  const error = li.querySelector(".msg-error");
  let note = message.error || STATUS_NOTES[message.status] || "";
  if (!note && message.status === "cancelled" && !message.text) note = "Stopped before any text was written.";
  error.hidden = !note;
  error.textContent = note;
}
