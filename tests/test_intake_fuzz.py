"""Fuzzing intake through the real service (`async-code serve --workers 0`, waitress, SQLite):
thousands of hostile deliveries from tests/intake_fuzz.py for every event intake acts on
(comments with commands and options, review comments, labels, installation and repository
changes, buttons pressed on check runs), each answered as it must be; then the store must hold exactly the tasks and
installation changes the generator's model of it holds, down to each task's trigger, number,
comment, request and whether an installation change finished it; and the service still answers.

Each run takes a new seed, printed with any failure; INTAKE_FUZZ_SEED replays a run and
INTAKE_FUZZ_CASES changes how many deliveries it sends.
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

from app.store import Store
from tests.intake_fuzz import DeliveryGenerator, problem_with, running_service, send, write_for_runner
from tests.intake_fuzz_events import issue_comment
from tests.payloads import sign

CASES = int(os.environ.get("INTAKE_FUZZ_CASES", "2000"))


def test_hostile_deliveries_get_their_answers_and_the_store_holds_what_they_asked_for():
    seed = int(os.environ.get("INTAKE_FUZZ_SEED") or random.SystemRandom().randrange(2**32))
    replay = f"replay with INTAKE_FUZZ_SEED={seed} INTAKE_FUZZ_CASES={CASES}"
    secret = secrets.token_hex(16)
    generator = DeliveryGenerator(seed)
    with running_service(secret) as service:
        store = Store(service.database)
        connection = service.connect()
        sent, problems = [], []
        for delivery in itertools.islice(generator, CASES):
            write_for_runner(store, delivery)
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
        assert not problems, (f"{len(problems)} of {CASES} deliveries were answered wrongly ({replay}):\n"
                              + "\n".join(problems[:20]) + "\n\nservice log, last lines:\n"
                              + "\n".join(service.log_path.read_text().splitlines()[-30:]))

        expected_tasks = generator.model.tasks
        described = {delivery.guid: delivery.description for delivery in sent}
        stored = {task.delivery_guid: task for task in store.list()}
        wrong = [f"{described.get(guid, guid)}: no task" for guid in expected_tasks.keys() - stored.keys()]
        wrong += [f"{described.get(guid, guid)}: a task nobody asked for"
                  for guid in stored.keys() - expected_tasks.keys()]
        wrong += [f"{described[guid]}: {', '.join(differences)}" for guid in expected_tasks.keys() & stored.keys()
                  if (differences := expected_tasks[guid].differences(stored[guid]))]
        assert not wrong, f"{len(wrong)} tasks are not as asked ({replay}):\n" + "\n".join(wrong[:20])

        db = sqlite3.connect(f"file:{service.database}?mode=ro", uri=True)
        try:
            rows = db.execute("SELECT delivery_guid, installation_id, repo, action FROM installation_events "
                              "ORDER BY id").fetchall()
        finally:
            db.close()
        assert rows == generator.model.installation_rows, replay
        recorded = {delivery.guid for delivery in sent if delivery.expected.status in (200, 202)}
        assert store.delivery_count() == len(recorded), replay

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
    print(f"seed {seed}: {CASES} deliveries, {len(expected_tasks)} tasks ({finished} finished by installation "
          f"changes), {len(rows)} installation rows; {dict(sorted(answered.items()))}")
