// Parley's room protocol (v1, docs/protocol.md) without the DOM: RoomState applies server
// frames to a local copy of the room, and ReconnectingSocket keeps a socket open with
// exponential backoff. chat.js draws the result; tests/js/client.test.mjs tests it in Node.

export const TERMINAL_STATUSES = new Set(["complete", "cancelled", "failed", "interrupted"]);

// Errors after which resending the same frame cannot succeed.
const REJECTED_SEND_CODES = new Set([
  "bad_frame",
  "empty_text",
  "text_too_long",
  "frame_too_large",
  "quota_exceeded",
  "not_editable",
]);

// Errors after which the same frame should be sent again later (error.retry_after: seconds).
export const RETRY_SEND_CODES = new Set(["unavailable", "rate_limited"]);

// Close codes after which reconnecting cannot help (not logged in, not a member, the room
// was deleted).
export const FATAL_CLOSE_CODES = new Set([4401, 4403, 4404]);

const DEFAULT_LIMITS = { max_frame_bytes: 32 * 1024, max_message_chars: 8000 };

// The longest comment a feedback may have (parley.protocol.MAX_COMMENT_CHARS).
export const MAX_COMMENT_CHARS = 2000;

// Unsent messages kept in the browser's storage: at most this many a room, for this long.
const STORED_OUTBOX_MAX = 50;
const STORED_OUTBOX_DAYS = 7;
const CLIENT_ID = /^[A-Za-z0-9_.:-]{1,64}$/;

/** The URL of the socket at `path` (as the server reversed it) on the server at `loc` (the
 * page's location, or the URL of the server an embed talks to): wss: for https, else ws:. */
export function socketUrl(loc, path) {
  const scheme = loc.protocol === "https:" ? "wss:" : "ws:";
  return `${scheme}//${loc.host}${path}`;
}

/** A fresh client_id for a send frame (letters, digits and '-': what the server accepts). */
export function newClientId() {
  if (globalThis.crypto?.randomUUID) return globalThis.crypto.randomUUID();
  return `c-${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 12)}`;
}

/** Characters as the server counts them (code points, not UTF-16 units). */
export function charCount(text) {
  let n = 0;
  for (const _ of text) n += 1;
  return n;
}

/**
 * The client's copy of one room, built only from server frames.
 *
 * Messages are keyed by seq, so a message seen twice (ack and broadcast, or history that
 * overlaps live frames) is stored once. With a `storage` (localStorage), the outbox is also
 * kept there, by room and user (useStorage, called at hello), so that what was typed and not
 * yet acknowledged survives a reload, a logout and login, and a server restart. Assistant
 * text grows through deltas placed by their character offset; a delta beyond the local
 * text waits in a buffer until the gap is filled (usually by the offset-0 snapshot the
 * server sends after a resume). Sends stay in the outbox until acknowledged and are sent
 * again on every (re)connection; their client_id makes the server store each only once.
 *
 * apply(frame) returns {changed: Set of seqs, outbox: bool, send: frames to send now,
 * error: the error frame or null, rejected: the outbox entry that error refused, or null,
 * hello: bool, synced: bool (history is complete), room: bool (this.room changed)}.
 */
export class RoomState {
  constructor({ newId = newClientId, storage = null, now = Date.now } = {}) {
    this.newId = newId;
    this.storage = storage;
    this.storageKey = null; // where the outbox is kept, once the room and user are known
    this.finished = new Set(); // client_ids acknowledged or refused: not to be kept again
    this.now = now;
    this.messages = new Map(); // seq -> message payload (our own copy)
    this.seqById = new Map(); // message id -> seq
    this.pendingDeltas = new Map(); // message id -> [{offset, text}] not yet placeable
    this.outbox = new Map(); // client_id -> {client_id, text, ask, error}
    this.lastSeq = 0; // every message up to here is known (seqs have no gaps)
    this.gapAskedAfter = null; // lastSeq when we last asked for missed messages
    this.room = null;
    this.feedback = new Map(); // answer id -> {rating, comment}: our own, as the server stored it
    this.user = null;
    this.limits = { ...DEFAULT_LIMITS };
    this.synced = false;
  }

  /** Messages oldest first. */
  list() {
    return [...this.messages.values()].sort((a, b) => a.seq - b.seq);
  }

  /** The assistant answer now streaming, if any. */
  streaming() {
    let found = null;
    for (const m of this.messages.values()) {
      if (m.status === "streaming" && (!found || m.seq > found.seq)) found = m;
    }
    return found;
  }

  /** Why `text` cannot be sent (a sentence), or null if it can. */
  validate(text) {
    if (!text.trim()) return "The message is empty.";
    const chars = charCount(text);
    if (chars > this.limits.max_message_chars) {
      return `The message is ${chars} characters; the limit is ${this.limits.max_message_chars}.`;
    }
    const frame = { type: "send", client_id: "x".repeat(64), text, ask: true, edit_of: Number.MAX_SAFE_INTEGER };
    const bytes = new TextEncoder().encode(JSON.stringify(frame)).length;
    if (bytes > this.limits.max_frame_bytes) return "The message is too large to send.";
    return null;
  }

  /** Put a message in the outbox and return its send frame (send it if connected); with
   * `editOf`, an edit of one's own message of that id (a new version of it). */
  queueSend(text, { ask = true, editOf = null } = {}) {
    const entry = { client_id: this.newId(), text, ask: Boolean(ask), error: null, saved: this.now() };
    if (editOf !== null) entry.edit_of = editOf;
    this.outbox.set(entry.client_id, entry);
    this._store();
    return sendFrame(entry);
  }

  /** Keep the outbox in storage under `key` (a room and a user) from now on, taking in what
   * an earlier page left there unsent; returns whether the outbox grew. An entry keeps its
   * client_id, so the server stores it once however many times it is sent. */
  useStorage(key) {
    if (!this.storage || key === this.storageKey) return false;
    this.storageKey = key;
    let grew = false;
    for (const entry of this._stored()) {
      if (!this.outbox.has(entry.client_id)) {
        this.outbox.set(entry.client_id, entry);
        grew = true;
      }
    }
    this._store();
    return grew;
  }

  _stored() {
    let entries;
    try {
      entries = JSON.parse(this.storage.getItem(`parley.outbox:${this.storageKey}`) ?? "[]");
    } catch {
      return []; // unreadable (another version's, or hand-edited): nothing to resend
    }
    const oldest = this.now() - STORED_OUTBOX_DAYS * 86400 * 1000;
    return (Array.isArray(entries) ? entries : [])
      .filter((e) => CLIENT_ID.test(e?.client_id) && typeof e.text === "string" && e.saved > oldest)
      .filter((e) => e.edit_of === undefined || (Number.isSafeInteger(e.edit_of) && e.edit_of > 0))
      .map((e) => ({ ...storedEntry(e), ask: e.ask !== false, error: null }));
  }

  _store() {
    if (!this.storage || !this.storageKey) return;
    const name = `parley.outbox:${this.storageKey}`;
    // Another page of the room may have stored some too: theirs stay, unless this page saw
    // them acknowledged or refused.
    const kept = new Map(
      this._stored()
        .filter((e) => !this.finished.has(e.client_id))
        .map((e) => [e.client_id, e]),
    );
    for (const entry of this.outbox.values()) kept.set(entry.client_id, entry);
    const entries = [...kept.values()].sort((a, b) => a.saved - b.saved).slice(-STORED_OUTBOX_MAX);
    try {
      if (!entries.length) this.storage.removeItem(name);
      else this.storage.setItem(name, JSON.stringify(entries.map(storedEntry)));
    } catch {
      // Storage full or refused (private browsing): the outbox still lives in memory.
    }
  }

  /** Where a resume starts: after lastSeq, or just before the oldest answer we still hold
   * as streaming, so that a `done` missed while disconnected comes back in the history. */
  resumePoint() {
    let after = this.lastSeq;
    for (const m of this.messages.values()) {
      if (m.status === "streaming" && m.seq <= after) after = m.seq - 1;
    }
    return after;
  }

  /** Frames to send when a connection says hello: resume, then every unacked send. */
  resumeFrames() {
    return [{ type: "resume", after: this.resumePoint() }, ...[...this.outbox.values()].map(sendFrame)];
  }

  apply(frame) {
    const update = {
      changed: new Set(),
      outbox: false,
      send: [],
      later: null,
      error: null,
      rejected: null,
      hello: false,
      synced: false,
      room: false,
    };
    switch (frame?.type) {
      case "hello":
        this.room = frame.room ?? null;
        this.user = frame.user ?? null;
        this.limits = { ...DEFAULT_LIMITS, ...(frame.limits ?? {}) };
        if (this.room) this.useStorage(outboxKey(this.room.id, this.user));
        this.synced = false;
        update.hello = true;
        update.send = this.resumeFrames();
        for (const entry of this.outbox.values()) entry.error = null;
        update.outbox = this.outbox.size > 0;
        break;
      case "history":
        for (const m of frame.messages ?? []) this._upsert(m, update);
        // A page covers every seq from our resume point to its last_seq.
        this.lastSeq = Math.max(this.lastSeq, frame.last_seq ?? 0);
        this._advance();
        if (frame.more) {
          update.send.push({ type: "resume", after: this.lastSeq });
        } else {
          this.synced = true;
          update.synced = true;
        }
        break;
      case "ack":
        this.finished.add(frame.client_id);
        if (this.outbox.delete(frame.client_id)) update.outbox = true;
        if (frame.message) this._upsert(frame.message, update);
        this._fillGap(update);
        break;
      case "message":
      case "done":
        this._upsert(frame.message, update);
        this._fillGap(update);
        break;
      case "delta":
        this._delta(frame, update);
        break;
      case "tool":
        this._tool(frame, update);
        break;
      case "feedback": {
        // Our feedback on an answer as now stored (null: taken back); no one else is told.
        if (frame.feedback) this.feedback.set(frame.message_id, frame.feedback);
        else this.feedback.delete(frame.message_id);
        const seq = this.seqById.get(frame.message_id);
        if (seq !== undefined) update.changed.add(seq);
        break;
      }
      case "room":
        // The room changed (renamed): the page shows its new title.
        this.room = frame.room ?? this.room;
        update.room = true;
        break;
      case "sync":
        // The server's channel layer was down: live frames may be lost. The database has them.
        this.synced = false;
        update.send.push({ type: "resume", after: this.resumePoint() });
        break;
      case "error": {
        update.error = frame;
        if (frame.code === "rate_limited" && typeof frame.after === "number") {
          // A refused resume (history asked for too fast): ask again once allowed.
          const delay = Math.round((frame.retry_after ?? 1) * 1000) + 100;
          update.later = { delay, send: [{ type: "resume", after: frame.after }] };
        }
        const entry = frame.client_id ? this.outbox.get(frame.client_id) : null;
        if (entry && REJECTED_SEND_CODES.has(frame.code)) {
          this.outbox.delete(frame.client_id);
          this.finished.add(frame.client_id);
          update.outbox = true;
          update.rejected = entry;
        } else if (entry && RETRY_SEND_CODES.has(frame.code)) {
          entry.error = frame.detail; // stays queued: sent again on the next retry
          update.outbox = true;
        }
        break;
      }
      default:
        break; // unknown frame types are ignored: newer servers may send more
    }
    if (update.outbox) this._store();
    return update;
  }

  _upsert(payload, update) {
    if (!payload || typeof payload.seq !== "number") return;
    const known = this.messages.get(payload.seq);
    let message;
    if (!known) {
      message = { ...payload };
    } else if (payload.status !== "streaming") {
      message = { ...payload }; // a final state replaces whatever we had
    } else if (known.status !== "streaming") {
      return; // an older streaming copy (e.g. in history) never undoes a final state
    } else {
      // Both streaming: keep the longer text, which deltas may already have extended, and
      // the blocks rendered so far (a payload has none).
      const text = payload.text.length > known.text.length ? payload.text : known.text;
      message = { ...payload, text, blocks: known.blocks, tools: mergeSteps(known.tools, payload.tools) };
    }
    this.messages.set(message.seq, message);
    this.seqById.set(message.id, message.seq);
    // History pages carry our own feedback on the answers we rated (a reload shows it again).
    if (payload.feedback) this.feedback.set(message.id, payload.feedback);
    update.changed.add(message.seq);
    // Our own message, stored before its ack was lost: it is not waiting any more.
    if (message.client_id && this.outbox.has(message.client_id) && this._mine(message)) {
      this.outbox.delete(message.client_id);
      this.finished.add(message.client_id);
      update.outbox = true;
    }
    if (message.status === "streaming") {
      this._drain(message);
    } else {
      this.pendingDeltas.delete(message.id);
    }
    this._advance();
  }

  _mine(message) {
    return !this.user || isMine(message, this.user);
  }

  /** A tool step of a streaming answer: it replaces the step with its id. */
  _tool(frame, update) {
    const seq = this.seqById.get(frame.message_id);
    const message = seq === undefined ? null : this.messages.get(seq);
    if (message?.status !== "streaming" || !frame.step) return; // done has them
    message.tools = mergeSteps(message.tools, [frame.step]);
    update.changed.add(seq);
  }

  _delta(frame, update) {
    const seq = this.seqById.get(frame.message_id);
    const message = seq === undefined ? null : this.messages.get(seq);
    if (message && message.status !== "streaming") return; // finished: done has the text
    const queue = this.pendingDeltas.get(frame.message_id) ?? [];
    queue.push({ offset: frame.offset, text: frame.text ?? "", blocks: frame.blocks ?? null });
    this.pendingDeltas.set(frame.message_id, queue);
    if (message && this._drain(message)) update.changed.add(message.seq);
  }

  /** Place every buffered delta that fits; returns whether the text changed. Offsets count
   * characters as the server does (code points): an emoji is one, not two UTF-16 units. */
  _drain(message) {
    const queue = this.pendingDeltas.get(message.id);
    if (!queue) return false;
    let changed = false;
    let progress = true;
    while (progress && queue.length) {
      progress = false;
      for (let i = 0; i < queue.length; i += 1) {
        const { offset, text, blocks } = queue[i];
        const length = charCount(message.text);
        if (offset === 0) {
          // A snapshot replaces our copy, unless it is an older prefix of what we have.
          if (!message.text.startsWith(text)) {
            message.text = text;
            changed = true;
          }
        } else if (offset <= length) {
          const extra = sliceChars(text, length - offset);
          if (extra) {
            message.text += extra;
            changed = true;
          }
        } else {
          continue; // a gap before it: wait
        }
        if (blocks && applyBlocks(message, blocks)) changed = true;
        queue.splice(i, 1);
        progress = true;
        break;
      }
    }
    if (!queue.length) this.pendingDeltas.delete(message.id);
    return changed;
  }

  _advance() {
    while (this.messages.has(this.lastSeq + 1)) this.lastSeq += 1;
  }

  /** A live message numbered past lastSeq + 1 means some were missed (a server under load
   * may drop frames; the database has them all): ask for them, once per gap. */
  _fillGap(update) {
    if (!this.synced || this.gapAskedAfter === this.lastSeq) return;
    for (const seq of this.messages.keys()) {
      if (seq > this.lastSeq + 1) {
        this.gapAskedAfter = this.lastSeq;
        update.send.push({ type: "resume", after: this.lastSeq });
        return;
      }
    }
  }
}

/** Where a room's unsent messages are kept for `user` (hello's; a visitor has no id). */
export function outboxKey(roomId, user) {
  return `${roomId}:${user?.id ?? "visitor"}`;
}

/** `text` from its `start`th character (code point) on. */
export function sliceChars(text, start) {
  let index = 0;
  for (let n = 0; n < start && index < text.length; n += 1) {
    const unit = text.charCodeAt(index);
    index += unit >= 0xd800 && unit < 0xdc00 ? 2 : 1; // a high surrogate: two units
  }
  return text.slice(index);
}

// How far a tool step has got (docs/tools.md): a copy of a step never goes back, whatever
// order the history and the live frames bring them in.
const STEP_STAGES = { queued: 0, pending: 1, approved: 2, running: 3 };
const stageOf = (step) => STEP_STAGES[step.status] ?? 4;

/** The tool steps of `known` with those of `incoming`, one per id, in the order made. */
export function mergeSteps(known = [], incoming = []) {
  const steps = new Map((known ?? []).map((step) => [step.id, step]));
  for (const step of incoming ?? []) {
    const have = steps.get(step.id);
    if (!have || stageOf(step) >= stageOf(have)) steps.set(step.id, step);
  }
  return [...steps.values()].sort((a, b) => a.id - b.id);
}

/** Apply a delta's `blocks` (the answer's HTML, docs/protocol.md) to `message.blocks`
 * ({html: [...], chars}), if they follow what it has: an update from block 0 replaces an
 * older state; any other continues the one rendered at `after` characters. One that does
 * not follow is dropped: the text still shows, and `done` brings the whole HTML. */
export function applyBlocks(message, blocks) {
  const have = message.blocks;
  if (blocks.from === 0) {
    if (blocks.chars <= (have?.chars ?? 0)) return false;
    message.blocks = { html: blocks.html, chars: blocks.chars };
    return true;
  }
  if (!have || blocks.after !== have.chars || blocks.from > have.html.length) return false;
  message.blocks = { html: have.html.slice(0, blocks.from).concat(blocks.html), chars: blocks.chars };
  return true;
}

/** Whether `message` was posted by `me` (hello's user). A visitor's messages have no
 * author: in a visitor's conversation every message of a person is the visitor's. */
export function isMine(message, me) {
  if (message.role !== "user" || !me) return false;
  return message.author ? message.author.id === me.id : Boolean(me.visitor);
}

function storedEntry({ client_id, text, ask, saved, edit_of }) {
  return { client_id, text, ask, saved, edit_of };
}

/** Whether `message` can be given feedback: a finished answer. */
export function isRateable(message) {
  return message?.role === "assistant" && TERMINAL_STATUSES.has(message.status);
}

/** The frame giving our feedback on the answer `id`: `rating` "up" or "down" with an optional
 * `comment` (cut to MAX_COMMENT_CHARS characters), or null to take it back. */
export function rateFrame(id, rating, comment = "") {
  const text = rating ? [...comment.trim()].slice(0, MAX_COMMENT_CHARS).join("") : "";
  return { type: "rate", message_id: id, rating: rating ?? null, comment: text };
}

/** The send frame of an outbox entry (an edit names the message it edits). */
export function sendFrame(entry) {
  const frame = { type: "send", client_id: entry.client_id, text: entry.text, ask: entry.ask };
  if (entry.edit_of !== undefined) frame.edit_of = entry.edit_of;
  return frame;
}

/** Milliseconds before reconnect attempt `attempt` (0, 1, …): exponential, capped, jittered
 * between half and all of the step so that many clients do not return at once. */
export function backoffDelay(attempt, { base = 500, max = 15000, random = Math.random } = {}) {
  const ceiling = Math.min(max, base * 2 ** Math.min(attempt, 30));
  return Math.round(ceiling / 2 + (random() * ceiling) / 2);
}

/**
 * A WebSocket that reconnects after losing its connection, with backoff and jitter.
 *
 * `url` is the socket's URL, or an async function giving the URL for each attempt (the
 * embedded chat fetches a single-use ticket for each); an error it throws is retried like a
 * lost connection, unless it has `fatal: true`, which stops for good.
 *
 * Callbacks: onOpen(), onFrame(parsed JSON), onState({state, ...}) where state is
 * "connecting", "open", "reconnecting" (with delay and retryAt in ms since the epoch) or
 * "closed" (with code and reason; closes in `fatalCodes`, 4401/4403 unless told otherwise,
 * are not retried).
 */
export class ReconnectingSocket {
  constructor(url, options = {}) {
    this.url = url;
    this.fatalCodes = options.fatalCodes ?? FATAL_CLOSE_CODES;
    this.WebSocket = options.WebSocket ?? globalThis.WebSocket;
    this.setTimeout = options.setTimeout ?? globalThis.setTimeout.bind(globalThis);
    this.clearTimeout = options.clearTimeout ?? globalThis.clearTimeout.bind(globalThis);
    this.now = options.now ?? Date.now;
    this.backoff = { base: options.base ?? 500, max: options.max ?? 15000, random: options.random ?? Math.random };
    this.connectTimeout = options.connectTimeout ?? 10000;
    this.onOpen = options.onOpen ?? (() => {});
    this.onFrame = options.onFrame ?? (() => {});
    this.onState = options.onState ?? (() => {});
    this.ws = null;
    this.attempt = 0;
    this.timer = null;
    this.stopped = true;
    this.state = { state: "closed" };
  }

  start() {
    this.stopped = false;
    this._connect();
  }

  /** Send a frame now; false if the socket is not open (the caller keeps it for later). */
  send(frame) {
    if (this.ws?.readyState !== 1) return false;
    this.ws.send(JSON.stringify(frame));
    return true;
  }

  get isOpen() {
    return this.ws?.readyState === 1;
  }

  /** Skip the wait and try at once (e.g. when the browser comes back online). */
  reconnectNow() {
    if (this.stopped || this.ws) return;
    this._clearTimer();
    this._connect();
  }

  /** Close for good. */
  close() {
    this.stopped = true;
    this._clearTimer();
    const ws = this.ws;
    this.ws = null;
    if (ws?.close) ws.close(1000);
    this._setState({ state: "closed", code: 1000, reason: "", fatal: true });
  }

  _connect() {
    this._setState({ state: "connecting", attempt: this.attempt });
    if (typeof this.url !== "function") {
      this._open(this.url);
      return;
    }
    const attempt = Symbol("attempt");
    this.ws = attempt; // taken: reconnectNow() waits for this attempt
    this.url().then(
      (url) => {
        if (this.ws !== attempt) return; // closed meanwhile
        this.ws = null;
        this._open(url);
      },
      (error) => {
        if (this.ws !== attempt) return;
        this.ws = null;
        if (error?.fatal) {
          this.stopped = true;
          this._setState({ state: "closed", code: error.code ?? 0, reason: error.message, fatal: true });
        } else {
          this._retry();
        }
      },
    );
  }

  _open(url) {
    let ws;
    try {
      ws = new this.WebSocket(url);
    } catch {
      this._retry();
      return;
    }
    this.ws = ws;
    this.timer = this.setTimeout(() => {
      if (this.ws === ws && ws.readyState !== 1) ws.close(); // took too long: start over
    }, this.connectTimeout);
    ws.onopen = () => {
      if (this.ws !== ws) return;
      this._clearTimer();
      this._setState({ state: "open" });
      this.onOpen();
    };
    ws.onmessage = (event) => {
      if (this.ws !== ws) return;
      let frame;
      try {
        frame = JSON.parse(event.data);
      } catch {
        return;
      }
      this.attempt = 0; // the server talks: the next loss starts the backoff afresh
      this.onFrame(frame);
    };
    ws.onclose = (event) => {
      if (this.ws !== ws) return;
      this.ws = null;
      this._clearTimer();
      if (this.stopped) return;
      if (this.fatalCodes.has(event.code)) {
        this.stopped = true;
        this._setState({ state: "closed", code: event.code, reason: event.reason, fatal: true });
        return;
      }
      this._retry();
    };
  }

  _retry() {
    const delay = backoffDelay(this.attempt, this.backoff);
    this.attempt += 1;
    this._setState({ state: "reconnecting", delay, retryAt: this.now() + delay, attempt: this.attempt });
    this.timer = this.setTimeout(() => {
      this.timer = null;
      this._connect();
    }, delay);
  }

  _clearTimer() {
    if (this.timer !== null) this.clearTimeout(this.timer);
    this.timer = null;
  }

  _setState(state) {
    this.state = state;
    this.onState(state);
  }
}
