"""`@async-code pick N`: keep one pull request of a side-by-side run, let the others go.

Said on the issue the run was asked on, by someone with write access (checked when the command
is acknowledged), once the run's comparison is out. Pull request #N must be one a member of a
run on that issue opened. It is marked ready for review; each other member's pull request is
closed and its branch deleted. A branch is deleted only while it still holds exactly the commit
its member pushed: work someone else pushed there since is never thrown away.

Every step is said in the answer, done or not, so nothing fails silently.
"""

from __future__ import annotations

import logging

from app.store import FINISHED, Store, Task
from runner.github import PICK_PERMISSIONS, GitHubApp, GitHubError, RepoClient
from runner.text import code_span

log = logging.getLogger(__name__)


def pick(task: Task, *, store: Store, github: GitHubApp | None,
         client: RepoClient | None = None) -> str:
    """Carry out `pick` and say what was done. `client` (narrowed to PICK_PERMISSIONS) is made
    from `github` when not given."""
    number = task.picked_pr
    chosen = store.side_by_side_member(task.repo, task.number, number) if number else None
    if chosen is None:
        return (f"Nothing picked: #{number} is not a pull request a side-by-side run on this "
                "issue opened.")
    request = store.get(chosen.group_of)
    if request is None or request.status not in FINISHED:
        return ("Nothing picked yet: the side-by-side run is still going. Pick once its "
                "comparison is posted.")
    if client is None:
        if github is None:
            return "Nothing picked: this service cannot reach GitHub."
        try:
            client = github.repo_client(task.installation_id, task.repo, PICK_PERMISSIONS)
        except GitHubError as error:
            return f"Nothing picked: {error}"
    try:
        pull = client.pull_request(number)
    except GitHubError as error:
        return f"Nothing picked: #{number} could not be read ({error})."
    if pull.get("state") != "open":
        return f"Nothing picked: #{number} is closed. Reopen it first to pick it."
    if (pull.get("head") or {}).get("ref") != chosen.branch:
        return f"Nothing picked: the head of #{number} is no longer {code_span(chosen.branch or '')}."
    said = []
    if pull.get("draft"):
        try:
            client.mark_ready_for_review(pull["node_id"])
            said.append(f"✅ Picked #{number} ({code_span(chosen.agent or '?')}): it is ready for review.")
        except GitHubError as error:
            return f"Nothing picked: #{number} could not be marked ready for review ({error})."
    else:
        said.append(f"✅ Picked #{number} ({code_span(chosen.agent or '?')}): it was already "
                    "ready for review.")
    for other in store.members(chosen.group_of):
        if other.id != chosen.id and other.pr_number:
            said.append(_let_go(client, other))
    return "\n".join(said)


def _let_go(client: RepoClient, member: Task) -> str:
    """Close a member's pull request and delete its branch; what happened, in one line."""
    number, branch = member.pr_number, member.branch or ""
    try:
        pull = client.pull_request(number)
        if pull.get("state") == "open":
            client.close_pull_request(number)
            closed = f"closed #{number}"
        else:
            closed = f"#{number} was already closed"
    except GitHubError as error:
        log.warning("pick: could not close #%s: %s", number, error)
        return f"- #{number}: could not be closed ({error}); its branch was kept."
    try:
        head = client.branch(branch)["commit"]["sha"]
    except GitHubError as error:
        if error.status == 404:
            return f"- {closed}; its branch {code_span(branch)} was already gone."
        return f"- {closed}; its branch {code_span(branch)} could not be read ({error}) and was kept."
    if head != member.commit_sha:
        return (f"- {closed}; its branch {code_span(branch)} was kept: it holds commits "
                "async-code did not push.")
    try:
        client.delete_branch(branch)
    except GitHubError as error:
        return f"- {closed}; its branch {code_span(branch)} could not be deleted ({error})."
    return f"- {closed} and deleted its branch {code_span(branch)}."
