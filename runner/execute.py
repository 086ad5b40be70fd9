"""Run one claimed task: workspace, sandbox, agent, then a pull request or an honest failure.

Everything that talks to GitHub or git happens here in the runner with a token narrowed to the
task's repository; the sandbox only ever sees the work tree.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path

import docker

from app.store import CANCELLED, COMPLETED, FAILED, PENDING, REJECTED, Superseded, Task
from runner import (check_runs, pull_request, pull_request_context, pull_request_rules, replies,
                    status, workspace)
from runner import artifacts, branch_tests
from runner.acknowledge import WRITE_PERMISSIONS
from runner.agent import (AgentError, AgentResult, AgentTimeout, pull_request_task_request,
                          task_request)
from runner.agents import agent_version, build_agent
from app.budget import Budget, Price, describe_use, format_usd
from app.repo_config import (CONFIG_PATH, MAX_FILE_BYTES, ConfigError, EffectiveConfig,
                             asked_agent_problem, asked_model_problem, effective_config)
from runner.cancel_watch import CancelWatch, HandedBack
from runner.disk_watch import DiskWatch
from runner.files import FileEditor
from runner.github import EXECUTE_PERMISSIONS, GitHubError, RepoClient
from runner.sandbox import (ATTEMPT_LABEL, MOUNT_POINT, TASK_LABEL, Deployment, DockerDeployment, SandboxError,
                            SandboxGone, SandboxLimits, SetupNetworkNotFound, offline_problem,
                            sandbox_network)
from runner.redaction import redactor_for
from runner.services import Services
from runner.text import code_span, fenced, github_web_host, github_web_url

log = logging.getLogger(__name__)

CLONE_TIMEOUT = 300.0
INTERNAL_ERROR = "an internal error stopped the task; the service log has the details."


class TaskFailed(Exception):
    """Ends a task as failed with a reason meant for the person who asked."""


class NoLongerAllowed(TaskFailed):
    """The requester lost write access while the task waited: it ends as rejected."""


class TimedOut(TaskFailed):
    """The task ran out of time (ASYNC_CODE_TASK_TIMEOUT)."""


class TaskCancelled(Exception):
    """Someone with write access said `cancel`: the task ends without pushing anything."""

    def __init__(self, by: str):
        super().__init__(f"cancelled by @{by}")
        self.by = by


def execute(task: Task, services: Services, *,
            abort_reason: Callable[[], str | None] | None = None,
            on_member_progress: Callable[[Task, int, str | None], None] | None = None) -> None:
    """Run the task to its end. `abort_reason`, when it runs as a job of the queue, says whether
    the job was asked to stop (runner/cancel_watch.py): for a shutdown the sandbox is stopped,
    the task goes back to waiting and HandedBack is raised for the queue to run it again.

    Every write for the task names its attempt, and each write to GitHub that matters is
    preceded by a check that the attempt is still the task's current one: an attempt another
    has superseded (its worker was judged gone, but was only slow) stops where it is, having
    removed its own sandbox and work tree, and writes nothing more anywhere.

    A side-by-side run's member (runner/side_by_side.py) reports its progress to
    `on_member_progress` instead of a status comment of its own."""
    try:
        _execute(task, services, abort_reason, on_member_progress)
    except Superseded:
        log.info("task %s: attempt %d was superseded by a newer one; it stopped without writing "
                 "anything more", task.id, task.attempt)


def _execute(task: Task, services: Services,
             abort_reason: Callable[[], str | None] | None,
             on_member_progress: Callable[[Task, int, str | None], None] | None = None) -> None:
    store = services.store
    try:
        client = services.github.repo_client(task.installation_id, task.repo, EXECUTE_PERMISSIONS)
    except GitHubError as error:
        log.warning("task %s: %s", task.id, error)
        store.finish(task.id, FAILED, attempt=task.attempt, error=str(error))
        return
    run = _TaskRun(task, services, client, abort_reason, on_member_progress)
    host = run.github_host
    # The status comment is edited before the task's final state is stored: whoever sees the
    # task finished in the store also sees the comment that says so.
    run.report(status.running(task.id), final=True)
    run.checks.progress(check_runs.in_progress(0, None, 0))
    try:
        finished = run.run()
    except HandedBack:
        if (by := store.cancel_requested(task.id)) is not None:
            # Cancelled while it was being handed back: nothing is to run again.
            log.info("task %s cancelled by %s while handed back", task.id, by)
            run.cancelled(by)
            return
        log.info("task %s handed back: the worker is shutting down", task.id)
        run.report(status.handed_back(task.id), final=True)
        # A hand-back does not count against ASYNC_CODE_MAX_ATTEMPTS: the worker did not die.
        store.update(task.id, attempt=task.attempt, status=PENDING, claimed_by=None,
                     handed_back=task.handed_back + 1)
        raise
    except TaskCancelled as cancel:
        log.info("task %s cancelled by %s", task.id, cancel.by)
        run.cancelled(cancel.by)
    except NoLongerAllowed as refusal:
        log.info("task %s refused: %s", task.id, refusal)
        run.report(status.failed(task.id, str(refusal), github_host=host), final=True)
        run.conclude("failure", "Not allowed", str(refusal))
        run.end(REJECTED, error="not allowed")
    except TaskFailed as failure:
        reason = str(failure)
        log.info("task %s failed: %s", task.id, reason)
        run.report(status.failed(task.id, reason, github_host=host), final=True)
        run.conclude("timed_out" if isinstance(failure, TimedOut) else "failure", "Failed", reason)
        run.end(FAILED, error=reason)
    except Superseded:
        raise
    except Exception:
        log.exception("task %s crashed", task.id)
        run.report(status.failed(task.id, INTERNAL_ERROR, github_host=host), final=True)
        run.conclude("failure", "Failed", INTERNAL_ERROR)
        run.end(FAILED, error=INTERNAL_ERROR)
    else:
        run.end(COMPLETED, **finished)


class _TaskRun:
    """One execution of one task; every step raises TaskFailed with a reason for the user."""

    def __init__(self, task: Task, services: Services, client: RepoClient,
                 abort_reason: Callable[[], str | None] | None = None,
                 on_member_progress: Callable[[Task, int, str | None], None] | None = None):
        self.task, self.services, self.client = task, services, client
        self.attempt = task.attempt
        self.abort_reason = abort_reason
        self.on_member_progress = on_member_progress
        self.started = time.monotonic()
        self.deadline = self.started + services.settings.timeout_seconds
        # Links in what the agent wrote survive only to the repository's own GitHub.
        self.github_host = github_web_host(services.settings.github_api_url)
        self._comment = (status.StatusComment(replies.editor(client, task), task.status_comment_id)
                         if task.status_comment_id else None)
        self.checks = check_runs.CheckRun(client, task, task.check_run_id,
                                          before_edit=self.require_current)
        self.turns = 0
        self.committed: str | None = None  # the commit this attempt made, once it made one
        self.details_url = replies.link(task, github_web_url(services.settings.github_api_url),
                                        task.status_comment_id)

    def require_current(self) -> None:
        """Raise Superseded unless this attempt is still the task's running one."""
        self.services.store.require_current(self.task.id, self.attempt)

    def record(self, **values) -> None:
        """Store what this attempt learnt; refused (Superseded) once a newer attempt exists."""
        self.services.store.update(self.task.id, attempt=self.attempt, **values)

    def report(self, body: str, *, final: bool) -> None:
        if self._comment is None:
            return
        self.require_current()
        try:
            self._comment.final(body) if final else self._comment.progress(body)
        except GitHubError as error:
            log.warning("task %s: could not edit the status comment: %s", self.task.id, error)

    def progress(self, turn: int, tool: str | None) -> None:
        self.turns = turn
        if self.on_member_progress is not None:
            self.on_member_progress(self.task, turn, tool)
        self.report(status.running(self.task.id, turn, tool), final=False)
        self.checks.progress(check_runs.in_progress(turn, tool, time.monotonic() - self.started))

    def cancelled(self, by: str) -> None:
        """End the task as cancelled, saying what, if anything, was pushed before."""
        from runner import side_by_side  # it runs each member through this module

        kept = side_by_side.pushed_before_cancel(self.services.store, self.task)
        self.report(status.cancelled(self.task.id, by, kept=kept), final=True)
        self.conclude("cancelled", f"Cancelled by {by}", kept or "Nothing was pushed.")
        self.end(CANCELLED, error=f"cancelled by @{by}")

    def conclude(self, conclusion: str, title: str, summary: str) -> None:
        """End the check run of a task that did not push."""
        self.checks.final(check_runs.finished(conclusion, title=title, summary=summary,
                                              github_host=self.github_host))

    def _check_run_on_pushed_commit(self, sha: str, result: AgentResult,
                                    changes: workspace.Changes, title: str) -> None:
        """The pushed commit's own check run, finished: what changed, and the buttons. A task its
        budget stopped asks for action: Continue carries on with a fresh budget."""
        stopped = result.stop == "budget"
        note = (f"Stopped at budget ({self._spent(result)}). What it had done is committed "
                "and pushed; press Continue to carry on with a fresh budget." if stopped else "")
        fields = check_runs.finished(
            "action_required" if stopped else "success",
            title=f"Stopped at budget: {title}" if stopped else title, github_host=self.github_host,
            summary=check_runs.change_summary(
                files=[(f.path, f.added, f.deleted) for f in changes.files],
                seconds=time.monotonic() - self.started, turns=result.turns, tokens=result.tokens,
                answer=result.answer, left_out=changes.left_out_count, cost=result.cost_usd,
                note=note),
            text=check_runs.transcript_excerpt(result.transcript),
            actions=[check_runs.RETRY, check_runs.CONTINUE])
        fields.update(name=check_runs.NAME, head_sha=sha, external_id=self.task.id)
        if self.details_url:
            fields["details_url"] = self.details_url
        # The link to the full transcript, as the task's own check run and comment have it.
        run_id = check_runs.create(self.client, self.task,
                                   check_runs.with_note(fields, self.checks.note))
        self.record(pushed_check_run_id=run_id)
        if run_id is None:
            # The run on the head the task started from keeps the whole story and the buttons.
            self.checks.final({key: value for key, value in fields.items() if key != "head_sha"})
            return
        # The run on the head the task started from points at the new one; its buttons move too.
        # It concludes as that one does: a budget stop is no success on either head.
        self.checks.final(check_runs.finished(
            fields["conclusion"], title=f"Superseded by {sha[:7]}", actions=[],
            summary=(f"This task was stopped at its budget and pushed {sha}; the check run on "
                     "that commit has the details and Continue." if stopped else
                     f"This task pushed {sha}; the check run on that commit has the details.")))

    def end(self, outcome: str, **values) -> None:
        """Store the task's end; a label that asked comes off first, so adding it again asks again."""
        self.require_current()
        if self.task.label is not None:
            try:
                self.client.remove_label(self.task.number, self.task.label)
            except GitHubError as error:
                log.warning("task %s: could not remove the label %r: %s", self.task.id,
                            self.task.label, error)
        self.services.store.finish(self.task.id, outcome, attempt=self.attempt, **values)

    def run(self) -> dict:
        """Do the work; returns what to store with the completed task."""
        task, store = self.task, self.services.store
        if (by := store.cancel_requested(task.id)) is not None:
            raise TaskCancelled(by)
        # The login now, from the id: trust in the conversation follows the person, not a name.
        self.requester_login = _require_write_access(self.client, task)
        repository = _checked_repository(self.client)
        self.config = self._repository_config()
        if task.model is not None:
            # The model the request names, if the operator allows it; the config's otherwise.
            problem = asked_model_problem(task.model, self.config.limits)
            if problem is not None:
                raise TaskFailed(f"{problem}. Nothing was run.")
            self.config = dataclasses.replace(self.config, model=task.model)
        if task.agent is not None:
            # The agent the task names, if the operator enables it; the config's otherwise.
            problem = asked_agent_problem(task.agent, self.config.limits)
            if problem is not None:
                raise TaskFailed(f"{problem}. Nothing was run.")
            self.config = dataclasses.replace(self.config, agent=task.agent)
        agent_model = self.services.settings.agent_model_names.get(self.config.agent)
        if task.model is None and agent_model is not None:
            # The operator's model for this agent (another provider's, say), unless asked.
            self.config = dataclasses.replace(self.config, model=agent_model)
        # The repository may shorten the task's time; the clock started when the task did.
        self.deadline = self.started + self.config.timeout_seconds
        if agents := self._side_by_side_agents():
            from runner import side_by_side  # it runs each member through this module
            return side_by_side.run(self, agents)
        pull = None
        if task.on_pull_request:
            pull = self._pull_request_to_work_on(repository)
            start, branch = pull["head"]["ref"], pull["head"]["ref"]
        else:
            start = task.base_branch or repository["default_branch"]
            branch = pull_request.branch_name(task.number, task.id, self.config.branch_prefix,
                                              agent=task.agent if task.group_of else None)
        self.budget = Budget(tokens=self.config.budget_tokens, usd=self.config.budget_usd)
        price = self.services.settings.price_of(self.config.model)
        if self.budget.usd is not None and price is None:
            raise TaskFailed(f"the budget of {format_usd(self.budget.usd)} cannot be kept: "
                             f"{self.config.model} has no price in ASYNC_CODE_PRICES. Nothing "
                             "was run.")
        self.record(branch=branch, base_branch=pull["base"]["ref"] if pull else start,
                    agent=self.config.agent, agent_version=agent_version(self.config.agent))
        finished = self._work(repository, pull, start, branch, price)
        if task.group_of is not None:
            finished.update(self._test_branch(repository, branch, finished))
        return finished

    def _side_by_side_agents(self) -> list[str] | None:
        """The agents to run side by side, when this task is a request for that: `--agents`,
        or the config's `compare` for a request on an issue that names no agent."""
        task = self.task
        if task.group_of is not None:
            return None
        if task.agents:
            problems = [problem for agent in task.agents
                        if (problem := asked_agent_problem(agent, self.config.limits))]
            if problems:
                raise TaskFailed("`--agents`: " + "; ".join(problems) + ". Nothing was run.")
            return list(task.agents)
        if self.config.compare and task.agent is None and not task.on_pull_request:
            return list(self.config.compare)
        return None

    def _test_branch(self, repository: dict, branch: str, finished: dict) -> dict:
        """A member's verdict on the `test` commands (`test_result`, and `test_output` when a
        test failed): run on a fresh checkout of what it pushed, once its agent's sandbox and
        tree are gone. Nothing when there is nothing to test."""
        commands = self.config.test
        if not commands or finished.get("pr_number") is None:
            return {}
        # Known before the tests run: should they never end, the comparison and `pick` still
        # find the member's pull request.
        self.record(pr_url=finished["pr_url"], pr_number=finished["pr_number"])
        settings = self.services.settings
        # The tests get a window of their own: the agent may have used most of the task's.
        self.deadline = time.monotonic() + self.config.timeout_seconds
        try:
            # The very commit the member pushed: anything pushed on top since is not its work.
            checkout = workspace.prepare_test_checkout(
                self.services.work_trees, self.task.id, attempt=self.attempt,
                clone_url=repository["clone_url"], token=self.client.token, branch=branch,
                commit=self.committed or "", sandbox_owner=self.services.sandbox.host_owner,
                timeout=min(CLONE_TIMEOUT, self.config.timeout_seconds))
        except (workspace.GitError, ValueError, OSError) as error:
            log.warning("task %s: its branch could not be checked out for the tests: %s",
                        self.task.id, error)
            return {"test_result": f"{branch_tests.TESTS_NOT_RUN}: the branch could not be "
                                   "checked out as pushed"}
        try:
            verdict, printed = branch_tests.run_tests(
                self.services.docker, checkout=checkout, image=self.config.image,
                task_id=self.task.id, attempt=self.attempt, instance=self.services.instance,
                user=self.services.sandbox.container_user, mount_point=MOUNT_POINT,
                limits=_sandbox_limits(settings), setup=self.config.setup, tests=commands,
                setup_network_name=settings.setup_network_name,
                seconds=self.config.timeout_seconds, max_tree_bytes=settings.max_tree_bytes,
                store=self.services.store, abort_reason=self.abort_reason)
        finally:
            if _sandbox_is_gone(self.services.docker, self.task):
                workspace.remove(checkout.workspace)
        # What the tests printed is the sandbox's word: kept without the service's secrets.
        return {"test_result": verdict,
                "test_output": redactor_for(self.services.settings).text(printed) or None}

    def _work(self, repository: dict, pull: dict | None, start: str, branch: str,
              price: Price | None) -> dict:
        """Clone, run the agent in its sandbox, then propose what it changed."""
        task, store = self.task, self.services.store
        ws = self._prepare_workspace(repository, start, branch, self.services.sandbox.host_owner)
        sandbox_gone = False
        try:
            self.record(start_sha=workspace.start_commit(ws))
            request = self._first_message(pull)
            result = _run_agent(task, self.services, self.config, ws.tree, self.deadline, request,
                                self.progress, budget=self.budget, price=price,
                                abort_reason=self.abort_reason)
            _require_sandbox_gone(self.services.docker, task)
            sandbox_gone = True
            if (by := store.cancel_requested(task.id)) is not None:
                raise TaskCancelled(by)
            try:
                changes = workspace.collect_changes(
                    ws, max_changed_files=self.services.settings.max_changed_file_count)
            except workspace.TooManyChanges as error:
                raise TaskFailed(f"the agent changed {error.described} files, more than "
                                 f"ASYNC_CODE_MAX_CHANGED_FILES ({error.limit:,}) allows; nothing "
                                 "was pushed. Ask for a smaller change or raise the limit.") from None
            except workspace.TooLarge as error:
                raise TaskFailed(f"{error}; nothing was pushed.") from None
            except workspace.GitError as error:
                raise TaskFailed(f"the agent's work could not be read: {error}") from None
            # A superseded attempt must not overwrite its successor's artifacts.
            self.require_current()
            artifacts.publish_for_task(self.services, task.id, result, changes.diff,
                                       self._comment, self.checks)
            # Kept with the task as its artifacts are: without the service's secrets.
            redactor = redactor_for(self.services.settings)
            outcome = dict(output=redactor.value(result.answer),
                           chat_history=redactor.value(result.transcript), exit_code=0,
                           input_tokens=result.input_tokens, output_tokens=result.output_tokens,
                           cache_write_tokens=result.cache_write_tokens,
                           cache_read_tokens=result.cache_read_tokens, cost_usd=result.cost_usd,
                           stop_reason=result.stop, turns=result.turns)
            if not changes.files:
                return self._finish_without_changes(result, changes, outcome)
            self._store_changes(changes, outcome)
            if pull is not None:
                return self._push_to_pull_request(ws, repository, pull, result, changes)
            return self._propose(ws, repository, result, changes, start)
        finally:
            # While the sandbox may still run, its tree stays: recovery removes both later.
            if sandbox_gone or _sandbox_is_gone(self.services.docker, task):
                workspace.remove(ws)
            else:
                log.warning("task %s: its sandbox may still be running; its work tree is left "
                            "for recovery to remove", task.id)

    def _repository_config(self) -> EffectiveConfig:
        """.github/async-code.yml from the default branch, never a pull request's head: what a
        pull request changes must not change how it is treated."""
        try:
            text = self.client.file_on_default_branch(CONFIG_PATH, max_bytes=MAX_FILE_BYTES)
        except GitHubError as error:
            raise TaskFailed(f"{CONFIG_PATH} could not be read ({error}); nothing was run.") from None
        try:
            return effective_config(text, self.services.settings)
        except ConfigError as error:
            raise TaskFailed(str(error)) from None

    def _pull_request_to_work_on(self, repository: dict) -> dict:
        """The pull request, read now: still open, not a fork's, and its head a branch
        async-code may push to (neither the default branch nor a protected one)."""
        task, client = self.task, self.client
        try:
            pull = client.pull_request(task.number)
        except GitHubError as error:
            raise TaskFailed(f"could not read pull request #{task.number}: {error}") from None
        reason = pull_request_rules.refusal(pull, repo=task.repo,
                                            default_branch=repository["default_branch"])
        if reason is not None:
            raise TaskFailed(reason)
        head = pull["head"]["ref"]
        try:
            protected = client.branch(head).get("protected")
        except GitHubError as error:
            raise TaskFailed(f"could not read whether {head} is protected ({error}); nothing "
                             "was run.") from None
        if protected is not False:
            raise TaskFailed(f"{head} is a protected branch, and async-code never pushes to one. "
                             "Ask on an issue instead: async-code then opens its own pull request.")
        return pull

    def _first_message(self, pull: dict | None) -> str:
        task, client = self.task, self.client
        if pull is None:
            return task_request(task.instruction, number=task.number,
                                issue_title=task.issue_title, issue_body=task.issue_body,
                                issue_author_trusted=_issue_author_trusted(client, task))
        is_writer = pull_request_context.writer_check(client, self.requester_login, WRITE_PERMISSIONS)
        previous = (self.services.store.get(task.retry_of)
                    if task.trigger == "continue" and task.retry_of else None)
        context = pull_request_context.gather(
            client, task, pull, bot_login=f"{self.services.settings.github_app_slug}[bot]",
            is_writer=is_writer, previous=previous)
        return pull_request_task_request(task.instruction, number=task.number,
                                         context_block=pull_request_context.render(context))

    def _prepare_workspace(self, repository: dict, start: str, branch: str,
                           owner: tuple[int, int]) -> workspace.Workspace:
        task = self.task
        try:
            return workspace.prepare(
                self.services.work_trees, task.id, attempt=task.attempt,
                clone_url=repository["clone_url"],
                token=self.client.token, default_branch=start, branch=branch,
                sandbox_owner=owner,
                timeout=max(1.0, min(CLONE_TIMEOUT, self.deadline - time.monotonic())))
        except workspace.EmptyRepository:
            if start != repository["default_branch"]:
                raise TaskFailed(f"{task.repo} has no branch {start!r}.") from None
            raise TaskFailed(f"{task.repo} is empty: push a first commit to "
                             f"{repository['default_branch']} and ask again.") from None
        except (workspace.GitError, ValueError) as error:
            raise TaskFailed(f"cloning {task.repo} failed: {error}") from None

    def _finish_without_changes(self, result: AgentResult, changes: workspace.Changes,
                                outcome: dict) -> dict:
        if result.stop == "max_turns":
            raise TaskFailed(f"the agent used all {self.config.max_turns} turns without changing a "
                             "file or answering.")
        seconds = time.monotonic() - self.started
        if result.stop == "budget":
            spent = self._spent(result)
            self.report(status.stopped_at_budget_unchanged(
                self.task.id, result.answer, spent=spent, seconds=seconds, tokens=result.tokens,
                cost=result.cost_usd, github_host=self.github_host), final=True)
            self.checks.final(check_runs.finished(
                "action_required", title="Stopped at budget", github_host=self.github_host,
                summary=check_runs.answer_summary(
                    result.answer, seconds=seconds, turns=result.turns, tokens=result.tokens,
                    cost=result.cost_usd,
                    note=f"Stopped at budget ({spent}) before it changed any file."),
                text=check_runs.transcript_excerpt(result.transcript)))
            return outcome
        left_out = pull_request.left_out_list(_left_out_pairs(changes), changes.left_out_count,
                                              github_host=self.github_host)
        self.report(status.no_changes(self.task.id, result.answer, github_host=self.github_host,
                                      seconds=seconds, tokens=result.tokens, cost=result.cost_usd,
                                      left_out=left_out if changes.left_out_count else ""), final=True)
        self.checks.final(check_runs.finished(
            "neutral", title="No changes", github_host=self.github_host,
            summary=check_runs.answer_summary(result.answer, seconds=seconds, turns=result.turns,
                                              tokens=result.tokens, cost=result.cost_usd),
            text=check_runs.transcript_excerpt(result.transcript)))
        return outcome

    def _spent(self, result: AgentResult) -> str:
        return describe_use(self.budget, result.usage, result.cost_usd)

    def _title(self, result: AgentResult) -> str:
        """The commit's or pull request's title: the agent's summary line, or, when its budget
        stopped it mid-way, the instruction (what it last said is no summary)."""
        answer = "" if result.stop == "budget" else result.answer
        return pull_request.title(answer, self.task.instruction, github_host=self.github_host)

    def _summary(self, result: AgentResult) -> str:
        """The agent's answer for a pull request's body; its first line is the title's."""
        if result.stop != "budget":
            return result.answer
        return (f"Stopped at budget\n\nasync-code stopped at its budget ({self._spent(result)}) "
                "before it finished: this is work in progress. Press Continue on its check run "
                f"to carry on with a fresh budget. What it last said:\n\n{result.answer.strip()}")

    def _report_budget_stop(self, result: AgentResult, changes: workspace.Changes,
                            pushed_to: str) -> None:
        self.report(status.stopped_at_budget(
            self.task.id, spent=self._spent(result), pushed_to=pushed_to,
            files_changed=len(changes.files), seconds=time.monotonic() - self.started,
            tokens=result.tokens, cost=result.cost_usd, left_out=changes.left_out_count,
            mention=f"@{self.services.settings.github_app_slug}"), final=True)

    def _store_changes(self, changes: workspace.Changes, outcome: dict) -> None:
        self.record(patches={"diff": changes.diff, "files": [
            {"path": f.path, "added": f.added, "deleted": f.deleted, "status": f.status}
            for f in changes.files], "left_out": [
            {"path": item.path, "reason": item.reason} for item in changes.left_out]},
            changed_files=[f.path for f in changes.files], **outcome)

    def _commit(self, ws: workspace.Workspace, result: AgentResult, changes: workspace.Changes,
                title: str) -> str:
        task, client = self.task, self.client
        author_name, author_email = self.services.github.bot_identity(client)
        sha = workspace.commit(ws, changes, message=pull_request.commit_message(
            title, number=task.number, task_id=task.id, requested_by=task.requested_by,
            requested_by_id=task.requested_by_id, github_host=self.github_host),
            author_name=author_name, author_email=author_email)
        self.record(commit_sha=sha)
        self.committed = sha
        # The last moment a cancel can still keep the work off GitHub.
        if (by := self.services.store.cancel_requested(task.id)) is not None:
            raise TaskCancelled(by)
        return sha

    def _push(self, ws: workspace.Workspace, repository: dict, *,
              replacing: str | None = None) -> None:
        self.require_current()
        try:
            workspace.push(ws, clone_url=repository["clone_url"], token=self.client.token,
                           replacing=replacing)
        except workspace.PushRejected as error:
            if error.branch_moved:
                raise TaskFailed(f"someone pushed to {ws.branch} while the task ran, so its commit "
                                 "no longer builds on the branch's head. Nothing was force-pushed "
                                 "and nothing was lost; ask again to work on the new head.") from None
            raise TaskFailed(f"GitHub rejected the push of {ws.branch}: {error}. Branch "
                             "protection or a push rule may forbid it.") from None
        except workspace.GitError as error:
            raise TaskFailed(f"pushing {ws.branch} failed: {error}") from None

    def _earlier_attempts_commit(self, ws: workspace.Workspace, repository: dict) -> str | None:
        """On a re-attempt, the commit an earlier attempt pushed to the task's branch, if the
        branch still holds it: the push replaces that one, and nobody else's."""
        if self.attempt <= 1:
            return None
        try:
            found = workspace.remote_branch_commit(ws, clone_url=repository["clone_url"],
                                                   token=self.client.token)
        except workspace.GitError as error:
            raise TaskFailed(f"could not read {ws.branch} on GitHub: {error}") from None
        # The very commit an earlier attempt recorded before pushing it: a message carrying the
        # task's mark proves nothing (an amend or a rebase keeps it, anyone may copy it).
        if found is None or found[0] != self.task.commit_sha:
            return None
        log.info("task %s: attempt %d replaces the commit %s an earlier attempt pushed",
                 self.task.id, self.attempt, found[0])
        return found[0]

    def _earlier_attempts_pull_request(self, ws: workspace.Workspace) -> dict | None:
        """On a re-attempt, the open pull request an earlier attempt opened from the branch."""
        if self.attempt <= 1:
            return None
        app_login = f"{self.services.settings.github_app_slug}[bot]"
        return next((pull for pull in self.client.open_pull_requests_from(ws.branch)
                     if pull["head"]["ref"] == ws.branch
                     and (pull.get("user") or {}).get("login") == app_login
                     and pull_request.opened_by_task(pull.get("body"), self.task.id)), None)

    def _push_to_pull_request(self, ws: workspace.Workspace, repository: dict, pull: dict,
                              result: AgentResult, changes: workspace.Changes) -> dict:
        """Commit on the pull request's head and push it there, fast-forward only."""
        task = self.task
        title = self._title(result)
        sha = self._commit(ws, result, changes, title)
        # Read again: the pull request may have closed, or its branch become protected, while
        # the agent worked.
        again = self._pull_request_to_work_on(repository)
        if again["head"]["ref"] != pull["head"]["ref"]:
            raise TaskFailed(f"the head of #{task.number} changed while the task ran; nothing "
                             "was pushed.")
        self._push(ws, repository)
        self._check_run_on_pushed_commit(sha, result, changes, title)
        if result.stop == "budget":
            commit_url = f"{repository['html_url']}/commit/{sha}"
            self._report_budget_stop(result, changes, f"[`{sha[:7]}`]({commit_url}) on "
                                                      f"{code_span(ws.branch)}")
            return dict(pr_url=pull["html_url"], pr_number=pull["number"])
        left_out = pull_request.left_out_list(_left_out_pairs(changes), changes.left_out_count,
                                              github_host=self.github_host)
        self.report(status.pushed(
            task.id, branch=ws.branch, sha=sha, commit_url=f"{repository['html_url']}/commit/{sha}",
            summary=title, files_changed=len(changes.files),
            seconds=time.monotonic() - self.started, tokens=result.tokens, cost=result.cost_usd,
            left_out=left_out if changes.left_out_count else "", github_host=self.github_host),
            final=True)
        return dict(pr_url=pull["html_url"], pr_number=pull["number"])

    def _propose(self, ws: workspace.Workspace, repository: dict, result: AgentResult,
                 changes: workspace.Changes, base: str) -> dict:
        """Commit, push the task's branch, open the pull request; returns what to store."""
        task, client = self.task, self.client
        files = [(f.path, f.added, f.deleted) for f in changes.files]
        title = self._title(result)
        sha = self._commit(ws, result, changes, title)
        self._push(ws, repository, replacing=self._earlier_attempts_commit(ws, repository))
        body = pull_request.body(answer=self._summary(result), instruction=task.instruction,
                                 number=task.number, requested_by=task.requested_by,
                                 task_id=task.id, files=files, left_out=_left_out_pairs(changes),
                                 left_out_count=changes.left_out_count,
                                 github_host=self.github_host)
        try:
            earlier = self._earlier_attempts_pull_request(ws)
            self.require_current()
            if earlier is not None:
                pr = client.update_pull_request(earlier["number"], title=title, body=body)
            else:
                pr = client.open_pull_request(title=title, head=ws.branch, base=base, body=body,
                                              draft=task.draft or self.config.draft)
        except GitHubError as error:
            raise TaskFailed(f"the branch {ws.branch} was pushed but opening the pull request "
                             f"failed: {error}") from None
        self._check_run_on_pushed_commit(sha, result, changes, title)
        if result.stop == "budget":
            self._report_budget_stop(result, changes, f"[#{pr['number']}]({pr['html_url']})")
        else:
            self.report(status.done(task.id, pr_number=pr["number"], pr_url=pr["html_url"],
                                    files_changed=len(files), seconds=time.monotonic() - self.started,
                                    tokens=result.tokens, left_out=changes.left_out_count,
                                    cost=result.cost_usd), final=True)
        return dict(pr_url=pr["html_url"], pr_number=pr["number"])


def _sandbox_limits(settings) -> SandboxLimits:
    return SandboxLimits(memory=settings.sandbox_memory, cpus=float(settings.sandbox_cpus),
                         pids=int(settings.sandbox_pids), tmp_bytes=settings.sandbox_tmp_bytes)


def _left_out_pairs(changes: workspace.Changes) -> list[tuple[str, str]]:
    return [(item.path, item.reason) for item in changes.left_out]


def _require_sandbox_gone(client: docker.DockerClient, task: Task) -> None:
    """Host git reads the tree only once nothing in the sandbox can still change it."""
    try:
        # The low-level list: it does not inspect each container, which fails on one being removed.
        leftover = client.api.containers(all=True, filters={"label": [
            f"{TASK_LABEL}={task.id}", f"{ATTEMPT_LABEL}={task.attempt}"]})
    except docker.errors.DockerException as error:
        raise TaskFailed(f"could not confirm that the sandbox was removed ({error}); "
                         "nothing was committed.") from None
    if leftover:
        raise TaskFailed("the sandbox container could not be removed, so its changes were not "
                         "committed; the service log has the details.")


def _sandbox_is_gone(client: docker.DockerClient, task: Task) -> bool:
    try:
        _require_sandbox_gone(client, task)
    except TaskFailed:
        return False
    return True


def _require_write_access(client: RepoClient, task: Task) -> str:
    """Checked again before anything runs: access can be taken away while a task waits.

    The login is looked up from the stored user id, since a login can be renamed (and then
    taken by someone else). Fails closed, like the check at acknowledgement.
    """
    try:
        login = client.login_of(task.requested_by_id) if task.requested_by_id else task.requested_by
        permission = client.permission(login)
    except GitHubError as error:
        raise TaskFailed(f"could not confirm that @{task.requested_by} may still write to "
                         f"{task.repo} ({error}); nothing was run.") from None
    if permission not in WRITE_PERMISSIONS:
        raise NoLongerAllowed(f"@{login} no longer has write access to {task.repo}, so the task "
                              "did not start.")
    return login


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


def _issue_author_trusted(client: RepoClient, task: Task) -> bool:
    """Whether the issue's text was written by someone who may write to the repository; when
    GitHub cannot say, it is not."""
    if not task.issue_author:
        return False
    if task.issue_author.lower() == task.requested_by.lower():
        return True  # their write access was just checked
    try:
        return client.permission(task.issue_author) in WRITE_PERMISSIONS
    except GitHubError:
        return False


def _run_agent(task: Task, services: Services, config: EffectiveConfig, tree: Path,
               deadline: float, request: str, on_progress, *, budget: Budget = Budget(),
               price: Price | None = None,
               abort_reason: Callable[[], str | None] | None = None) -> AgentResult:
    from runner.agents import is_cli_agent, task_cli_setup
    from runner.cli_agents import CliAgentUnavailable
    from runner.unconfigured import reason as unconfigured_reason

    settings, store = services.settings, services.store
    cli = None
    if is_cli_agent(config.agent):
        # Checked before anything runs: the agent's key, and its tools as installed.
        if missing := settings.missing_for_agent(config.agent):
            raise TaskFailed(unconfigured_reason(missing))
        try:
            cli = task_cli_setup(config.agent, settings, tree, services.sandbox.host_owner)
        except CliAgentUnavailable as error:
            raise TaskFailed(f"{error}. Nothing was run.") from None
        store.update(task.id, agent_version=agent_version(config.agent, cli.tools_dir),
                     attempt=task.attempt)
    deployment = DockerDeployment(
        services.docker, image=config.image, work_tree=tree, task_id=task.id,
        instance=services.instance, user=services.sandbox.container_user, mount_point=MOUNT_POINT,
        limits=_sandbox_limits(settings),
        setup_network=sandbox_network(config.setup, settings.setup_network_name),
        mounts=cli.mounts() if cli is not None else (), attempt=task.attempt)
    # The wall clock, the tree's size and a `cancel` are enforced from outside: removing the
    # container ends whatever runs in it.
    watchdog = threading.Timer(max(0.0, deadline - time.monotonic()), deployment.stop)
    watchdog.daemon = True
    disk = DiskWatch(tree, settings.max_tree_bytes, deployment.stop)
    cancel = CancelWatch(store, task.id, deployment.stop, attempt=task.attempt,
                         **({"abort_reason": abort_reason} if abort_reason is not None else {}))
    try:
        try:
            runtime = deployment.start()
        except SetupNetworkNotFound as error:
            raise TaskFailed(f"{settings.env_name('setup_network')} names the Docker network "
                             f"{error.network!r}, which does not exist on the Docker engine: create "
                             "it, or unset the setting so that setup runs offline. Nothing was "
                             "run.") from None
        except SandboxError as error:
            raise TaskFailed(f"the sandbox could not start: {error}") from None
        store.update(task.id, attempt=task.attempt, container_id=deployment.container_id)
        watchdog.start()
        disk.start()
        cancel.start()
        _run_setup(config.setup, deployment, runtime, deadline, cancel)
        agent = build_agent(config.agent, client=services.anthropic, model=config.model,
                            max_turns=config.max_turns, budget=budget, price=price, cli=cli)
        editor = FileEditor(tree, owner=services.sandbox.host_owner, mount_point=MOUNT_POINT)
        try:
            result = agent.run(request=request, repo=task.repo, number=task.number,
                               runtime=runtime, editor=editor, deadline=deadline,
                               on_pull_request=task.on_pull_request, on_progress=on_progress,
                               instructions=config.instructions)
        except (AgentTimeout, AgentError) as error:
            if cancel.superseded:
                raise Superseded(task.id, task.attempt) from None
            # A cancel stops the sandbox under the agent, which then fails: the cancel is the news.
            if cancel.check() is not None:
                raise TaskCancelled(cancel.cancelled_by) from None
            if isinstance(error, AgentError):
                raise TaskFailed(str(error)) from None
            if disk.problem is None:
                raise TimedOut(f"the task ran out of time ({status.format_duration(config.timeout_seconds)}). "
                               "Ask for a smaller change or raise the limit.") from None
        if cancel.superseded:
            raise Superseded(task.id, task.attempt)
        if cancel.check() is not None:
            raise TaskCancelled(cancel.cancelled_by)
        disk.stop()
        # Measured once more: the tree may have grown since the last look.
        if disk.problem is not None or disk.check():
            raise TaskFailed(f"{disk.problem}, and ASYNC_CODE_MAX_TREE_BYTES is "
                             f"{settings.max_tree_size}; the sandbox was stopped and nothing was "
                             "pushed.")
        return result
    finally:
        watchdog.cancel()
        disk.stop()
        cancel.stop()
        deployment.stop()


SETUP_OUTPUT_SHOWN = 2_000  # the end of a failed setup command's output, in the status comment


def _run_setup(commands: tuple[str, ...], deployment: Deployment, runtime, deadline: float,
               cancel: CancelWatch) -> None:
    """The repository's `setup` commands, in the sandbox before the agent starts, each within
    the task's time; then the sandbox goes offline, and is checked to be, before anything else
    runs. Setup has ASYNC_CODE_SETUP_NETWORK when the sandbox was created on it, and otherwise
    no network: it works from what the image holds."""
    for number, command in enumerate(commands, 1):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimedOut("the task ran out of time during its setup commands.")
        try:
            ran = runtime.run(command, timeout=remaining, max_output=SETUP_OUTPUT_SHOWN * 4)
        except SandboxGone:
            if cancel.check() is not None:
                raise TaskCancelled(cancel.cancelled_by) from None
            raise TimedOut("the task ran out of time during its setup commands.") from None
        if ran.timed_out:
            raise TimedOut(f"setup command {number} did not finish in the task's time.")
        if ran.exit_code != 0:
            tail = ran.output[-SETUP_OUTPUT_SHOWN:]
            raise TaskFailed(f"setup command {number} of {CONFIG_PATH} failed with exit code "
                             f"{ran.exit_code}; the agent did not start. Its output ends:\n\n"
                             + fenced(tail))
    try:
        deployment.disconnect_setup_network()
        problem = offline_problem(deployment.network_state())
    except SandboxGone:
        if cancel.check() is not None:
            raise TaskCancelled(cancel.cancelled_by) from None
        raise TimedOut("the task ran out of time during its setup commands.") from None
    except SandboxError as error:
        # Fail closed: a sandbox that may still have the network never runs the agent.
        raise TaskFailed(f"the sandbox could not be taken offline after setup ({error}), so the "
                         "agent did not start.") from None
    if problem is not None:
        raise TaskFailed(f"{problem}, so the agent did not start.")
