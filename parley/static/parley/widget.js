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

import { socketUrl } from "./client.js";
import { Conversation } from "./conversation.js";
import { setText } from "./messages.js";

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
    if (this.conversation) return;
    this.endpoint = new URL(this.getAttribute("endpoint") ?? "", document.baseURI);
    this.crossOrigin = this.endpoint.origin !== window.location.origin;
    this.roomId = null;
    const els = this.build();
    this.conversation = new Conversation(() => this.session(), els, {
      fatalCodes: new Set(), // a refused ticket: ask the endpoint again (it says if it is over)
      onConnection: (s) => this.onConnection(s),
      host: this,
      // The page's localStorage is the host site's: a visitor's unsent text stays out of it.
      keepUnsent: false,
    });
    this.onOnline = () => this.conversation?.socket.reconnectNow(); // the network is back
    window.addEventListener("online", this.onOnline);
    if (this.hasAttribute("launcher")) this.dataset.open = "false";
    else this.conversation.start();
  }

  disconnectedCallback() {
    window.removeEventListener("online", this.onOnline);
    this.conversation?.close();
    this.conversation = null;
  }

  /** The chat's elements in the shadow root; returns those the conversation draws in. */
  build() {
    const root = this.shadowRoot ?? this.attachShadow({ mode: "open" });
    const els = {
      list: el("ol", { class: "messages", "aria-label": "Messages" }),
      announcer: el("div", {
        class: "visually-hidden",
        role: "log",
        "aria-live": "polite",
        "aria-relevant": "additions",
      }),
      empty: el("p", { class: "empty", text: "Ask the assistant anything." }),
      notice: el("p", { class: "notice", role: "alert", hidden: "" }),
      text: el("textarea", { id: "parley-text", rows: "1", placeholder: "Write a message…" }),
      send: el("button", { type: "submit", class: "button primary", text: "Send" }),
      stop: el("button", { type: "button", class: "button danger", hidden: "", text: "Stop" }),
    };
    this.conn = el("p", { class: "conn", role: "status", "data-state": "connecting", text: "Connecting…" });
    els.form = el(
      "form",
      { class: "composer" },
      el("label", { for: "parley-text", class: "visually-hidden", text: "Message" }),
      els.text,
      els.stop,
      els.send,
    );
    els.scroller = el("div", { class: "scroll" }, els.empty, els.list);
    const heading = this.getAttribute("heading") || "Assistant";
    const panel = el(
      "section",
      // .parley: the scope of answer.css, which widget.css imports.
      { class: "panel parley", "aria-label": heading },
      el("header", {}, el("h2", { text: heading }), this.conn),
      els.scroller,
      els.announcer,
      els.notice,
      els.form,
    );
    root.replaceChildren(el("link", { rel: "stylesheet", href: STYLESHEET }));
    if (this.hasAttribute("launcher")) {
      this.launcher = el("button", { type: "button", class: "launcher", "aria-expanded": "false", text: heading });
      this.launcher.addEventListener("click", () => this.toggle());
      root.append(this.launcher);
    }
    root.append(panel);
    return els;
  }

  toggle() {
    const open = this.dataset.open !== "true";
    this.dataset.open = String(open);
    this.launcher.setAttribute("aria-expanded", String(open));
    if (open && !this.started) {
      this.started = true; // connects when first opened: a closed launcher costs no socket
      this.conversation.start();
    }
    if (open) this.conversation.els.text.focus();
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
    if (answer.room.id !== this.roomId) {
      // Another conversation than before (the visitor logged in): start from nothing.
      if (this.roomId !== null) this.conversation.reset();
      this.roomId = answer.room.id;
    }
    return socketUrl(this.endpoint, answer.socket);
  }

  onConnection(s) {
    const labels = { connected: "Connected", reconnecting: "Reconnecting…", closed: s.reason || "Offline" };
    const label = labels[s.state] ?? (this.conversation?.state.synced ? null : "Connecting…");
    if (!label) return;
    this.conn.dataset.state = { closed: "offline", open: "connecting" }[s.state] ?? s.state;
    setText(this.conn, label);
  }
}

if (!customElements.get("parley-chat")) customElements.define("parley-chat", ParleyChat);
