"""The identity-term rule every path uses (imports, sampling, live mode, the demo): a model's
or vendor's name is found whatever its case, spacing or punctuation, as a whole word."""

from __future__ import annotations

import pytest

from core.text import identity_matcher, text_clean

TERMS = ["ChatGPT", "OpenAI", "LLaMA", "Claude", "GPT-4"]


@pytest.mark.parametrize(
    "text",
    [
        "I am chatgpt.",
        "I AM CHATGPT",
        "As Chat GPT, I can't.",
        "chat-gpt here",
        "chat_gpt",
        "Trained by Open AI.",
        "trained by open-ai",
        "OPENAI",
        "I'm LLaMA",
        "i'm llama, made by Meta",
        "Llama 2 says hi",
        "claude:",
        "(Claude)",
        "gpt4 and GPT 4",
        "ＣｈａｔＧＰＴ",  # full-width letters
        "Chat\u200bGPT",  # a zero-width space inside the name
        "Open\u00adAI",  # a soft hyphen
    ],
)
def test_every_spelling_of_a_listed_name_is_found(text):
    assert identity_matcher(TERMS).matches(text), text


@pytest.mark.parametrize(
    "text",
    [
        "The llamas grazed.",  # another word that starts with the name
        "Openair concerts",
        "chatgptish",
        "Claudette said so",
        "gpt-40 tokens",  # a longer number
        "",
    ],
)
def test_a_name_inside_another_word_is_not_a_mention(text):
    assert not identity_matcher(TERMS).matches(text), text


def test_the_mention_is_reported_as_written():
    assert identity_matcher(TERMS).search("Hello, I'm Chat-GPT!") == "Chat-GPT"


def test_no_terms_match_nothing_and_blank_terms_are_ignored():
    assert not identity_matcher([])
    assert not identity_matcher(["", "  "]).matches("ChatGPT")
    assert identity_matcher(["  ChatGPT "]).matches("chatgpt")


def test_a_live_stream_holds_back_enough_characters_for_the_longest_written_form():
    matcher = identity_matcher(["OpenAI"])
    spaced = "Open" + "   " + "AI" + " "  # the widest form the rule allows, with its boundary
    assert matcher.longest >= len(spaced)
    assert matcher.matches(spaced)


def test_text_clean_removes_nul_characters_only():
    assert text_clean("a\x00b\tc\n") == "ab\tc\n"
