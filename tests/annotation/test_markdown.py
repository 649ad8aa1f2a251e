"""Untrusted markdown (prompts, model answers, guidelines) becomes safe HTML."""

from __future__ import annotations

from django.template import Context, Template
from django.utils.safestring import SafeString

from annotation.markdown import render_markdown
from tests.conftest import tags_of


def test_raw_html_in_model_text_shows_as_text_and_never_becomes_a_tag():
    html = render_markdown("Hi <script>alert(1)</script> and <img src=x onerror=alert(1)>")
    tags = tags_of(html)
    assert [t for t, _ in tags] == ["p"]
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "&lt;img src=x onerror=alert(1)&gt;" in html


def test_no_tag_ever_carries_an_event_handler_attribute():
    text = '<a href="https://x.example" onclick="alert(1)">x</a>\n\n<div onmouseover=alert(1)>y</div>\n\n[z](https://ok.example)'
    for _tag, attrs in tags_of(render_markdown(text)):
        assert not [name for name in attrs if name.startswith("on")]


def test_the_result_is_a_safe_string():
    assert isinstance(render_markdown("**bold**"), SafeString)
    assert render_markdown("**bold**") == "<p><strong>bold</strong></p>\n"


def test_empty_text_renders_as_nothing():
    assert render_markdown("") == ""


def test_code_fences_keep_their_language_as_a_class():
    html = render_markdown("```python\nprint('<b>')\n```")
    assert html.startswith('<pre><code class="language-python">')
    assert "print(&#x27;&lt;b&gt;&#x27;)" in html or "print('&lt;b&gt;')" in html


def test_a_fence_info_string_cannot_smuggle_attributes():
    html = render_markdown('```"><script>alert(1)</script>\nx\n```\n\n```js onload=alert(1)\ny\n```')
    for tag, attrs in tags_of(html):
        assert tag in {"pre", "code"}
        assert set(attrs) <= {"class"}
        assert attrs.get("class") in (None, "language-js")


def test_javascript_and_data_links_are_dropped():
    for link in ["javascript:alert(1)", "JaVaScRiPt:alert(1)", "data:text/html;base64,PHNjcmlwdD4=", "vbscript:x"]:
        html = render_markdown(f"[click]({link}) <{link}>")
        assert not [attrs for tag, attrs in tags_of(html) if tag == "a" and attrs.get("href")], html


def test_http_links_stay_and_open_without_referrer_or_opener():
    html = render_markdown("[docs](https://example.com/a?b=1)")
    (tag, attrs), *_ = [t for t in tags_of(html) if t[0] == "a"]
    assert attrs["href"] == "https://example.com/a?b=1"
    assert attrs["rel"] == "noopener noreferrer"


def test_relative_links_lose_their_address():
    html = render_markdown("[out](/logout/)")
    assert "href" not in html


def test_images_are_not_loaded_but_their_alt_text_stays():
    html = render_markdown("![a cat](https://example.com/cat.png)")
    assert "<img" not in html
    assert "[image: a cat]" in html


def test_tables_strikethrough_lists_and_quotes_render():
    html = render_markdown("| a | b |\n|---|--:|\n| 1 | 2 |\n\n~~old~~\n\n3. three\n4. four\n\n> quoted")
    names = {t for t, _ in tags_of(html)}
    assert {"table", "thead", "tbody", "tr", "th", "td", "del", "ol", "li", "blockquote"} <= names
    assert "style=" not in html
    assert '<ol start="3">' in html


def test_the_template_filter_renders_markdown():
    out = Template("{% load markdown_tags %}{{ text|markdown }}").render(Context({"text": "*hi* <script>"}))
    assert out == "<p><em>hi</em> &lt;script&gt;</p>\n"
