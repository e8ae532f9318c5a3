"""Input rules shared by the services."""

from __future__ import annotations

from ..errors import BadBody


def text_field(body: dict, name: str) -> str | None:
    """A string field of a JSON body: None when absent or null, 400 when another type."""
    value = body.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise BadBody(f"'{name}' must be a string.", [f"{name}_not_string"])
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise BadBody(f"'{name}' is not valid Unicode text.", [f"{name}_invalid_unicode"]) from None
    return value


def stored_text(body: dict, name: str) -> str | None:
    """A string field that will be stored: as `text_field`, and 400 when it holds a NUL character,
    which PostgreSQL's text type cannot store (refused on SQLite too, so both databases agree)."""
    value = text_field(body, name)
    if value is not None and "\x00" in value:
        raise BadBody(f"'{name}' must not contain the NUL character.", [f"{name}_contains_nul"])
    return value


def message_errors(message: str | None, max_chars: int) -> list[str]:
    """The error codes of a message: blank, or longer than max_chars characters."""
    if message is None or not message.strip():
        return ["message_blank"]
    if len(message) > max_chars:
        return ["message_exceed_max_chars"]
    return []
