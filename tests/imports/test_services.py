from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from annotation.models import Comparison, Judgment, JudgmentSource, Preference, Prompt, Round, Sample, Strength
from imports.readers import iter_records
from imports.services import FileFormat, ImportKind, ImportOptions, import_run
from models_service.models import ModelVersion

LLMBAR = Path(__file__).resolve().parents[1] / "data" / "llmbar"  # LLMBar's natural set (MIT): see its README
User = get_user_model()


def run(project, kind, content: str | bytes, filename="data.jsonl", **options):
    data = content.encode() if isinstance(content, str) else content
    return import_run(
        stream=io.BytesIO(data),
        filename=filename,
        options=ImportOptions(kind=ImportKind(kind), project=project, **options),
    )


def jsonl(rows) -> str:
    return "".join(json.dumps(r) + "\n" for r in rows)


def counts() -> dict[str, int]:
    return {
        "prompts": Prompt.objects.count(),
        "samples": Sample.objects.count(),
        "comparisons": Comparison.objects.count(),
        "judgments": Judgment.objects.count(),
        "rounds": Round.objects.count(),
        "versions": ModelVersion.objects.count(),
        "users": User.objects.count(),
    }


def pair(i: int, **extra):
    return {
        "input": f"Question number {i}?",
        "output_1": f"first answer {i}",
        "output_2": f"second answer {i}",
        **extra,
    }


# --- pairs ---------------------------------------------------------------------------


def test_the_llmbar_natural_file_imports_as_pairs_with_its_labels_as_outside_judgments(project):
    with (LLMBAR / "natural.json").open("rb") as f:
        report = import_run(
            stream=f,
            filename="natural.json",
            options=ImportOptions(kind=ImportKind.PAIRS, project=project, source="llmbar"),
        )
    assert report.committed, report.errors
    assert report.created["comparisons"] == 100
    assert report.created["judgments"] == 100
    records = json.loads((LLMBAR / "natural.json").read_text())
    first = Comparison.objects.select_related("sample_a", "sample_b").order_by("id").first()
    assert first.sample_a.text.strip() == records[0]["output_1"].strip()
    judgment = first.judgments.get()
    assert judgment.preferred == (Preference.A if records[0]["label"] == 1 else Preference.B)
    assert judgment.source == JudgmentSource.IMPORT
    assert judgment.annotator.username == "ext.llmbar"
    assert not judgment.annotator.has_usable_password()
    labels_b = sum(1 for r in records if r["label"] == 2)
    assert Judgment.objects.filter(preferred=Preference.B).count() == labels_b


def test_a_file_with_one_bad_line_is_rejected_naming_that_line_and_writes_nothing(project, settings):
    settings.IMPORT_BATCH_SIZE = 100  # the bad line comes after several batches were written
    rows = [pair(i, label=1) for i in range(1, 1001)]
    rows[736] = {**rows[736], "label": "maybe"}  # line 737
    before = counts()
    report = run(project, "pairs", jsonl(rows), source="vendor")
    assert not report.committed
    assert report.error_count == 1
    [error] = report.errors
    assert error.line == 737
    assert "maybe" in error.message
    assert counts() == before


def test_every_bad_line_is_reported_with_its_field(project):
    lines = [
        json.dumps(pair(1)),
        json.dumps({"input": "", "output_1": "a", "output_2": "b"}),
        "{not json",
        json.dumps({"input": "q", "output_1": "a"}),
        json.dumps([1, 2]),
        json.dumps(
            {
                "input": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}],
                "output_1": "a",
                "output_2": "b",
            }
        ),
    ]
    report = run(project, "pairs", "\n".join(lines) + "\n")
    found = {(e.line, e.field) for e in report.errors}
    assert (2, "input") in found or (2, "prompt") in found
    assert any(e.line == 3 and "JSON" in e.message for e in report.errors)
    assert (4, "response_b") in found
    assert any(e.line == 5 and "object" in e.message for e in report.errors)
    assert any(e.line == 6 and "end with a user message" in e.message for e in report.errors)
    assert Prompt.objects.count() == 0


def test_skip_invalid_commits_the_good_lines_and_lists_the_bad_ones(project):
    rows = [json.dumps(pair(i)) for i in range(5)] + ['{"input": "x"}']
    report = run(project, "pairs", "\n".join(rows), skip_invalid=True)
    assert report.committed
    assert report.created["comparisons"] == 5
    assert [e.line for e in report.errors] == [6, 6]  # both answers missing
    assert Comparison.objects.count() == 5


def test_a_nul_character_anywhere_in_a_record_is_refused_with_its_line_and_field(project):
    rows = [
        pair(0),
        pair(1, output_2="second\x00answer"),
        {"messages": [{"role": "user", "content": "Hi\x00?"}], "response_a": "a", "response_b": "b"},
        pair(3, judgments=[{"annotator": "vendor:1", "preferred": "A", "strength": "better", "rationale": "\x00"}]),
        pair(4),
    ]
    report = run(project, "pairs", jsonl(rows))
    assert [(e.line, e.field) for e in report.errors] == [
        (2, "output_2"),
        (3, "messages.0.content"),
        (4, "judgments.0.rationale"),
    ]
    assert all("NUL character" in e.message for e in report.errors)
    assert not report.committed and Prompt.objects.count() == 0

    report = run(project, "pairs", jsonl(rows), skip_invalid=True)
    assert report.committed and report.created["comparisons"] == 2 and report.error_count == 3


def test_a_nul_character_in_a_csv_cell_or_a_json_array_item_is_refused_too(project):
    csv_content = 'prompt,tags\r\n"fine",a\r\n"bro\x00ken",b\r\n'
    report = run(project, "prompts", csv_content, filename="prompts.csv")
    assert [(e.line, e.field) for e in report.errors] == [(3, "prompt")]
    array = json.dumps([{"prompt": "fine"}, {"prompt": [{"role": "user", "content": "x\u0000"}]}])
    report = run(project, "prompts", array, filename="prompts.json")
    assert [(e.item, e.field) for e in report.errors] == [(2, "prompt.0.content")]
    assert not report.committed and Prompt.objects.count() == 0


def test_importing_the_same_pairs_twice_creates_nothing_the_second_time(project):
    content = jsonl([pair(i, label=2) for i in range(20)])
    first = run(project, "pairs", content, source="vendor")
    assert first.created["comparisons"] == 20
    before = counts()
    second = run(project, "pairs", content, source="vendor")
    assert second.committed
    assert second.created == {}
    assert second.existing == {"prompts": 20, "samples": 40, "comparisons": 20, "judgments": 20}
    assert counts() == before


def test_several_label_sources_become_one_judgment_per_outside_annotator(project):
    rows = [
        pair(
            1,
            label=1,
            labels={"w7": "tie"},
            judgments=[
                {
                    "annotator": "w9",
                    "preferred": "B",
                    "strength": "significantly better",
                    "safety": "both_safe",
                    "rationale": "B is correct",
                }
            ],
        ),
    ]
    report = run(project, "pairs", jsonl(rows), source="acme")
    assert report.created["judgments"] == 3
    comparison = Comparison.objects.get()
    assert comparison.judgment_count == 3
    by_user = {j.annotator.username: j for j in comparison.judgments.select_related("annotator")}
    assert by_user["ext.acme"].preferred == Preference.A
    assert by_user["ext.acme-w7"].preferred == Preference.TIE
    w9 = by_user["ext.acme-w9"]
    assert (w9.preferred, w9.strength, w9.safety, w9.rationale) == (
        "B",
        Strength.SIGNIFICANTLY,
        "both_safe",
        "B is correct",
    )


def test_a_strength_with_a_tie_is_refused(project):
    rows = [pair(1, judgments=[{"annotator": "w1", "preferred": "tie", "strength": "better"}])]
    report = run(project, "pairs", jsonl(rows))
    assert not report.committed
    assert "strength goes with a preference" in report.errors[0].message


def test_model_names_in_rows_become_model_versions_and_sides(project):
    rows = [pair(1, model_a="llama-2-7b", model_b="llama-2-13b", label="model_b")]
    report = run(project, "pairs", jsonl(rows))
    comparison = Comparison.objects.select_related("sample_a__model_version", "sample_b__model_version").get()
    assert comparison.sample_a.model_version.name == "llama-2-7b"
    assert comparison.sample_b.model_version.name == "llama-2-13b"
    assert comparison.judgments.get().preferred == Preference.B
    assert report.round_id == comparison.round_id


def test_a_gold_answer_makes_a_gold_item(project):
    run(project, "pairs", jsonl([pair(1, gold="2")]))
    comparison = Comparison.objects.get()
    assert comparison.is_gold and comparison.gold_preferred == Preference.B


def test_answers_naming_a_model_are_flagged(project):
    project.identity_terms = ["ChatGPT"]
    project.save()
    rows = [pair(1, output_1="As ChatGPT, I think so."), pair(2)]
    report = run(project, "pairs", jsonl(rows))
    assert report.created["identity_flagged_samples"] == 1
    assert Sample.objects.filter(identity_flagged=True).count() == 1


def test_unknown_fields_are_ignored_and_reported(project):
    report = run(project, "pairs", jsonl([pair(1, dataset="x", difficulty=3)]))
    assert report.committed
    assert report.ignored_fields == {"dataset", "difficulty"}


# --- prompts -------------------------------------------------------------------------


def test_identical_prompts_are_stored_once_and_their_tags_merged(project):
    rows = [
        {"prompt": "Explain recursion.", "tags": ["code"]},
        {"prompt": "  Explain recursion.\r\n", "tags": "reasoning, code"},
        {"prompt": [{"role": "user", "content": "Explain recursion."}], "tags": []},
    ]
    report = run(project, "prompts", jsonl(rows))
    assert report.created == {"prompts": 1}
    assert report.existing == {"prompts": 2}
    prompt = Prompt.objects.get()
    assert prompt.tags == ["code", "reasoning"]
    run(project, "prompts", jsonl([{"prompt": "Explain recursion.", "tags": ["teaching"]}]))
    prompt.refresh_from_db()
    assert prompt.tags == ["code", "reasoning", "teaching"]


def test_csv_prompts_report_the_line_where_a_multiline_record_starts(project):
    content = (
        "id,prompt,tags\n"
        'p1,"A question\nthat spans\nthree lines",code\n'
        'p2,"[{""role"": ""system"", ""content"": ""Be brief.""}, {""role"": ""user"", ""content"": ""Hi""}]",\n'
        "p3,,reasoning\n"
    )
    report = run(project, "prompts", content, filename="prompts.csv")
    assert [(e.line, e.field) for e in report.errors] == [(6, "prompt")]
    report = run(project, "prompts", content, filename="prompts.csv", skip_invalid=True)
    assert report.created == {"prompts": 2}
    system_prompt = Prompt.objects.get(external_id="p2")
    assert system_prompt.messages[0] == {"role": "system", "content": "Be brief."}
    assert system_prompt.turns == 1


def test_a_json_array_error_names_the_item_of_the_bad_record(project):
    content = '[\n  {"prompt": "one"},\n  {"prompt": "two"},\n  {"prompt": 3}\n]\n'
    report = run(project, "prompts", content, filename="prompts.json")
    assert [(e.line, e.item) for e in report.errors] == [(None, 3)]
    assert str(report.errors[0]).startswith("item 3: prompt")
    broken = '[\n  {"prompt": "one"},\n  {"prompt": "two",,}\n]'
    report = run(project, "prompts", broken, filename="prompts.json")
    assert [(e.item, e.message.split(":")[0]) for e in report.errors] == [(2, "not valid JSON")]
    assert not report.committed
    report = run(project, "prompts", '[{"prompt": "one"}, {"prompt": "two"', filename="prompts.json")
    assert report.errors[0].item == 2 and "not valid JSON after item 1" in report.errors[0].message


@pytest.mark.parametrize(
    "content,message",
    [
        ('[{"prompt": "one"}] and then some', "trailing garbage"),
        ('[{"prompt": "one"}] {"prompt": "two"}', "trailing garbage"),
        ('[{"prompt": "one"}]]', "trailing garbage"),
        ('[{"prompt": "one"}}', "closed with }"),
        ('[{"prompt": "one"}, ', "not valid JSON after item 1"),
        ("[" * 5000 + "]" * 5000, "nests deeper than 64 levels"),
        ('[{"prompt": ' + "[" * 100_000 + "]" * 100_000 + "}]", "nests deeper than 64 levels"),
        ('[{"prompt": "a lone \\ud800 surrogate"}]', "surrogate"),
        ('[{"prompt": "a lone \\udc00 surrogate"}]', "surrogate"),
        ('[{"prompt": "x", "tags": ["\\udc00"]}]', "surrogate"),
    ],
)
def test_a_json_array_is_read_whole_and_nothing_after_it_or_deep_inside_it_breaks_the_import(project, content, message):
    report = run(project, "prompts", content, filename="prompts.json")
    assert not report.committed and message in " ".join(e.message for e in report.errors)
    assert Prompt.objects.count() == 0


@pytest.mark.parametrize(
    "head",
    [b"", b"   ", b"\n\n\n", b"\xef\xbb\xbf", b"\xef\xbb\xbf  \r\n", b" " * 70_000],
    ids=["bare", "indented", "blank-lines", "bom", "bom-and-blank-line", "70k-spaces"],
)
def test_a_json_array_after_white_space_or_a_byte_order_mark_imports_every_record(project, head):
    body = b'[{"prompt": "one"}, {"prompt": "two"}]\n'
    report = run(project, "prompts", head + body, filename="prompts.json")
    assert report.committed and not report.errors
    assert report.created == {"prompts": 2}


class _EndlessLines(io.RawIOBase):
    """A stream of generated records that never ends: reading it whole would hang."""

    def __init__(self, make_line, header: bytes = b""):
        self.make_line, self.pending, self.i, self.served = make_line, header, 0, 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        while len(self.pending) < len(buffer):
            self.pending += self.make_line(self.i)
            self.i += 1
        n = len(buffer)
        buffer[:n] = self.pending[:n]
        self.pending = self.pending[n:]
        self.served += n
        return n


@pytest.mark.parametrize(
    "file_format,make_line,header",
    [
        (FileFormat.JSONL, lambda i: b'{"prompt": "q%d"}\n' % i, b""),
        (FileFormat.CSV, lambda i: b"q%d,code\n" % i, b"prompt,tags\n"),
        (FileFormat.JSON, lambda i: b'{"prompt": "q%d"},\n' % i, b"[\n"),
    ],
)
def test_files_are_read_as_a_stream_not_loaded_whole(file_format, make_line, header):
    raw = _EndlessLines(make_line, header)
    records = iter_records(io.BufferedReader(raw), file_format, max_record_bytes=1 << 20)
    first = [next(records) for _ in range(1000)]
    assert first[-1][1]["prompt"] == "q999"
    assert raw.served < 3 * 1024 * 1024


# --- nothing lost without a word ----------------------------------------------------


def test_skip_invalid_writes_every_good_line_however_many_bad_lines_come_before_it(project, settings):
    settings.IMPORT_BATCH_SIZE = 7  # batches fill and flush between the bad lines
    rows = [pair(i) for i in range(50)] + [{"input": "x"}] * 150 + [pair(i) for i in range(50, 60)]
    rows.insert(120, pair(1000))
    report = run(project, "pairs", jsonl(rows), skip_invalid=True)
    assert report.committed
    assert report.error_count == 300 and len(report.errors) == 100  # two errors a bad line; the first 100 listed
    assert report.created["comparisons"] == 61 and Comparison.objects.count() == 61
    assert "61 valid, 300 with errors (committed)" in report.summary()


def test_every_label_that_is_not_stored_is_counted_and_placed(project):
    rows = [
        # line 1: the same annotator twice on one pair, with two verdicts: the second is not stored
        pair(1, labels={"w7": "A"}, judgments=[{"annotator": "w7", "preferred": "B", "strength": "better"}]),
        # line 2: the same label twice is one judgment, the other "already present"
        pair(2, labels={"w7": "A"}, judgments=[{"annotator": "w7", "preferred": "A"}]),
        # line 3: a label the judgment rules refuse
        pair(3, judgments=[{"annotator": "w1", "preferred": "tie", "strength": "better"}]),
        # line 4: a record refused as a whole, with its two labels
        {"input": "Four?", "output_1": "4", "labels": {"w1": "A", "w2": "B"}},
        # line 5: a pair that cannot be built (the same answer twice), with one label
        {"input": "Five?", "output_1": "5", "output_2": "5", "model_a": "m", "model_b": "m", "label": 1},
        # line 6: all stored
        pair(6, label=2, labels={"w8": "B"}),
    ]
    report = run(project, "pairs", jsonl(rows), source="acme", skip_invalid=True)
    assert report.committed
    assert report.labels_read == 10
    assert report.created["judgments"] == 4 and report.existing["judgments"] == 1
    assert report.labels_not_stored == 5
    assert report.labels_read == report.created["judgments"] + report.existing["judgments"] + report.labels_not_stored
    assert [(p.line, p.count) for p in report.labels_not_stored_at] == [(1, 1), (3, 1), (4, 2), (5, 1)]
    assert Judgment.objects.count() == 4
    assert "5 of 10 labels not stored (line 1, line 3, line 4, line 5)" in report.summary()
    body = report.as_dict()
    assert body["labels_not_stored"] == 5 and body["labels_not_stored_at"][2] == {"line": 4, "item": None, "count": 2}
    assert not body["labels_not_stored_truncated"]
    lines_with_errors = {e.line for e in report.errors}
    assert {p.line for p in report.labels_not_stored_at} <= lines_with_errors


def test_a_label_contradicting_a_stored_judgment_is_counted_as_not_stored(project):
    run(project, "pairs", jsonl([pair(1, label=1)]), source="acme")
    report = run(project, "pairs", jsonl([pair(1, label=2), pair(2, label=1)]), source="acme", skip_invalid=True)
    assert report.committed and report.labels_read == 2
    assert report.labels_not_stored == 1 and [p.line for p in report.labels_not_stored_at] == [1]
    assert report.created["judgments"] == 1


def test_when_nothing_is_written_every_label_read_is_not_stored(project):
    rows = [pair(1, label=1, labels={"w1": "B"}), {"input": "x", "label": 1}]
    report = run(project, "pairs", jsonl(rows), source="acme")
    assert not report.committed
    assert (report.labels_read, report.labels_not_stored, report.labels_not_stored_at) == (3, 3, [])
    assert "3 of 3 labels not stored" in report.summary()


def test_annotators_whose_names_differ_only_in_case_accents_or_dots_are_different_people(project):
    labels = {"W7": "A", "w7": "B", "Zoë": "A", "Zoe": "B", "a.b": "A", "ab": "B"}
    report = run(project, "pairs", jsonl([pair(1, labels=labels)]), source="acme")
    assert report.committed and report.created["judgments"] == 6 and report.labels_not_stored == 0
    names = set(User.objects.filter(username__startswith="ext.").values_list("first_name", flat=True))
    assert names == {f"acme:{name}" for name in labels}
    again = run(project, "pairs", jsonl([pair(1, labels=labels)]), source="acme")
    assert again.created == {} and again.existing["judgments"] == 6


@pytest.mark.parametrize(
    "file_format,content",
    [
        ("jsonl", '{"prompt": "one"}\n{"prompt": "' + "x" * 3000 + '"}\n{"prompt": "three"}\n'),
        ("csv", "prompt\none\n" + "x" * 3000 + "\nthree\n"),
        ("json", '[{"prompt": "one"}, {"prompt": "' + "x" * 3000 + '"}, {"prompt": "three"}]'),
    ],
)
def test_a_record_longer_than_the_limit_is_an_error_on_its_line(project, file_format, content):
    where = {"jsonl": (2, None), "csv": (3, None), "json": (None, 2)}[file_format]
    report = run(project, "prompts", content, filename=f"prompts.{file_format}", max_record_bytes=2048)
    assert [(e.line, e.item) for e in report.errors] == [where]
    assert "is longer than 2,048 bytes (IMPORT_MAX_RECORD_BYTES)" in report.errors[0].message
    assert not report.committed and Prompt.objects.count() == 0
    report = run(
        project, "prompts", content, filename=f"prompts.{file_format}", max_record_bytes=2048, skip_invalid=True
    )
    assert report.committed and report.created == {"prompts": 2}


def test_the_longest_record_is_a_setting(project, settings):
    settings.IMPORT_MAX_RECORD_BYTES = 1024
    report = run(project, "prompts", jsonl([{"prompt": "x" * 2000}]))
    assert "1,024 bytes" in report.errors[0].message


@pytest.mark.parametrize(
    "kind,record,field",
    [
        ("samples", {"prompt": "q", "model": "m", "text": "t", "seed": 2**70}, "seed"),
        ("samples", {"prompt": "q", "model": "m", "text": "t", "seed": 1e30}, "seed"),
        ("samples", {"prompt": "q", "model": "m", "text": "t", "prompt_tokens": 2**31}, "prompt_tokens"),
        ("samples", {"prompt": "q", "model": "m", "text": "t", "latency_ms": 2**40}, "latency_ms"),
        ("samples", {"prompt_id": 2**63, "model": "m", "text": "t"}, "prompt_id"),
        ("samples", {"prompt": "q", "model": "m", "text": "t", "sampling_params": {"a": "\x00"}}, "sampling_params.a"),
    ],
)
def test_a_value_no_column_can_hold_is_an_error_on_its_line_not_the_databases(project, kind, record, field):
    report = run(project, kind, jsonl([record]))
    assert [(e.line, e.field) for e in report.errors] == [(1, field)]
    assert not report.committed


def test_bytes_that_are_not_utf8_are_an_error_on_their_csv_line_and_the_rest_is_read(project):
    content = b"prompt,tags\nfine,a\ncaf\xe9,b\nalso fine,c\n"
    report = run(project, "prompts", content, filename="prompts.csv", skip_invalid=True)
    assert [(e.line, e.field) for e in report.errors] == [(3, "prompt")]
    assert "not valid UTF-8" in report.errors[0].message
    assert report.committed and report.created == {"prompts": 2}


@pytest.mark.django_db
@hypothesis_settings(
    max_examples=25,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    lines=st.lists(
        st.one_of(
            st.builds(
                lambda i, label: json.dumps(pair(i, label=label)), st.integers(0, 30), st.sampled_from([1, 2, "tie"])
            ),
            st.builds(
                json.dumps, st.dictionaries(st.sampled_from(["input", "output_1", "label", "x"]), st.text(max_size=5))
            ),
            st.binary(max_size=20).map(lambda b: b.decode("latin-1")),
        ),
        min_size=1,
        max_size=8,
    ),
    skip_invalid=st.booleans(),
)
def test_an_import_commits_all_its_good_records_or_nothing_and_accounts_for_every_label(project, lines, skip_invalid):
    content = "\n".join(line.replace("\n", " ") for line in lines).encode("utf-8", "surrogatepass")
    before = counts()
    report = run(project, "pairs", content, source="prop", skip_invalid=skip_invalid)
    if report.error_count and not skip_invalid:
        assert not report.committed and counts() == before
        assert report.labels_not_stored == report.labels_read
    else:
        assert report.committed
        created, existing = report.created.get("judgments", 0), report.existing.get("judgments", 0)
        assert report.labels_read == created + existing + report.labels_not_stored
        assert counts()["judgments"] == before["judgments"] + created


# --- samples -------------------------------------------------------------------------


def test_samples_attach_to_prompts_by_external_id_and_fill_a_round(project, round_):
    run(project, "prompts", jsonl([{"id": f"p{i}", "prompt": f"Prompt {i}"} for i in range(3)]))
    rows = []
    for i in range(3):
        rows.append(
            {
                "prompt_external_id": f"p{i}",
                "model": "chat-v1",
                "text": f"old {i}",
                "seed": 0,
                "sampling_params": {"temperature": 0.7},
                "completion_tokens": 12,
            }
        )
        rows.append({"prompt_external_id": f"p{i}", "model": "chat-v2", "text": f"new {i}", "seed": 0})
    report = run(project, "samples", jsonl(rows), round=round_)
    assert report.committed, report.errors
    assert report.created == {"samples": 6, "comparisons": 3}
    comparison = Comparison.objects.select_related("sample_a__model_version").first()
    assert comparison.sample_a.model_version.name == "chat-v1"
    assert comparison.sample_a.sampling_params == {"temperature": 0.7}


def test_a_sample_with_an_unknown_prompt_or_a_taken_seed_is_refused(project):
    run(project, "prompts", jsonl([{"id": "p1", "prompt": "Prompt 1"}]))
    run(project, "samples", jsonl([{"prompt_external_id": "p1", "model": "m", "text": "first", "seed": 1}]))
    rows = [
        {"prompt_external_id": "p1", "model": "m", "text": "second", "seed": 1},
        {"prompt_external_id": "nope", "model": "m", "text": "x"},
        {"prompt_id": 999999, "model": "m", "text": "x"},
        {"model": "m", "text": "x"},
    ]
    report = run(project, "samples", jsonl(rows))
    assert not report.committed
    assert {(e.line, e.field) for e in report.errors} == {
        (1, "seed"),
        (2, "prompt_external_id"),
        (3, "prompt_id"),
        (4, ""),
    }
    assert Sample.objects.count() == 1


def test_import_options_are_normalised_the_same_way_for_every_caller(project):
    options = ImportOptions(
        kind=ImportKind.PAIRS, project=project, source=" vendor ", label_columns=(), extra_tags=(" Code", "code", "")
    )
    assert (options.source, options.label_columns, options.extra_tags) == ("vendor", ("label",), ("code",))


# --- the command ---------------------------------------------------------------------


def test_the_import_command_fails_loudly_and_names_the_line(project, tmp_path, capsys):
    path = tmp_path / "pairs.jsonl"
    path.write_text(jsonl([pair(1), {"input": "x", "output_1": "a", "output_2": "b", "label": 9}]))
    with pytest.raises(CommandError, match="nothing was imported"):
        call_command("import_data", "pairs", str(path), "--project", project.slug)
    assert "pairs.jsonl: line 2: label" in capsys.readouterr().err
    assert Comparison.objects.count() == 0
    path.write_text(jsonl([pair(1, label=1)]))
    call_command("import_data", "pairs", str(path), "--project", project.slug, "--source", "cli")
    assert Comparison.objects.count() == 1


def test_the_import_command_counts_the_labels_it_did_not_store(project, tmp_path, capsys):
    path = tmp_path / "pairs.jsonl"
    path.write_text(jsonl([pair(1, label=1), {"input": "x", "output_1": "a", "label": 2}]))
    call_command("import_data", "pairs", str(path), "--project", project.slug, "--source", "cli", "--skip-invalid")
    assert "1 of 2 labels not stored (line 2)" in capsys.readouterr().out


def test_a_value_the_database_refuses_is_the_reports_error_not_a_crash(project, monkeypatch):
    from django.db import DataError

    from imports.writer import Importer

    def refused(self, batch):
        raise DataError("value too long for type character varying(200)")

    monkeypatch.setattr(Importer, "write", refused)
    report = run(project, "prompts", jsonl([{"prompt": "one"}]))
    assert not report.committed
    assert report.errors[0].message == "the database refused a value: value too long for type character varying(200)"


@pytest.mark.postgres
def test_a_large_import_refreshes_the_planners_statistics(project, monkeypatch):
    from django.db import connection

    from imports import services as imports

    monkeypatch.setattr(imports, "ANALYZE_AFTER_ROWS", 10)
    run(project, "pairs", jsonl([pair(i) for i in range(5)]))
    with connection.cursor() as cursor:
        cursor.execute("SELECT reltuples FROM pg_class WHERE relname = 'annotation_comparison'")
        assert cursor.fetchone()[0] == 5  # the planner now knows the table's size
