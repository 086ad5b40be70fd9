"""`--model NAME` in a request, end to end: the task works with the model asked for when the
operator allows it, and fails before anything runs when not."""

from __future__ import annotations

from tests.test_end_to_end import INSTRUCTION, golden_script
from tests.test_repo_config_end_to_end import with_config
from tests.test_requests_end_to_end import (FRIENDLY_NEW, FRIENDLY_OLD, bot_comments, edit_script,
                                            people_pull)

ALLOWED = "claude-sonnet-4-6,claude-haiku-4-5"


def models_asked(model) -> set[str]:
    return {request["json"]["model"] for request in model.requests if request["json"]}


def test_a_request_works_with_the_model_it_names(service_factory, github, model):
    service = service_factory(ASYNC_CODE_ALLOWED_MODELS=ALLOWED).start()
    # The request's model wins over the repository's.
    with_config(github, "model: claude-sonnet-4-6\n")
    model.add_script(INSTRUCTION, golden_script())
    task = service.wait_for_task(service.comment(f"@async-code --model claude-haiku-4-5 {INSTRUCTION}"))
    assert task.status == "completed", (task.error, service.logs())
    assert task.model == "claude-haiku-4-5"
    assert model.requests and models_asked(model) == {"claude-haiku-4-5"}


def test_a_request_on_a_pull_request_may_name_a_model(service_factory, github, model):
    service = service_factory(ASYNC_CODE_ALLOWED_MODELS=ALLOWED).start()
    number = people_pull(github)
    model.add_script("make it louder", edit_script("cli.py", FRIENDLY_OLD, FRIENDLY_NEW, "Louder"))
    task = service.wait_for_task(service.comment("@async-code --model claude-haiku-4-5 make it "
                                                 "louder", number=number, pull_request=True))
    assert task.status == "completed", (task.error, service.logs())
    assert models_asked(model) == {"claude-haiku-4-5"}


def test_without_the_option_the_configs_model_is_used(service_factory, github, model):
    service = service_factory(ASYNC_CODE_ALLOWED_MODELS=ALLOWED).start()
    with_config(github, "model: claude-haiku-4-5\n")
    model.add_script(INSTRUCTION, golden_script())
    task = service.wait_for_task(service.comment(f"@async-code {INSTRUCTION}"))
    assert task.status == "completed", (task.error, service.logs())
    assert task.model is None and models_asked(model) == {"claude-haiku-4-5"}


def test_a_model_the_operator_did_not_allow_fails_before_anything_runs(service, github, model):
    # ASYNC_CODE_ALLOWED_MODELS unset: only ASYNC_CODE_MODEL may be used.
    task = service.wait_for_task(service.comment(f"@async-code --model claude-opus-4-1 {INSTRUCTION}"))
    assert task.status == "failed" and model.requests == []
    assert task.branch is None and github.pulls == []
    status = bot_comments(github, 7)[-1]["body"]
    assert ("`--model`: `claude-opus-4-1` is not a model this service allows; choose one of "
            "`claude-sonnet-4-6` (ASYNC_CODE_ALLOWED_MODELS). Nothing was run.") in status, status
