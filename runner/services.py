"""Build the long-lived clients a runner needs, with errors that say what to fix."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import anthropic
import docker

from app.settings import Settings
from app.store import Store
from runner.artifacts import ArtifactStore, artifact_store
from runner.github import GitHubApp
from runner.sandbox import SandboxError, SandboxUser, remapped_root, sandbox_user


@dataclass(frozen=True)
class Services:
    """Long-lived clients shared by every thread of the runner in this process."""

    settings: Settings
    store: Store
    github: GitHubApp
    docker: docker.DockerClient
    anthropic: anthropic.Anthropic
    instance: str  # the store's id, labelling this installation's sandboxes
    sandbox: SandboxUser  # who the sandbox runs as, and who owns its work tree on the host
    artifacts: ArtifactStore | None = None  # where full transcripts go; None: nowhere

    @property
    def work_trees(self) -> Path:
        """Where this store's attempts keep their work trees: another store sharing the data
        directory (or the host) keeps its own."""
        return self.settings.workspaces_path / self.instance


class ServiceUnavailable(RuntimeError):
    pass


def build_services(settings: Settings, store: Store) -> Services:
    try:
        docker_client = docker.from_env()
        docker_client.ping()
    except docker.errors.DockerException as error:
        raise ServiceUnavailable(
            f"the Docker engine is not reachable ({error}). Start it, or set DOCKER_HOST; "
            "`--workers 0` runs without Docker (record only).") from None
    try:
        sandbox = sandbox_user(settings.sandbox_user_id, remapped_root(docker_client.info()),
                               euid=os.geteuid(), egid=os.getegid())
    except (SandboxError, docker.errors.DockerException) as error:
        raise ServiceUnavailable(str(error)) from None
    github = GitHubApp(app_id=settings.github_app_id, private_key=settings.private_key_pem(),
                       api_url=settings.github_api_url, slug=settings.github_app_slug)
    model = anthropic.Anthropic(api_key=settings.anthropic_api_key,
                                base_url=settings.anthropic_base_url or None,
                                # The agent retries itself, within the task's deadline.
                                max_retries=0)
    return Services(settings=settings, store=store, github=github, docker=docker_client,
                    anthropic=model, instance=store.instance_id(), sandbox=sandbox,
                    artifacts=artifact_store(settings, store))
