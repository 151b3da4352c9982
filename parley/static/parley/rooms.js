// The room list, kept up to date without a reload: the inbox socket (parley/realtime/
// inbox.py) only says that the user's rooms changed (an invitation, a room joined, renamed,
// left or deleted), and the page asks for itself again, with its session, as a reload would.
// The list is swapped for the one in that response: Django's template renders it, in one
// place, escaped as every page is; the strict CSP would refuse any inline script or handler.

import { ReconnectingSocket, socketUrl } from "./client.js";
import { setText } from "./messages.js";

const list = document.getElementById("room-list");
if (list) start(list);

function start(list) {
  const status = document.getElementById("rooms-status");
  let fetching = false;
  let again = false;

  async function refresh() {
    if (fetching) {
      again = true; // one more once this one is in: never two at once, never one lost
      return;
    }
    fetching = true;
    try {
      do {
        again = false;
        const response = await fetch(window.location.href, { headers: { Accept: "text/html" } });
        // Logged out meanwhile (the login page): the socket says so too.
        if (!response.ok || response.redirected) return;
        const page = new DOMParser().parseFromString(await response.text(), "text/html");
        const fresh = page.getElementById("room-list");
        if (fresh) swap(fresh);
      } while (again);
    } catch {
      // The server is away: the socket reconnects, and refreshes once it is back.
    } finally {
      fetching = false;
    }
  }

  function swap(fresh) {
    const invitations = (root) => [...root.querySelectorAll(".invitation")].map((li) => li.textContent);
    const before = new Set(invitations(list));
    const rooms = list.querySelectorAll(".room-card").length;
    list.replaceChildren(...fresh.childNodes);
    const added = [...list.querySelectorAll(".invitation")].find((li) => !before.has(li.textContent));
    if (added) {
      const from = added.querySelector(".invitation-from")?.textContent ?? "Someone";
      const room = added.querySelector(".invitation-room")?.textContent ?? "a room";
      setText(status, `New invitation: ${from} invited you to ${room}.`);
    } else if (list.querySelectorAll(".room-card").length !== rooms) {
      setText(status, "Your rooms changed.");
    }
  }

  let opened = 0;
  let pending = null;
  const socket = new ReconnectingSocket(socketUrl(window.location, list.dataset.inboxPath), {
    onOpen: () => {
      opened += 1;
      if (opened > 1) refresh(); // what changed while it was away
    },
    onFrame: (frame) => {
      // Changes come in bursts (a room deleted, its memberships with it): one fetch for each.
      if (frame.type === "rooms_changed") {
        clearTimeout(pending);
        pending = setTimeout(refresh, 200);
      }
    },
  });
  socket.start();
}
