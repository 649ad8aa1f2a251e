"""What an export job may ask for, validated by pydantic (docs/style.md: settings checked by a typed schema).

``ExportFilters`` choose the judgments and how they become rows; ``ExportOptions``
shape the files. Both are stored on the job normalised (``model_dump(mode="json")``),
and the same filters on the same data always produce the same bytes.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from annotation.models import Strength

# Llama 2 Table 27: margin by strength, from significantly better to negligibly better.
MARGINS: dict[str, dict[str, float]] = {
    "small": {"significantly": 1.0, "better": 2.0 / 3.0, "slightly": 1.0 / 3.0, "negligibly": 0.0},
    "large": {"significantly": 3.0, "better": 2.0, "slightly": 1.0, "negligibly": 0.0},
}
# Strongest first; a judgment passes ``min_strength`` when its rank is at most the minimum's.
STRENGTH_RANK = {"significantly": 0, "better": 1, "slightly": 2, "negligibly": 3}

StrengthName = Literal["significantly", "better", "slightly", "negligibly"]
assert set(STRENGTH_RANK) == set(Strength.values)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ExportFilters(_Strict):
    rounds: list[int] = Field(default_factory=list, description="Round numbers; empty means every round.")
    tags: list[str] = Field(default_factory=list, description="Keep prompts carrying any of these tags; empty: all.")
    min_strength: StrengthName | None = Field(
        default=None,
        description="Keep pairs at least this strong (Llama 3 kept 'significantly' and 'better' for DPO). "
        "Imported judgments without a strength fail any minimum.",
    )
    drop_ties: bool = Field(default=False, description="Leave out tie judgments before aggregating.")
    drop_both_bad: bool = Field(default=False, description="Leave out 'both bad' judgments (and their rewrites).")
    drop_cant_judge: bool = Field(default=True, description="Leave out 'can't judge' judgments (abstentions).")
    drop_chosen_unsafe: bool = Field(
        default=True, description="Leave out judgments whose preferred answer is unsafe and the other safe (Llama 2)."
    )
    include_gold: bool = Field(default=True, description="Keep judgments on gold (quality-check) comparisons.")
    aggregation: Literal["majority", "none"] = Field(
        default="majority",
        description="'majority': one row per comparison, the outcome more than half of its annotators chose; "
        "'none': one row per judgment.",
    )
    disagreements: Literal["keep", "drop"] = Field(
        default="keep",
        description="With majority aggregation: 'keep' the majority's outcome with its agreement recorded, "
        "or 'drop' comparisons on which the annotators did not all agree.",
    )
    exclude_flagged_annotators: bool = Field(
        default=False, description="Leave out every judgment of annotators flagged by the quality checks."
    )
    exclude_annotators: list[str] = Field(default_factory=list, description="Usernames whose judgments are left out.")
    deduplicate: bool = Field(default=True, description="Write each identical row (same prompt and texts) once.")
    test_fraction: float = Field(
        default=0.05, ge=0.0, le=0.5, description="Share of prompts (by hash) held out in the test split."
    )
    split_seed: str = Field(default="prefdata", min_length=1, max_length=100, description="Salt of the split hash.")

    @field_validator("rounds")
    @classmethod
    def _rounds(cls, value: list[int]) -> list[int]:
        if any(number < 0 for number in value):
            raise ValueError("round numbers are 0 (a pilot), 1, 2, …")
        return sorted(set(value))

    @field_validator("tags")
    @classmethod
    def _tags(cls, value: list[str]) -> list[str]:
        tags = sorted({tag.strip().lower() for tag in value if tag.strip()})
        if any(len(tag) > 100 for tag in tags):
            raise ValueError("a tag is at most 100 characters")
        return tags

    @field_validator("exclude_annotators")
    @classmethod
    def _users(cls, value: list[str]) -> list[str]:
        return sorted({name.strip() for name in value if name.strip()})


class ExportOptions(_Strict):
    margin: Literal["none", "small", "large"] = Field(
        default="none",
        description="Reward-model kind only: a 'margin' column from Llama 2's small or large table "
        "(Table 27), or none (Llama 3 dropped it).",
    )
    rows_per_shard: int = Field(default=500_000, ge=1, le=50_000_000, description="Rows per data file.")


def filters_from(data: dict | None) -> ExportFilters:
    return ExportFilters.model_validate(data or {})


def options_from(data: dict | None) -> ExportOptions:
    return ExportOptions.model_validate(data or {})
