"""Text people type (names, purposes): one shared validator type, and the key names are told
apart by.

A value is normalised (Unicode NFC, outer whitespace stripped) and refused when blank (only
whitespace or invisible format characters), when it holds control characters (line breaks
too, unless the text may span lines), lone surrogates or bidirectional embeddings, overrides
and isolates (which make a name display in another order than it is stored, in a console or a
log), or when its normalised length is out of bounds. The plain direction marks (U+200E,
U+200F) stay allowed. Two names are the same when their :func:`name_key` is: NFKC, case
folded, format characters dropped, whitespace runs collapsed, so that "Office de tourisme ",
"office de tourisme" and an NFD "Évry" do not pass for new names.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from dataclasses import dataclass
from typing import Annotated

from pydantic import AfterValidator, Field
from pydantic_core import PydanticCustomError

_LINE_BREAKS = frozenset("\n\r\t")
_SPACES = re.compile(r"\s+")
_BIDI_CONTROLS = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def _refused(character: str, multiline: bool) -> bool:
    category = unicodedata.category(character)
    if category == "Cc":
        return not (multiline and character in _LINE_BREAKS)
    return category == "Cs" or character in _BIDI_CONTROLS


def _invisible(character: str) -> bool:
    return character.isspace() or unicodedata.category(character) == "Cf"


@dataclass(frozen=True)
class TextRule:
    """A pydantic after-validator: ``value`` in NFC without outer whitespace, or refused."""

    min_length: int
    max_length: int
    multiline: bool = False

    def __call__(self, value: str) -> str:
        text = unicodedata.normalize("NFC", value).strip()
        if all(_invisible(character) for character in text):
            raise PydanticCustomError("blank", "must not be blank")
        bad = next((character for character in text if _refused(character, self.multiline)), None)
        if bad is not None:
            raise PydanticCustomError(
                "control_character",
                "must not contain control characters (found U+{code})",
                {"code": f"{ord(bad):04X}"},
            )
        if not self.min_length <= len(text) <= self.max_length:
            raise PydanticCustomError(
                "text_length",
                "must be {min_length} to {max_length} characters once trimmed (is {length})",
                {"min_length": self.min_length, "max_length": self.max_length, "length": len(text)},
            )
        return text


def name_key(name: str) -> str:
    """What two names that read the same share (SHA-256 hex: a fixed length, whatever
    NFKC and case folding do to the name's)."""
    folded = unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", name).casefold())
    visible = "".join(character for character in folded if unicodedata.category(character) != "Cf")
    collapsed = _SPACES.sub(" ", visible).strip()
    return hashlib.sha256(collapsed.encode()).hexdigest()


# A one-line name of 1 to 200 characters (partners, datasets).
Name = Annotated[str, Field(min_length=1, max_length=200), AfterValidator(TextRule(1, 200))]
