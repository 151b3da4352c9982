// The message list of the room page and the widget: one <li> per message, kept in seq
// order, and one per send still waiting for its ack. Text is set with textContent only; the
// single HTML insertion is the server's sanitised rendering of a finished assistant answer
// (renderBody).
//
// The list itself is no live region: a streaming answer changes its text 25 times a second,
// and a screen reader would read every change. An announcer (a visually hidden role="log")
// says each new message once, and a streaming answer once, when it is finished; while it
// streams its <li> is aria-busy.

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

// How many announcements the announcer keeps (older ones were read already).
const ANNOUNCED_KEPT = 5;

export class MessageList {
  /** `list` is the <ol>; `me()` returns the logged-in user ({id, name}) once known;
   * `announcer` is the element new messages are announced in (optional); `onWithdraw(id)`
   * is called when the user withdraws a question of theirs that waits its turn. */
  constructor(list, me, announcer = null, { onWithdraw = () => {} } = {}) {
    this.list = list;
    this.me = me;
    this.announcer = announcer;
    this.onWithdraw = onWithdraw;
    this.nodes = new Map(); // seq -> <li>
    this.pending = new Map(); // client_id -> <li>
  }

  /** Draw `message` (a payload from RoomState), creating its <li> if new. With `announce`
   * (the history is caught up: it is news), a message new or just finished is announced. */
  render(message, { announce = false } = {}) {
    if (!message) return;
    let li = this.nodes.get(message.seq);
    const fresh = !li;
    const wasStreaming = li?.dataset.status === "streaming";
    if (!li) {
      li = this.build(message);
      this.nodes.set(message.seq, li);
      this.insertInOrder(li, message.seq);
    }
    const streaming = message.status === "streaming";
    if (li.dataset.status !== message.status) {
      li.dataset.status = message.status;
      if (streaming) li.setAttribute("aria-busy", "true");
      else li.removeAttribute("aria-busy");
    }
    renderBody(li.querySelector(".msg-body"), message);
    renderStatus(li, message);
    this.renderWithdraw(li, message);
    if (announce && !streaming && (fresh || wasStreaming)) this.announce(message);
  }

  /** While one's own question waits its turn behind the room's answer, a button to take it
   * back; only then (the list holds no control a message does not need). */
  renderWithdraw(li, message) {
    const button = li.querySelector(".withdraw");
    const wanted = Boolean(message.waiting) && isMine(message, this.me());
    if (!wanted) {
      button?.remove();
    } else if (!button) {
      const withdraw = element("button", "withdraw", "Withdraw");
      withdraw.type = "button";
      withdraw.addEventListener("click", () => this.onWithdraw(message.id));
      li.querySelector(".msg-meta").append(withdraw);
    }
  }

  /** Say `message` once in the announcer: who, how it ended if not completely, the text. */
  announce(message) {
    if (!this.announcer) return;
    const ending = message.status === "complete" ? "" : ` (${STATUS_LABELS[message.status] ?? message.status})`;
    const text = message.text || message.error || STATUS_NOTES[message.status] || "";
    this.announcer.append(element("p", "", `${this.author(message)}${ending}: ${text}`));
    while (this.announcer.childElementCount > ANNOUNCED_KEPT) this.announcer.firstElementChild.remove();
  }

  author(message) {
    if (message.role === "assistant") return "Assistant";
    if (isMine(message, this.me())) return "You";
    return message.author?.name ?? "Someone";
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
    meta.append(element("span", "msg-author", this.author(message)));
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

/** Set `el`'s text only if it changes: rewriting the same text is still a change (one a
 * screen reader may announce again). */
export function setText(el, text) {
  if (el.textContent !== text) el.textContent = text;
}

function renderStatus(li, message) {
  const badge = li.querySelector(".badge");
  const label = message.waiting ? "Waiting" : STATUS_LABELS[message.status];
  badge.hidden = !label;
  setText(badge, label ?? "");
  badge.className = `badge badge-${message.waiting ? "waiting" : message.status}`;
  const error = li.querySelector(".msg-error");
  let note = message.error || STATUS_NOTES[message.status] || "";
  if (!note && message.status === "cancelled" && !message.text) note = "Stopped before any text was written.";
  error.hidden = !note;
  setText(error, note);
}
