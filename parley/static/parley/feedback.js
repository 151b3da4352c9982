// The reader's own verdict on a finished answer, then a comment (docs/protocol.md, rate).

import { MAX_COMMENT_CHARS, isRateable } from "./client.js";
// A cycle on purpose: messages.js draws these controls, with its own helpers.
import { button, element } from "./messages.js";

/** The controls of answer `message` in its <li>: `given` is the reader's feedback
 * ({rating, comment} or null), `onRate(id, rating, comment)` sends one (null rating: take
 * it back; false: not sent). Redrawn only when `given` changes, so typing stays. */
export function renderFeedback(li, message, given, onRate) {
  let box = li.querySelector(".msg-feedback");
  if (!isRateable(message)) {
    box?.remove();
    return;
  }
  if (!box) {
    box = buildFeedback(message.id, onRate);
    li.append(box);
  }
  const key = JSON.stringify(given ?? null);
  if (box.parleyKey === key) return;
  box.parleyKey = key;
  box.parleyGiven = given ?? null;
  draw(box);
}

function buildFeedback(id, onRate) {
  const box = element("div", "msg-feedback");
  box.setAttribute("role", "group");
  box.setAttribute("aria-label", "Your feedback on this answer");
  const choose = (rating) => {
    if (box.parleyGiven?.rating === rating) {
      if (onRate(id, null, "")) setOpen(box, false); // pressed again: taken back
    } else if (onRate(id, rating, box.parleyGiven?.comment ?? "")) {
      box.parleyChosen = rating;
      setOpen(box, true);
    }
  };
  const ratings = element("span", "feedback-ratings");
  // Words, not thumb emoji: a system without an emoji font would draw empty boxes.
  for (const [rating, word] of [
    ["up", "Good"],
    ["down", "Bad"],
  ]) {
    const rate = button("feedback-rate", word, `${word} answer`, () => choose(rating));
    rate.dataset.rating = rating;
    rate.setAttribute("aria-pressed", "false");
    ratings.append(rate);
  }
  const form = element("form", "feedback-form");
  const text = element("textarea", "feedback-text");
  text.rows = 2;
  text.maxLength = MAX_COMMENT_CHARS;
  text.placeholder = "What was good or bad about it? (optional)";
  text.setAttribute("aria-label", "Your comment on this answer (optional)");
  const send = element("button", "feedback-send", "Send");
  form.append(
    text,
    send,
    button("feedback-later", "Not now", null, () => setOpen(box, false)),
  );
  form.addEventListener("keydown", (event) => {
    if (event.key === "Escape" && !event.isComposing) setOpen(box, false);
  });
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const rating = box.parleyChosen ?? box.parleyGiven?.rating;
    if (rating && onRate(id, rating, text.value)) setOpen(box, false);
  });
  const edit = button("feedback-edit", "", null, () => setOpen(box, true));
  box.append(ratings, edit, element("p", "feedback-comment"), form);
  return box;
}

function setOpen(box, open) {
  const opening = open && !box.parleyOpen;
  box.parleyOpen = open;
  if (!open) box.parleyChosen = null;
  draw(box);
  if (opening) {
    const text = box.querySelector(".feedback-text");
    text.value = box.parleyGiven?.comment ?? "";
    text.focus();
  } else if (!open && box.contains(document.activeElement)) {
    box.querySelector(".feedback-rate").focus();
  }
}

function draw(box) {
  const given = box.parleyGiven;
  for (const rate of box.querySelectorAll(".feedback-rate")) {
    rate.setAttribute("aria-pressed", String(rate.dataset.rating === given?.rating));
  }
  const open = Boolean(box.parleyOpen && (box.parleyChosen ?? given?.rating));
  box.querySelector(".feedback-form").hidden = !open;
  const comment = box.querySelector(".feedback-comment");
  comment.hidden = open || !given?.comment;
  comment.textContent = given?.comment ?? "";
  const edit = box.querySelector(".feedback-edit");
  edit.hidden = open || !given;
  edit.textContent = given?.comment ? "Edit comment" : "Add a comment";
}
