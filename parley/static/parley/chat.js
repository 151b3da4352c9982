// The room page: draws RoomState into the DOM and wires the composer to the socket.
// User text is only ever set with textContent; the one HTML insertion is the server's
// sanitised rendering of an assistant answer (see renderBody).

import { ReconnectingSocket, RoomState, charCount, socketUrl } from "./client.js";

const STATUS_LABELS = {
  streaming: "Writing…",
  cancelled: "Stopped",
  failed: "Failed",
  interrupted: "Interrupted",
};

const root = document.getElementById("room");
if (root) start(root);

function start(root) {
  const kind = root.dataset.roomKind;
  const els = {
    list: document.getElementById("messages"),
    scroller: document.getElementById("messages-scroll"),
    empty: document.getElementById("empty"),
    conn: document.getElementById("connection-state"),
    connLabel: document.querySelector("#connection-state .conn-label"),
    retry: document.getElementById("retry-now"),
    notice: document.getElementById("notice"),
    form: document.getElementById("composer"),
    text: document.getElementById("composer-text"),
    ask: document.getElementById("composer-ask"),
    count: document.getElementById("composer-count"),
    send: document.getElementById("send"),
    stop: document.getElementById("stop"),
  };
  const state = new RoomState();
  const nodes = new Map(); // seq -> <li>
  const pendingNodes = new Map(); // client_id -> <li>
  let ready = false; // hello received on the current connection
  let countdown = null;
  let cancelRequested = null; // id of the answer we asked to stop

  const socket = new ReconnectingSocket(socketUrl(window.location, root.dataset.roomId), {
    onFrame: onFrame,
    onState: onSocketState,
  });

  function onFrame(frame) {
    const stick = nearBottom();
    const update = state.apply(frame);
    if (update.hello) {
      ready = true;
      setConnection("connected", "Connected");
      els.text.maxLength = state.limits.max_message_chars;
      updateComposer();
    }
    for (const frameOut of update.send) socket.send(frameOut);
    for (const seq of update.changed) renderMessage(state.messages.get(seq));
    if (update.outbox) renderOutbox();
    if (update.error) showError(update.error);
    updateStreaming();
    els.empty.hidden = state.messages.size > 0 || state.outbox.size > 0;
    if (stick || update.outbox) scrollToBottom();
  }

  // Connection state ------------------------------------------------------------------------

  function onSocketState(s) {
    clearInterval(countdown);
    countdown = null;
    els.retry.hidden = true;
    if (s.state !== "open") ready = false;
    if (s.state === "connecting") {
      setConnection(navigator.onLine === false ? "offline" : "connecting", "Connecting…");
    } else if (s.state === "open") {
      setConnection("connecting", "Joining the room…");
    } else if (s.state === "reconnecting") {
      if (navigator.onLine === false) {
        setConnection("offline", "Offline: waiting for the network");
      } else {
        const tick = () => {
          const seconds = Math.max(1, Math.ceil((s.retryAt - Date.now()) / 1000));
          setConnection("reconnecting", `Reconnecting in ${seconds}s`);
        };
        tick();
        countdown = setInterval(tick, 250);
      }
      els.retry.hidden = false;
    } else if (s.state === "closed") {
      const why =
        s.code === 4401
          ? "Offline: your session has ended; reload the page to log in again"
          : s.code === 4403
            ? "Offline: you are not a member of this room"
            : "Offline";
      setConnection("offline", why);
    }
    updateStreaming();
    updateComposer();
    renderOutbox();
  }

  function setConnection(name, label) {
    els.conn.dataset.state = name;
    els.connLabel.textContent = label;
  }

  els.retry.addEventListener("click", () => socket.reconnectNow());
  window.addEventListener("online", () => socket.reconnectNow());
  window.addEventListener("offline", () => {
    if (!socket.isOpen) setConnection("offline", "Offline: waiting for the network");
  });

  // Messages --------------------------------------------------------------------------------

  function renderMessage(message) {
    if (!message) return;
    let li = nodes.get(message.seq);
    if (!li) {
      li = buildMessage(message);
      nodes.set(message.seq, li);
      insertInOrder(li, message.seq);
    }
    li.dataset.status = message.status;
    renderBody(li, message);
    renderStatus(li, message);
  }

  function buildMessage(message) {
    const li = document.createElement("li");
    const mine = message.role === "user" && message.author?.id === state.user?.id;
    li.className = `msg msg-${message.role}${mine ? " msg-mine" : ""}`;
    li.dataset.seq = String(message.seq);
    li.dataset.role = message.role;
    li.id = `message-${message.seq}`;

    const meta = document.createElement("div");
    meta.className = "msg-meta";
    const who = document.createElement("span");
    who.className = "msg-author";
    who.textContent = message.role === "assistant" ? "Assistant" : mine ? "You" : message.author?.name ?? "Someone";
    meta.append(who);
    if (message.created_at) {
      const time = document.createElement("time");
      time.dateTime = message.created_at;
      const when = new Date(message.created_at);
      time.textContent = when.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
      time.title = when.toLocaleString();
      meta.append(time);
    }
    const badge = document.createElement("span");
    badge.className = "badge";
    badge.hidden = true;
    meta.append(badge);

    const body = document.createElement("div");
    body.className = "msg-body";
    const error = document.createElement("p");
    error.className = "msg-error";
    error.hidden = true;
    li.append(meta, body, error);
    return li;
  }

  function renderBody(li, message) {
    const el = li.querySelector(".msg-body");
    if (message.role === "assistant" && message.status !== "streaming" && typeof message.html === "string") {
      if (el.dataset.rendered === "html" && el.parleyHtml === message.html) return;
      // The only HTML Parley ever inserts: the server's rendering of the assistant's Markdown,
      // sanitised by nh3 (parley/rendering.py). Never build HTML from strings here.
      el.innerHTML = message.html;
      el.parleyHtml = message.html;
      el.dataset.rendered = "html";
      el.classList.remove("plain");
      return;
    }
    // Everything else, user text above all, is set as text: it can never become markup.
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
    let text = message.error ?? "";
    if (!text && message.status === "interrupted") text = "The answer was cut off when the server restarted.";
    if (!text && message.status === "cancelled" && !message.text) text = "Stopped before any text was written.";
    error.hidden = !text;
    error.textContent = text;
  }

  function insertInOrder(li, seq) {
    // Messages usually arrive in order: walk back from the end of the list.
    let before = null;
    for (let node = els.list.lastElementChild; node; node = node.previousElementSibling) {
      if (node.dataset.seq === undefined) {
        before = node; // pending sends stay last
        continue;
      }
      if (Number(node.dataset.seq) < seq) break;
      before = node;
    }
    els.list.insertBefore(li, before);
  }

  function renderOutbox() {
    for (const [clientId, li] of pendingNodes) {
      if (!state.outbox.has(clientId)) {
        li.remove();
        pendingNodes.delete(clientId);
      }
    }
    for (const entry of state.outbox.values()) {
      let li = pendingNodes.get(entry.client_id);
      if (!li) {
        li = document.createElement("li");
        li.className = "msg msg-user msg-mine msg-pending";
        li.dataset.clientId = entry.client_id;
        const meta = document.createElement("div");
        meta.className = "msg-meta";
        const who = document.createElement("span");
        who.className = "msg-author";
        who.textContent = "You";
        const badge = document.createElement("span");
        badge.className = "badge badge-pending";
        meta.append(who, badge);
        const body = document.createElement("div");
        body.className = "msg-body plain";
        body.textContent = entry.text;
        li.append(meta, body);
        els.list.append(li);
        pendingNodes.set(entry.client_id, li);
      }
      li.querySelector(".badge").textContent = entry.error
        ? "Not sent yet, will retry"
        : ready
          ? "Sending…"
          : "Waiting for connection…";
    }
  }

  function updateStreaming() {
    const streaming = state.streaming();
    els.stop.hidden = !streaming;
    els.stop.disabled = !streaming || !ready || cancelRequested === streaming.id;
    if (!streaming) cancelRequested = null;
    root.dataset.streaming = streaming ? "true" : "false";
  }

  // Notices ---------------------------------------------------------------------------------

  let noticeTimer = null;

  function showError(frame) {
    const messages = {
      busy: "The assistant is still answering; your message was saved without a reply.",
      nothing_to_cancel: "There was no answer to stop.",
    };
    if (frame.code === "assistant_failed") return; // shown on the failed message itself
    notify(messages[frame.code] ?? frame.detail ?? "Something went wrong.");
    if (frame.code === "unavailable" && frame.client_id) {
      setTimeout(() => resendPending(), 3000);
    }
  }

  function notify(text) {
    els.notice.textContent = text;
    els.notice.hidden = false;
    clearTimeout(noticeTimer);
    noticeTimer = setTimeout(() => {
      els.notice.hidden = true;
    }, 8000);
  }

  function resendPending() {
    if (!ready) return;
    for (const entry of state.outbox.values()) {
      socket.send({ type: "send", client_id: entry.client_id, text: entry.text, ask: entry.ask });
    }
  }

  // Composer --------------------------------------------------------------------------------

  function updateComposer() {
    const chars = charCount(els.text.value);
    const limit = state.limits.max_message_chars;
    els.count.textContent = chars > limit * 0.8 ? `${chars} / ${limit}` : "";
    els.count.classList.toggle("over", chars > limit);
    els.send.disabled = !els.text.value.trim() || chars > limit;
    autosize();
  }

  function autosize() {
    els.text.style.height = "auto";
    els.text.style.height = `${Math.min(els.text.scrollHeight, 240)}px`;
  }

  function submit() {
    const text = els.text.value;
    const problem = state.validate(text);
    if (problem) {
      notify(problem);
      return;
    }
    const ask = kind === "shared" ? Boolean(els.ask?.checked) : true;
    const frame = state.queueSend(text, { ask });
    if (ready) socket.send(frame);
    els.text.value = "";
    updateComposer();
    renderOutbox();
    els.empty.hidden = true;
    scrollToBottom();
    els.text.focus();
  }

  els.form.addEventListener("submit", (event) => {
    event.preventDefault();
    submit();
  });
  els.text.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      submit();
    }
  });
  els.text.addEventListener("input", updateComposer);
  els.stop.addEventListener("click", () => {
    const streaming = state.streaming();
    if (!streaming) return;
    if (socket.send({ type: "cancel", message_id: streaming.id })) {
      cancelRequested = streaming.id;
      updateStreaming();
    }
  });

  // Scrolling -------------------------------------------------------------------------------

  function nearBottom() {
    const s = els.scroller;
    return s.scrollHeight - s.scrollTop - s.clientHeight < 80;
  }

  function scrollToBottom() {
    els.scroller.scrollTop = els.scroller.scrollHeight;
  }

  updateComposer();
  socket.start();
  els.text.focus();
}
