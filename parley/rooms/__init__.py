"""Rooms, members, invitations and messages: writes (:mod:`.services`), reads
(:mod:`.selectors`) and wire payloads (:mod:`.payloads`). No sockets here."""
