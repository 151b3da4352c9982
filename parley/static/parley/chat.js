// The room page: wires RoomState (client.js) to the socket, the message list (messages.js),
// the connection indicator and the composer. No HTML is built here: text goes through
// textContent, and messages.js inserts only the server's sanitised answer HTML.

import { RETRY_SEND_CODES, ReconnectingSocket, RoomState, charCount, socketUrl } from "./client.js";
import { MessageList } from "./messages.js";

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
    connCountdown: document.querySelector("#connection-state .conn-countdown"),
    announcer: document.getElementById("announcer"),
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
  const messages = new MessageList(els.list, () => state.user, els.announcer);
  let caughtUp = false; // the history was complete once: what comes now is news
  let ready = false; // hello received on the current connection
  let countdown = null;
  let cancelRequested = null; // id of the answer we asked to stop
  let refused = false; // the server refused us (4401/4403): nothing can be sent any more

  const socket = new ReconnectingSocket(socketUrl(window.location, root.dataset.socketPath), {
    onFrame: onFrame,
    onState: onSocketState,
  });

  function onFrame(frame) {
    const stick = nearBottom();
    const update = state.apply(frame);
    if (update.hello) {
      ready = true;
      setConnection("connected", "Connected");
      updateComposer(); // the limits came with hello
    }
    for (const frameOut of update.send) socket.send(frameOut);
    if (update.later) sendLater(update.later);
    for (const seq of update.changed) messages.render(state.messages.get(seq), { announce: caughtUp });
    if (update.synced) caughtUp = true;
    if (update.outbox) renderOutbox();
    if (update.error) showError(update.error);
    updateStreaming();
    showEmpty();
    if (stick || update.outbox) scrollToBottom();
  }

  // Connection state ------------------------------------------------------------------------

  function onSocketState(s) {
    clearInterval(countdown);
    countdown = null;
    els.retry.hidden = true;
    if (s.state !== "open") ready = false;
    if (s.state === "connecting") {
      if (navigator.onLine === false) setConnection("offline", "Offline: waiting for the network");
      else setConnection("connecting", "Connecting…");
    } else if (s.state === "open") {
      setConnection("connecting", "Joining the room…");
    } else if (s.state === "reconnecting") {
      if (navigator.onLine === false) {
        setConnection("offline", "Offline: waiting for the network");
      } else {
        // The seconds are not in the status region: a screen reader would read each one.
        setConnection("reconnecting", "Reconnecting");
        const tick = () => {
          const seconds = Math.max(1, Math.ceil((s.retryAt - Date.now()) / 1000));
          setText(els.connCountdown, ` in ${seconds}s`);
        };
        tick();
        countdown = setInterval(tick, 250);
      }
      els.retry.hidden = false;
    } else if (s.state === "closed") {
      refused = true;
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
    setText(els.connLabel, label); // said once per change of state, not again
    if (name !== "reconnecting") setText(els.connCountdown, "");
  }

  function setText(el, text) {
    if (el.textContent !== text) el.textContent = text;
  }

  els.retry.addEventListener("click", () => socket.reconnectNow());
  window.addEventListener("online", () => socket.reconnectNow());
  window.addEventListener("offline", () => {
    if (!socket.isOpen) setConnection("offline", "Offline: waiting for the network");
  });

  function renderOutbox() {
    messages.renderOutbox(state.outbox, (entry) => {
      if (entry.error) return "Not sent yet, will retry";
      return ready ? "Sending…" : "Waiting for connection…";
    });
  }

  // Answers ---------------------------------------------------------------------------------

  function updateStreaming() {
    const streaming = state.streaming();
    els.stop.hidden = !streaming;
    els.stop.disabled = !streaming || !ready || cancelRequested === streaming.id;
    if (!streaming) cancelRequested = null;
    root.dataset.streaming = streaming ? "true" : "false";
  }

  function showEmpty() {
    els.empty.hidden = !state.synced || state.messages.size > 0 || state.outbox.size > 0;
  }

  // Notices ---------------------------------------------------------------------------------

  let noticeTimer = null;

  function showError(frame) {
    const explanations = {
      busy: "The assistant is still answering; your message was saved without a reply.",
      nothing_to_cancel: "There was no answer to stop.",
    };
    if (frame.code === "assistant_failed") return; // shown on the failed message itself
    if (frame.code === "rate_limited" && typeof frame.after === "number") return; // retried
    notify(explanations[frame.code] ?? frame.detail ?? "Something went wrong.");
    if (RETRY_SEND_CODES.has(frame.code) && frame.client_id) {
      scheduleResend(frame.retry_after ? frame.retry_after * 1000 + 100 : 3000);
    }
  }

  // Frames to send after a wait (a refused resume); dropped if the connection went meanwhile:
  // the next hello resumes anyway.
  function sendLater({ delay, send }) {
    const connection = socket.ws;
    setTimeout(() => {
      if (ready && socket.ws === connection) for (const frameOut of send) socket.send(frameOut);
    }, delay);
  }

  function notify(text) {
    els.notice.textContent = text;
    els.notice.hidden = false;
    clearTimeout(noticeTimer);
    noticeTimer = setTimeout(() => {
      els.notice.hidden = true;
    }, 8000);
  }

  // One timer for every refused send: each resend sends the whole outbox.
  let resendTimer = null;

  function scheduleResend(wait) {
    if (resendTimer !== null) return;
    resendTimer = setTimeout(() => {
      resendTimer = null;
      resendPending();
    }, wait);
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
    els.send.disabled = refused || !els.text.value.trim() || chars > limit;
    els.text.disabled = refused;
    autosize();
  }

  function autosize() {
    els.text.style.height = "auto";
    els.text.style.height = `${Math.min(els.text.scrollHeight, 240)}px`;
  }

  function submit() {
    if (refused) return;
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
    showEmpty();
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
      // If no done follows (the answer's server may be gone), let the user try again.
      setTimeout(() => {
        if (cancelRequested === streaming.id) {
          cancelRequested = null;
          updateStreaming();
        }
      }, 5000);
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
