"""Every setting of the service, read from the environment into one typed object.

Reading never fails: values are kept as given and each command asks `problems(...)` for the
settings it needs, so `async-code tasks` works without a GitHub key and `serve` reports every
missing or invalid setting at once.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from urllib.parse import unquote, urlsplit, urlunsplit

from app.agents import DEFAULT_AGENT, enabling_problem
from app.budget import Price, parse_prices

DEFAULT_MODEL = "claude-sonnet-4-6"
DEFAULT_API_URL = "https://api.github.com"
_MEMORY = re.compile(r"^\d+(\.\d+)?[bkmg]?$", re.IGNORECASE)
_SIZE = re.compile(r"^(\d+(?:\.\d+)?)([kmgt]?)$", re.IGNORECASE)
_SIZE_UNITS = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}
# A Docker image reference or a model id as an operator writes it in a list: no spaces, no commas.
_LIST_ITEM = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:/@+-]*")
_TOKENS = re.compile(r"[0-9]{1,15}")
_USD = re.compile(r"[0-9]{1,9}(\.[0-9]{1,6})?")
# A Docker network's name as Docker accepts it (or its id).
_POSTGRES_SCHEMES = ("postgresql://", "postgres://")
_NETWORK_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")
_BUCKET_NAME = re.compile(r"[a-z0-9][a-z0-9_.-]{2,62}")


def size_in_bytes(text: str) -> int | None:
    """`512m`, `10g`, `1.5g` or a plain byte count as bytes; None when it is not a size."""
    match = _SIZE.match(text.strip())
    if not match:
        return None
    return int(float(match[1]) * _SIZE_UNITS[match[2].lower()])


class SettingsError(Exception):
    """One or more settings are missing or invalid; the message names each and how to fix it."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__(
            "async-code cannot start; fix these settings (environment or .env file):\n"
            + "\n".join(f"  - {problem}" for problem in problems)
            + "\n.env.example lists every setting: copy it to .env and fill it in."
        )


@dataclass(frozen=True)
class Settings:
    github_app_id: str = ""
    github_private_key: str = field(default="", repr=False)
    github_private_key_path: str = ""
    github_webhook_secret: str = field(default="", repr=False)
    github_app_slug: str = "async-code"
    github_api_url: str = DEFAULT_API_URL
    anthropic_api_key: str = field(default="", repr=False)
    anthropic_base_url: str = ""
    openai_api_key: str = field(default="", repr=False)
    openai_base_url: str = ""
    model: str = DEFAULT_MODEL
    data_dir: str = "./data"
    database_url: str = ""
    sandbox_image: str = "python:3.12-bookworm"
    task_timeout: str = "1800"
    max_turns: str = "50"
    sandbox_memory: str = "2g"
    sandbox_cpus: str = "2"
    sandbox_pids: str = "512"
    sandbox_uid: str = "61000"
    sandbox_tmp: str = "1g"
    max_tree_size: str = "10g"
    max_changed_files: str = "1000"
    max_queue: str = "10"
    trigger_label: str = "async-code"
    public_url: str = ""
    webhook_proxy_url: str = ""
    allowed_images: str = ""
    allowed_models: str = ""
    budget_tokens: str = ""
    budget_usd: str = ""
    prices: str = ""
    setup_network: str = ""
    agent: str = DEFAULT_AGENT
    agents: str = ""
    agent_models: str = ""
    # The job queue on PostgreSQL (runner/queue.py).
    lease_seconds: str = "60"
    max_attempts: str = "2"
    shutdown_grace: str = "30"
    # Where a task's full transcript, diff and sandbox log are kept (runner/artifacts.py).
    supabase_url: str = ""
    supabase_key: str = field(default="", repr=False)
    artifact_bucket: str = "async-code-artifacts"
    artifact_link_days: str = "7"
    agent_tools: str = ""

    _ENV = {
        "github_app_id": "GITHUB_APP_ID",
        "github_private_key": "GITHUB_PRIVATE_KEY",
        "github_private_key_path": "GITHUB_PRIVATE_KEY_PATH",
        "github_webhook_secret": "GITHUB_WEBHOOK_SECRET",
        "github_app_slug": "GITHUB_APP_SLUG",
        "github_api_url": "GITHUB_API_URL",
        "anthropic_api_key": "ANTHROPIC_API_KEY",
        "anthropic_base_url": "ANTHROPIC_BASE_URL",
        "openai_api_key": "OPENAI_API_KEY",
        "agent_models": "ASYNC_CODE_AGENT_MODELS",
        "openai_base_url": "OPENAI_BASE_URL",
        "model": "ASYNC_CODE_MODEL",
        "data_dir": "ASYNC_CODE_DATA_DIR",
        "database_url": "DATABASE_URL",
        "sandbox_image": "ASYNC_CODE_SANDBOX_IMAGE",
        "task_timeout": "ASYNC_CODE_TASK_TIMEOUT",
        "max_turns": "ASYNC_CODE_MAX_TURNS",
        "sandbox_memory": "ASYNC_CODE_SANDBOX_MEMORY",
        "sandbox_cpus": "ASYNC_CODE_SANDBOX_CPUS",
        "sandbox_pids": "ASYNC_CODE_SANDBOX_PIDS",
        "sandbox_uid": "ASYNC_CODE_SANDBOX_UID",
        "sandbox_tmp": "ASYNC_CODE_SANDBOX_TMP",
        "max_tree_size": "ASYNC_CODE_MAX_TREE_BYTES",
        "max_changed_files": "ASYNC_CODE_MAX_CHANGED_FILES",
        "max_queue": "ASYNC_CODE_MAX_QUEUE",
        "trigger_label": "ASYNC_CODE_TRIGGER_LABEL",
        "public_url": "ASYNC_CODE_PUBLIC_URL",
        "webhook_proxy_url": "ASYNC_CODE_WEBHOOK_PROXY_URL",
        "allowed_images": "ASYNC_CODE_ALLOWED_IMAGES",
        "allowed_models": "ASYNC_CODE_ALLOWED_MODELS",
        "budget_tokens": "ASYNC_CODE_BUDGET_TOKENS",
        "budget_usd": "ASYNC_CODE_BUDGET_USD",
        "prices": "ASYNC_CODE_PRICES",
        "setup_network": "ASYNC_CODE_SETUP_NETWORK",
        "agent": "ASYNC_CODE_AGENT",
        "agents": "ASYNC_CODE_AGENTS",
        "lease_seconds": "ASYNC_CODE_LEASE_SECONDS",
        "max_attempts": "ASYNC_CODE_MAX_ATTEMPTS",
        "shutdown_grace": "ASYNC_CODE_SHUTDOWN_GRACE",
        "supabase_url": "SUPABASE_URL",
        "supabase_key": "SUPABASE_KEY",
        "artifact_bucket": "ASYNC_CODE_ARTIFACT_BUCKET",
        "artifact_link_days": "ASYNC_CODE_ARTIFACT_LINK_DAYS",
        "agent_tools": "ASYNC_CODE_AGENT_TOOLS",
    }

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> Settings:
        values = {}
        for f in fields(cls):
            name = cls._ENV.get(f.name)
            if name and environ.get(name, "").strip():
                values[f.name] = environ[name].strip() if f.name != "github_private_key" else environ[name]
        return cls(**values)

    def env_name(self, attribute: str) -> str:
        return self._ENV[attribute]

    # Typed views. Only call them after `problems()` said the value is valid.

    @property
    def data_path(self) -> Path:
        return Path(self.data_dir).expanduser().resolve()

    @property
    def workspaces_path(self) -> Path:
        """Where task work trees are cloned; sandboxes bind-mount them by this host path."""
        return self.data_path / "workspaces"

    @property
    def on_postgres(self) -> bool:
        """DATABASE_URL names a PostgreSQL database (else the store is SQLite's)."""
        return self.database_url.startswith(_POSTGRES_SCHEMES)

    @property
    def database_shown(self) -> str:
        """Where the store is, fit for a log: a PostgreSQL URL without its password."""
        return redact_url(self.database_url) if self.on_postgres else str(self.database_path)

    @property
    def database_path(self) -> Path:
        if not self.database_url:
            return self.data_path / "async-code.db"
        return Path(self.database_url.removeprefix("sqlite:///"))

    @property
    def timeout_seconds(self) -> float:
        return float(self.task_timeout)

    @property
    def max_turn_count(self) -> int:
        return int(self.max_turns)

    @property
    def sandbox_user_id(self) -> int:
        return int(self.sandbox_uid)

    @property
    def sandbox_tmp_bytes(self) -> int:
        return size_in_bytes(self.sandbox_tmp) or 0

    @property
    def max_tree_bytes(self) -> int:
        return size_in_bytes(self.max_tree_size) or 0

    @property
    def max_changed_file_count(self) -> int:
        return int(self.max_changed_files)

    @property
    def max_queue_per_repo(self) -> int:
        return int(self.max_queue)

    @property
    def lease(self) -> float:
        """Seconds of heartbeat silence after which a worker counts as dead and its tasks are
        started again elsewhere."""
        return float(self.lease_seconds)

    @property
    def max_attempt_count(self) -> int:
        return int(self.max_attempts)

    @property
    def shutdown_grace_seconds(self) -> float:
        return float(self.shutdown_grace)

    @property
    def on_supabase_storage(self) -> bool:
        """Artifacts go to Supabase Storage (else to the data directory)."""
        return bool(self.supabase_url and self.supabase_key)

    @property
    def artifacts_path(self) -> Path:
        return self.data_path / "artifacts"

    @property
    def artifact_link_seconds(self) -> int:
        return int(self.artifact_link_days) * 24 * 3600

    @property
    def app_unregistered(self) -> bool:
        """No GitHub App credential is set at all: `serve` starts in setup mode to register one.

        Some set and others missing or wrong is a mistake to report, not a first run."""
        return not (self.github_app_id or self.github_private_key or self.github_private_key_path
                    or self.github_webhook_secret)

    @property
    def app_credentials_complete(self) -> bool:
        return bool(self.github_app_id and (self.github_private_key or self.github_private_key_path)
                    and self.github_webhook_secret)

    def missing_for_tasks(self) -> list[str]:
        """Settings a task needs that are not set. The service still serves without them and
        answers each request by naming them; a set but invalid value is a start-up problem."""
        return [] if self.anthropic_api_key else ["ANTHROPIC_API_KEY"]

    def missing_for_agent(self, name: str) -> list[str]:
        """The key agent `name` needs that is not set. Enabling such an agent is no start-up
        problem: a task that asks for it is answered by naming the key, and nothing runs."""
        key = "openai_api_key" if name == "codex" else "anthropic_api_key"
        return [] if getattr(self, key) else [self.env_name(key)]

    @property
    def agent_tools_path(self) -> Path:
        """Where scripts/agent-tools installed the CLI agents' tools: ASYNC_CODE_AGENT_TOOLS, or
        agent-tools in the data directory."""
        if self.agent_tools:
            return Path(self.agent_tools).expanduser().resolve()
        return self.data_path / "agent-tools"

    @property
    def allowed_image_names(self) -> tuple[str, ...]:
        """Images a repository's config may choose; empty means it may not choose one."""
        return _list_items(self.allowed_images)

    @property
    def allowed_model_names(self) -> tuple[str, ...]:
        """Models a repository's config may choose; unset means the default model only."""
        return _list_items(self.allowed_models) or (self.model,)

    @property
    def database_password(self) -> str:
        """The password in a PostgreSQL DATABASE_URL, or "" when it holds none (or cannot be
        read): one more secret kept out of logs and artifacts."""
        try:
            password = urlsplit(self.database_url).password
        except ValueError:
            return ""
        return unquote(password) if password else ""

    @property
    def agent_model_names(self) -> dict[str, str]:
        """Each agent's own model, `codex=gpt-5.5` pairs: what it works with when the request
        names no model. An agent of another provider cannot use the default model; side by
        side, each agent keeps its own."""
        pairs = (item.partition("=") for item in _list_items(self.agent_models))
        return {agent.strip(): model.strip() for agent, _, model in pairs}

    @property
    def enabled_agent_names(self) -> tuple[str, ...]:
        """Agents a request or a repository's config may choose; unset means the default only."""
        return _list_items(self.agents) or (self.agent,)

    @property
    def budget_token_ceiling(self) -> int | None:
        """Most tokens one task may use; None when the operator set no ceiling."""
        return int(self.budget_tokens) if self.budget_tokens else None

    @property
    def budget_usd_ceiling(self) -> float | None:
        """Most US dollars one task may cost; None when the operator set no ceiling."""
        return float(self.budget_usd) if self.budget_usd else None

    @property
    def model_prices(self) -> dict[str, Price]:
        """USD per million tokens for each priced model: the defaults, with ASYNC_CODE_PRICES
        replacing or adding entries."""
        return parse_prices(self.prices)[0]

    def price_of(self, model: str) -> Price | None:
        return self.model_prices.get(model)

    @property
    def setup_network_name(self) -> str | None:
        """The Docker network a repository's `setup` commands run on; None: they run offline."""
        return self.setup_network or None

    def private_key_pem(self) -> str:
        if self.github_private_key:
            # Many hosting panels cannot hold newlines; accept "\n" escapes.
            return self.github_private_key.replace("\\n", "\n")
        return Path(self.github_private_key_path).expanduser().read_text()

    def problems(self, *, store: bool = True, webhooks: bool = False, github: bool = False,
                 agent: bool = False, setup: bool = False) -> list[str]:
        """What is wrong with the settings a command needs, each with how to fix it."""
        found: list[str] = []
        if store:
            found += self._store_problems()
        if setup:
            found += self._setup_problems()
        if webhooks and not self.github_webhook_secret:
            found.append("GITHUB_WEBHOOK_SECRET is not set: use the webhook secret you entered when "
                         "creating the GitHub App (deliveries are never accepted unsigned)")
        if (webhooks or setup) and not (0 < len(self.trigger_label) <= 50
                                        and self.trigger_label.isprintable()):
            found.append(f"ASYNC_CODE_TRIGGER_LABEL={self.trigger_label!r} must be a label name "
                         "GitHub accepts: 1 to 50 printable characters")
        if github:
            found += self._github_problems()
        if webhooks or agent:
            found += self._artifact_problems()
        if agent:
            found += self._agent_problems()
        return found

    def _store_problems(self) -> list[str]:
        if self.on_postgres:
            import psycopg

            try:
                port = psycopg.conninfo.conninfo_to_dict(self.database_url).get("port") or "5432"
                if not all(p.isdigit() for p in str(port).split(",")):
                    raise psycopg.ProgrammingError(port)
            except psycopg.ProgrammingError:
                return [f"DATABASE_URL={redact_url(self.database_url)!r} is not a PostgreSQL URL "
                        "libpq can read: postgresql://USER:PASSWORD@HOST:5432/DATABASE (a password "
                        "holding @, :, / or % is written percent-encoded)"]
            return []
        if self.database_url and not self.database_url.startswith("sqlite:////"):
            return [f"DATABASE_URL={redact_url(self.database_url)!r} is not supported: use "
                    "postgresql://USER:PASSWORD@HOST:5432/DATABASE (or postgres://...) for "
                    "PostgreSQL, an absolute SQLite URL like "
                    "sqlite:////var/lib/async-code/async-code.db, or unset it to use "
                    "ASYNC_CODE_DATA_DIR"]
        return []

    def _github_problems(self) -> list[str]:
        found = []
        if not self.github_app_id.isdigit():
            found.append("GITHUB_APP_ID must be the numeric App ID shown on the App's settings page"
                         + (f" (got {self.github_app_id!r})" if self.github_app_id else " (it is not set)"))
        if not self.github_private_key and not self.github_private_key_path:
            found.append("set GITHUB_PRIVATE_KEY_PATH to the App's private key file (.pem), or "
                         "GITHUB_PRIVATE_KEY to its PEM text")
        else:
            try:
                pem = self.private_key_pem()
            except OSError as error:
                found.append(f"GITHUB_PRIVATE_KEY_PATH cannot be read: {error.strerror} "
                             f"({self.github_private_key_path})")
            else:
                if "PRIVATE KEY-----" not in pem:
                    source = "GITHUB_PRIVATE_KEY" if self.github_private_key else "GITHUB_PRIVATE_KEY_PATH"
                    found.append(f"{source} does not hold a PEM private key: download one from the "
                                 "App's settings page (Private keys → Generate a private key)")
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9-]*", self.github_app_slug):
            found.append(f"GITHUB_APP_SLUG={self.github_app_slug!r} is not a valid App slug "
                         "(letters, digits and hyphens, as in the App's URL)")
        if not re.match(r"^https?://[^/\s]+", self.github_api_url):
            found.append(f"GITHUB_API_URL={self.github_api_url!r} must be an http(s) URL, "
                         f"e.g. {DEFAULT_API_URL} or https://ghe.example.com/api/v3")
        return found

    def _setup_problems(self) -> list[str]:
        found = []
        for attribute, example in (("public_url", "https://async-code.example.com"),
                                   ("webhook_proxy_url", "https://smee.io/AbCd1234")):
            value = getattr(self, attribute)
            if value and not _is_base_url(value):
                found.append(f"{self.env_name(attribute)}={value!r} must be an http(s) URL "
                             f"without a query or fragment, like {example}")
        if not _is_base_url(self.github_api_url):
            found.append(f"GITHUB_API_URL={self.github_api_url!r} must be an http(s) URL, "
                         f"e.g. {DEFAULT_API_URL} or https://ghe.example.com/api/v3")
        return found

    def _agent_problems(self) -> list[str]:
        # A missing ANTHROPIC_API_KEY is not among them: see missing_for_tasks.
        found = []
        for attribute, example in (("anthropic_base_url", "https://api.anthropic.com"),
                                   ("openai_base_url", "https://api.openai.com")):
            value = getattr(self, attribute)
            if value and not _is_base_url(value):
                found.append(f"{self.env_name(attribute)}={value!r} must be an http(s) URL without "
                             f"a query or fragment, like {example} (the API paths, /v1/..., are "
                             "added to it)")
        if self.agent_tools and not Path(self.agent_tools).expanduser().is_absolute():
            found.append(f"ASYNC_CODE_AGENT_TOOLS={self.agent_tools!r} must be an absolute path: "
                         "the directory scripts/agent-tools installed the agent CLIs into")
        # The sandbox user is never root (uid 0).
        for attribute, minimum in (("task_timeout", 1), ("max_turns", 1), ("sandbox_pids", 16),
                                   ("sandbox_uid", 1), ("max_changed_files", 1), ("max_queue", 1)):
            value = getattr(self, attribute)
            if not value.isdigit() or int(value) < minimum:
                found.append(f"{self.env_name(attribute)}={value!r} must be a whole number ≥ {minimum}")
        found += self._queue_problems()
        try:
            if float(self.sandbox_cpus) <= 0:
                raise ValueError
        except ValueError:
            found.append(f"ASYNC_CODE_SANDBOX_CPUS={self.sandbox_cpus!r} must be a positive number, e.g. 2 or 0.5")
        if not _MEMORY.match(self.sandbox_memory):
            found.append(f"ASYNC_CODE_SANDBOX_MEMORY={self.sandbox_memory!r} must be a size like 2g or 512m")
        for attribute, smallest in (("sandbox_tmp", 1024**2), ("max_tree_size", 1024**2)):
            value = getattr(self, attribute)
            if (size_in_bytes(value) or 0) < smallest:
                found.append(f"{self.env_name(attribute)}={value!r} must be a size of at least 1m, "
                             "like 512m or 10g")
        if not self.sandbox_image:
            found.append("ASYNC_CODE_SANDBOX_IMAGE must name a Docker image")
        return (found + self._setup_network_problems() + self._repository_ceiling_problems()
                + self._agent_choice_problems())

    def _artifact_problems(self) -> list[str]:
        found = []
        if bool(self.supabase_url) != bool(self.supabase_key):
            given, missing = (("SUPABASE_URL", "SUPABASE_KEY") if self.supabase_url
                              else ("SUPABASE_KEY", "SUPABASE_URL"))
            found.append(f"{given} is set but {missing} is not: set both to keep task artifacts "
                         "in Supabase Storage (the key is the project's service-role key), or "
                         "neither to keep them in ASYNC_CODE_DATA_DIR")
        if self.supabase_url and not _is_base_url(self.supabase_url):
            found.append(f"SUPABASE_URL={self.supabase_url!r} must be the project's http(s) URL "
                         "with no query or fragment, like https://abcdefgh.supabase.co")
        if not _BUCKET_NAME.fullmatch(self.artifact_bucket):
            found.append(f"ASYNC_CODE_ARTIFACT_BUCKET={self.artifact_bucket!r} is not a bucket name "
                         "Supabase Storage accepts here: 3 to 63 lowercase letters, digits, '.', "
                         "'_' or '-', starting with a letter or digit, like async-code-artifacts")
        days = self.artifact_link_days
        if not (days.isdigit() and 1 <= int(days) <= 365):
            found.append(f"ASYNC_CODE_ARTIFACT_LINK_DAYS={days!r} must be a whole number of days "
                         "from 1 to 365: how long the links to a task's full transcript work")
        return found

    def _queue_problems(self) -> list[str]:
        found = []
        if not _number_at_least(self.lease_seconds, 2):
            found.append(f"ASYNC_CODE_LEASE_SECONDS={self.lease_seconds!r} must be a number of "
                         "seconds ≥ 2: how long a worker may go without a heartbeat before its "
                         "tasks are started again by another (workers beat several times within it)")
        if not self.max_attempts.isdigit() or int(self.max_attempts) < 1:
            found.append(f"ASYNC_CODE_MAX_ATTEMPTS={self.max_attempts!r} must be a whole number ≥ 1: "
                         "how many times a task may be started when the workers running it stop")
        if not _number_at_least(self.shutdown_grace, 0):
            found.append(f"ASYNC_CODE_SHUTDOWN_GRACE={self.shutdown_grace!r} must be a number of "
                         "seconds ≥ 0: how long a stopping worker lets its tasks finish before "
                         "handing them back")
        return found

    def _setup_network_problems(self) -> list[str]:
        name = self.setup_network
        if not name:
            return []
        # These two are not networks a container can be disconnected from.
        if name in ("host", "none"):
            return [f"ASYNC_CODE_SETUP_NETWORK={name!r} cannot be taken away from a sandbox after "
                    "its setup: name a bridge network you created (docker network create ...), "
                    "or unset it so that setup runs offline"]
        if not _NETWORK_NAME.fullmatch(name):
            return [f"ASYNC_CODE_SETUP_NETWORK={name!r} is not a Docker network name: letters, "
                    "digits, '_', '.' and '-', starting with a letter or digit, like "
                    "async-code-setup"]
        return []

    def _repository_ceiling_problems(self) -> list[str]:
        """The lists and budgets that bound what a repository's config may ask for."""
        found = []
        for attribute, example in (("allowed_images", "python:3.12-bookworm,node:22-bookworm"),
                                   ("allowed_models", "claude-sonnet-4-6,claude-haiku-4-5")):
            value = getattr(self, attribute)
            if not all(_LIST_ITEM.fullmatch(item) for item in _list_items(value)):
                found.append(f"{self.env_name(attribute)}={value!r} must be a comma-separated list "
                             f"of names without spaces, e.g. {example}")
        listed_models = _list_items(self.allowed_models)
        if listed_models and self.model not in listed_models:
            found.append(f"ASYNC_CODE_MODEL={self.model!r} is not in ASYNC_CODE_ALLOWED_MODELS: "
                         "add it there, since tasks use it whenever a repository names no model")
        tokens = self.budget_tokens
        if tokens and not (_TOKENS.fullmatch(tokens) and int(tokens) >= 1):
            found.append(f"ASYNC_CODE_BUDGET_TOKENS={tokens!r} must be a whole number "
                         "of tokens ≥ 1, or unset for no ceiling")
        if self.budget_usd and not (_USD.fullmatch(self.budget_usd) and float(self.budget_usd) > 0):
            found.append(f"ASYNC_CODE_BUDGET_USD={self.budget_usd!r} must be a positive amount of "
                         "US dollars like 5 or 2.50, or unset for no ceiling")
        prices, price_problems = parse_prices(self.prices)
        found += price_problems
        if self.budget_usd and not price_problems:
            unpriced = [model for model in self.allowed_model_names if model not in prices]
            if unpriced:
                found.append(f"ASYNC_CODE_BUDGET_USD is set but {', '.join(unpriced)} "
                             f"{'has' if len(unpriced) == 1 else 'have'} no price, so what a task "
                             "costs cannot be known: give it in ASYNC_CODE_PRICES")
        return found


    def _agent_choice_problems(self) -> list[str]:
        found = [f"ASYNC_CODE_AGENTS: {problem}" for name in _list_items(self.agents)
                 if (problem := enabling_problem(name))]
        if not _list_items(self.agents) and (problem := enabling_problem(self.agent)):
            found.append(f"ASYNC_CODE_AGENT: {problem}")
        elif self.agent not in self.enabled_agent_names:
            found.append(f"ASYNC_CODE_AGENT={self.agent!r} is not in ASYNC_CODE_AGENTS: add it "
                         "there, since tasks use it whenever neither the request nor the "
                         "repository names an agent")
        for item in _list_items(self.agent_models):
            agent, equals, model = (part.strip() for part in item.partition("="))
            if not (equals and agent and model):
                found.append(f"ASYNC_CODE_AGENT_MODELS: {item!r} must be an agent and its model, "
                             "like codex=gpt-5.5")
            elif agent not in self.enabled_agent_names:
                found.append(f"ASYNC_CODE_AGENT_MODELS names {agent!r}, which is not an enabled "
                             "agent (ASYNC_CODE_AGENTS)")
            elif model not in self.allowed_model_names:
                found.append(f"ASYNC_CODE_AGENT_MODELS gives {agent} the model {model!r}, which "
                             "is not in ASYNC_CODE_ALLOWED_MODELS: allow it there")
        return found


def _number_at_least(text: str, minimum: float) -> bool:
    try:
        value = float(text)
    except ValueError:
        return False
    return value == value and value != float("inf") and value >= minimum


def _is_base_url(text: str) -> bool:
    """An absolute http(s) URL with a host, no credentials, and nothing after its path."""
    if not text.isprintable() or any(c.isspace() for c in text) or "?" in text or "#" in text:
        return False
    try:
        parts = urlsplit(text)
        port_ok = parts.port is None or parts.port > 0  # .port raises for one that is no number
    except ValueError:
        return False
    return (parts.scheme in ("http", "https") and port_ok and "@" not in parts.netloc
            and bool(re.fullmatch(r"[a-z0-9._-]+|[0-9a-f:.]+", parts.hostname or "")))


def redact_url(url: str) -> str:
    """`url` without the password it may hold, in its user part or its query."""
    try:
        parts = urlsplit(url)
        netloc = parts.netloc
        if "@" in netloc:
            user, host = netloc.rsplit("@", 1)
            netloc = (user.split(":", 1)[0] + ":***" if ":" in user else user) + "@" + host
        query = "&".join("password=***" if item.lower().startswith("password=") else item
                         for item in parts.query.split("&")) if parts.query else ""
        return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))
    except ValueError:
        return "(a URL that cannot be read)"


def _list_items(text: str) -> tuple[str, ...]:
    """The items of a comma-separated setting; blank items (a trailing comma) are dropped."""
    return tuple(item.strip() for item in text.split(",") if item.strip())


def load_settings(environ: Mapping[str, str] | None = None, dotenv_path: str | None = ".env") -> Settings:
    """Settings from the environment, with a `.env` file filling in what the environment lacks."""
    merged: dict[str, str] = {}
    if dotenv_path and os.path.isfile(dotenv_path):
        from dotenv import dotenv_values

        merged.update({k: v for k, v in dotenv_values(dotenv_path).items() if v is not None})
    merged.update(os.environ if environ is None else environ)
    return Settings.from_env(merged)
