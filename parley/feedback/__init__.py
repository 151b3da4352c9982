"""Feedback on answers: thumbs up or down with a comment, given in the room page and the
widget, listed in the admin and exported for evaluation (docs/operations.md, Feedback)."""
