"""Run one claimed task: workspace, sandbox, agent, then a pull request or an honest failure.

Everything that talks to GitHub or git happens here in the runner with a token narrowed to the
task's repository; the sandbox only ever sees the work tree.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import anthropic
import docker

from app.settings import Settings
from app.store import COMPLETED, FAILED, Store, Task
from runner import pull_request, status, workspace
from runner.agent import AgentError, AgentResult, AgentTimeout, ClaudeAgent, task_request
from runner.files import FileEditor
from runner.github import EXECUTE_PERMISSIONS, GitHubApp, GitHubError, RepoClient
from runner.sandbox import DockerDeployment, SandboxError, SandboxLimits

log = logging.getLogger(__name__)

SANDBOX_MOUNT = "/workspace"
# The sandbox's uid when the runner is root; otherwise the runner's own uid, so both sides can
# write the tree without chown.
DEFAULT_SANDBOX_UID = 1000
CLONE_TIMEOUT = 300.0

INTERNAL_ERROR = "an internal error stopped the task; the service log has the details."


class TaskFailed(Exception):
    """Ends a task as failed with a reason meant for the person who asked."""


@dataclass(frozen=True)
class Services:
    """Long-lived clients shared by every slot of this process."""

    settings: Settings
    store: Store
    github: GitHubApp
    docker: docker.DockerClient
    anthropic: anthropic.Anthropic


def workspaces_dir(settings: Settings) -> Path:
    return settings.data_path / "workspaces"


def sandbox_owner() -> tuple[int, int]:
    if os.geteuid() == 0:
        return DEFAULT_SANDBOX_UID, DEFAULT_SANDBOX_UID
    return os.geteuid(), os.getegid()


def execute(task: Task, services: Services) -> None:
    started = time.monotonic()
    store = services.store
    try:
        client = services.github.repo_client(task.installation_id, task.repo, EXECUTE_PERMISSIONS)
    except GitHubError as error:
        log.warning("task %s: %s", task.id, error)
        store.finish(task.id, FAILED, error=str(error))
        return
    comment = status.StatusComment(client.edit_comment, task.status_comment_id) \
        if task.status_comment_id else None

    def report(body: str, *, final: bool) -> None:
        if comment is None:
            return
        try:
            comment.final(body) if final else comment.progress(body)
        except GitHubError as error:
            log.warning("task %s: could not edit the status comment: %s", task.id, error)

    # The status comment is edited before the task's final state is stored: whoever sees the
    # task finished in the store also sees the comment that says so.
    report(status.running(task.id), final=True)
    try:
        _run(task, services, client, started,
             lambda turn, tool: report(status.running(task.id, turn, tool), final=False), report)
    except TaskFailed as failure:
        reason = str(failure)
        log.info("task %s failed: %s", task.id, reason)
        report(status.failed(task.id, reason), final=True)
        store.finish(task.id, FAILED, error=reason)
    except Exception:
        log.exception("task %s crashed", task.id)
        report(status.failed(task.id, INTERNAL_ERROR), final=True)
        store.finish(task.id, FAILED, error=INTERNAL_ERROR)


def _run(task: Task, services: Services, client: RepoClient, started: float, on_progress,
         report) -> None:
    settings, store = services.settings, services.store
    deadline = started + settings.timeout_seconds
    repository = _checked_repository(client)
    branch = pull_request.branch_name(task.number, task.id)
    store.update(task.id, branch=branch)
    owner = sandbox_owner()
    base = workspaces_dir(settings)
    try:
        ws = workspace.prepare(base, task.id, clone_url=repository["clone_url"], token=client.token,
                               default_branch=repository["default_branch"], branch=branch,
                               sandbox_owner=owner,
                               timeout=max(1.0, min(CLONE_TIMEOUT, deadline - time.monotonic())))
    except workspace.EmptyRepository:
        raise TaskFailed(f"{task.repo} is empty: push a first commit to "
                         f"{repository['default_branch']} and ask again.") from None
    except (workspace.GitError, ValueError) as error:
        raise TaskFailed(f"cloning {task.repo} failed: {error}") from None
    try:
        result = _run_agent(task, services, ws.tree, owner, deadline, on_progress)
        _require_sandbox_gone(services.docker, task)
        changes = workspace.collect_changes(ws)
        tokens = result.tokens
        common = dict(output=result.answer, chat_history=result.transcript,
                      input_tokens=result.input_tokens, output_tokens=result.output_tokens,
                      exit_code=0)
        if not changes.files and result.stop == "max_turns":
            raise TaskFailed(f"the agent used all {settings.max_turn_count} turns "
                             "(ASYNC_CODE_MAX_TURNS) without changing a file or answering.")
        if not changes.files:
            report(status.no_changes(task.id, result.answer, seconds=time.monotonic() - started,
                                     tokens=tokens), final=True)
            store.finish(task.id, COMPLETED, **common)
            return
        files = [(f.path, f.added, f.deleted) for f in changes.files]
        store.update(task.id, patches={"diff": changes.diff, "files": [
            {"path": f.path, "added": f.added, "deleted": f.deleted, "status": f.status}
            for f in changes.files]}, changed_files=[f.path for f in changes.files], **common)
        title = pull_request.title(result.answer, task.instruction)
        author_name, author_email = services.github.bot_identity(client)
        sha = workspace.commit(ws, message=pull_request.commit_message(
            title, number=task.number, task_id=task.id, requested_by=task.requested_by,
            requested_by_id=task.requested_by_id), author_name=author_name, author_email=author_email)
        store.update(task.id, commit_sha=sha)
        try:
            workspace.push(ws, clone_url=repository["clone_url"], token=client.token)
        except workspace.PushRejected as error:
            raise TaskFailed(f"GitHub rejected the push of {branch}: {error}. Branch protection "
                             "or a push rule may forbid it.") from None
        except workspace.GitError as error:
            raise TaskFailed(f"pushing {branch} failed: {error}") from None
        try:
            pr = client.open_pull_request(
                title=title, head=branch, base=repository["default_branch"],
                body=pull_request.body(answer=result.answer, instruction=task.instruction,
                                       number=task.number, requested_by=task.requested_by,
                                       task_id=task.id, files=files))
        except GitHubError as error:
            raise TaskFailed(f"the branch {branch} was pushed but opening the pull request "
                             f"failed: {error}") from None
        report(status.done(task.id, pr_number=pr["number"], pr_url=pr["html_url"],
                           files_changed=len(files), seconds=time.monotonic() - started,
                           tokens=tokens), final=True)
        store.finish(task.id, COMPLETED, pr_url=pr["html_url"], pr_number=pr["number"])
    finally:
        workspace.remove(ws)


def _require_sandbox_gone(client: docker.DockerClient, task: Task) -> None:
    """Host git reads the tree only once nothing in the sandbox can still change it."""
    try:
        # The low-level list: it does not inspect each container, which fails on one being removed.
        leftover = client.api.containers(all=True, filters={"label": f"async-code.task={task.id}"})
    except docker.errors.DockerException as error:
        raise TaskFailed(f"could not confirm that the sandbox was removed ({error}); "
                         "nothing was committed.") from None
    if leftover:
        raise TaskFailed("the sandbox container could not be removed, so its changes were not "
                         "committed; the service log has the details.")


def _checked_repository(client: RepoClient) -> dict:
    try:
        repository = client.repository()
    except GitHubError as error:
        raise TaskFailed(str(error)) from None
    if repository.get("archived"):
        raise TaskFailed(f"{client.repo} is archived, so nothing can be pushed to it. "
                         "Unarchive it and ask again.")
    if repository.get("disabled"):
        raise TaskFailed(f"{client.repo} is disabled on GitHub.")
    return repository


def _run_agent(task: Task, services: Services, tree: Path, owner: tuple[int, int],
               deadline: float, on_progress) -> AgentResult:
    settings, store = services.settings, services.store
    deployment = DockerDeployment(
        services.docker, image=settings.sandbox_image, work_tree=tree, task_id=task.id,
        user=f"{owner[0]}:{owner[1]}", mount_point=SANDBOX_MOUNT,
        limits=SandboxLimits(memory=settings.sandbox_memory, cpus=float(settings.sandbox_cpus),
                             pids=int(settings.sandbox_pids)))
    # The wall clock is enforced from outside: removing the container ends whatever runs in it.
    watchdog = threading.Timer(max(0.0, deadline - time.monotonic()), deployment.stop)
    watchdog.daemon = True
    try:
        try:
            runtime = deployment.start()
        except SandboxError as error:
            raise TaskFailed(f"the sandbox could not start: {error}") from None
        store.update(task.id, container_id=deployment.container_id)
        watchdog.start()
        agent = ClaudeAgent(services.anthropic, model=settings.model,
                            max_turns=settings.max_turn_count)
        editor = FileEditor(tree, owner=owner, mount_point=SANDBOX_MOUNT)
        try:
            request = task_request(task.instruction, number=task.number,
                                   issue_title=task.issue_title, issue_body=task.issue_body)
            result = agent.run(request=request, repo=task.repo, number=task.number,
                               runtime=runtime, editor=editor, deadline=deadline,
                               on_progress=on_progress)
        except AgentTimeout:
            raise TaskFailed(f"the task ran out of time ({status.format_duration(settings.timeout_seconds)}, "
                             "ASYNC_CODE_TASK_TIMEOUT). Ask for a smaller change or raise the "
                             "limit.") from None
        except AgentError as error:
            raise TaskFailed(str(error)) from None
        return result
    finally:
        watchdog.cancel()
        deployment.stop()
