"""The whole path with real parts: a signed delivery to the real service process, real SQLite,
a real Docker sandbox, real git, the real githubkit and anthropic clients against loopback fakes."""

from __future__ import annotations

import json
import subprocess
import sys


from tests.conftest import INSTALLATION_ID, REPO, WRITER, WRITER_ID
from tests.fakes.anthropic import Final, ToolCall, Turn, text_of

INSTRUCTION = "make the CLI print its version with --version"
NEW_MAIN = '''def main(argv):
    if "--version" in argv:
        print("widgets 1.0.0")
        return 0
    print("hello from widgets")
    return 0'''
OLD_MAIN = '''def main(argv):
    print("hello from widgets")
    return 0'''
ANSWER = ("Add a --version flag to the CLI\n\nThe CLI now prints `widgets 1.0.0` for --version. "
          "Thanks @someone-else; this also fixes #3.")


# The sandbox's limits as the kernel sees them (cgroup v2, else v1), its capabilities, its
# network interfaces.
# The bounding set, not the effective one: any non-root process has no effective capabilities,
# but only a dropped bounding set keeps a setuid binary from getting them back.
CONFINEMENT = ("cat /sys/fs/cgroup/memory.max /sys/fs/cgroup/pids.max 2>/dev/null || "
               "cat /sys/fs/cgroup/memory/memory.limit_in_bytes /sys/fs/cgroup/pids/pids.max; "
               "grep -E 'CapBnd|NoNewPrivs' /proc/self/status; ls /sys/class/net")


def confined_as_configured(output: str) -> bool:
    # 256m and 333 are what the service fixture configures.
    return ("268435456\n333\n" in output and "CapBnd:\t0000000000000000" in output
            and "NoNewPrivs:\t1" in output and output.rstrip().endswith("\nlo"))


def golden_script():
    return [
        Turn([ToolCall("bash", {"command": "env"}, expect="exit code 0")]),
        Turn([ToolCall("bash", {"command": CONFINEMENT}, expect=confined_as_configured)]),
        Turn([ToolCall("edit_file", {"command": "view", "path": "cli.py"}, expect="def main(argv):")]),
        Turn([ToolCall("edit_file", {"command": "str_replace", "path": "cli.py", "old_str": OLD_MAIN,
                                     "new_str": NEW_MAIN}, expect_error=False)]),
        Turn([ToolCall("bash", {"command": "grep -c -- --version cli.py && id -u"},
                       expect=lambda out: out.startswith("exit code 0") and "\n1\n61000" in out)]),
        Final(ANSWER),
    ]


def git(repo_path, *args):
    return subprocess.run(["git", "--git-dir", str(repo_path), *args], check=True,
                          capture_output=True, text=True).stdout


def test_a_comment_becomes_a_pull_request(service, github, model, docker_client, app_key):
    model.add_script(INSTRUCTION, golden_script())
    task_id = service.comment(f"@async-code {INSTRUCTION}", login=WRITER, user_id=WRITER_ID)
    task = service.wait_for_task(task_id)
    assert task.status == "completed", (task.error, service.logs())
    assert model.failures == []

    # The pull request: branch, title, body, base.
    [pr] = github.pulls
    branch = f"async-code/7-{task_id[:8]}"
    assert (pr["head"], pr["base"], pr["repo"]) == (branch, "main", REPO)
    assert pr["title"] == "Add a --version flag to the CLI"
    assert "Fixes #7" in pr["body"] and f"@{WRITER}" in pr["body"] and task_id in pr["body"]
    assert "@someone-else" not in pr["body"] and "fixes #3" not in pr["body"]
    assert task.pr_url == pr["html_url"] and task.pr_number == pr["number"]

    # The pushed commit: the diff, the bot as author, the requester as co-author.
    repo_path = github.repo_path(REPO)
    assert git(repo_path, "show", f"{branch}:cli.py").count("--version") == 1
    assert git(repo_path, "diff", "--name-only", "main", branch).split() == ["cli.py"]
    author = git(repo_path, "log", "-1", "--format=%an <%ae>|%cn", branch)
    assert author == f"async-code[bot] <{github.bot_user_id}+async-code[bot]@users.noreply.github.com>|async-code[bot]\n"
    message = git(repo_path, "log", "-1", "--format=%B", branch)
    assert f"Co-authored-by: {WRITER} <{WRITER_ID}+{WRITER}@users.noreply.github.com>" in message
    assert git(repo_path, "for-each-ref", "--format=%(refname)").split() == [
        f"refs/heads/{branch}", "refs/heads/main"]

    # The reaction and the one status comment, every edit seen in order.
    assert [(r["comment_id"], r["content"]) for r in github.reactions] == [(42, "eyes")]
    bot_comments = [c for c in github.comments.values() if c["user"] == "async-code[bot]"]
    assert len(bot_comments) == 1
    history = bot_comments[0]["history"]
    assert "queued (position 1)" in history[0]
    assert "running" in history[1]
    assert all("running" in body for body in history[1:-1])
    assert "done" in history[-1] and pr["html_url"] in history[-1] and "1 file changed" in history[-1]
    # Every token counts: the second model call read from the prompt cache what the first wrote.
    assert task.cache_write_tokens > 0 and task.cache_read_tokens > 0
    spent = task.input_tokens + task.output_tokens + task.cache_write_tokens + task.cache_read_tokens
    assert f"{spent:,} tokens" in history[-1]
    assert task.status_comment_id == bot_comments[0]["id"]

    # Tokens were narrowed to the one repository and the permissions each stage needs.
    assert github.token_requests, "no installation token was minted"
    for request in github.token_requests:
        assert request["installation_id"] == INSTALLATION_ID
        assert request["body"]["repositories"] == ["widgets"]
        assert set(request["body"]["permissions"]) <= {"contents", "issues", "pull_requests", "checks",
                                                       "metadata"}
    assert {tuple(sorted(r["body"]["permissions"].items())) for r in github.token_requests} == {
        (("checks", "write"), ("issues", "write"), ("metadata", "read"), ("pull_requests", "write")),
        (("checks", "write"), ("contents", "write"), ("issues", "write"), ("metadata", "read"),
         ("pull_requests", "write"))}

    # The stored result.
    assert task.changed_files == ["cli.py"] and "--version" in task.patches["diff"]
    assert task.commit_sha == git(repo_path, "rev-parse", branch).strip()
    assert task.input_tokens > 0 and task.output_tokens > 0
    assert task.output == ANSWER and task.chat_history and task.container_id

    # The agent saw the instruction first, then the issue it was asked on.
    first_message = text_of(model.requests[0]["json"]["messages"][0]["content"])
    assert first_message.startswith(INSTRUCTION + "\n")
    assert '"Issue 7"' in first_message and "The CLI cannot tell which version it is." in first_message

    # The container and the work tree are gone.
    assert docker_client.containers.list(all=True, filters={"label": f"async-code.task={task_id}"}) == []
    assert not list((service.data_dir / "workspaces").glob(f"*/{task_id}-*"))

    # No secret anywhere: database, logs, GitHub bodies, what the sandbox's `env` printed.
    key_body = "".join(app_key[0].strip().splitlines()[1:-1])[:64]  # a slice of the App's key
    secrets_ = [*github.minted_tokens, model.api_key, service.secret, key_body]
    env_output = json.dumps(model.requests[1]["json"]["messages"][-1])
    assert "PATH=" in env_output  # the env command really ran in the sandbox
    database = service.store.path
    places = {
        "database": b"".join(path.read_bytes() for path in database.parent.glob(database.name + "*")
                             ).decode("utf-8", "replace"),  # with its -wal and -shm files
        "logs": service.logs(),
        "github bodies": json.dumps([github.comments, github.pulls]),
        "model requests": json.dumps(model.requests),
        "pushed git objects": subprocess.run(
            ["git", "--git-dir", str(repo_path), "cat-file", "--batch-all-objects", "--batch"],
            capture_output=True, check=True).stdout.decode("utf-8", "replace"),
    }
    for secret in secrets_:
        for place, text in places.items():
            assert secret not in text, f"a secret leaked into the {place}"


def test_tasks_command_lists_the_task_as_json(service, github, model):
    model.add_script(INSTRUCTION, golden_script())
    task_id = service.comment(f"@async-code {INSTRUCTION}")
    service.wait_for_task(task_id)
    listed = subprocess.run([sys.executable, "-m", "app", "tasks", "--json"], env=service.env,
                            cwd=service.data_dir, capture_output=True, text=True, check=True)
    [entry] = json.loads(listed.stdout)
    assert {k: entry[k] for k in ("id", "status", "repo", "number", "trigger", "instruction",
                                  "requested_by", "error")} == {
        "id": task_id, "status": "completed", "repo": REPO, "number": 7, "trigger": "comment",
        "instruction": INSTRUCTION, "requested_by": WRITER, "error": None}
    assert entry["pr_url"].endswith("/pull/100") and entry["created_at"]
    # Started once, by the service's own process (host:pid).
    assert entry["attempt"] == 1
    assert entry["claimed_by"].rpartition(":")[2] == str(service.process.pid)
