// The room page: its conversation (conversation.js) on the page's elements, and the
// connection indicator with its countdown and "Retry now". No HTML is built here: text goes
// through textContent, and messages.js inserts only the server's sanitised answer HTML.

import { outboxKey, socketUrl } from "./client.js";
import { Conversation } from "./conversation.js";
import { setText } from "./messages.js";

const root = document.getElementById("room");
if (root) start(root);

function start(root) {
  const byId = (id) => document.getElementById(id);
  const conn = byId("connection-state");
  const connLabel = conn.querySelector(".conn-label");
  const connCountdown = conn.querySelector(".conn-countdown");
  const retry = byId("retry-now");
  let countdown = null;
  let linked = linkedSeq(window.location.hash); // a message to show once the history is in

  const conversation = new Conversation(
    socketUrl(window.location, root.dataset.socketPath),
    {
      list: byId("messages"),
      announcer: byId("announcer"),
      scroller: byId("messages-scroll"),
      empty: byId("empty"),
      notice: byId("notice"),
      form: byId("composer"),
      text: byId("composer-text"),
      ask: byId("composer-ask"),
      count: byId("composer-count"),
      send: byId("send"),
      stop: byId("stop"),
    },
    {
      onConnection,
      onRoom,
      host: root,
      outboxKey: outboxKey(root.dataset.roomId, { id: root.dataset.userId }),
      approver: root.dataset.approver === "true",
      onSynced: () => {
        if (linked !== null) showMessage(conversation, linked);
        linked = null;
      },
    },
  );

  function onRoom(room) {
    setText(byId("room-title").querySelector("bdi"), room.title);
    document.title = `${room.title} · Parley`;
  }

  function onConnection(s) {
    clearInterval(countdown);
    countdown = null;
    retry.hidden = true;
    const offline = navigator.onLine === false;
    if (s.state === "connected") {
      setConnection("connected", "Connected");
    } else if (s.state === "connecting") {
      if (offline) setConnection("offline", "Offline: waiting for the network");
      else setConnection("connecting", "Connecting…");
    } else if (s.state === "open") {
      setConnection("connecting", "Joining the room…");
    } else if (s.state === "reconnecting") {
      if (offline) {
        setConnection("offline", "Offline: waiting for the network");
      } else {
        // The seconds are not in the status region: a screen reader would read each one.
        setConnection("reconnecting", "Reconnecting");
        const tick = () => {
          const seconds = Math.max(1, Math.ceil((s.retryAt - Date.now()) / 1000));
          setText(connCountdown, ` in ${seconds}s`);
        };
        tick();
        countdown = setInterval(tick, 250);
      }
      retry.hidden = false;
    } else if (s.state === "closed") {
      const why =
        s.code === 4401
          ? "Offline: your session has ended; reload the page to log in again"
          : s.code === 4403
            ? "Offline: you are not a member of this room"
            : s.code === 4404
              ? "Offline: this room was deleted"
              : "Offline";
      setConnection("offline", why);
    }
  }

  function setConnection(name, label) {
    conn.dataset.state = name;
    setText(connLabel, label); // said once per change of state, not again
    if (name !== "reconnecting") setText(connCountdown, "");
  }

  retry.addEventListener("click", () => conversation.socket.reconnectNow());
  window.addEventListener("online", () => conversation.socket.reconnectNow());
  window.addEventListener("offline", () => {
    if (!conversation.socket.isOpen) setConnection("offline", "Offline: waiting for the network");
  });

  conversation.start();
  conversation.els.text.focus();
}

/** The seq a link to one message of the room names (`#message-12`, as search hits link), or
 * null. */
function linkedSeq(hash) {
  const found = /^#message-(\d+)$/.exec(hash);
  return found ? Number(found[1]) : null;
}

/** Scroll to the message `seq`, mark it and move the focus to it: called once the history
 * is in, which holds every message from the first, old ones too. */
function showMessage(conversation, seq) {
  const li = conversation.messages.nodes.get(seq);
  if (!li || li.hidden) return;
  li.classList.add("msg-found");
  li.tabIndex = -1;
  li.scrollIntoView({ block: "center" });
  li.focus({ preventScroll: true });
}
