// node --test tests/js/ — the protocol state of parley/static/parley/client.js, without a DOM.

import assert from "node:assert/strict";
import { test } from "node:test";

import {
  ReconnectingSocket,
  RoomState,
  backoffDelay,
  charCount,
  mergeSteps,
  sliceChars,
  socketUrl,
} from "../../parley/static/parley/client.js";

const HELLO = {
  type: "hello",
  v: 1,
  room: { id: "r1", title: "Room", kind: "shared" },
  user: { id: 7, name: "alice" },
  last_seq: 0,
  limits: { max_frame_bytes: 1024, max_message_chars: 20 },
};

function userMessage(seq, overrides = {}) {
  return {
    id: 100 + seq,
    seq,
    role: "user",
    author: { id: 7, name: "alice" },
    text: `message ${seq}`,
    status: "complete",
    created_at: "2026-01-01T00:00:00+00:00",
    reply_to: null,
    ...overrides,
  };
}

function answer(seq, text = "", status = "streaming", extra = {}) {
  return {
    id: 100 + seq,
    seq,
    role: "assistant",
    author: null,
    text,
    status,
    created_at: "2026-01-01T00:00:00+00:00",
    reply_to: 100 + seq - 1,
    ...extra,
  };
}

const delta = (seq, offset, text, blocks) => ({
  type: "delta",
  message_id: 100 + seq,
  offset,
  text,
  ...(blocks ? { blocks } : {}),
});

function ids() {
  let n = 0;
  return () => `c${++n}`;
}

test("hello asks to resume from the last seq and records the limits", () => {
  const state = new RoomState();
  const update = state.apply(HELLO);
  assert.equal(update.hello, true);
  assert.deepEqual(update.send, [{ type: "resume", after: 0 }]);
  assert.equal(state.limits.max_message_chars, 20);
  assert.equal(state.user.name, "alice");
});

test("a message seen as ack, broadcast and history is stored once", () => {
  const state = new RoomState({ newId: ids() });
  state.apply(HELLO);
  const frame = state.queueSend("hi", { ask: false });
  assert.deepEqual(frame, { type: "send", client_id: "c1", text: "hi", ask: false });
  const stored = userMessage(1, { text: "hi", client_id: "c1" });
  const ack = state.apply({ type: "ack", client_id: "c1", message: stored, duplicate: false });
  assert.equal(ack.outbox, true);
  assert.deepEqual([...ack.changed], [1]);
  state.apply({ type: "message", message: stored });
  state.apply({ type: "history", messages: [stored], more: false, last_seq: 1 });
  assert.equal(state.messages.size, 1);
  assert.equal(state.list()[0].text, "hi");
  assert.equal(state.outbox.size, 0);
  assert.equal(state.lastSeq, 1);
});

test("deltas append at their offset; overlaps apply only the new part", () => {
  const state = new RoomState();
  state.apply(HELLO);
  state.apply({ type: "message", message: answer(2) });
  state.apply(delta(2, 0, "Hello"));
  state.apply(delta(2, 5, ", wor"));
  assert.equal(state.messages.get(2).text, "Hello, wor");
  // A repeat and an overlapping delta: only the characters beyond ours count.
  state.apply(delta(2, 5, ", wor"));
  const update = state.apply(delta(2, 7, "world!"));
  assert.deepEqual([...update.changed], [2]);
  assert.equal(state.messages.get(2).text, "Hello, world!");
  assert.equal(state.apply(delta(2, 0, "Hello")).changed.size, 0, "an older snapshot changes nothing");
  assert.equal(state.messages.get(2).text, "Hello, world!");
});

test("offsets count characters as the server does: an emoji is one", () => {
  const state = new RoomState();
  state.apply(HELLO);
  state.apply({ type: "message", message: answer(2) });
  state.apply(delta(2, 0, "Done 🎉"));
  state.apply(delta(2, 6, " and 👍"));
  state.apply(delta(2, 12, "!"));
  assert.equal(state.messages.get(2).text, "Done 🎉 and 👍!");
  state.apply(delta(2, 7, "and 👍!")); // an overlap after an emoji: nothing is repeated
  assert.equal(state.messages.get(2).text, "Done 🎉 and 👍!");
  assert.equal(sliceChars("a🎉b", 2), "b");
  assert.equal(sliceChars("a🎉b", 9), "");
});

test("blocks of HTML follow each other; one that does not follow is dropped, not applied", () => {
  const state = new RoomState();
  state.apply(HELLO);
  state.apply({ type: "message", message: answer(2) });
  const h = "<h2>Plan</h2>\n";
  state.apply(delta(2, 0, "## Plan\n\nFir", { from: 0, html: [h, "<p>Fir</p>\n"], chars: 12, after: 0 }));
  state.apply(delta(2, 12, "st.", { from: 1, html: ["<p>First.</p>\n"], chars: 15, after: 12 }));
  assert.deepEqual(state.messages.get(2).blocks, { html: [h, "<p>First.</p>\n"], chars: 15 });
  // Missed: the update rendered at 18 characters. The next one cannot be placed on ours.
  state.apply(delta(2, 15, "\n\n- a", null));
  state.apply(delta(2, 20, "nd", { from: 2, html: ["<ul>\n<li>and</li>\n</ul>\n"], chars: 22, after: 18 }));
  assert.equal(state.messages.get(2).blocks.chars, 15, "kept: the text still shows, unformatted");
  // A snapshot (from block 0) replaces them, unless older than what we have.
  const snapshot = { from: 0, html: [h, "<p>First.</p>\n", "<ul>\n<li>and</li>\n</ul>\n"], chars: 22 };
  state.apply(delta(2, 0, "## Plan\n\nFirst.\n\n- and", snapshot));
  assert.equal(state.messages.get(2).blocks.chars, 22);
  state.apply(delta(2, 0, "## Plan\n\nFir", { from: 0, html: [h], chars: 12, after: 0 }));
  assert.equal(state.messages.get(2).blocks.chars, 22, "an older snapshot is ignored");
  // A history copy of the streaming answer keeps the blocks.
  state.apply({ type: "history", messages: [answer(2, "## Plan")], more: false, last_seq: 2 });
  assert.equal(state.messages.get(2).blocks.chars, 22);
});

test("a delta beyond a gap waits for the snapshot, then both apply", () => {
  const state = new RoomState();
  state.apply(HELLO);
  // History holds the text persisted a while ago; live deltas are further on.
  state.apply({ type: "history", messages: [userMessage(1), answer(2, "One ")], more: false, last_seq: 2 });
  state.apply(delta(2, 12, "three "));
  assert.equal(state.messages.get(2).text, "One ", "the gap (4..12) is not filled yet");
  state.apply(delta(2, 18, "four"));
  state.apply(delta(2, 0, "One two and "));
  assert.equal(state.messages.get(2).text, "One two and three four");
  assert.equal(state.pendingDeltas.size, 0);
});

test("deltas for a message not yet known wait for it", () => {
  const state = new RoomState();
  state.apply(HELLO);
  // A fresh client joins mid-answer: live deltas arrive before the history.
  state.apply(delta(2, 10, "more"));
  state.apply(delta(2, 0, "Snapshot: "));
  state.apply({ type: "history", messages: [userMessage(1), answer(2, "Snap")], more: false, last_seq: 2 });
  assert.equal(state.messages.get(2).text, "Snapshot: more");
});

test("done replaces the text, and later deltas or stale copies do not undo it", () => {
  const state = new RoomState();
  state.apply(HELLO);
  state.apply({ type: "message", message: answer(2) });
  state.apply(delta(2, 0, "Hi **there**"));
  state.apply({
    type: "done",
    message: answer(2, "Hi **there**", "cancelled", { html: "<p>Hi <strong>there</strong></p>" }),
  });
  state.apply(delta(2, 12, " late"));
  state.apply({ type: "history", messages: [answer(2, "Hi")], more: false, last_seq: 2 });
  const message = state.messages.get(2);
  assert.equal(message.status, "cancelled");
  assert.equal(message.text, "Hi **there**");
  assert.equal(message.html, "<p>Hi <strong>there</strong></p>");
  assert.equal(state.streaming(), null);
});

test("a streaming copy from history keeps the longer local text", () => {
  const state = new RoomState();
  state.apply(HELLO);
  state.apply({ type: "message", message: answer(1) });
  state.apply(delta(1, 0, "abcdef"));
  state.apply({ type: "history", messages: [answer(1, "abc")], more: false, last_seq: 1 });
  assert.equal(state.messages.get(1).text, "abcdef");
  assert.equal(state.streaming().seq, 1);
});

test("unacked sends are sent again after a reconnect; acked ones are not", () => {
  const state = new RoomState({ newId: ids() });
  state.apply(HELLO);
  state.queueSend("first");
  state.queueSend("second", { ask: false });
  state.apply({
    type: "ack",
    client_id: "c1",
    message: userMessage(1, { text: "first", client_id: "c1" }),
    duplicate: false,
  });
  // The connection drops; the next hello resumes after seq 1 and resends "second" only.
  const update = state.apply({ ...HELLO, last_seq: 1 });
  assert.deepEqual(update.send, [
    { type: "resume", after: 1 },
    { type: "send", client_id: "c2", text: "second", ask: false },
  ]);
  // The server had stored it before the drop: the ack says duplicate, one copy is kept.
  state.apply({
    type: "history",
    messages: [userMessage(2, { text: "second", client_id: "c2" })],
    more: false,
    last_seq: 2,
  });
  assert.equal(state.outbox.size, 0, "seeing our own message in history settles the send");
  state.apply({
    type: "ack",
    client_id: "c2",
    message: userMessage(2, { text: "second", client_id: "c2" }),
    duplicate: true,
  });
  assert.equal(state.messages.size, 2);
  assert.deepEqual(state.apply(HELLO).send, [{ type: "resume", after: 2 }]);
});

test("a send the server rejects leaves the outbox; an unavailable database keeps it", () => {
  const state = new RoomState({ newId: ids() });
  state.apply(HELLO);
  state.queueSend("a");
  state.queueSend("b");
  state.apply({ type: "error", code: "text_too_long", detail: "too long", client_id: "c1" });
  const update = state.apply({ type: "error", code: "unavailable", detail: "db down", client_id: "c2" });
  assert.equal(update.error.code, "unavailable");
  assert.deepEqual([...state.outbox.keys()], ["c2"]);
  assert.equal(state.outbox.get("c2").error, "db down");
});

test("history pages: more=true asks for the next page; lastSeq follows contiguous seqs", () => {
  const state = new RoomState();
  state.apply(HELLO);
  // A live message overtakes the history.
  state.apply({ type: "message", message: userMessage(5) });
  assert.equal(state.lastSeq, 0);
  const first = state.apply({ type: "history", messages: [userMessage(1), userMessage(2)], more: true, last_seq: 2 });
  assert.deepEqual(first.send, [{ type: "resume", after: 2 }]);
  assert.equal(first.synced, false);
  const second = state.apply({ type: "history", messages: [userMessage(3), userMessage(4)], more: false, last_seq: 4 });
  assert.equal(second.synced, true);
  assert.equal(state.lastSeq, 5);
  assert.deepEqual(
    state.list().map((m) => m.seq),
    [1, 2, 3, 4, 5],
  );
});

test("validate counts characters as the server does and applies the limits", () => {
  const state = new RoomState();
  state.apply(HELLO);
  assert.equal(charCount("😀😀"), 2);
  assert.equal(state.validate("   "), "The message is empty.");
  assert.equal(state.validate("😀".repeat(20)), null);
  assert.match(state.validate("x".repeat(21)), /limit is 20/);
});

test("socketUrl picks wss: on https pages", () => {
  assert.equal(
    socketUrl({ protocol: "https:", host: "chat.example" }, "/ws/rooms/abc/"),
    "wss://chat.example/ws/rooms/abc/",
  );
  assert.equal(
    socketUrl({ protocol: "http:", host: "127.0.0.1:8000" }, "/chat/ws/rooms/abc/"),
    "ws://127.0.0.1:8000/chat/ws/rooms/abc/",
  );
});

test("backoff grows exponentially, is capped, and jitters within [half, full]", () => {
  assert.equal(backoffDelay(0, { base: 500, max: 15000, random: () => 0 }), 250);
  assert.equal(backoffDelay(0, { base: 500, max: 15000, random: () => 1 }), 500);
  assert.equal(backoffDelay(3, { base: 500, max: 15000, random: () => 1 }), 4000);
  assert.equal(backoffDelay(20, { base: 500, max: 15000, random: () => 1 }), 15000);
  assert.equal(backoffDelay(20, { base: 500, max: 15000, random: () => 0 }), 7500);
});

class FakeSocket {
  static made = [];
  constructor(url) {
    this.url = url;
    this.readyState = 0;
    this.sent = [];
    FakeSocket.made.push(this);
  }
  send(data) {
    this.sent.push(JSON.parse(data));
  }
  close(code = 1000) {
    this.readyState = 3;
    this.onclose?.({ code });
  }
  open() {
    this.readyState = 1;
    this.onopen?.();
  }
  receive(frame) {
    this.onmessage?.({ data: JSON.stringify(frame) });
  }
}

function fakeTimers() {
  const timers = new Map();
  let next = 1;
  return {
    timers,
    setTimeout: (fn, ms) => {
      timers.set(next, { fn, ms });
      return next++;
    },
    clearTimeout: (id) => timers.delete(id),
    fire(predicate = () => true) {
      for (const [id, t] of [...timers]) {
        if (predicate(t)) {
          timers.delete(id);
          t.fn();
          return t.ms;
        }
      }
      return null;
    },
  };
}

test("the socket reconnects with growing delays and resets after the server talks", () => {
  FakeSocket.made = [];
  const timers = fakeTimers();
  const states = [];
  const frames = [];
  const socket = new ReconnectingSocket("ws://x/ws/rooms/r/", {
    WebSocket: FakeSocket,
    setTimeout: timers.setTimeout,
    clearTimeout: timers.clearTimeout,
    random: () => 1,
    now: () => 0,
    connectTimeout: 99999,
    onState: (s) => states.push(s.state),
    onFrame: (f) => frames.push(f),
  });
  socket.start();
  FakeSocket.made[0].close(1006); // refused
  FakeSocket.made.length = 0;
  assert.equal(socket.state.state, "reconnecting");
  assert.equal(socket.state.delay, 500);
  timers.fire((t) => t.ms === 500);
  FakeSocket.made[0].close(1006);
  assert.equal(socket.state.delay, 1000);
  timers.fire((t) => t.ms === 1000);
  const ws = FakeSocket.made.at(-1);
  ws.open();
  assert.equal(socket.send({ type: "resume", after: 0 }), true);
  ws.receive({ type: "hello" });
  assert.deepEqual(frames, [{ type: "hello" }]);
  ws.close(1006);
  assert.equal(socket.state.delay, 500, "backoff starts again after a working connection");
  assert.deepEqual(states.slice(0, 4), ["connecting", "reconnecting", "connecting", "reconnecting"]);
});

for (const code of [4401, 4403, 4404]) {
  test(`the socket gives up on a ${code} close`, () => {
    FakeSocket.made = [];
    const timers = fakeTimers();
    const socket = new ReconnectingSocket("ws://x/", {
      WebSocket: FakeSocket,
      setTimeout: timers.setTimeout,
      clearTimeout: timers.clearTimeout,
      connectTimeout: 99999,
    });
    socket.start();
    FakeSocket.made[0].open();
    FakeSocket.made[0].close(code);
    assert.equal(socket.state.state, "closed");
    assert.equal(socket.state.code, code);
    assert.equal(timers.timers.size, 0);
    socket.reconnectNow();
    assert.equal(FakeSocket.made.length, 1);
    assert.equal(socket.send({ type: "cancel" }), false);
  });
}

test("a room frame gives the room's new title", () => {
  const state = new RoomState();
  state.apply(HELLO);
  const update = state.apply({ type: "room", room: { id: "r1", title: "Renamed", kind: "shared" } });
  assert.equal(update.room, true);
  assert.equal(state.room.title, "Renamed");
});

test("a socket with a URL function asks it for every attempt, and stops on a fatal error", async () => {
  FakeSocket.made = [];
  const timers = fakeTimers();
  const answers = ["ws://x/?ticket=1", "ws://x/?ticket=2"];
  const refusal = Object.assign(new Error("Log in to talk to the assistant."), { fatal: true, code: 401 });
  const socket = new ReconnectingSocket(
    async () => {
      if (!answers.length) throw refusal;
      return answers.shift();
    },
    {
      WebSocket: FakeSocket,
      setTimeout: timers.setTimeout,
      clearTimeout: timers.clearTimeout,
      connectTimeout: 99999,
      fatalCodes: new Set(), // a 4401 fetches a new ticket instead of giving up
    },
  );
  const settle = () => new Promise((resolve) => setImmediate(resolve));
  socket.start();
  await settle();
  assert.equal(FakeSocket.made[0].url, "ws://x/?ticket=1");
  FakeSocket.made[0].open();
  FakeSocket.made[0].close(4401);
  assert.equal(socket.state.state, "reconnecting");
  timers.fire();
  await settle();
  assert.equal(FakeSocket.made[1].url, "ws://x/?ticket=2");
  FakeSocket.made[1].close(1006);
  timers.fire();
  await settle();
  assert.equal(socket.state.state, "closed");
  assert.equal(socket.state.code, 401);
  assert.equal(FakeSocket.made.length, 2);
  assert.equal(timers.timers.size, 0);
});

test("a reconnect resumes before an answer still streaming, so a missed done comes back", () => {
  const state = new RoomState();
  state.apply(HELLO);
  state.apply({ type: "history", messages: [userMessage(1), answer(2, "Part")], more: false, last_seq: 2 });
  state.apply({ type: "message", message: userMessage(3) });
  // The connection drops; meanwhile the answer ends. The next hello resumes after seq 1.
  const update = state.apply({ ...HELLO, last_seq: 3 });
  assert.deepEqual(update.send, [{ type: "resume", after: 1 }]);
  state.apply({
    type: "history",
    messages: [
      answer(2, "Partly done", "interrupted", {
        error: "The server restarted during this answer.",
        html: "<p>Partly done</p>",
      }),
      userMessage(3),
    ],
    more: false,
    last_seq: 3,
  });
  assert.equal(state.messages.get(2).status, "interrupted");
  assert.equal(state.streaming(), null);
  assert.equal(state.lastSeq, 3);
  assert.deepEqual(state.apply(HELLO).send, [{ type: "resume", after: 3 }]);
});

test("a live message past a gap asks once for the missed ones", () => {
  const state = new RoomState();
  state.apply(HELLO);
  state.apply({ type: "history", messages: [userMessage(1)], more: false, last_seq: 1 });
  const update = state.apply({ type: "message", message: userMessage(4) });
  assert.deepEqual(update.send, [{ type: "resume", after: 1 }]);
  assert.deepEqual(state.apply({ type: "message", message: userMessage(5) }).send, []);
  state.apply({ type: "history", messages: [userMessage(2), userMessage(3)], more: false, last_seq: 3 });
  assert.equal(state.lastSeq, 5);
  assert.deepEqual(state.apply({ type: "message", message: userMessage(6) }).send, []);
});

test("sync (the server's layer was down) resumes from before any answer still streaming", () => {
  const state = new RoomState();
  state.apply(HELLO);
  state.apply({
    type: "history",
    messages: [
      userMessage(1),
      { ...userMessage(2), role: "assistant", author: null, status: "streaming", text: "Hel" },
      userMessage(3),
    ],
    more: false,
    last_seq: 3,
  });
  const update = state.apply({ type: "sync" });
  assert.deepEqual(update.send, [{ type: "resume", after: 1 }]);
  assert.equal(state.synced, false);
});

test("a rate-limited send stays in the outbox to be sent again", () => {
  const state = new RoomState({ newId: ids() });
  state.apply(HELLO);
  state.queueSend("a");
  const update = state.apply({
    type: "error",
    code: "rate_limited",
    detail: "slow down",
    retry_after: 0.4,
    client_id: "c1",
  });
  assert.equal(update.outbox, true);
  assert.deepEqual([...state.outbox.keys()], ["c1"]);
  assert.equal(state.outbox.get("c1").error, "slow down");
  assert.equal(update.rejected, null, "not refused: nothing to put back");
});

test("a rate-limited resume is asked again after retry_after, and not shown as a failure", () => {
  const state = new RoomState({ newId: ids() });
  state.apply(HELLO);
  const update = state.apply({ type: "error", code: "rate_limited", detail: "slow down", retry_after: 0.4, after: 7 });
  assert.deepEqual(update.later, { delay: 500, send: [{ type: "resume", after: 7 }] });
  assert.deepEqual(update.send, []);
  const send = state.apply({
    type: "error",
    code: "rate_limited",
    detail: "slow down",
    retry_after: 0.4,
    client_id: "c1",
  });
  assert.equal(send.later, null); // a refused send is resent through the outbox instead
});

function fakeStorage() {
  const items = new Map();
  return {
    items,
    getItem: (name) => items.get(name) ?? null,
    setItem: (name, value) => items.set(name, String(value)),
    removeItem: (name) => items.delete(name),
  };
}

test("unsent messages are kept in storage by room and user, resent once with their id", () => {
  const storage = fakeStorage();
  const first = new RoomState({ newId: ids(), storage, now: () => 1000 });
  first.queueSend("typed before hello");
  assert.equal(storage.items.size, 0, "no room and user known yet");
  first.apply(HELLO);
  const kept = JSON.parse(storage.items.get("parley.outbox:r1:7"));
  assert.deepEqual(kept, [{ client_id: "c1", text: "typed before hello", ask: true, saved: 1000 }]);

  // The page is reloaded (or its user logs out and in again): a new state, the same storage.
  const second = new RoomState({ newId: ids(), storage, now: () => 2000 });
  const update = second.apply(HELLO);
  assert.deepEqual(update.send.slice(1), [{ type: "send", client_id: "c1", text: "typed before hello", ask: true }]);
  second.apply({ type: "ack", client_id: "c1", message: userMessage(1, { client_id: "c1" }) });
  assert.equal(storage.items.size, 0, "acknowledged: gone from storage");
  assert.equal(new RoomState({ storage }).apply(HELLO).send.length, 1, "only the resume: nothing to resend");
});

test("another user's, stale, refused and unreadable stored messages are not sent", () => {
  const storage = fakeStorage();
  const week = 7 * 86400 * 1000;
  storage.setItem(
    "parley.outbox:r1:7",
    JSON.stringify([
      { client_id: "old", text: "a week ago", ask: true, saved: 0 },
      { client_id: "bad id!", text: "x", ask: true, saved: week },
      { client_id: "ok", text: "fresh", ask: false, saved: week },
    ]),
  );
  storage.setItem("parley.outbox:r1:8", JSON.stringify([{ client_id: "b", text: "bob's", saved: week }]));
  const state = new RoomState({ newId: ids(), storage, now: () => week + 1 });
  const update = state.apply(HELLO);
  assert.deepEqual(update.send.slice(1), [{ type: "send", client_id: "ok", text: "fresh", ask: false }]);
  state.apply({ type: "error", code: "text_too_long", detail: "…", client_id: "ok" });
  assert.equal(storage.getItem("parley.outbox:r1:7"), null, "refused for good: not kept");
  assert.notEqual(storage.getItem("parley.outbox:r1:8"), null, "another user's stays theirs");
  storage.setItem("parley.outbox:r2:7", "{not json");
  assert.equal(new RoomState({ storage }).useStorage("r2:7"), false);
});

test("an edit waits in the outbox and in storage like a message, naming what it edits", () => {
  const storage = fakeStorage();
  const first = new RoomState({ newId: ids(), storage, now: () => 1000 });
  first.apply(HELLO);
  const frame = first.queueSend("the question, better", { editOf: 12 });
  assert.deepEqual(frame, { type: "send", client_id: "c1", text: "the question, better", ask: true, edit_of: 12 });
  const second = new RoomState({ newId: ids(), storage, now: () => 2000 });
  assert.deepEqual(second.apply(HELLO).send.slice(1), [frame], "after a reload, sent again as the same edit");
  const refused = second.apply({ type: "error", code: "not_editable", detail: "Only your own…", client_id: "c1" });
  assert.equal(second.outbox.size, 0, "refused for good: not sent again");
  assert.deepEqual(
    [refused.rejected.text, refused.rejected.edit_of],
    ["the question, better", 12],
    "what was typed comes back with the refusal, to be put back where it was typed",
  );
  assert.equal(storage.getItem("parley.outbox:r1:7"), null);
  storage.setItem(
    "parley.outbox:r1:7",
    JSON.stringify([{ client_id: "x", text: "odd", ask: true, saved: 1000, edit_of: "12; drop" }]),
  );
  assert.deepEqual(new RoomState({ storage, now: () => 2000 }).apply(HELLO).send.slice(1), [], "unreadable: not sent");
});

const step = (id, status, extra = {}) => ({ id, tool: "pin", arguments: "{}", status, result: "", ...extra });

test("tool steps replace their copy by id, in the order made, and never go back", () => {
  const state = new RoomState();
  state.apply(HELLO);
  state.apply({ type: "message", message: answer(2) });
  const update = state.apply({ type: "tool", message_id: 102, step: step(9, "pending") });
  assert.deepEqual([...update.changed], [2]);
  state.apply({ type: "tool", message_id: 102, step: step(8, "done") });
  assert.deepEqual(
    state.messages.get(2).tools.map((s) => [s.id, s.status]),
    [
      [8, "done"],
      [9, "pending"],
    ],
  );
  state.apply({ type: "tool", message_id: 102, step: step(9, "approved") });
  // A history page read before the decision brings the step as it waited: it stays approved.
  state.apply({
    type: "history",
    messages: [answer(2, "", "streaming", { tools: [step(9, "pending")] })],
    more: false,
  });
  assert.deepEqual(
    state.messages.get(2).tools.map((s) => s.status),
    ["done", "approved"],
  );
  // The answer's end carries its steps as they ended.
  state.apply({
    type: "done",
    message: answer(2, "Pinned.", "complete", { tools: [step(8, "done"), step(9, "done")] }),
  });
  assert.deepEqual(
    state.messages.get(2).tools.map((s) => s.status),
    ["done", "done"],
  );
  assert.equal(state.apply({ type: "tool", message_id: 102, step: step(9, "pending") }).changed.size, 0);
});

test("mergeSteps keeps the furthest copy of each step", () => {
  const merged = mergeSteps([step(1, "running"), step(2, "queued")], [step(1, "pending"), step(2, "denied")]);
  assert.deepEqual(
    merged.map((s) => s.status),
    ["running", "denied"],
  );
  assert.deepEqual(mergeSteps(undefined, undefined), []);
});
