"""Where knowledge comes from: files in the configured folders, and objects of registered
models. Each yields :class:`Document`\\ s cut into sections, ready to be stored."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.urls import NoReverseMatch, reverse

from ..conf import get_config
from .chunking import TITLE_SEPARATOR, Section, markdown_sections, text_sections
from .registry import Registration

# The source name of documents read from KNOWLEDGE["FOLDERS"].
FILES = "files"
MARKDOWN_SUFFIXES = {".md", ".markdown"}
TEXT_SUFFIXES = {".txt"}


@dataclass(frozen=True)
class Document:
    """A document as the index stores it: its source (``"files"`` or a model label), its key
    within the source (a file's key, an object's primary key), title, URL and sections; and
    who may read it: its ``owner``'s primary key and the ``permission`` needed ("" for none)."""

    source: str
    key: str
    title: str
    url: str
    sections: list[Section]
    owner: str = ""
    permission: str = ""

    def section_url(self, section: Section) -> str:
        """Where ``section`` is read: the document's URL, at the section's anchor."""
        if not self.url or not section.anchor or "#" in self.url:
            return self.url
        return f"{self.url}#{section.anchor}"


# Files -------------------------------------------------------------------------------------


def folders_configured() -> list[Path]:
    """The folders (or single files) of ``PARLEY["KNOWLEDGE"]["FOLDERS"]``."""
    return [Path(entry) for entry in get_config().knowledge["FOLDERS"]]


def files_listed(*, folders: list[Path]) -> list[tuple[str, Path]]:
    """``(key, path)`` of every Markdown and text file under ``folders``, sorted by key.

    A file's key is its path from the folder's parent (``docs/backends.md``); a single file's
    is its name. Hidden files and folders are skipped, as are missing entries (the system
    check ``parley.W002`` reports those).
    """
    found: dict[str, Path] = {}
    for entry in folders:
        if entry.is_file():
            candidates = [(entry.name, entry)]
        elif entry.is_dir():
            candidates = [
                (path.relative_to(entry.parent).as_posix(), path)
                for path in entry.rglob("*")
                if path.is_file()
                and not any(part.startswith(".") for part in path.relative_to(entry).parts)
            ]
        else:
            continue
        for key, path in candidates:
            if path.suffix.lower() in MARKDOWN_SUFFIXES | TEXT_SUFFIXES:
                found.setdefault(key, path)
    return sorted(found.items())


def file_url(*, key: str) -> str:
    """The URL of Parley's page showing the file ``key`` ("" if ``parley.urls`` is not
    included in the project)."""
    try:
        return reverse("parley:knowledge", kwargs={"key": key})
    except NoReverseMatch:
        return ""


def file_document(*, key: str, path: Path) -> Document:
    """The file at ``path`` as a document (Markdown cut at headings, text at paragraphs)."""
    text = path.read_text(encoding="utf-8", errors="replace")
    title = path.stem.replace("-", " ").replace("_", " ").capitalize()
    if path.suffix.lower() in MARKDOWN_SUFFIXES:
        sections = markdown_sections(text, title=title)
    else:
        sections = text_sections(text, title=title)
    if sections:
        title = sections[0].title.split(TITLE_SEPARATOR)[0]
    return Document(source=FILES, key=key, title=title, url=file_url(key=key), sections=sections)


# Objects of registered models --------------------------------------------------------------


def object_document(*, registration: Registration, obj: Any) -> Document:
    """A registered model's object as a document: its fields' text, cut at Markdown
    headings, under the object's title."""
    title = registration.title_of(obj)
    sections = markdown_sections(registration.text_of(obj), title=title)
    return Document(
        source=registration.label,
        key=str(obj.pk),
        title=title,
        url=registration.url_of(obj),
        sections=sections,
        owner=registration.owner_of(obj),
        permission=registration.permission_of(),
    )
