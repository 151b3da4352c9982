// node --test tests/js/ — one's own feedback in RoomState (client.js), without a DOM.

import assert from "node:assert/strict";
import { test } from "node:test";

import { MAX_COMMENT_CHARS, RoomState, isRateable, rateFrame } from "../../parley/static/parley/client.js";

const HELLO = {
  type: "hello",
  v: 1,
  room: { id: "r1", title: "Room", kind: "shared" },
  user: { id: 7, name: "alice" },
  last_seq: 2,
};

function answer(seq, status = "complete", extra = {}) {
  const base = { id: 100 + seq, seq, role: "assistant", author: null, text: "A", status };
  return { ...base, created_at: "2026-01-01T00:00:00+00:00", reply_to: 100 + seq - 1, ...extra };
}

test("history pages bring back one's own feedback, and a done frame does not lose it", () => {
  const state = new RoomState();
  state.apply(HELLO);
  const mine = { rating: "down", comment: "Too short." };
  state.apply({ type: "history", messages: [answer(2, "complete", { feedback: mine })], more: false, last_seq: 2 });
  assert.deepEqual(state.feedback.get(102), mine);
  state.apply({ type: "done", message: answer(2) }); // a payload for the room: no feedback in it
  assert.deepEqual(state.feedback.get(102), mine);
});

test("the feedback frame stores what the server stored, and null takes it away", () => {
  const state = new RoomState();
  state.apply(HELLO);
  state.apply({ type: "history", messages: [answer(2)], more: false, last_seq: 2 });
  assert.equal(state.feedback.get(102), undefined);
  const given = state.apply({ type: "feedback", message_id: 102, feedback: { rating: "up", comment: "" } });
  assert.deepEqual([...given.changed], [2]); // the answer is drawn again
  assert.deepEqual(state.feedback.get(102), { rating: "up", comment: "" });
  state.apply({ type: "feedback", message_id: 102, feedback: null });
  assert.equal(state.feedback.has(102), false);
});

test("only finished answers can be rated", () => {
  assert.equal(isRateable(answer(2, "complete")), true);
  assert.equal(isRateable(answer(2, "cancelled")), true);
  assert.equal(isRateable(answer(2, "streaming")), false);
  assert.equal(isRateable({ ...answer(2), role: "user" }), false);
  assert.equal(isRateable(undefined), false);
});

test("the rate frame trims its comment to the limit, and taking back sends none", () => {
  assert.deepEqual(rateFrame(5, "up", "  fine  "), { type: "rate", message_id: 5, rating: "up", comment: "fine" });
  assert.equal([...rateFrame(5, "down", "😀".repeat(MAX_COMMENT_CHARS + 5)).comment].length, MAX_COMMENT_CHARS);
  assert.deepEqual(rateFrame(5, null, "left over"), { type: "rate", message_id: 5, rating: null, comment: "" });
});
