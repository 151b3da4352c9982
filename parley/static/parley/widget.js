// <parley-chat>: the assistant on any page, as a custom element with its own shadow DOM.
//
//   <script type="module" src="https://site/static/parley/widget.js"></script>
//   <parley-chat endpoint="https://site/chat/session/"></parley-chat>
//
// Attributes: endpoint (required: Parley's chat/session/ URL), launcher (a floating button
// that opens the chat, instead of the chat in the page), heading, identity and
// identity-hash (a host's signed id for the visitor: docs/embedding.md). Any number per
// page; no inline script or style, so it runs under a strict Content-Security-Policy.
// The protocol is client.js's, as on the room page: streaming, stop, reconnect, resume.

import { RETRY_SEND_CODES, ReconnectingSocket, RoomState, socketUrl } from "./client.js";
import { MessageList } from "./messages.js";

const STYLESHEET = new URL("./widget.css", import.meta.url).href;
const STORE = "parley-visitor:"; // + endpoint: the token an embed on another origin keeps
// The first request to each endpoint on this page: the others wait for it, so that widgets
// on one page find the visitor it made instead of each making one.
const firstRequests = new Map();

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (name === "text") node.textContent = value;
    else node.setAttribute(name, value);
  }
  node.append(...children);
  return node;
}

class SessionRefused extends Error {
  constructor(message, code) {
    super(message);
    this.fatal = true;
    this.code = code;
  }
}

export class ParleyChat extends HTMLElement {
  connectedCallback() {
    if (this.socket) return;
    this.endpoint = new URL(this.getAttribute("endpoint") ?? "", document.baseURI);
    this.crossOrigin = this.endpoint.origin !== window.location.origin;
    this.build();
    this.state = new RoomState();
    this.roomId = null;
    this.ready = false;
    this.cancelRequested = null;
    this.socket = new ReconnectingSocket(() => this.session(), {
      fatalCodes: new Set(), // a refused ticket: ask the endpoint again (it says if it is over)
      onFrame: (frame) => this.onFrame(frame),
      onState: (s) => this.onSocketState(s),
    });
    this.onOnline = () => this.socket?.reconnectNow(); // the network is back: no waiting
    window.addEventListener("online", this.onOnline);
    if (this.hasAttribute("launcher")) this.dataset.open = "false";
    else this.socket.start();
  }

  disconnectedCallback() {
    window.removeEventListener("online", this.onOnline);
    this.socket?.close();
    this.socket = null;
  }

  build() {
    const root = this.shadowRoot ?? this.attachShadow({ mode: "open" });
    const id = (name) => `parley-${name}`;
    this.els = {
      list: el("ol", { class: "messages", "aria-label": "Messages" }),
      announcer: el("div", {
        class: "visually-hidden",
        role: "log",
        "aria-live": "polite",
        "aria-relevant": "additions",
      }),
      empty: el("p", { class: "empty", text: "Ask the assistant anything." }),
      conn: el("p", { class: "conn", role: "status", "data-state": "connecting", text: "Connecting…" }),
      notice: el("p", { class: "notice", role: "alert", hidden: "" }),
      text: el("textarea", { id: id("text"), rows: "1", placeholder: "Write a message…" }),
      send: el("button", { type: "submit", class: "button primary", text: "Send" }),
      stop: el("button", { type: "button", class: "button danger", hidden: "", text: "Stop" }),
    };
    const e = this.els;
    e.form = el(
      "form",
      { class: "composer" },
      el("label", { for: id("text"), class: "visually-hidden", text: "Message" }),
      e.text,
      e.stop,
      e.send,
    );
    e.scroller = el("div", { class: "scroll" }, e.empty, e.list);
    const heading = this.getAttribute("heading") || "Assistant";
    e.panel = el(
      "section",
      { class: "panel", "aria-label": heading },
      el("header", {}, el("h2", { text: heading }), e.conn),
      e.scroller,
      e.announcer,
      e.notice,
      e.form,
    );
    root.replaceChildren(el("link", { rel: "stylesheet", href: STYLESHEET }));
    if (this.hasAttribute("launcher")) {
      e.launcher = el("button", { type: "button", class: "launcher", "aria-expanded": "false", text: heading });
      e.launcher.addEventListener("click", () => this.toggle());
      root.append(e.launcher);
    }
    root.append(e.panel);
    this.messages = new MessageList(e.list, () => this.state.user, e.announcer);
    e.form.addEventListener("submit", (event) => {
      event.preventDefault();
      this.submit();
    });
    e.text.addEventListener("keydown", (event) => {
      if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
        event.preventDefault();
        this.submit();
      }
    });
    e.text.addEventListener("input", () => this.updateComposer());
    e.stop.addEventListener("click", () => this.stop());
  }

  toggle() {
    const open = this.dataset.open !== "true";
    this.dataset.open = String(open);
    this.els.launcher.setAttribute("aria-expanded", String(open));
    if (open && !this.started) {
      this.started = true; // connects when first opened: a closed launcher costs no socket
      this.socket.start();
    }
    if (open) this.els.text.focus();
  }

  /** A URL for the next connection: the endpoint's answer (a fresh single-use ticket). */
  async session() {
    const key = this.endpoint.href;
    const first = firstRequests.get(key);
    if (first) await first.catch(() => {});
    const request = this.ask();
    if (!first) firstRequests.set(key, request);
    return request;
  }

  async ask() {
    const body = {};
    const identity = this.getAttribute("identity");
    if (identity) {
      body.identity = identity;
      body.identity_hash = this.getAttribute("identity-hash") ?? "";
    } else if (this.crossOrigin) {
      const token = localStorage.getItem(STORE + this.endpoint.href);
      if (token) body.visitor = token;
    }
    const response = await fetch(this.endpoint, {
      method: "POST",
      credentials: this.crossOrigin ? "omit" : "same-origin",
      headers: { "Content-Type": "text/plain" }, // a simple request: no preflight
      body: JSON.stringify(body),
    });
    const answer = await response.json().catch(() => ({}));
    if (response.status === 401 || response.status === 403) {
      throw new SessionRefused(answer.error?.detail ?? "The chat is not available.", response.status);
    }
    if (!response.ok) throw new Error(answer.error?.detail ?? `HTTP ${response.status}`);
    if (answer.visitor) localStorage.setItem(STORE + this.endpoint.href, answer.visitor);
    if (answer.room.id !== this.roomId) this.switchRoom(answer.room.id);
    return socketUrl(this.endpoint, answer.socket);
  }

  /** Another conversation than before (the visitor logged in): start from nothing. */
  switchRoom(roomId) {
    this.roomId = roomId;
    this.state = new RoomState();
    this.caughtUp = false; // the history was complete once: what comes now is news
    this.els.list.replaceChildren();
    this.messages = new MessageList(this.els.list, () => this.state.user, this.els.announcer);
  }

  onFrame(frame) {
    const s = this.els.scroller;
    const stick = s.scrollHeight - s.scrollTop - s.clientHeight < 80;
    const update = this.state.apply(frame);
    if (update.hello) {
      this.ready = true;
      this.setConnection("connected", "Connected");
    }
    for (const out of update.send) this.socket.send(out);
    if (update.later) {
      setTimeout(() => {
        if (this.ready) for (const out of update.later.send) this.socket.send(out);
      }, update.later.delay);
    }
    for (const seq of update.changed) {
      this.messages.render(this.state.messages.get(seq), { announce: this.caughtUp });
    }
    if (update.synced) this.caughtUp = true;
    if (update.outbox) this.renderOutbox();
    if (update.error) this.showError(update.error);
    this.updateStreaming();
    this.els.empty.hidden = this.state.messages.size > 0 || this.state.outbox.size > 0;
    if (stick || update.outbox) s.scrollTop = s.scrollHeight;
    this.updateComposer();
  }

  onSocketState(s) {
    if (s.state !== "open") this.ready = false;
    if (s.state === "reconnecting") this.setConnection("reconnecting", "Reconnecting…");
    else if (s.state === "closed") this.setConnection("offline", s.reason || "Offline");
    else if (s.state === "connecting" && !this.state.synced) this.setConnection("connecting", "Connecting…");
    this.updateStreaming();
    this.updateComposer();
    this.renderOutbox();
  }

  setConnection(name, label) {
    this.els.conn.dataset.state = name;
    if (this.els.conn.textContent !== label) this.els.conn.textContent = label;
  }

  renderOutbox() {
    this.messages.renderOutbox(this.state.outbox, (entry) => {
      if (entry.error) return "Not sent yet, will retry";
      return this.ready ? "Sending…" : "Waiting for connection…";
    });
  }

  updateStreaming() {
    const streaming = this.state.streaming();
    this.els.stop.hidden = !streaming;
    this.els.stop.disabled = !streaming || !this.ready || this.cancelRequested === streaming.id;
    if (!streaming) this.cancelRequested = null;
    this.dataset.streaming = String(Boolean(streaming));
  }

  updateComposer() {
    const closed = this.socket?.state.state === "closed";
    this.els.text.disabled = closed;
    this.els.send.disabled = closed || !this.els.text.value.trim();
  }

  showError(frame) {
    if (frame.code === "assistant_failed") return; // shown on the failed message
    if (frame.code === "rate_limited" && typeof frame.after === "number") return; // retried
    this.notify(frame.detail ?? "Something went wrong.");
    if (RETRY_SEND_CODES.has(frame.code) && frame.client_id) {
      setTimeout(
        () => {
          for (const entry of this.state.outbox.values()) {
            if (this.ready)
              this.socket.send({ type: "send", client_id: entry.client_id, text: entry.text, ask: entry.ask });
          }
        },
        (frame.retry_after ?? 3) * 1000 + 100,
      );
    }
  }

  notify(text) {
    this.els.notice.textContent = text;
    this.els.notice.hidden = false;
    clearTimeout(this.noticeTimer);
    this.noticeTimer = setTimeout(() => {
      this.els.notice.hidden = true;
    }, 8000);
  }

  submit() {
    const text = this.els.text.value;
    const problem = this.state.validate(text);
    if (problem) {
      this.notify(problem);
      return;
    }
    const frame = this.state.queueSend(text, { ask: true });
    if (this.ready) this.socket.send(frame);
    this.els.text.value = "";
    this.els.empty.hidden = true;
    this.renderOutbox();
    this.updateComposer();
    this.els.scroller.scrollTop = this.els.scroller.scrollHeight;
  }

  stop() {
    const streaming = this.state.streaming();
    if (!streaming || !this.socket.send({ type: "cancel", message_id: streaming.id })) return;
    this.cancelRequested = streaming.id;
    this.updateStreaming();
    setTimeout(() => {
      if (this.cancelRequested === streaming.id) {
        this.cancelRequested = null;
        this.updateStreaming();
      }
    }, 5000);
  }
}

if (!customElements.get("parley-chat")) customElements.define("parley-chat", ParleyChat);
