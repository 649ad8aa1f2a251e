"""Markdown for untrusted text: prompts and model answers, and project guidelines.

Two layers, because model output is attacker-controlled (a prompt can ask a model to
write ``<script>``): markdown-it-py runs with raw HTML *disabled*, so any HTML in the
text is escaped and shows as text; then nh3 sanitises the rendered HTML against a
short allow-list, so even a renderer bug cannot produce a live script, an event
handler attribute or a ``javascript:`` link.
"""

from __future__ import annotations

import re
from functools import lru_cache

import nh3
from django.utils.safestring import SafeString, mark_safe
from markdown_it import MarkdownIt
from markdown_it.common.utils import escapeHtml

ALLOWED_TAGS = frozenset(
    {
        "p",
        "pre",
        "code",
        "em",
        "strong",
        "ul",
        "ol",
        "li",
        "blockquote",
        "h1",
        "h2",
        "h3",
        "h4",
        "h5",
        "h6",
        "table",
        "thead",
        "tbody",
        "tr",
        "th",
        "td",
        "a",
        "br",
        "hr",
        "span",
        "del",
    }
)
ALLOWED_ATTRIBUTES = {"a": {"href", "title"}, "code": {"class"}, "ol": {"start"}}
# Fence info strings are free text; only a plain language name becomes a class.
_LANGUAGE_CLASS = re.compile(r"^language-[A-Za-z0-9_+#.-]{1,40}$")
_ABSOLUTE_HTTP = re.compile(r"^https?://", re.IGNORECASE)


def _attribute_filter(tag: str, attr: str, value: str) -> str | None:
    if tag == "code" and attr == "class":
        classes = [c for c in value.split() if _LANGUAGE_CLASS.match(c)]
        return classes[0] if classes else None
    if tag == "a" and attr == "href":
        # Relative links would point into this site from a model's answer: drop them too.
        return value if _ABSOLUTE_HTTP.match(value.strip()) else None
    if tag == "ol" and attr == "start":
        return value if value.isdigit() else None
    return value


def _render_image(self, tokens, idx, options, env) -> str:
    # Images are not shown (a remote image would tell its host who reads the page);
    # the alt text is kept, as a link to the image when its address is http(s).
    token = tokens[idx]
    alt = escapeHtml(self.renderInlineAsText(token.children or [], options, env)) or "image"
    src = escapeHtml(str(token.attrGet("src") or ""))
    return f'<a href="{src}">[image: {alt}]</a>' if src else f"[image: {alt}]"


@lru_cache(maxsize=1)
def _parser() -> MarkdownIt:
    # breaks: a single newline is a line break, as chat UIs show model answers (letters,
    # addresses, poems keep their lines).
    md = MarkdownIt("commonmark", {"html": False, "linkify": False, "typographer": False, "breaks": True})
    md.enable(["table", "strikethrough"])
    md.add_render_rule("s_open", lambda self, tokens, idx, options, env: "<del>")
    md.add_render_rule("s_close", lambda self, tokens, idx, options, env: "</del>")
    md.add_render_rule("image", _render_image)
    return md


def render_markdown_html(text: str) -> str:
    """Render ``text`` as sanitised HTML (a plain ``str``)."""
    if not text:
        return ""
    html = _parser().render(text)
    return nh3.clean(
        html,
        tags=set(ALLOWED_TAGS),
        attributes={tag: set(attrs) for tag, attrs in ALLOWED_ATTRIBUTES.items()},
        attribute_filter=_attribute_filter,
        url_schemes={"http", "https"},
        link_rel="noopener noreferrer",
        strip_comments=True,
    )


def render_markdown(text: str) -> SafeString:
    """Render untrusted markdown to HTML that is safe to insert into a page."""
    # The output has been through nh3's allow-list above; that is what makes it safe.
    return mark_safe(render_markdown_html(text or ""))
