// The message list of the room page and the widget: one <li> per message, kept in seq
// order, and one per send still waiting for its ack. Text is set with textContent only; the
// single HTML insertion is the server's sanitised rendering of a finished assistant answer
// (renderBody).
//
// The list itself is no live region: a streaming answer changes its text 25 times a second,
// and a screen reader would read every change. An announcer (a visually hidden role="log")
// says each new message once, and a streaming answer once, when it is finished; while it
// streams its <li> is aria-busy.

import { isMine, sliceChars } from "./client.js";
import { renderFeedback } from "./feedback.js";

const STATUS_LABELS = {
  streaming: "Writing…",
  cancelled: "Stopped",
  failed: "Failed",
  interrupted: "Interrupted",
};

const STATUS_NOTES = {
  interrupted: "The answer was cut off when its server stopped.",
};

export function element(tag, className, text) {
  const el = document.createElement(tag);
  if (className) el.className = className;
  if (text !== undefined) el.textContent = text;
  return el;
}

/** A plain button (never a form's submit) that calls `onClick`; `name` is what a screen
 * reader says, when the text alone does not tell. */
export function button(className, text, name, onClick) {
  const el = element("button", className, text);
  el.type = "button";
  if (name) el.setAttribute("aria-label", name);
  el.addEventListener("click", onClick);
  return el;
}

// What a tool step's status says, in the answer (docs/tools.md).
const STEP_LABELS = {
  queued: "Waiting its turn",
  pending: "Waiting for approval",
  approved: "Approved, running",
  running: "Running",
  done: "Done",
  failed: "Failed",
  invalid: "Invalid call",
  refused: "Not allowed",
  cancelled: "Stopped",
  denied: "Denied",
  expired: "Expired: no one approved it",
};

// How many announcements the announcer keeps (older ones were read already).
const ANNOUNCED_KEPT = 5;

export class MessageList {
  /** `list` is the <ol>; `me()` gives the logged-in user ({id, name}) once known;
   * `announcer`, the element new messages are announced in (optional). Called when the
   * user withdraws a waiting question: `onWithdraw(id)`; asks for an answer again:
   * `onRegenerate(id)`; sends an edit of their message: `onEdit(id, text)` (false: not
   * taken, the editor stays); approves or denies a waiting tool call: `onDecide(stepId,
   * {approve, arguments?, always?})` (false: not sent); `approver`: they may decide on
   * others' calls (docs/tools.md). With `onRate(id, rating, comment)`, finished answers
   * get feedback controls (feedback.js) showing `feedbackOf(id)`, the reader's own.
   *
   * The versions of a message (its first, and those after it: `version_of`, an answer
   * asked for again or a question edited) share its place in the list, one shown at a
   * time, the newest unless the reader steps back. A question's versions and the answers
   * to each are an exchange: the answers shown are those of the question version shown. */
  constructor(
    list,
    me,
    announcer = null,
    {
      onWithdraw = () => {},
      onRegenerate = () => {},
      onEdit = null,
      onDecide = () => false,
      approver = false,
      onRate = null,
      feedbackOf = () => null,
    } = {},
  ) {
    this.list = list;
    this.onRate = onRate;
    this.feedbackOf = feedbackOf;
    this.onDecide = onDecide;
    this.approver = approver;
    this.me = me;
    this.announcer = announcer;
    this.onWithdraw = onWithdraw;
    this.onRegenerate = onRegenerate;
    this.onEdit = onEdit;
    this.nodes = new Map(); // seq -> <li>
    this.pending = new Map(); // client_id -> <li>
    this.versions = new Map(); // first version's id -> seqs of its versions, oldest first
    this.chosen = new Map(); // first version's id -> the seq the reader stepped to
    this.ids = new Map(); // seq -> message id
    this.exchangeOf = new Map(); // a question's id -> its first version's id (its exchange)
    this.answers = new Map(); // exchange -> first ids of the answers to its versions
    this.asked = new Map(); // an answer's first id -> the id of the question it answers
    this.unasked = new Map(); // a question's id not seen yet -> first ids of answers to it
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
      this.place(li, message);
    }
    const streaming = message.status === "streaming";
    if (li.dataset.status !== message.status) {
      li.dataset.status = message.status;
      if (streaming) li.setAttribute("aria-busy", "true");
      else li.removeAttribute("aria-busy");
    }
    this.renderTools(li, message);
    renderBody(li.querySelector(".msg-body"), message);
    renderStatus(li, message);
    this.renderWithdraw(li, message);
    this.renderEdit(li, message);
    this.renderCopy(li, message);
    this.renderRegenerate(li, message);
    renderModel(li, message);
    if (this.onRate) renderFeedback(li, message, this.feedbackOf(message.id), this.onRate);
    li.parleyText = message.text;
    this.refresh(message.version_of ?? message.id);
    if (announce && !streaming && (fresh || wasStreaming)) this.announce(message);
  }

  /** The answer's tool steps, in the order made, before its text: each collapsible (its
   * arguments and the start of its result), and a call that waits for approval as a card
   * with what it would run, editable, for the member who may decide. A step is drawn again
   * only when it changes: the answer renders 25 times a second while it streams, and the
   * arguments being edited must stay as typed. */
  renderTools(li, message) {
    const steps = message.role === "assistant" ? (message.tools ?? []) : [];
    let box = li.querySelector(".msg-tools");
    if (!steps.length) {
      box?.remove();
      return;
    }
    if (!box) {
      box = element("ol", "msg-tools");
      box.setAttribute("aria-label", "Tools the assistant used");
      box.parleySteps = new Map();
      li.querySelector(".msg-body").before(box);
    }
    for (const step of steps) {
      const key = JSON.stringify(step);
      const drawn = box.parleySteps.get(step.id);
      if (drawn?.key === key) continue;
      const node = step.status === "pending" ? this.approvalCard(step) : toolStep(step);
      if (drawn) drawn.node.replaceWith(node);
      else box.append(node);
      box.parleySteps.set(step.id, { key, node });
    }
  }

  /** Whether the reader may decide on `step`: they asked, or they are an approver. */
  mayDecide(step) {
    const me = this.me();
    return Boolean(me && me.id !== null && (me.id === step.asker || this.approver));
  }

  /** A call that waits for approval: the tool, its arguments (editable by who may decide,
   * when they arrived whole), until when it waits, and Approve / Deny. */
  approvalCard(step) {
    const card = element("li", "tool-step tool-pending tool-approval");
    card.dataset.step = String(step.id);
    card.setAttribute("role", "group");
    card.setAttribute("aria-label", `Approve the tool ${step.tool}?`);
    const title = element("p", "tool-ask");
    title.append("The assistant wants to run ", element("code", "tool-name", step.tool), ":");
    const original = parseJson(step.arguments);
    const args = element("textarea", "tool-arguments");
    args.value = original === undefined ? step.arguments : JSON.stringify(original, null, 2);
    args.rows = Math.min(10, args.value.split("\n").length + 1);
    args.setAttribute("aria-label", "Its arguments");
    const mine = this.mayDecide(step);
    args.readOnly = !mine || original === undefined; // cut to its first characters: not editable
    card.append(title, args);
    if (step.expires_at) {
      const until = new Date(step.expires_at);
      const when = element("time", "", until.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" }));
      when.dateTime = step.expires_at;
      const expiry = element("p", "tool-expiry");
      expiry.append("Waits until ", when, "; then it is denied.");
      card.append(expiry);
    }
    const problem = element("p", "tool-problem");
    problem.hidden = true;
    problem.setAttribute("role", "alert");
    card.append(problem);
    if (!mine) {
      card.append(element("p", "tool-waiting", "Waiting for the approval of the member who asked."));
      return card;
    }
    const actions = element("div", "tool-actions");
    let always = null;
    if (this.me().id === step.asker) {
      const label = element("label", "tool-always");
      always = element("input");
      always.type = "checkbox";
      label.append(always, " Always allow this tool for me");
      actions.append(label);
    }
    const decide = (approve) => {
      const decision = { approve };
      if (approve) {
        const edited = parseJson(args.value);
        if (!args.readOnly && (edited === undefined || edited === null || typeof edited !== "object")) {
          showProblem(problem, "The arguments must be a JSON object.");
          return;
        }
        if (!args.readOnly && JSON.stringify(edited) !== JSON.stringify(original)) decision.arguments = edited;
        if (always?.checked) decision.always = true;
      }
      if (this.onDecide(step.id, decision)) {
        for (const b of actions.querySelectorAll("button")) b.disabled = true;
        problem.hidden = true;
      }
    };
    actions.append(
      button("tool-deny", "Deny", `Deny ${step.tool}`, () => decide(false)),
      button("tool-approve", "Approve", `Approve ${step.tool}`, () => decide(true)),
    );
    card.append(actions);
    return card;
  }

  /** The server refused a decision on `stepId` (`detail` says why): the card says so, and
   * its buttons work again. */
  decisionRefused(stepId, detail) {
    const card = this.list.querySelector(`.tool-approval[data-step="${Number(stepId)}"]`);
    if (!card) return false;
    for (const b of card.querySelectorAll(".tool-actions button")) b.disabled = false;
    showProblem(card.querySelector(".tool-problem"), detail);
    return true;
  }

  /** While one's own question waits its turn behind the room's answer, a button to take it
   * back; only then (the list holds no control a message does not need). */
  renderWithdraw(li, message) {
    const withdraw = li.querySelector(".withdraw");
    const wanted = Boolean(message.waiting) && isMine(message, this.me());
    if (!wanted) {
      withdraw?.remove();
    } else if (!withdraw) {
      li.querySelector(".msg-meta").append(button("withdraw", "Withdraw", null, () => this.onWithdraw(message.id)));
    }
  }

  /** A finished answer with text can be copied, as the Markdown it was written in. */
  renderCopy(li, message) {
    const wanted = message.role === "assistant" && message.status !== "streaming" && Boolean(message.text);
    const copy = li.querySelector(".msg-meta .copy");
    if (!wanted) {
      copy?.remove();
    } else if (!copy) {
      li.querySelector(".msg-meta").append(copyButton("Copy", "Copy answer", () => li.parleyText));
    }
  }

  /** Whether one's own message can be edited (and asked again): not while it waits. */
  renderEdit(li, message) {
    const wanted = Boolean(this.onEdit) && isMine(message, this.me()) && !message.waiting;
    const edit = li.querySelector(".msg-meta .edit");
    if (!wanted) {
      edit?.remove();
      li.querySelector(".msg-editor")?.parleyClose();
    } else if (!edit) {
      li.querySelector(".msg-meta").append(
        button("edit", "Edit", "Edit this message", () => this.openEditor(li, message.id)),
      );
    }
  }

  /** Open the editor again on the message `id` (the version of its exchange shown) with
   * `draft`, an edit of it the server refused; false if it is not one's own to edit. */
  reopenEditor(id, draft) {
    const li = this.shownOf(id);
    // Not over an editor open again meanwhile: what is typed there stays.
    if (!li?.querySelector(".msg-meta .edit") || li.querySelector(".msg-editor")) return false;
    this.openEditor(li, this.ids.get(Number(li.dataset.seq)), draft);
    return true;
  }

  /** The message's text (or `draft`) in a box in its place: sent as its new version, or
   * put away. Sent, the focus goes where `onEdit` puts it (the li goes: a new version
   * takes its place); put away, back to its Edit button. */
  openEditor(li, id, draft = li.parleyText) {
    if (li.querySelector(".msg-editor")) return;
    const body = li.querySelector(".msg-body");
    const form = element("form", "msg-editor");
    const text = element("textarea", "msg-editor-text");
    text.value = draft;
    text.rows = Math.min(8, text.value.split("\n").length + 1);
    text.setAttribute("aria-label", "Your message, edited");
    const send = element("button", "msg-editor-send", "Send");
    send.type = "submit";
    const actions = element("div", "msg-editor-actions");
    form.append(text, actions);
    form.parleyClose = () => {
      form.remove();
      body.hidden = false;
    };
    const close = () => {
      form.parleyClose();
      li.querySelector(".msg-meta .edit")?.focus();
    };
    const unchanged = () => !text.value.trim() || text.value === li.parleyText;
    text.addEventListener("input", () => {
      send.disabled = unchanged();
    });
    form.addEventListener("keydown", (event) => {
      if (event.key === "Escape" && !event.isComposing) close();
    });
    text.addEventListener("keydown", (event) => {
      if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
        event.preventDefault();
        form.requestSubmit();
      }
    });
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      if (!unchanged() && this.onEdit(id, text.value)) form.parleyClose();
    });
    actions.append(button("msg-editor-cancel", "Cancel", null, close), send);
    send.disabled = unchanged();
    body.hidden = true;
    body.after(form);
    text.focus();
  }

  /** A new message goes in seq order, a later version after its versions. An exchange
   * keeps its question's versions together, at the first's place, and the answers to an
   * edit after the exchange's answers before them. Live frames may bring a version before
   * its first, or an answer before its question, while the history is still on its way:
   * the exchange is arranged again as each part comes. */
  place(li, message) {
    const first = message.version_of ?? message.id;
    const seqs = this.versions.get(first) ?? [];
    this.ids.set(message.seq, message.id);
    const after = message.version_of ? this.lastOf(first) : null;
    if (after) {
      after.after(li);
      li.dataset.place = placeOf(after);
    } else {
      this.insertInOrder(li, message.seq);
      this.gather(li, seqs);
    }
    seqs.push(message.seq);
    seqs.sort((a, b) => a - b);
    this.versions.set(first, seqs);
    this.chosen.delete(first); // a new version is shown to everyone
    if (message.role === "user") {
      this.exchangeOf.set(message.id, first);
      for (const answer of this.unasked.get(message.id) ?? []) this.join(answer, message.id);
      this.unasked.delete(message.id);
    } else if (!message.version_of && this.exchangeOf.has(message.reply_to)) {
      this.join(first, message.reply_to);
    } else if (!message.version_of && message.reply_to) {
      this.unasked.set(message.reply_to, [...(this.unasked.get(message.reply_to) ?? []), first]);
    }
    const exchange = this.exchangeOf.get(message.role === "user" ? message.id : this.asked.get(first));
    if (exchange !== undefined) this.arrange(exchange);
  }

  /** Count the answer `first` among the answers of the exchange of `question`. */
  join(first, question) {
    const exchange = this.exchangeOf.get(question);
    const answers = [...(this.answers.get(exchange) ?? []), first];
    answers.sort((a, b) => this.versions.get(a)[0] - this.versions.get(b)[0]);
    this.answers.set(exchange, answers);
    this.asked.set(first, question);
  }

  /** Put the parts of `exchange` where they stand: its question's versions together; the
   * answers to its first version in seq order, those to an edit after the answers before. */
  arrange(exchange) {
    const questions = this.versions.get(exchange);
    this.gather(this.nodes.get(questions[0]), questions.slice(1));
    let anchor = this.nodes.get(questions.at(-1));
    for (const answer of this.answers.get(exchange) ?? []) {
      const seqs = this.versions.get(answer);
      const node = this.nodes.get(seqs[0]);
      if (this.asked.get(answer) !== exchange) {
        anchor.after(node);
        node.dataset.place = placeOf(anchor);
      }
      this.gather(node, seqs.slice(1));
      anchor = this.nodes.get(seqs.at(-1));
    }
  }

  /** Put the <li>s of `seqs` (later versions) right after `li`, at its place. */
  gather(li, seqs) {
    let last = li;
    for (const seq of seqs) {
      const node = this.nodes.get(seq);
      last.after(node);
      node.dataset.place = placeOf(li);
      last = node;
    }
  }

  /** The <li> shown of the versions of the message `id`, if any. */
  shownOf(id) {
    return this.nodes.get(this.shownSeq(this.exchangeOf.get(id) ?? id));
  }

  /** The seq of the version of `first` shown: the one the reader stepped to, else the
   * newest. */
  shownSeq(first) {
    return this.chosen.get(first) ?? this.versions.get(first)?.at(-1);
  }

  /** The <li> of the newest version of `first`, if any. */
  lastOf(first) {
    return this.nodes.get(this.versions.get(first)?.at(-1));
  }

  /** Show again the versions of `first`: with the rest of its exchange, if it has one. */
  refresh(first) {
    const question = this.asked.get(first);
    const exchange = question === undefined ? this.exchangeOf.get(first) : this.exchangeOf.get(question);
    if (exchange === undefined) {
      this.showVersions(first, { visible: true, current: true });
      return;
    }
    const seqs = this.versions.get(exchange);
    const shown = this.ids.get(this.shownSeq(exchange));
    const newest = this.ids.get(seqs.at(-1));
    this.showVersions(exchange, { visible: true, current: true });
    let answering = false;
    for (const answer of this.answers.get(exchange) ?? []) {
      const to = this.asked.get(answer);
      this.showVersions(answer, { visible: to === shown, current: to === newest });
      answering ||= this.versions.get(answer).some((seq) => this.nodes.get(seq).dataset.status === "streaming");
    }
    // Not while it is being answered: the edit would hide the answer that streams.
    for (const seq of seqs) {
      const edit = this.nodes.get(seq).querySelector(".msg-meta .edit");
      if (edit) edit.hidden = answering;
    }
  }

  /** Show one version of `first` (the chosen one, else the newest) if `visible`, with a
   * stepper (‹ 2/3 ›) when there are several; only a `current` answer (to its question's
   * newest version) can be asked for again. */
  showVersions(first, { visible, current }) {
    const seqs = this.versions.get(first) ?? [];
    const shown = this.shownSeq(first);
    for (const seq of seqs) {
      const li = this.nodes.get(seq);
      li.hidden = !visible || seq !== shown;
      const regenerate = li.querySelector(".regenerate");
      if (regenerate) regenerate.hidden = !current;
      const wanted = visible && seq === shown && seqs.length > 1;
      this.renderStepper(li, wanted ? { first, seqs, index: seqs.indexOf(seq) } : null);
    }
  }

  /** The stepper of a shown version, drawn again only when what it says changes (a
   * streaming version renders 25 times a second: its buttons keep their focus). */
  renderStepper(li, step) {
    const key = step && `${step.index}/${step.seqs.length}`;
    if (li.parleyStepper === key) return;
    li.parleyStepper = key;
    li.querySelector(".versions")?.remove();
    if (step) li.querySelector(".msg-meta").append(this.stepper(step, li.dataset.role));
  }

  stepper({ first, seqs, index }, role) {
    const nav = element("span", "versions");
    nav.setAttribute("role", "group");
    nav.setAttribute("aria-label", role === "user" ? "Versions of this message" : "Versions of this answer");
    const step = (text, name, to) => {
      const el = button("version-step", text, name, () => {
        this.chosen.set(first, seqs[to]);
        this.refresh(first);
        this.nodes.get(seqs[to]).querySelector(".version-step:not(:disabled)")?.focus();
      });
      el.disabled = to < 0 || to >= seqs.length;
      return el;
    };
    nav.append(
      step("‹", "Previous version", index - 1),
      element("span", "version-count", `${index + 1}/${seqs.length}`),
      step("›", "Next version", index + 1),
    );
    return nav;
  }

  /** A finished answer can be asked for again: "Retry" if it did not end well. */
  renderRegenerate(li, message) {
    const wanted = message.role === "assistant" && message.status !== "streaming";
    let regenerate = li.querySelector(".regenerate");
    if (!wanted) {
      regenerate?.remove();
      return;
    }
    if (!regenerate) {
      regenerate = button("regenerate", "", null, () => this.onRegenerate(message.id));
      li.querySelector(".msg-meta").append(regenerate);
    }
    const retry = message.status !== "complete";
    setText(regenerate, retry ? "Retry" : "Regenerate");
    regenerate.setAttribute("aria-label", retry ? "Retry this answer" : "Regenerate this answer");
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
    // No author (and not the visitor's own): a deleted user's, anonymised.
    return message.author?.name ?? "Deleted user";
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
        meta.append(element("span", "msg-author", "You"));
        if (entry.edit_of) meta.append(element("span", "msg-edited", "edited"));
        meta.append(element("span", "badge badge-pending"));
        li.append(meta, element("div", "msg-body plain", entry.text));
        const edited = entry.edit_of && this.shownOf(entry.edit_of);
        if (edited)
          edited.after(li); // in its place, where the reader is
        else this.list.append(li);
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
    if (message.role === "user" && message.version_of) meta.append(element("span", "msg-edited", "edited"));
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
    // Messages mostly arrive in order: walk back from the end. Pending sends stay after; a
    // later version stands at its first's place, so a message missed before it goes after.
    let before = null;
    for (let node = this.list.lastElementChild; node; node = node.previousElementSibling) {
      const place = placeOf(node);
      if (place !== undefined && Number(place) < seq) break;
      before = node;
    }
    this.list.insertBefore(li, before);
  }
}

/** A tool step that does not wait: its name and status, opening on its arguments, the start
 * of its result, and who decided, if anyone did. */
function toolStep(step) {
  const li = element("li", `tool-step tool-${step.status}`);
  li.dataset.step = String(step.id);
  const details = element("details", "tool-details");
  const summary = element("summary", "tool-summary");
  summary.append(
    element("code", "tool-name", step.tool),
    element("span", "tool-status", STEP_LABELS[step.status] ?? step.status),
  );
  details.append(summary);
  const shown = step.approved_arguments || step.arguments;
  if (shown) details.append(labelled("Arguments", shown));
  if (step.approved_arguments) details.append(element("p", "tool-note", "Edited before it ran."));
  if (step.result) details.append(labelled("Result", step.result));
  if (step.decided_by) {
    const how = step.always ? "Always allowed for" : step.status === "denied" ? "Denied by" : "Approved by";
    details.append(element("p", "tool-note", `${how} ${step.decided_by}`));
  }
  li.append(details);
  return li;
}

function labelled(label, text) {
  const block = element("div", "tool-field");
  block.append(element("span", "tool-label", label), element("pre", "tool-value", text));
  return block;
}

function showProblem(el, text) {
  el.textContent = text;
  el.hidden = false;
}

/** `text` parsed as JSON, or undefined if it is not JSON. */
function parseJson(text) {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

/** Where an <li> stands in seq order: its first version's, its exchange's, or its own. */
function placeOf(li) {
  return li.dataset.place ?? li.dataset.seq;
}

function renderBody(el, message) {
  if (message.role === "assistant") {
    if (message.status !== "streaming" && typeof message.html === "string") {
      renderHtml(el, message.html);
      return;
    }
    if (message.status === "streaming" && message.blocks) {
      renderBlocks(el, message);
      return;
    }
  }
  // Everything else, user text above all, is text: it can never become markup.
  if (el.dataset.rendered !== "text" || el.textContent !== message.text) {
    el.parleyShown = null;
    el.textContent = message.text;
    el.dataset.rendered = "text";
    el.classList.add("plain");
  }
}

// The only HTML Parley ever inserts is the server's rendering of the assistant's Markdown,
// sanitised by nh3 (parley/rendering.py), block by block: a paragraph, a list, a code block…
// each one element. Never build HTML from strings anywhere.

/** The elements of `html` (parsed inert, in a template, until placed). */
function parse(html) {
  const template = document.createElement("template");
  template.innerHTML = html;
  return [...template.content.children];
}

/** The blocks shown in `el` (one entry per element: the server's HTML of it and the
 * element, as decorated), reset if it showed something else. */
function shownBlocks(el) {
  if (el.dataset.rendered !== "html" || !el.parleyShown) {
    el.textContent = "";
    el.parleyShown = [];
    el.parleySources = [];
    el.parleyTail = null;
    el.parleyHtml = null;
    el.dataset.rendered = "html";
    el.classList.remove("plain");
  }
  return el.parleyShown;
}

/** Show `elements` (new blocks) from position `start` of `el` on; blocks before it stay,
 * untouched, and so do later ones that are the same as before (no block is drawn twice). */
function placeBlocks(el, start, elements) {
  const shown = shownBlocks(el);
  elements.forEach((block, i) => {
    const index = start + i;
    const html = block.outerHTML;
    if (shown[index]?.html === html) return;
    const node = decorate(block);
    if (shown[index]) shown[index].node.replaceWith(node);
    else el.append(node);
    shown[index] = { html, node };
  });
  for (const gone of shown.splice(start + elements.length)) gone.node.remove();
}

/** A streaming answer: the blocks rendered so far, then the text that came after them. */
function renderBlocks(el, message) {
  shownBlocks(el);
  const { html, chars } = message.blocks;
  // The server's blocks already shown stay; those after are parsed (each is one element).
  const sources = el.parleySources;
  let same = 0;
  while (same < sources.length && same < html.length && sources[same].html === html[same]) same += 1;
  const start = sources.slice(0, same).reduce((sum, source) => sum + source.count, 0);
  const added = html.slice(same).map((block) => ({ html: block, elements: parse(block) }));
  placeBlocks(
    el,
    start,
    added.flatMap((block) => block.elements),
  );
  el.parleySources = sources.slice(0, same).concat(added.map((b) => ({ html: b.html, count: b.elements.length })));
  // Text newer than the last render goes at the end of the last block, as text, until the
  // next render formats it.
  const extra = sliceChars(message.text, chars);
  if (!el.parleyTail) el.parleyTail = document.createTextNode("");
  setText(el.parleyTail, extra);
  const tail = tailOf(el);
  tail.append(el.parleyTail);
  moveCursor(el, tail);
}

/** The streaming cursor goes at the end of `target` (CSS draws it). */
function moveCursor(el, target) {
  if (el.parleyCursor === target) return;
  const before = el.parleyCursor;
  before?.classList.remove("cursor");
  if (before && !before.classList.length) before.removeAttribute("class"); // as the server sent it
  target?.classList.add("cursor");
  el.parleyCursor = target;
}

/** A finished answer's HTML: blocks already shown as streamed stay as they are. */
function renderHtml(el, html) {
  if (el.dataset.rendered === "html" && el.parleyHtml === html) return;
  el.parleyTail?.remove();
  el.parleyTail = null;
  moveCursor(el, null);
  placeBlocks(el, 0, parse(html));
  el.parleyHtml = html;
}

// Where text still to be formatted is shown: the innermost last block that holds text.
const TEXT_BLOCKS = new Set(["ul", "ol", "li", "blockquote", "p", "pre", "code", "table", "tbody", "tr", "td"]);

function tailOf(el) {
  let node = unwrapped(el.lastElementChild);
  while (node?.lastElementChild) {
    const last = unwrapped(node.lastElementChild);
    if (!TEXT_BLOCKS.has(last.localName)) break;
    node = last;
  }
  return node ?? el;
}

/** The code block or table inside one of decorate()'s wrappers. */
function unwrapped(node) {
  if (node?.classList.contains("code-block")) return node.querySelector("pre");
  if (node?.classList.contains("table-scroll")) return node.firstElementChild;
  return node;
}

/** `block` with what the browser adds to the server's HTML: code blocks get a bar with
 * their language and a copy button; tables scroll sideways instead of squeezing words. */
function decorate(block) {
  for (const pre of [block, ...block.querySelectorAll("pre")].filter((el) => el.localName === "pre")) {
    const bar = element("div", "code-bar");
    const language = /\blanguage-(\S+)/.exec(pre.firstElementChild?.className ?? "")?.[1];
    bar.append(element("span", "code-language", language ?? ""));
    bar.append(copyButton("Copy", "Copy code", () => pre.textContent));
    const wrapper = element("div", "code-block");
    if (pre === block) block = wrapper;
    else pre.replaceWith(wrapper);
    wrapper.append(bar, pre);
  }
  for (const table of [block, ...block.querySelectorAll("table")].filter((el) => el.localName === "table")) {
    // A region that can be scrolled with the keyboard too.
    const scroll = element("div", "table-scroll");
    scroll.tabIndex = 0;
    scroll.setAttribute("role", "region");
    scroll.setAttribute("aria-label", "Table");
    if (table === block) block = scroll;
    else table.replaceWith(scroll);
    scroll.append(table);
  }
  return block;
}

/** A button that copies `text()` to the clipboard and says so for a moment. */
export function copyButton(label, name, text) {
  const copy = button("copy", label, name, async () => {
    try {
      await navigator.clipboard.writeText(text());
      copy.textContent = "Copied";
    } catch {
      copy.textContent = "Copy failed";
    }
    setTimeout(() => {
      copy.textContent = label;
    }, 1500);
  });
  return copy;
}

/** Set `el`'s text only if it changes: rewriting the same text is still a change (one a
 * screen reader may announce again). */
export function setText(el, text) {
  if (el.textContent !== text) el.textContent = text;
}

/** Which model wrote an answer, after its author's name. */
function renderModel(li, message) {
  if (message.role !== "assistant" || !message.model) return;
  let model = li.querySelector(".msg-model");
  if (!model) {
    model = element("span", "msg-model");
    model.title = "The model that wrote this answer";
    li.querySelector(".msg-author").after(model);
  }
  setText(model, message.model);
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
