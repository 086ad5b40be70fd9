"""A task's full transcript, diff and sandbox log, kept as objects outside the task store.

The store and GitHub keep clipped copies; these are whole. With SUPABASE_URL and SUPABASE_KEY
they go to a private Supabase Storage bucket, and a link to one is Storage's own signed URL;
otherwise they are files in the data directory, and a link is the service's
`GET /artifacts/<task>/<name>` (app/artifact_links.py) carrying an HMAC of the task, the name
and an expiry, made with a key kept in the store's `meta` table, so whichever process receives
the request can check a link any worker on the same store made.

Everything stored passed `Redactor` first. Storing them never fails a task: a failure is
logged and the link left out.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import re
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import urlencode

from app.settings import Settings
from runner.redaction import Redactor, redactor_for

if TYPE_CHECKING:
    from runner.agent import AgentResult
    from runner.services import Services

log = logging.getLogger(__name__)

TRANSCRIPT, DIFF, SANDBOX_LOG = "transcript.json", "diff.patch", "sandbox.log"
# The only names an artifact can have, with the type each is served as: none a browser renders.
CONTENT_TYPES = {TRANSCRIPT: "application/json",
                 DIFF: "text/plain; charset=utf-8",
                 SANDBOX_LOG: "text/plain; charset=utf-8"}
TASK_ID = re.compile(r"[0-9a-f]{32}")


class ArtifactError(Exception):
    """An artifact could not be stored or linked; the message says why, without any key."""


def check_key(task_id: str, name: str) -> str:
    """The object's path within the store, `<task>/<name>`; ValueError for anything else."""
    if not TASK_ID.fullmatch(task_id) or name not in CONTENT_TYPES:
        raise ValueError(f"not an artifact: {task_id!r}/{name!r}")
    return f"{task_id}/{name}"


class ArtifactStore(Protocol):
    def put(self, task_id: str, name: str, data: bytes) -> None:
        """Store the artifact, replacing one of the same name (a re-attempt overwrites)."""

    def get(self, task_id: str, name: str) -> bytes:
        """The artifact's content; ArtifactError when there is none."""

    def signed_url(self, task_id: str, name: str, seconds: int) -> str:
        """An absolute URL that fetches the artifact for `seconds`, without other credentials."""


def link_signature(key: str, task_id: str, name: str, expires: int) -> str:
    message = f"{check_key(task_id, name)}\n{expires}".encode()
    return hmac.new(key.encode(), message, hashlib.sha256).hexdigest()


_EXPIRES = re.compile(r"[0-9]{1,12}")


def link_is_valid(key: str, task_id: str, name: str, expires: str, signature: str,
                  now: float) -> bool:
    """Whether `signature` is the store's for this artifact and `expires` has not passed."""
    # ASCII digits only: str.isdigit() is also true of "²", which int() cannot read.
    if not _EXPIRES.fullmatch(expires) or int(expires) <= now:
        return False
    expected = link_signature(key, task_id, name, int(expires))
    return hmac.compare_digest(expected.encode(), signature.encode("utf-8", "replace"))


class LocalArtifacts:
    """Files under `<root>/<task>/<name>`, linked through the service at `base_url`."""

    def __init__(self, root: Path, *, key: str, base_url: str,
                 clock: Callable[[], float] = time.time):
        self.root, self._key, self._clock = Path(root), key, clock
        self.base_url = base_url.rstrip("/")

    def path(self, task_id: str, name: str) -> Path:
        return self.root / check_key(task_id, name)

    def put(self, task_id: str, name: str, data: bytes) -> None:
        target = self.path(task_id, name)
        target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        # Written beside it and renamed: a reader sees the old artifact or the new, never half.
        fd, temporary = tempfile.mkstemp(dir=target.parent, prefix=f".{name}.")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temporary, target)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise

    def get(self, task_id: str, name: str) -> bytes:
        try:
            return self.path(task_id, name).read_bytes()
        except FileNotFoundError:
            raise ArtifactError(f"task {task_id} has no {name}") from None

    def signed_url(self, task_id: str, name: str, seconds: int) -> str:
        if not self.base_url:
            raise ArtifactError("ASYNC_CODE_PUBLIC_URL is not set, so there is no address to "
                                "link the service's artifacts from")
        expires = int(self._clock()) + seconds
        query = urlencode({"expires": expires,
                           "sig": link_signature(self._key, task_id, name, expires)})
        return f"{self.base_url}/artifacts/{check_key(task_id, name)}?{query}"


class SupabaseArtifacts:
    """Objects `<task>/<name>` in a private bucket of Supabase Storage, through the `supabase`
    client with the service-role key. The bucket is made on first use when missing."""

    def __init__(self, url: str, key: str, bucket: str, *, timeout: float = 30.0):
        self.url, self.bucket = url.rstrip("/"), bucket
        self._key, self._timeout = key, timeout
        self._client: Any = None
        self._bucket_ready = False
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"SupabaseArtifacts({self.url!r}, bucket={self.bucket!r})"  # never the key

    def _storage(self) -> Any:
        with self._lock:
            if self._client is None:
                import httpx
                from supabase import create_client
                from supabase.lib.client_options import SyncClientOptions

                # An httpx client of our own: the timeout is set on it, and nothing refreshes or
                # keeps a session (the service-role key is all there is).
                self._client = create_client(self.url, self._key, options=SyncClientOptions(
                    httpx_client=httpx.Client(timeout=self._timeout),
                    auto_refresh_token=False, persist_session=False))
            return self._client.storage

    def _call(self, what: str, call: Callable[[], Any]) -> Any:
        """`call`, with Storage's errors turned into ArtifactError."""
        import httpx
        from storage3.exceptions import StorageApiError

        try:
            return call()
        except StorageApiError as error:
            raise ArtifactError(self._shown(
                f"Supabase Storage refused to {what}: {error.status} {error.code}: "
                f"{error.message}")) from None
        except httpx.HTTPError as error:
            raise ArtifactError(self._shown(
                f"Supabase Storage at {self.url} could not {what}: {type(error).__name__}: "
                f"{error}")) from None

    def _shown(self, message: str) -> str:
        return message.replace(self._key, "[redacted]") if self._key else message

    def ensure_bucket(self) -> None:
        """Create the private bucket unless it exists (checked once per process); refuse a
        public one, whose objects anyone could read."""
        from storage3.exceptions import StorageApiError

        if self._bucket_ready:
            return
        storage = self._storage()

        def find_or_create() -> bool:
            try:
                return bool(storage.get_bucket(self.bucket).public)
            except StorageApiError as error:
                if str(error.status) != "404":
                    raise
            try:
                storage.create_bucket(self.bucket, options={"public": False})
            except StorageApiError as error:
                if str(error.status) != "409":  # 409: another worker made it a moment ago
                    raise
            return bool(storage.get_bucket(self.bucket).public)

        if self._call(f"find or create the bucket {self.bucket!r}", find_or_create):
            raise ArtifactError(f"the Supabase Storage bucket {self.bucket!r} is public: make it "
                                "private, or name another in ASYNC_CODE_ARTIFACT_BUCKET")
        self._bucket_ready = True

    def put(self, task_id: str, name: str, data: bytes) -> None:
        path = check_key(task_id, name)
        self.ensure_bucket()
        bucket = self._storage().from_(self.bucket)
        self._call(f"store {path}", lambda: bucket.upload(
            path, data, {"content-type": CONTENT_TYPES[name], "upsert": "true",
                         "cache-control": "no-store"}))

    def get(self, task_id: str, name: str) -> bytes:
        path = check_key(task_id, name)
        bucket = self._storage().from_(self.bucket)
        return self._call(f"read {path}", lambda: bucket.download(path))

    def signed_url(self, task_id: str, name: str, seconds: int) -> str:
        path = check_key(task_id, name)
        bucket = self._storage().from_(self.bucket)
        signed = self._call(f"sign a link to {path}",
                            lambda: bucket.create_signed_url(path, seconds))
        url = signed.get("signedURL") or signed.get("signedUrl")
        if not url or not re.fullmatch(r"https?://[^\s()<>\[\]]+", url):
            raise ArtifactError(f"Supabase Storage signed {path} with an unusable URL")
        return url


def artifact_store(settings: Settings, store: Any) -> ArtifactStore:
    """The store the settings choose: Supabase Storage with both SUPABASE_ settings, else the
    data directory with links through ASYNC_CODE_PUBLIC_URL."""
    if settings.on_supabase_storage:
        return SupabaseArtifacts(settings.supabase_url, settings.supabase_key,
                                 settings.artifact_bucket)
    return LocalArtifacts(settings.artifacts_path, key=store.artifact_key(),
                          base_url=settings.public_url)


# The shell tool of each agent: the built-in one's, Claude Code's, and Codex's command steps as
# its transcript records them; each takes the command as `command`.
SHELL_TOOLS = frozenset({"bash", "Bash", "command_execution"})


def sandbox_log(conversation: list[dict[str, Any]]) -> str:
    """Each shell command the agent ran in the sandbox, with the output it got back."""
    commands: dict[str, str] = {}
    lines: list[str] = []
    for message in conversation:
        content = message.get("content")
        for block in content if isinstance(content, list) else []:
            if not isinstance(block, dict):
                continue
            if block.get("type") == "tool_use" and block.get("name") in SHELL_TOOLS:
                arguments = block.get("input") if isinstance(block.get("input"), dict) else {}
                commands[str(block.get("id"))] = str(arguments.get("command", ""))
            elif block.get("type") == "tool_result" and str(block.get("tool_use_id")) in commands:
                output = block.get("content")
                if not isinstance(output, str):
                    output = json.dumps(output, ensure_ascii=False)
                lines.append(f"$ {commands.pop(str(block.get('tool_use_id')))}\n{output.rstrip()}\n")
    return "\n".join(lines)


def task_artifacts(conversation: list[dict[str, Any]], diff: str,
                   redactor: Redactor) -> dict[str, bytes]:
    """What is kept of a task, every part redacted: the transcript always, the diff and the
    sandbox log when there is one."""
    found = {TRANSCRIPT: json.dumps(redactor.value(conversation), ensure_ascii=False,
                                    indent=1).encode()}
    if diff:
        found[DIFF] = redactor.text(diff).encode()
    if log_text := sandbox_log(conversation):
        found[SANDBOX_LOG] = redactor.text(log_text).encode()
    return found


def transcript_note(url: str, seconds: int) -> str:
    days = seconds // 86400
    lifetime = f"{days} day{'s' if days != 1 else ''}" if days else f"{seconds // 3600} hours"
    return f"[Full transcript]({url}) (link valid for {lifetime})"


def publish(store: ArtifactStore | None, task_id: str, *, conversation: list[dict[str, Any]],
            diff: str, redactor: Redactor, link_seconds: int) -> str | None:
    """Store the task's artifacts; the Markdown line linking its full transcript, or None when
    they could not be stored or linked (logged: the task goes on)."""
    if store is None:
        return None
    try:
        for name, data in task_artifacts(conversation, diff, redactor).items():
            store.put(task_id, name, data)
        return transcript_note(store.signed_url(task_id, TRANSCRIPT, link_seconds), link_seconds)
    except ArtifactError as error:
        log.warning("task %s: its artifacts were not stored or linked: %s", task_id, error)
    except Exception:
        log.exception("task %s: storing its artifacts failed", task_id)
    return None


def publish_for_task(services: Services, task_id: str, result: AgentResult, diff: str,
                     *shown_in: Any) -> None:
    """Store what a task the agent finished leaves (its diff when it has one); the status
    comment and check run in `shown_in` (None for one it lacks) then link its full transcript
    in their final words."""
    settings = services.settings
    note = publish(services.artifacts, task_id,
                   conversation=result.conversation or result.transcript, diff=diff,
                   redactor=redactor_for(settings), link_seconds=settings.artifact_link_seconds)
    for place in shown_in:
        if place is not None and note:
            place.note = note
