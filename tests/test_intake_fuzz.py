"""Fuzzing intake through the real service (`async-code serve --workers 0`, waitress) on each
store, SQLite and PostgreSQL: thousands of hostile deliveries from tests/intake_fuzz.py for
every event intake acts on (comments with commands and options, review comments, labels,
installation and repository changes, buttons pressed on check runs), each answered as it must
be; then the store must hold exactly the tasks and installation changes the generator's model
of it holds, down to each task's trigger, number, comment, request and whether an installation
change finished it; and the service still answers.

Each run takes a new seed, printed with any failure; INTAKE_FUZZ_SEED replays a run and
INTAKE_FUZZ_CASES changes how many deliveries it sends to SQLite, INTAKE_FUZZ_POSTGRES_CASES
to PostgreSQL. Both stores get the same seed, so the same deliveries.
"""

from __future__ import annotations

import collections
import http.client
import itertools
import json
import os
import random
import secrets
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any

import psycopg
import pytest

from app.migrate import SCHEMA
from app.postgres_store import PostgresStore
from app.records import TaskRecords
from app.review_comments import task_from_review_comment
from app.store import Store
from tests.intake_fuzz import DeliveryGenerator, RunningService, problem_with, running_service, send, write_for_runner
from tests.intake_fuzz_events import REVIEW_COMMENT, issue_comment, review_comment
from tests.payloads import sign

CASES = {"sqlite": int(os.environ.get("INTAKE_FUZZ_CASES", "2000")),
         "postgresql": int(os.environ.get("INTAKE_FUZZ_POSTGRES_CASES", "2000"))}
# One seed for both stores: each gets the same deliveries, so they must answer alike.
SEED = int(os.environ.get("INTAKE_FUZZ_SEED") or random.SystemRandom().randrange(2**32))
INSTALLATION_ROWS = "SELECT delivery_guid, installation_id, repo, action FROM installation_events ORDER BY id"


@dataclass
class StoreUnderTest:
    """The store the service records into, as the test reads it (and writes for the runner)."""

    records: TaskRecords
    installation_rows: Any  # () -> [(delivery_guid, installation_id, repo, action)], oldest first


@contextmanager
def service_on(store: str, request: pytest.FixtureRequest, secret: str) -> Iterator[tuple[RunningService,
                                                                                       StoreUnderTest]]:
    if store == "sqlite":
        with running_service(secret) as service:
            def rows() -> list[tuple]:
                db = sqlite3.connect(f"file:{service.database}?mode=ro", uri=True)
                try:
                    return db.execute(INSTALLATION_ROWS).fetchall()
                finally:
                    db.close()
            yield service, StoreUnderTest(Store(service.database), rows)
        return
    url = request.getfixturevalue("migrated_postgres_url")
    with running_service(secret, {"DATABASE_URL": url}) as service, PostgresStore(url, max_connections=2) as records:
        records.initialise()

        def rows() -> list[tuple]:
            with psycopg.connect(url) as db:
                return db.execute(INSTALLATION_ROWS.replace("FROM ", f"FROM {SCHEMA}.")).fetchall()
        yield service, StoreUnderTest(records, rows)


@pytest.mark.parametrize("store", ["sqlite", "postgresql"])
def test_hostile_deliveries_get_their_answers_and_the_store_holds_what_they_asked_for(store, request):
    seed = SEED
    cases = CASES[store]
    replay = f"replay with INTAKE_FUZZ_SEED={seed} on {store} with {cases} deliveries"
    secret = secrets.token_hex(16)
    generator = DeliveryGenerator(seed)
    with service_on(store, request, secret) as (service, held):
        connection = service.connect()
        sent, problems = [], []
        for delivery in itertools.islice(generator, cases):
            write_for_runner(held.records, delivery)
            try:
                answer = send(connection, delivery, secret)
            except (http.client.HTTPException, OSError) as error:
                problems.append(f"{delivery.description}: no answer ({error!r})")
                connection.close()
                continue
            sent.append(delivery)
            generator.answered(delivery, answer)
            problem = problem_with(answer, delivery)
            if problem:
                problems.append(f"{delivery.description}: {problem}")
        connection.close()
        assert not problems, (f"{len(problems)} of {cases} deliveries were answered wrongly ({replay}):\n"
                              + "\n".join(problems[:20]) + "\n\nservice log, last lines:\n"
                              + "\n".join(service.log_path.read_text().splitlines()[-30:]))

        expected_tasks = generator.model.tasks
        described = {delivery.guid: delivery.description for delivery in sent}
        stored = {task.delivery_guid: task for task in held.records.list()}
        wrong = [f"{described.get(guid, guid)}: no task" for guid in expected_tasks.keys() - stored.keys()]
        wrong += [f"{described.get(guid, guid)}: a task nobody asked for"
                  for guid in stored.keys() - expected_tasks.keys()]
        wrong += [f"{described[guid]}: {', '.join(differences)}" for guid in expected_tasks.keys() & stored.keys()
                  if (differences := expected_tasks[guid].differences(stored[guid]))]
        assert not wrong, f"{len(wrong)} tasks are not as asked ({replay}):\n" + "\n".join(wrong[:20])

        rows = [tuple(row) for row in held.installation_rows()]
        assert rows == generator.model.installation_rows, replay
        recorded = {delivery.guid for delivery in sent if delivery.expected.status in (200, 202)}
        assert held.records.delivery_count() == len(recorded), replay

        connection = service.connect()
        connection.request("GET", "/healthz")
        health = connection.getresponse()
        assert (health.status, json.loads(health.read())["status"]) == (200, "ok")
        body = json.dumps(issue_comment("created", 10**9, "@async-code add a --version flag")).encode()
        connection.request("POST", "/webhooks", body, {
            "X-GitHub-Event": "issue_comment", "X-GitHub-Delivery": "after-the-fuzz",
            "X-Hub-Signature-256": sign(body, secret)})
        response = connection.getresponse()
        assert (response.status, json.loads(response.read())["message"]) == (202, "task recorded")
        connection.close()

    answered = collections.Counter(f"{delivery.kind or 'other'}: {delivery.expected.message or 'refused'}"
                                   for delivery in sent)
    finished = sum(task.status != "pending" for task in expected_tasks.values())
    commands = sum(task.trigger == "check_run" for task in expected_tasks.values())
    print(f"{store}, seed {seed}: {cases} deliveries, {len(expected_tasks)} tasks ({finished} finished by "
          f"installation changes, {commands} from buttons), {len(rows)} installation rows; "
          f"{dict(sorted(answered.items()))}")


def test_the_model_expects_text_as_the_store_keeps_it_with_nul_shown_as_a_replacement_character(tmp_path):
    # Seed 2409385922 sent a pull request body of "title \x00", which the store keeps as
    # "title \ufffd": the model must expect that, and still see a body that differs.
    payload = review_comment(106, "@async-code add tests")
    payload["pull_request"]["body"] = "title \x00"
    records = Store(tmp_path / "store.db")
    records.initialise()
    task = records.record_delivery("g1", "pull_request_review_comment", "created",
                                   task_from_review_comment(payload, "async-code"))
    expected = REVIEW_COMMENT.result(payload)
    assert expected.differences(task) == []
    assert expected.differences(replace(task, issue_body="title ")) == [
        "issue_body 'title ', expected 'title \ufffd'"]
