"""Fuzzing intake through the real service (`async-code serve --workers 0`, waitress, SQLite):
thousands of hostile deliveries from tests/intake_fuzz.py, each answered as it must be, a task
for every valid command and for nothing else, and the service still answering afterwards.

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

from app.store import Store
from tests.intake_fuzz import TASK, DeliveryGenerator, issue_comment, problem_with, running_service, send
from tests.payloads import sign

CASES = int(os.environ.get("INTAKE_FUZZ_CASES", "2000"))


def test_hostile_deliveries_get_their_answers_and_only_commands_become_tasks():
    seed = int(os.environ.get("INTAKE_FUZZ_SEED") or random.SystemRandom().randrange(2**32))
    replay = f"replay with INTAKE_FUZZ_SEED={seed} INTAKE_FUZZ_CASES={CASES}"
    secret = secrets.token_hex(16)
    with running_service(secret) as service:
        connection = service.connect()
        sent, problems = [], []
        for delivery in itertools.islice(DeliveryGenerator(seed), CASES):
            try:
                answer = send(connection, delivery, secret)
            except (http.client.HTTPException, OSError) as error:
                problems.append(f"{delivery.description}: no answer ({error!r})")
                connection.close()
                continue
            sent.append(delivery)
            problem = problem_with(answer, delivery)
            if problem:
                problems.append(f"{delivery.description}: {problem}")
        connection.close()
        assert not problems, (f"{len(problems)} of {CASES} deliveries were answered wrongly ({replay}):\n"
                              + "\n".join(problems[:20]) + "\n\nservice log, last lines:\n"
                              + "\n".join(service.log_path.read_text().splitlines()[-30:]))

        store = Store(service.database)
        tasks = {task.delivery_guid: (task.repo, task.comment_id) for task in store.list()}
        commands = {delivery.guid: delivery.task for delivery in sent if delivery.expected is TASK}
        assert tasks == commands, replay
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

    answered = collections.Counter(delivery.expected.message or "refused by the server" for delivery in sent)
    print(f"seed {seed}: {CASES} deliveries, {len(commands)} tasks; {dict(answered)}")
