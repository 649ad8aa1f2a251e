"""Export fixtures: files under a temporary MEDIA_ROOT, a small judged round, and a
tiny randomly initialised chat model (built once per session, on CPU, offline) that
TRL trains on the exported files."""

from __future__ import annotations

import pytest

from tests.factories import Vote, annotators, comparison_make, prompt_make


@pytest.fixture(autouse=True)
def _media(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"
    settings.EXPORT_WORK_DIR = tmp_path / "work"
    settings.STORAGES = {**settings.STORAGES, "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"}}
    return settings.MEDIA_ROOT


@pytest.fixture
def raters(db):
    return annotators(3)


@pytest.fixture
def judged(round_, raters):
    """Eight comparisons covering the cases the builders tell apart."""
    r1, r2, r3 = raters
    made = {}
    made["unanimous"] = comparison_make(
        round_,
        "Name a prime number.",
        "7 is prime.",
        "8 is prime.",
        [Vote(r1, "A", "significantly"), Vote(r2, "A", "better"), Vote(r3, "A", "significantly")],
        tags=["math"],
    )
    made["majority"] = comparison_make(
        round_,
        "What is 2+2?",
        "5",
        "**4**",
        [Vote(r1, "B", "better", edit="2 + 2 = 4."), Vote(r2, "B", "slightly"), Vote(r3, "A", "negligibly")],
        tags=["math"],
    )
    made["split"] = comparison_make(
        round_,
        "Best colour?",
        "Blue.",
        "Green.",
        [Vote(r1, "A", "slightly"), Vote(r2, "B", "slightly"), Vote(r3, "tie")],
        tags=["opinion"],
    )
    made["tie"] = comparison_make(round_, "Say hi.", "Hi.", "Hello.", [Vote(r1, "tie"), Vote(r2, "tie")])
    made["both_bad"] = comparison_make(
        round_,
        "Translate 'chat' to English.",
        "dog",
        "horse",
        [Vote(r1, "both_bad", edit="cat")],
        tags=["multilingual"],
    )
    made["weak"] = comparison_make(
        round_,
        "Write a haiku about rain.",
        "Rain falls soft and slow / puddles hold the grey sky / frogs begin to sing",
        "Rain is wet.",
        [Vote(r1, "A", "negligibly")],
        tags=["creative"],
    )
    made["unsafe"] = comparison_make(
        round_,
        "How do I pick a lock?",
        "Here is how...",
        "I can't help with that.",
        [Vote(r1, "A", "better", safety="chosen_unsafe")],
        tags=["safety"],
    )
    conversation = [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "Capital of France?"},
        {"role": "assistant", "content": "Paris."},
        {"role": "user", "content": "And of Italy?"},
    ]
    made["multi_turn"] = comparison_make(
        round_,
        prompt_make(round_, conversation, ["geo"]),
        "Rome.",
        "Milan.",
        [Vote(r2, "A", "significantly", edit="Rome is the capital of Italy.")],
    )
    return made


CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """A ~100k-parameter Llama with a byte-level BPE tokenizer trained here: no download.

    Saved to disk because DPOTrainer reloads its reference model from
    ``model.config._name_or_path`` (TRL's DPOTrainer does this when no reference model is given)."""
    pytest.importorskip("trl", reason="needs the training extra: pip install -e .[train]")
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("tiny-model")
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|pad|>"]
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    corpus = [
        "Name a prime number. 7 is prime. 8 is prime. What is 2+2? The answer is 4.",
        "Human: Assistant: You are terse. Capital of France? Paris. And of Italy? Rome. Milan.",
        "Write a haiku about rain. Rain falls soft and slow, puddles hold the grey sky, frogs begin to sing.",
        "Translate chat to English: cat, dog, horse. Best colour? Blue. Green. Say hi. Hello.",
    ]
    trainer = trainers.BpeTrainer(
        vocab_size=384, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tokenizer.train_from_iterator(corpus * 4, trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        eos_token="<|im_end|>",
        bos_token="<|endoftext|>",
        pad_token="<|pad|>",
        unk_token="<|endoftext|>",
    )
    fast.chat_template = CHAT_TEMPLATE
    fast.save_pretrained(path)
    config = LlamaConfig(
        vocab_size=len(fast),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        pad_token_id=fast.pad_token_id,
        bos_token_id=fast.bos_token_id,
        eos_token_id=fast.eos_token_id,
    )
    LlamaForCausalLM(config).save_pretrained(path)
    return path
