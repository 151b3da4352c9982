"""Forms of Parley's pages. They validate input only; the views hand it to services."""

from __future__ import annotations

import re

from django import forms

from .models import Room

# Bidirectional controls (embeddings, overrides, isolates, marks) and invisible spaces: in a
# title they only serve to disguise it. Joiners (U+200C, U+200D) stay: scripts and emoji
# need them.
_INVISIBLE = re.compile("[\u061c\u200b\u200e\u200f\u202a-\u202e\u2060\u2066-\u2069\ufeff]")


class RoomTitleForm(forms.Form):
    """A room's title, as it is given to a new room or a renamed one."""

    title = forms.CharField(
        max_length=Room._meta.get_field("title").max_length,
        widget=forms.TextInput(attrs={"placeholder": "e.g. Trip planning", "autocomplete": "off"}),
    )

    def clean_title(self) -> str:
        title = _INVISIBLE.sub("", self.cleaned_data["title"]).strip()
        if not title:
            raise forms.ValidationError("Give the room a title.")
        return title


class RoomCreateForm(RoomTitleForm):
    """A new room: its title, and whether others may be invited into it."""

    kind = forms.ChoiceField(
        choices=Room.Kind.choices,
        initial=Room.Kind.PRIVATE,
        widget=forms.RadioSelect,
        label="Who can join",
    )


class InviteForm(forms.Form):
    """The username of someone to add to a shared room."""

    username = forms.CharField(
        max_length=150,
        widget=forms.TextInput(
            attrs={"autocomplete": "off", "autocapitalize": "none", "spellcheck": "false"}
        ),
    )
