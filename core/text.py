"""Text helpers shared by every app: conversations, content hashes and identity terms.

Nothing here touches the database, so imports, sampling, live mode, exports and the
demo all use the same rules (docs/protocol.md).
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections.abc import Iterable, Sequence
from functools import lru_cache
from typing import Any

import orjson

VALID_ROLES = frozenset({"system", "user", "assistant"})


# --- Conversations ------------------------------------------------------------------------


def messages_normalize(value: str | Sequence[Any]) -> list[dict[str, str]]:
    """Turn a prompt given as a string or a message list into the canonical message list.

    Raises ValueError with a message fit for a user when the shape is wrong.
    """
    if isinstance(value, str):
        text = value.replace("\r\n", "\n").strip()
        if not text:
            raise ValueError("the prompt is empty")
        return [{"role": "user", "content": text}]
    if not isinstance(value, (list, tuple)) or not value:
        raise ValueError("a prompt must be a non-empty string or a non-empty list of {role, content} messages")
    messages: list[dict[str, str]] = []
    for index, message in enumerate(value):
        if not isinstance(message, dict):
            raise ValueError(f"message {index} is not an object with 'role' and 'content'")
        role, content = message.get("role"), message.get("content")
        if role not in VALID_ROLES:
            raise ValueError(f"message {index} has role {role!r}; expected one of system, user, assistant")
        if not isinstance(content, str) or not content.strip():
            raise ValueError(f"message {index} has no text in 'content'")
        extra = set(message) - {"role", "content"}
        if extra:
            raise ValueError(f"message {index} has unknown keys: {', '.join(sorted(extra))}")
        messages.append({"role": role, "content": content.replace("\r\n", "\n").strip()})
    if messages[-1]["role"] != "user":
        raise ValueError("the conversation must end with a user message (the turn the models answer)")
    return messages


def messages_hash(messages: list[dict[str, str]]) -> str:
    """SHA-256 of the canonical form: compact UTF-8 JSON with sorted keys."""
    return hashlib.sha256(orjson.dumps(messages, option=orjson.OPT_SORT_KEYS)).hexdigest()


def messages_turns(messages: list[dict[str, str]]) -> int:
    """The number of user turns in a conversation."""
    return sum(1 for m in messages if m["role"] == "user")


def text_hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def text_clean(text: str) -> str:
    """A model's or a file's text as the database can hold it: PostgreSQL text has no NUL."""
    return text.replace("\x00", "")


# --- Identity terms -----------------------------------------------------------------------

# Between the parts of a name: nothing, or up to three spaces, hyphens, dots, underscores,
# slashes or middle dots ("OpenAI", "Open AI", "open-ai", "Chat GPT", "chat_gpt").
_JOINER = r"[\s\-_./·]{0,3}"
# Characters that render as nothing and could hide a name from a plain match.
_INVISIBLE = dict.fromkeys(map(ord, "\u00ad\u180e\u200b\u200c\u200d\u2060\ufeff"))
# Where a written name may be split: between letters and digits, and before an upper-case
# letter that follows a lower-case one or starts a capitalised word ("ChatGPT" -> chat|gpt,
# "GPT4" -> gpt|4, "LLaMA" -> lla|ma, "MetaAI" -> meta|ai).
_PART = re.compile(r"[0-9]+|[A-Z]+(?![a-z])|[A-Z]?[a-z]+|[^\W\d_]+")


def _parts(term: str) -> list[str]:
    return [p.lower() for p in _PART.findall(unicodedata.normalize("NFKC", term))]


class IdentityMatcher:
    """Finds mentions of model and vendor names (a project's identity terms) in a text.

    The one rule for imports, sampling, live mode and the demo (docs/protocol.md, "Blind"):
    a term matches as a whole word, whatever its case, and the parts of a name may be
    written together or apart ("ChatGPT", "chatgpt", "Chat-GPT", "CHAT GPT"; "OpenAI",
    "Open AI"; "LLaMA", "llama"). The text is read in Unicode compatibility form (full-width
    letters count) with invisible characters removed. A matching answer is held back for a
    lead, never deleted, so a false alarm (Spanish "llama") costs one review.
    """

    def __init__(self, terms: Iterable[str]):
        names = sorted({tuple(parts) for t in terms if (parts := _parts(t or ""))}, key=lambda p: (-len(p), p))
        self.terms: tuple[tuple[str, ...], ...] = tuple(names)
        if names:
            alternatives = "|".join(_JOINER.join(re.escape(p) for p in parts) for parts in names)
            self._pattern: re.Pattern[str] | None = re.compile(
                rf"(?<![^\W_])(?:{alternatives})(?![^\W_])", re.IGNORECASE
            )
        else:
            self._pattern = None

    def __bool__(self) -> bool:
        return self._pattern is not None

    @staticmethod
    def _prepare(text: str) -> str:
        return unicodedata.normalize("NFKC", text).translate(_INVISIBLE)

    def search(self, text: str) -> str | None:
        """The first mention in ``text`` as written there (normalised), or None."""
        if self._pattern is None or not text:
            return None
        found = self._pattern.search(self._prepare(text))
        return found.group(0) if found else None

    def matches(self, text: str) -> bool:
        return self.search(text) is not None

    @property
    def longest(self) -> int:
        """The most characters one mention can take, the word boundary after it included:
        what a stream must hold back before showing text (live mode)."""
        return max((sum(map(len, parts)) + 3 * (len(parts) - 1) + 1 for parts in self.terms), default=0)


@lru_cache(maxsize=256)
def _matcher(terms: tuple[str, ...]) -> IdentityMatcher:
    return IdentityMatcher(terms)


def identity_matcher(terms: Iterable[str] | None) -> IdentityMatcher:
    """The matcher for a project's ``identity_terms``, built once per distinct list."""
    return _matcher(tuple(t.strip() for t in (terms or ()) if t and t.strip()))
