"""The exports as TRL loads them: ``datasets.load_dataset`` on the files, then a few
training steps of DPOTrainer (both TRL formats) and RewardTrainer (with the margin
column) on a tiny random model, on CPU. Proof that the schema is what TRL expects."""

from __future__ import annotations

import pytest

from rlhf_export.models import ExportJob
from tests.rlhf_export.test_services import run

pytestmark = pytest.mark.filterwarnings("ignore")


def load(job: ExportJob, media):
    import datasets

    builder = "json" if job.file_format == "jsonl" else "parquet"
    data_files: dict[str, list[str]] = {}
    for artifact in job.artifacts.filter(role="data"):
        data_files.setdefault(artifact.split, []).append(str(media / artifact.storage_name))
    return datasets.load_dataset(builder, data_files=data_files, cache_dir=str(media / "hf-cache"))


def train_args(tmp_path, cls):
    return cls(
        output_dir=str(tmp_path / "out"),
        max_steps=2,
        per_device_train_batch_size=2,
        learning_rate=1e-3,
        use_cpu=True,
        bf16=False,
        fp16=False,
        report_to="none",
        save_strategy="no",
        logging_steps=1,
        max_length=128,
        dataloader_num_workers=0,
        seed=0,
    )


@pytest.mark.parametrize(("file_format", "text_format"), [("jsonl", "standard"), ("parquet", "conversational")])
def test_dpo_trainer_trains_on_the_dpo_export(
    project, maya, judged, _media, tiny_model_dir, tmp_path, file_format, text_format
):
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import DPOConfig, DPOTrainer

    job = run(project, maya, "dpo", file_format=file_format, text_format=text_format, filters={"test_fraction": 0})
    dataset = load(job, _media)["train"]
    assert {"prompt", "chosen", "rejected"} <= set(dataset.column_names)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    trainer = DPOTrainer(
        model=model, args=train_args(tmp_path, DPOConfig), train_dataset=dataset, processing_class=tokenizer
    )
    result = trainer.train()
    assert result.global_step == 2
    assert result.training_loss == result.training_loss  # not NaN


def test_reward_trainer_trains_on_the_reward_model_export_with_margins(
    project, maya, judged, _media, tiny_model_dir, tmp_path
):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer
    from trl import RewardConfig, RewardTrainer

    job = run(
        project, maya, "reward_model", file_format="parquet", filters={"test_fraction": 0}, options={"margin": "large"}
    )
    dataset = load(job, _media)["train"]
    assert "margin" in dataset.column_names and set(dataset["margin"]) <= {0.0, 1.0, 2.0, 3.0}
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    model = AutoModelForSequenceClassification.from_pretrained(tiny_model_dir, num_labels=1)
    model.config.pad_token_id = tokenizer.pad_token_id
    trainer = RewardTrainer(
        model=model, args=train_args(tmp_path, RewardConfig), train_dataset=dataset, processing_class=tokenizer
    )
    result = trainer.train()
    assert result.global_step == 2


EXPECTED_COLUMNS = {
    ("reward_model", "standard"): {"prompt": "string", "chosen": "string", "rejected": "string", "margin": "float64"},
    ("dpo", "conversational"): {"prompt": "list", "chosen": "list", "rejected": "list"},
    ("sft", "standard"): {"prompt": "string", "completion": "string"},
    ("sft", "conversational"): {"messages": "list"},
    ("llama3", "standard"): {"prompt": "string", "chosen": "string", "rejected": "string", "pair_type": "string"},
    ("raw", "conversational"): {"prompt": "list", "response_a": "string", "preferred": "string", "edit": "string"},
}


@pytest.mark.parametrize("file_format", ["jsonl", "parquet"])
@pytest.mark.parametrize(("kind", "text_format"), list(EXPECTED_COLUMNS))
def test_every_export_kind_loads_with_datasets(project, maya, judged, _media, kind, text_format, file_format):
    options = {"margin": "small"} if kind == "reward_model" else {}
    job = run(
        project,
        maya,
        kind,
        file_format=file_format,
        text_format=text_format,
        filters={"test_fraction": 0.5, "split_seed": "s1"},
        options=options,
    )
    loaded = load(job, _media)
    assert sum(len(split) for split in loaded.values()) == job.rows_total > 0
    assert set(loaded) == {a.split for a in job.artifacts.filter(role="data")}
    features = next(iter(loaded.values())).features
    for column, kind_name in EXPECTED_COLUMNS[(kind, text_format)].items():
        feature = features[column]
        if kind_name == "list":
            # datasets ≥ 4 reads list<struct> as List; older versions as a list of dicts
            assert type(feature).__name__ in ("List", "Sequence", "list"), feature
        else:
            assert getattr(feature, "dtype", None) == kind_name, (column, feature)
    if kind == "sft" and text_format == "conversational":
        row = next(iter(loaded.values()))[0]
        assert row["messages"][-1]["role"] == "assistant"


def test_sft_trainer_trains_on_the_sft_export(project, maya, judged, _media, tiny_model_dir, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    job = run(project, maya, "sft", file_format="parquet", text_format="conversational", filters={"test_fraction": 0})
    dataset = load(job, _media)["train"]
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    trainer = SFTTrainer(
        model=model, args=train_args(tmp_path, SFTConfig), train_dataset=dataset, processing_class=tokenizer
    )
    assert trainer.train().global_step == 2
