// One conversation on screen: RoomState (client.js) wired to its socket, the message list
// (messages.js), the composer and the stop button. The room page (chat.js) and the embedded
// chat (widget.js) each build their elements and draw the connection state their own way;
// everything else is here, once.

import { RETRY_SEND_CODES, ReconnectingSocket, RoomState, charCount, rateFrame, sendFrame } from "./client.js";
import { MessageList } from "./messages.js";

const EXPLANATIONS = {
  nothing_to_cancel: "There was no answer to stop.",
  assistant_busy: "The assistant is busy: ask for this answer again once it has finished.",
  not_waiting: "That question is no longer waiting: it may have been answered already.",
  not_pending: "That tool call is no longer waiting for a decision.",
  not_rateable: "That answer cannot be rated (it is not finished, or no longer there).",
};

/**
 * `url`: the socket's URL, or an async function giving one per connection (ReconnectingSocket).
 * `els`: {list, announcer, scroller, empty, notice, form, text, send, stop, count?, ask?}.
 * Options: `fatalCodes` (ReconnectingSocket's), `keepUnsent` (false: unsent messages live in
 * memory only, not in the page's localStorage), `outboxKey` (where unsent messages are kept, if
 * the page knows its room and user before hello: they show at once), `onConnection(state)` called with the socket's
 * states and {state: "connected"} once the server said hello, `onRoom(room)` called when the
 * room changes (a new title), `host`, the element whose data-streaming says whether an
 * answer streams, `approver`: the user may decide on other members' tool calls, and
 * `onSynced()`, called each time the history is complete (it holds every message from the
 * first).
 */
export class Conversation {
  constructor(
    url,
    els,
    {
      fatalCodes,
      outboxKey,
      keepUnsent = true,
      onConnection = () => {},
      onRoom = () => {},
      host = null,
      approver = false,
      onSynced = () => {},
    } = {},
  ) {
    this.els = els;
    this.onSynced = onSynced;
    this.approver = approver;
    this.keepUnsent = keepUnsent;
    this.onConnection = onConnection;
    this.onRoom = onRoom;
    this.host = host;
    this.ready = false; // hello received on the current connection
    this.refused = false; // closed for good: nothing can be sent any more
    this.cancelRequested = null; // id of the answer we asked to stop
    this.resendTimer = null;
    this.noticeTimer = null;
    this.reset();
    this.socket = new ReconnectingSocket(url, {
      fatalCodes,
      onFrame: (frame) => this.onFrame(frame),
      onState: (s) => this.onSocketState(s),
    });
    els.form.addEventListener("submit", (event) => {
      event.preventDefault();
      this.submit();
    });
    els.text.addEventListener("keydown", (event) => {
      if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
        event.preventDefault();
        this.submit();
      }
    });
    els.text.addEventListener("input", () => this.updateComposer());
    els.stop.addEventListener("click", () => this.stop());
    this.updateComposer();
    if (outboxKey && this.state.useStorage(outboxKey)) this.renderOutbox();
  }

  /** Start from nothing: a first conversation, or another one (the visitor logged in). */
  reset() {
    this.state = new RoomState({ storage: this.keepUnsent ? browserStorage() : null });
    this.caughtUp = false; // the history was complete once: what comes now is news
    this.els.list.replaceChildren();
    this.messages = new MessageList(this.els.list, () => this.state.user, this.els.announcer, {
      onWithdraw: (id) => this.socket.send({ type: "withdraw", message_id: id }),
      onRegenerate: (id) => this.regenerate(id),
      onEdit: (id, text) => this.edit(id, text),
      onDecide: (step, decision) => this.decide(step, decision),
      approver: this.approver,
      onRate: (id, rating, comment) => this.rate(id, rating, comment),
      feedbackOf: (id) => this.state.feedback.get(id) ?? null,
    });
  }

  start() {
    this.socket.start();
  }

  close() {
    clearTimeout(this.resendTimer);
    this.socket.close();
  }

  onFrame(frame) {
    const stick = this.nearBottom();
    const update = this.state.apply(frame);
    if (update.hello) {
      this.ready = true;
      this.onConnection({ state: "connected" });
      this.updateComposer(); // the limits came with hello
    }
    if (update.room || update.hello) this.onRoom(this.state.room); // renamed, perhaps while away
    for (const out of update.send) this.socket.send(out);
    if (update.later) this.sendLater(update.later);
    for (const seq of update.changed) {
      this.messages.render(this.state.messages.get(seq), { announce: this.caughtUp });
    }
    if (update.synced) this.caughtUp = true;
    if (update.outbox) this.renderOutbox();
    if (update.error) this.showError(update.error);
    if (update.rejected) this.restore(update.rejected);
    this.updateStreaming();
    this.showEmpty();
    if (stick) this.scrollToBottom();
    if (update.synced) this.onSynced();
  }

  /** A send the server refused goes back where it was typed (the editor of the message it
   * edits, else the composer, before what is there now): what was typed is not lost. An
   * edit put in the composer would be sent as a new message: the notice says so. */
  restore(entry) {
    if (entry.edit_of && this.messages.reopenEditor(entry.edit_of, entry.text)) return;
    const { text } = this.els;
    text.value = text.value.trim() ? `${entry.text}\n\n${text.value}` : entry.text;
    this.updateComposer();
    if (entry.edit_of) this.notify(`${this.els.notice.textContent} Your edit is back in the message box.`);
  }

  onSocketState(s) {
    if (s.state !== "open") this.ready = false;
    if (s.state === "closed") this.refused = true;
    this.onConnection(s);
    this.updateStreaming();
    this.updateComposer();
    this.renderOutbox();
  }

  renderOutbox() {
    this.messages.renderOutbox(this.state.outbox, (entry) => {
      if (entry.error) return "Not sent yet, will retry";
      return this.ready ? "Sending…" : "Waiting for connection…";
    });
  }

  updateStreaming() {
    const streaming = this.state.streaming();
    const stop = this.els.stop;
    stop.hidden = !streaming;
    stop.disabled = !streaming || !this.ready || this.cancelRequested === streaming.id;
    if (!streaming) this.cancelRequested = null;
    if (this.host) this.host.dataset.streaming = streaming ? "true" : "false";
  }

  showEmpty() {
    const { state } = this;
    this.els.empty.hidden = !state.synced || state.messages.size > 0 || state.outbox.size > 0;
  }

  showError(frame) {
    if (frame.code === "assistant_failed") return; // shown on the failed message itself
    if (frame.code === "rate_limited" && typeof frame.after === "number") return; // retried
    // A decision refused is said on its card, when the card is on screen.
    if (
      typeof frame.step === "number" &&
      this.messages.decisionRefused(frame.step, EXPLANATIONS[frame.code] ?? frame.detail)
    )
      return;
    this.notify(EXPLANATIONS[frame.code] ?? frame.detail ?? "Something went wrong.");
    if (RETRY_SEND_CODES.has(frame.code) && frame.client_id) {
      this.scheduleResend(frame.retry_after ? frame.retry_after * 1000 + 100 : 3000);
    }
  }

  notify(text) {
    const notice = this.els.notice;
    notice.textContent = text;
    notice.hidden = false;
    clearTimeout(this.noticeTimer);
    this.noticeTimer = setTimeout(() => {
      notice.hidden = true;
    }, 8000);
  }

  // Frames to send after a wait (a refused resume); dropped if the connection went meanwhile:
  // the next hello resumes anyway.
  sendLater({ delay, send }) {
    const connection = this.socket.ws;
    setTimeout(() => {
      if (this.ready && this.socket.ws === connection) for (const out of send) this.socket.send(out);
    }, delay);
  }

  // One timer for every refused send: each resend sends the whole outbox.
  scheduleResend(wait) {
    if (this.resendTimer !== null) return;
    this.resendTimer = setTimeout(() => {
      this.resendTimer = null;
      if (!this.ready) return;
      for (const entry of this.state.outbox.values()) this.socket.send(sendFrame(entry));
    }, wait);
  }

  updateComposer() {
    const { text, send, count } = this.els;
    const chars = charCount(text.value);
    const limit = this.state.limits.max_message_chars;
    if (count) {
      count.textContent = chars > limit * 0.8 ? `${chars} / ${limit}` : "";
      count.classList.toggle("over", chars > limit);
    }
    send.disabled = this.refused || !text.value.trim() || chars > limit;
    text.disabled = this.refused;
    text.style.height = "auto";
    text.style.height = `${Math.min(text.scrollHeight, 240)}px`;
  }

  submit() {
    const { text } = this.els;
    if (!this.queue(text.value)) return;
    text.value = "";
    this.updateComposer();
    text.focus();
  }

  /** Put `text` in the outbox (an edit of one's own message `editOf`, if given: a new
   * version of it) and send it if connected; false, and the reason shown, if it cannot be
   * sent. */
  queue(text, editOf = null) {
    if (this.refused) return false;
    const problem = this.state.validate(text);
    if (problem) {
      this.notify(problem);
      return false;
    }
    const { ask } = this.els;
    // An edit is a question asked again; a message asks as the composer's box says.
    const frame = this.state.queueSend(text, { ask: editOf !== null || (ask ? ask.checked : true), editOf });
    if (this.ready) this.socket.send(frame);
    this.renderOutbox();
    this.showEmpty();
    if (editOf === null) this.scrollToBottom(); // an edit is answered in its place
    return true;
  }

  /** Send `text` as a new version of one's own message `id`; then the focus goes back to
   * the composer. */
  edit(id, text) {
    if (!this.queue(text, id)) return false;
    this.els.text.focus();
    return true;
  }

  /** Ask for the answer `id` again; said so if it cannot be asked now. */
  regenerate(id) {
    if (this.state.streaming()) {
      this.notify("Wait for the assistant to finish this answer first.");
      return;
    }
    if (!this.socket.send({ type: "regenerate", message_id: id }))
      this.notify("Not connected; try again once connected.");
  }

  /** Approve or deny the tool call `step` that waits; false, and said so, if not connected. */
  decide(step, decision) {
    if (this.ready && this.socket.send({ type: "decide", step, ...decision })) return true;
    this.notify("Not connected; decide again once connected.");
    return false;
  }

  /** Give our feedback on the answer `id` (rating null: take it back); false, and said so,
   * if not connected. */
  rate(id, rating, comment) {
    if (this.ready && this.socket.send(rateFrame(id, rating, comment))) return true;
    this.notify("Not connected; give your feedback again once connected.");
    return false;
  }

  stop() {
    const streaming = this.state.streaming();
    if (!streaming || !this.socket.send({ type: "cancel", message_id: streaming.id })) return;
    this.cancelRequested = streaming.id;
    this.updateStreaming();
    // If no done follows (the answer's server may be gone), let the user try again.
    setTimeout(() => {
      if (this.cancelRequested === streaming.id) {
        this.cancelRequested = null;
        this.updateStreaming();
      }
    }, 5000);
  }

  nearBottom() {
    const s = this.els.scroller;
    return s.scrollHeight - s.scrollTop - s.clientHeight < 80;
  }

  scrollToBottom() {
    this.els.scroller.scrollTop = this.els.scroller.scrollHeight;
  }
}

/** The page's localStorage, or null where it is refused (a sandboxed frame, some privacy
 * settings): reading the property itself may throw. */
function browserStorage() {
  try {
    return globalThis.localStorage ?? null;
  } catch {
    return null;
  }
}
