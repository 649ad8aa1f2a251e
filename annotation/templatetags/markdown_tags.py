"""``{{ text|markdown }}``: untrusted markdown rendered as sanitised HTML (annotation.markdown)."""

from __future__ import annotations

from django import template
from django.utils.safestring import SafeString

from annotation.markdown import render_markdown

register = template.Library()


@register.filter(name="markdown", is_safe=True)
def markdown_filter(value: object) -> SafeString:
    return render_markdown("" if value is None else str(value))
