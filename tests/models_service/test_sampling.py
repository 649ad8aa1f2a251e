"""Sampling rounds: opening a round whose versions generate queues one job per arm, the
jobs answer every prompt in batches through a real server, comparisons appear when both
answers exist, failures are listed with their errors, and a rerun fills in exactly what
is missing."""

from __future__ import annotations

import itertools
from collections import Counter

import pytest
from django.db.models import Count

from annotation.models import (
    Comparison,
    PairingStrategy,
    Prompt,
    Round,
    RoundStatus,
    Sample,
)
from core.text import messages_hash
from models_service import arms as arm_rules
from models_service import sampling
from models_service.models import JobStatus, SamplingFailure, SamplingJob
from models_service.rounds import round_build_comparisons, round_create, round_open
from models_service.sampling import batch_sampled, sampling_start
from models_service.selectors import round_progress
from models_service.services import model_version_create
from tests.models_service.conftest import TINY_SAMPLING, openai_config


def add_prompts(project, n, tag="helpfulness"):
    prompts = []
    for i in range(n):
        messages = [{"role": "user", "content": f"Prompt number {i}: say something kind."}]
        prompts.append(
            Prompt.objects.create(project=project, messages=messages, content_hash=messages_hash(messages), tags=[tag])
        )
    return prompts


@pytest.fixture
def served_versions(db, live_server_up):
    old = model_version_create(
        name="chat-v1", backend="openai", config=openai_config(live_server_up), default_sampling=TINY_SAMPLING
    )
    new = model_version_create(
        name="chat-v2",
        backend="openai",
        parent=old,
        config=openai_config(live_server_up),
        default_sampling=TINY_SAMPLING,
    )
    return old, new


def no_duplicate_samples() -> bool:
    return not Sample.objects.values("prompt", "model_version", "seed").annotate(n=Count("id")).filter(n__gt=1).exists()


def test_opening_a_round_samples_both_versions_and_builds_every_comparison(
    project, served_versions, settings, django_capture_on_commit_callbacks
):
    settings.SAMPLING_BATCH_SIZE = 4
    prompts = add_prompts(project, 6)
    old, new = served_versions
    round_ = round_create(project=project, baseline=old, candidate=new)
    with django_capture_on_commit_callbacks(execute=True):
        round_ = round_open(round_=round_)
    assert round_.status == RoundStatus.SAMPLING  # reported at once; the jobs run after commit
    round_.refresh_from_db()
    assert round_.status == RoundStatus.OPEN  # the last job opened it
    jobs = list(SamplingJob.objects.filter(round=round_).order_by("arm"))
    assert [(j.arm, j.model_version, j.status, j.total, j.sampled, j.failed) for j in jobs] == [
        ("A", old, JobStatus.DONE, 6, 6, 0),
        ("B", new, JobStatus.DONE, 6, 6, 0),
    ]
    assert Sample.objects.filter(model_version=old, seed=0).count() == 6
    comparisons = Comparison.objects.filter(round=round_)
    assert comparisons.count() == 6
    for comparison in comparisons.select_related("sample_a", "sample_b"):
        assert comparison.sample_a.model_version == old and comparison.sample_b.model_version == new
        assert comparison.sample_a.sampling_params == {**TINY_SAMPLING, "top_p": 1.0, "seed": 0}
        assert comparison.sample_a.completion_tokens <= 8
    assert {c.prompt_id for c in comparisons} == {p.pk for p in prompts}
    progress = round_progress(round_=round_)
    assert (progress.total, progress.sampled, progress.failed, progress.comparisons) == (12, 12, 0, 6)


def test_a_second_run_and_a_duplicate_task_change_nothing(project, served_versions, django_capture_on_commit_callbacks):
    add_prompts(project, 3)
    old, new = served_versions
    round_ = round_create(project=project, baseline=old, candidate=new)
    with django_capture_on_commit_callbacks(execute=True):
        round_open(round_=round_)
    samples, comparisons = Sample.objects.count(), Comparison.objects.count()
    job = SamplingJob.objects.get(round=round_, arm="A")
    assert sampling.sampling_job_run(job_id=job.pk) is None  # done: a re-delivered task does nothing
    with django_capture_on_commit_callbacks(execute=True):
        sampling_start(round_=round_)  # a rerun asks only for what is missing: nothing
    assert (Sample.objects.count(), Comparison.objects.count()) == (samples, comparisons)
    assert SamplingJob.objects.get(pk=job.pk).runs == 2
    assert no_duplicate_samples()


def test_killing_the_server_mid_round_lists_every_unanswered_prompt_and_a_rerun_completes_it(
    project, served_versions, settings, openai_server, django_capture_on_commit_callbacks
):
    settings.SAMPLING_BATCH_SIZE = 3
    settings.SAMPLING_MAX_ATTEMPTS = 2
    prompts = add_prompts(project, 9)
    old, new = served_versions
    round_ = round_create(project=project, baseline=old, candidate=new)
    batches = []

    def kill_after_first_batch(sender, job, stored, failed, **kwargs):
        batches.append((job.arm, stored, failed))
        if len(batches) == 1:
            openai_server.kill()  # SIGKILL while the job still has prompts to go

    batch_sampled.connect(kill_after_first_batch)
    try:
        with django_capture_on_commit_callbacks(execute=True):
            round_open(round_=round_)
    finally:
        batch_sampled.disconnect(kill_after_first_batch)

    round_.refresh_from_db()
    assert round_.status == RoundStatus.OPEN  # the round ended: nothing is left running
    assert batches[0] == ("A", 3, 0)
    for job in SamplingJob.objects.filter(round=round_):
        assert job.status == JobStatus.FAILED
        answered = set(
            Sample.objects.filter(model_version=job.model_version, seed=job.seed).values_list("prompt_id", flat=True)
        )
        failed = {f.prompt_id: f for f in SamplingFailure.objects.filter(job=job)}
        # Every prompt is either answered or listed as failed, with its error - none vanished.
        assert answered | set(failed) == {p.pk for p in prompts}
        assert not answered & set(failed)
        assert all("ConnectError" in f.error or "broke off" in f.error or "Error" in f.error for f in failed.values())
        assert all(f.attempts == 2 for f in failed.values())  # tried again before giving up
        assert (job.sampled, job.failed, job.total) == (len(answered), len(failed), 9)
    assert SamplingFailure.objects.filter(job__arm="A").count() == 6
    assert SamplingFailure.objects.filter(job__arm="B").count() == 9
    assert Comparison.objects.filter(round=round_).count() == 0

    openai_server.start()  # the same port: the versions' config still points at it
    with django_capture_on_commit_callbacks(execute=True):
        sampling_start(round_=round_)
    assert not SamplingFailure.objects.exists()
    assert set(SamplingJob.objects.filter(round=round_).values_list("status", flat=True)) == {JobStatus.DONE}
    assert Sample.objects.count() == 18 and no_duplicate_samples()
    assert Comparison.objects.filter(round=round_).count() == 9
    assert not Comparison.objects.values("prompt").annotate(n=Count("id")).filter(n__gt=1).exists()


def test_a_version_whose_backend_cannot_start_lists_its_prompts_with_the_reason(
    project, versions, tmp_path, django_capture_on_commit_callbacks
):
    add_prompts(project, 2)
    old, _ = versions  # imported
    broken = model_version_create(name="local", backend="transformers", config={"model_dir": str(tmp_path / "gone")})
    round_ = round_create(project=project, baseline=old, candidate=broken)
    with django_capture_on_commit_callbacks(execute=True):
        round_open(round_=round_)
    imported_job = SamplingJob.objects.get(round=round_, arm="A")
    broken_job = SamplingJob.objects.get(round=round_, arm="B")
    assert broken_job.status == JobStatus.FAILED and "does not exist" in broken_job.error
    assert all("does not exist" in f.error for f in broken_job.failures.all())
    assert imported_job.failures.count() == 2
    assert all("imported" in f.error and "kind=samples" in f.error for f in imported_job.failures.all())


def test_a_round_of_imported_versions_opens_at_once_without_sampling(project, versions):
    old, new = versions
    round_ = round_open(round_=round_create(project=project, baseline=old, candidate=new))
    assert round_.status == RoundStatus.OPEN
    assert not SamplingJob.objects.exists()


def test_temperatures_strategy_samples_one_model_at_two_temperatures(
    project, served_versions, django_capture_on_commit_callbacks
):
    add_prompts(project, 3)
    _, new = served_versions
    round_ = round_create(
        project=project,
        baseline=new,
        candidate=new,
        pairing=PairingStrategy.TEMPERATURES,
        sampling={"temperatures": [0.5, 1.2], "seed": 10},
    )
    with django_capture_on_commit_callbacks(execute=True):
        round_open(round_=round_)
    comparisons = Comparison.objects.filter(round=round_).select_related("sample_a", "sample_b")
    assert comparisons.count() + SamplingFailure.objects.count() >= 3
    arms = {arm.key: arm for arm in arm_rules.round_arms(round_)}
    # Neither temperature is the version's own (1.0): both arms sample at derived seeds,
    # which plain seeds (below 2**62) never meet.
    assert arms["A"].seed >= arm_rules.PLAIN_SEED_LIMIT and arms["B"].seed >= arm_rules.PLAIN_SEED_LIMIT
    for c in comparisons:
        assert (c.sample_a.sampling_params["temperature"], c.sample_a.seed) == (0.5, arms["A"].seed)
        assert (c.sample_b.sampling_params["temperature"], c.sample_b.seed) == (1.2, arms["B"].seed)
        assert c.sample_a.sampling_params["seed"] == c.sample_a.seed
        assert c.sample_a.model_version == c.sample_b.model_version == new


def test_a_later_round_reuses_an_answer_only_when_it_was_made_with_the_same_parameters(
    project, served_versions, django_capture_on_commit_callbacks
):
    add_prompts(project, 3)
    _, new = served_versions  # its own temperature: 1.0
    first = round_create(
        project=project,
        baseline=new,
        candidate=new,
        pairing=PairingStrategy.TEMPERATURES,
        sampling={"temperatures": [1.0, 0.3], "seed": 0},
    )
    with django_capture_on_commit_callbacks(execute=True):
        round_open(round_=first)
    made = Sample.objects.count()
    assert made == 6
    # Two seeds at the version's own parameters: seed 0 is round 1's first arm (same
    # parameters, reused); seed 1 was never sampled at temperature 1.0 (round 1's second
    # arm ran at 0.3 under a derived seed), so it is sampled now.
    second = round_create(
        project=project, baseline=new, candidate=new, pairing=PairingStrategy.SEEDS, sampling={"seeds": [0, 1]}
    )
    with django_capture_on_commit_callbacks(execute=True):
        round_open(round_=second)
    assert Sample.objects.count() == made + 3
    for c in Comparison.objects.filter(round=second).select_related("sample_a", "sample_b"):
        assert (c.sample_a.seed, c.sample_b.seed) == (0, 1)
        assert c.sample_a.sampling_params["temperature"] == c.sample_b.sampling_params["temperature"] == 1.0
        assert Comparison.objects.filter(round=first, sample_a=c.sample_a).exists()  # the reused answer
    assert no_duplicate_samples()


def test_seeds_strategy_samples_one_model_at_two_seeds(project, served_versions, django_capture_on_commit_callbacks):
    add_prompts(project, 3)
    _, new = served_versions
    round_ = round_create(
        project=project, baseline=new, candidate=new, pairing=PairingStrategy.SEEDS, sampling={"seeds": [3, 4]}
    )
    with django_capture_on_commit_callbacks(execute=True):
        round_open(round_=round_)
    pairs = {
        (c.sample_a.seed, c.sample_b.seed)
        for c in Comparison.objects.filter(round=round_).select_related("sample_a", "sample_b")
    }
    assert pairs == {(3, 4)}


def test_arena_gives_every_pair_of_versions_the_same_number_of_prompts(
    project, served_versions, live_server_up, django_capture_on_commit_callbacks
):
    prompts = add_prompts(project, 14)
    old, new = served_versions
    third = model_version_create(
        name="chat-v3", backend="openai", config=openai_config(live_server_up), default_sampling=TINY_SAMPLING
    )
    fourth = model_version_create(
        name="chat-v4", backend="openai", config=openai_config(live_server_up), default_sampling=TINY_SAMPLING
    )
    round_ = round_create(
        project=project, baseline=old, candidate=new, pairing=PairingStrategy.ARENA, arena_versions=[third, fourth]
    )
    with django_capture_on_commit_callbacks(execute=True):
        round_open(round_=round_)
    comparisons = Comparison.objects.filter(round=round_).select_related("sample_a", "sample_b")
    assert comparisons.count() == 14
    counts = Counter(frozenset((c.sample_a.model_version_id, c.sample_b.model_version_id)) for c in comparisons)
    assert set(counts) == {frozenset(p) for p in itertools.combinations([old.pk, new.pk, third.pk, fourth.pk], 2)}
    assert max(counts.values()) - min(counts.values()) <= 1
    # Each version answered only its share: 14 prompts x 2 answers, not 14 x 4.
    assert Sample.objects.count() == 28
    assert {c.prompt_id for c in comparisons} == {p.pk for p in prompts}


def test_samples_that_name_a_model_stay_out_until_a_lead_releases_them(
    project, served_versions, django_capture_on_commit_callbacks
):
    prompts = add_prompts(project, 2)
    old, new = served_versions
    # Answers from earlier runs (same seed), one naming a vendor: sampling reuses them.
    Sample.objects.create(
        prompt=prompts[0],
        model_version=old,
        text="As a model by Anthropic, hi.",
        text_hash="x1",
        seed=0,
        identity_flagged=True,
    )
    project.identity_terms = ["Anthropic"]
    project.save()
    round_ = round_create(project=project, baseline=old, candidate=new)
    with django_capture_on_commit_callbacks(execute=True):
        round_open(round_=round_)
    assert set(Comparison.objects.filter(round=round_).values_list("prompt_id", flat=True)) == {prompts[1].pk}
    flagged = Sample.objects.get(identity_flagged=True)
    assert sampling.sample_release(sample=flagged) == 1
    assert Comparison.objects.filter(round=round_).count() == 2
    # Building again (the lead's button) adds nothing.
    assert round_build_comparisons(round_=round_) == 0


def test_new_samples_are_checked_for_identity_terms(
    project, served_versions, monkeypatch, django_capture_on_commit_callbacks
):
    from models_service.backends.openai_compat import OpenAICompatBackend

    add_prompts(project, 2)
    project.identity_terms = ["Llama"]
    project.save()
    original = OpenAICompatBackend._parse

    def as_llama(response, started):
        generation = original(response, started)
        generation.text = "I am Llama, nice to meet you. " + generation.text
        return generation

    monkeypatch.setattr(OpenAICompatBackend, "_parse", staticmethod(as_llama))
    old, new = served_versions
    round_ = round_create(project=project, baseline=old, candidate=new)
    with django_capture_on_commit_callbacks(execute=True):
        round_open(round_=round_)
    assert Sample.objects.filter(identity_flagged=True).count() == 4
    assert not Comparison.objects.filter(round=round_).exists()


def test_round_sampling_settings_are_validated(project, served_versions):
    from django.core.exceptions import ValidationError

    old, new = served_versions
    with pytest.raises(ValidationError, match="temperatures"):
        round_create(
            project=project,
            baseline=new,
            candidate=new,
            pairing=PairingStrategy.TEMPERATURES,
            sampling={"temperatures": [1, 1]},
        )
    with pytest.raises(ValidationError, match="unknown setting"):
        round_create(project=project, baseline=old, candidate=new, sampling={"temprature": 1})
    assert not Round.objects.exists()


def test_model_version_config_is_validated_by_its_backend_schema(db):
    from django.core.exceptions import ValidationError

    with pytest.raises(ValidationError) as excinfo:
        model_version_create(name="x", backend="openai", config={"base_url": "not a url", "max_concurrency": 0})
    errors = excinfo.value.message_dict["config"]
    assert any(e.startswith("base_url:") for e in errors) and any(e.startswith("max_concurrency:") for e in errors)
    with pytest.raises(ValidationError) as excinfo:
        model_version_create(name="y", backend="vllm", config={"model": "/m"}, default_sampling={"max_tokens": 0})
    assert "default_sampling" in excinfo.value.message_dict


def test_a_job_that_stops_on_an_error_says_why_and_a_retried_task_resumes_it(project, served_versions, monkeypatch):
    from django.db import OperationalError

    add_prompts(project, 4)
    old, new = served_versions
    round_ = round_create(project=project, baseline=old, candidate=new)
    jobs = sampling_start(round_=round_)  # queued on commit; run here by hand
    original = sampling._run_batches

    def database_gone(*args, **kwargs):
        raise OperationalError("server closed the connection unexpectedly")

    monkeypatch.setattr(sampling, "_run_batches", database_gone)
    with pytest.raises(OperationalError):
        sampling.sampling_job_run(job_id=jobs[0].pk)
    job = SamplingJob.objects.get(pk=jobs[0].pk)
    assert job.status == JobStatus.FAILED and "OperationalError" in job.error
    assert sampling.sampling_job_run(job_id=job.pk) is None  # a duplicate delivery leaves it
    monkeypatch.setattr(sampling, "_run_batches", original)
    job = sampling.sampling_job_run(job_id=job.pk, resume=True)  # the task's retry
    assert (job.status, job.sampled, job.error) == (JobStatus.DONE, 4, "")


def test_a_local_transformers_version_is_loaded_once_per_job_and_answers_in_batches(
    project, tiny_model_dir, settings, monkeypatch, django_capture_on_commit_callbacks
):
    from models_service.backends import transformers as hf

    settings.SAMPLING_BATCH_SIZE = 4
    add_prompts(project, 6)
    loads, batches = [], []
    real_init, real_generate = hf.TransformersBackend.__init__, hf.TransformersBackend.generate

    def counting_init(self, config):
        loads.append(config.model_dir)
        real_init(self, config)

    def counting_generate(self, requests):
        batches.append(len(requests))
        return real_generate(self, requests)

    monkeypatch.setattr(hf.TransformersBackend, "__init__", counting_init)
    monkeypatch.setattr(hf.TransformersBackend, "generate", counting_generate)
    config = {"model_dir": str(tiny_model_dir), "device": "cpu", "batch_size": 4}
    old = model_version_create(name="local-v1", backend="transformers", config=config, default_sampling=TINY_SAMPLING)
    new = model_version_create(name="local-v2", backend="transformers", config=config, default_sampling=TINY_SAMPLING)
    round_ = round_create(project=project, baseline=old, candidate=new)
    with django_capture_on_commit_callbacks(execute=True):
        round_open(round_=round_)
    assert len(loads) == 2  # once per job (arm), not per prompt or batch
    assert batches == [4, 2, 4, 2]
    assert Comparison.objects.filter(round=round_).count() == 6 and not SamplingFailure.objects.exists()
    assert Sample.objects.filter(model_version=new).count() == 6


def test_sampling_tasks_go_to_the_gpu_queue():
    from config.celery import app
    from models_service.tasks import sample_job

    route = app.amqp.router.route({}, sample_job.name, args=(1,), kwargs={})
    assert route["queue"].name == "gpu"
