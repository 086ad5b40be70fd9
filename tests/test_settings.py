"""Settings: defaults, environment, and the start-up errors a user sees."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from app.budget import Price
from app.settings import DEFAULT_MODEL, Settings, load_settings

FAKE_PEM = "-----BEGIN RSA PRIVATE KEY-----\nnot-a-real-key\n-----END RSA PRIVATE KEY-----\n"
GOOD = {"GITHUB_APP_ID": "123", "GITHUB_PRIVATE_KEY": FAKE_PEM, "GITHUB_WEBHOOK_SECRET": "s3cret",
        "ANTHROPIC_API_KEY": "sk-test"}


def test_defaults():
    settings = Settings.from_env({})
    assert settings.github_app_slug == "async-code"
    assert settings.github_api_url == "https://api.github.com"
    assert settings.model == DEFAULT_MODEL and "sonnet-4-5" not in settings.model
    assert (settings.sandbox_image, settings.timeout_seconds, settings.max_turn_count) == (
        "python:3.12-bookworm", 1800.0, 50)
    assert (settings.sandbox_memory, settings.sandbox_cpus, settings.sandbox_pids) == ("2g", "2", "512")
    assert settings.database_path.name == "async-code.db"
    assert settings.database_path.parent == settings.data_path
    assert (settings.lease, settings.max_attempt_count, settings.shutdown_grace_seconds) == (60.0, 2, 30.0)


def test_a_complete_environment_has_no_problems():
    assert Settings.from_env(GOOD).problems(webhooks=True, github=True, agent=True) == []


def test_every_known_agent_may_be_enabled():
    # codex needs OPENAI_API_KEY, but that is named to a task that asks for it, not at start-up.
    settings = Settings.from_env({**GOOD, "ASYNC_CODE_AGENTS": "claude,claude-code,codex",
                                  "ASYNC_CODE_AGENT": "codex"})
    assert settings.problems(webhooks=True, github=True, agent=True) == []
    assert settings.enabled_agent_names == ("claude", "claude-code", "codex")


def test_each_agent_may_have_a_model_of_its_own():
    settings = Settings.from_env({**GOOD, "ASYNC_CODE_AGENTS": "claude,codex",
                                  "ASYNC_CODE_ALLOWED_MODELS": "claude-sonnet-4-6,gpt-5.5",
                                  "ASYNC_CODE_AGENT_MODELS": " codex = gpt-5.5 ,"})
    assert settings.problems(webhooks=True, github=True, agent=True) == []
    assert settings.agent_model_names == {"codex": "gpt-5.5"}


def test_database_url_names_the_sqlite_file(tmp_path):
    settings = Settings.from_env({"DATABASE_URL": f"sqlite:///{tmp_path}/x.db"})
    assert settings.database_path == tmp_path / "x.db"


def test_escaped_newlines_in_the_pem_are_accepted():
    settings = Settings.from_env({**GOOD, "GITHUB_PRIVATE_KEY": FAKE_PEM.replace("\n", "\\n")})
    assert settings.private_key_pem() == FAKE_PEM


def test_secrets_stay_out_of_repr():
    assert "s3cret" not in repr(Settings.from_env(GOOD)) and "sk-test" not in repr(Settings.from_env(GOOD))


@pytest.mark.parametrize(
    "case, change, needs, expected",
    [
        ("no webhook secret", {"GITHUB_WEBHOOK_SECRET": ""}, "webhooks", "GITHUB_WEBHOOK_SECRET"),
        ("no app id", {"GITHUB_APP_ID": ""}, "github", "GITHUB_APP_ID"),
        ("app id not a number", {"GITHUB_APP_ID": "my-app"}, "github", "'my-app'"),
        ("no private key", {"GITHUB_PRIVATE_KEY": ""}, "github", "GITHUB_PRIVATE_KEY_PATH"),
        ("private key not PEM", {"GITHUB_PRIVATE_KEY": "hello"}, "github", "does not hold a PEM"),
        ("private key file missing", {"GITHUB_PRIVATE_KEY": "", "GITHUB_PRIVATE_KEY_PATH": "/nonexistent/key.pem"},
         "github", "cannot be read"),
        ("bad slug", {"GITHUB_APP_SLUG": "my app"}, "github", "GITHUB_APP_SLUG"),
        ("bad api url", {"GITHUB_API_URL": "api.github.com"}, "github", "GITHUB_API_URL"),
        ("bad anthropic url", {"ANTHROPIC_BASE_URL": "localhost:9"}, "agent", "ANTHROPIC_BASE_URL"),
        ("timeout not a number", {"ASYNC_CODE_TASK_TIMEOUT": "30m"}, "agent", "ASYNC_CODE_TASK_TIMEOUT"),
        ("zero turns", {"ASYNC_CODE_MAX_TURNS": "0"}, "agent", "ASYNC_CODE_MAX_TURNS"),
        ("bad memory", {"ASYNC_CODE_SANDBOX_MEMORY": "lots"}, "agent", "ASYNC_CODE_SANDBOX_MEMORY"),
        ("bad cpus", {"ASYNC_CODE_SANDBOX_CPUS": "-1"}, "agent", "ASYNC_CODE_SANDBOX_CPUS"),
        ("too few pids", {"ASYNC_CODE_SANDBOX_PIDS": "3"}, "agent", "ASYNC_CODE_SANDBOX_PIDS"),
        ("root sandbox user", {"ASYNC_CODE_SANDBOX_UID": "0"}, "agent", "ASYNC_CODE_SANDBOX_UID"),
        ("tmp not a size", {"ASYNC_CODE_SANDBOX_TMP": "big"}, "agent", "ASYNC_CODE_SANDBOX_TMP"),
        ("tmp too small", {"ASYNC_CODE_SANDBOX_TMP": "1k"}, "agent", "ASYNC_CODE_SANDBOX_TMP"),
        ("tree limit not a size", {"ASYNC_CODE_MAX_TREE_BYTES": "-5g"}, "agent", "ASYNC_CODE_MAX_TREE_BYTES"),
        ("no changed files", {"ASYNC_CODE_MAX_CHANGED_FILES": "0"}, "agent", "ASYNC_CODE_MAX_CHANGED_FILES"),
        ("sandbox user not a number", {"ASYNC_CODE_SANDBOX_UID": "nobody"}, "agent", "ASYNC_CODE_SANDBOX_UID"),
        ("bad max queue", {"ASYNC_CODE_MAX_QUEUE": "none"}, "agent", "ASYNC_CODE_MAX_QUEUE"),
        ("lease too short", {"ASYNC_CODE_LEASE_SECONDS": "1"}, "agent", "ASYNC_CODE_LEASE_SECONDS='1'"),
        ("lease not a number", {"ASYNC_CODE_LEASE_SECONDS": "1m"}, "agent", "ASYNC_CODE_LEASE_SECONDS"),
        ("lease not finite", {"ASYNC_CODE_LEASE_SECONDS": "nan"}, "agent", "ASYNC_CODE_LEASE_SECONDS"),
        ("no attempt", {"ASYNC_CODE_MAX_ATTEMPTS": "0"}, "agent", "ASYNC_CODE_MAX_ATTEMPTS='0'"),
        ("attempts not whole", {"ASYNC_CODE_MAX_ATTEMPTS": "1.5"}, "agent", "ASYNC_CODE_MAX_ATTEMPTS"),
        ("negative grace", {"ASYNC_CODE_SHUTDOWN_GRACE": "-1"}, "agent", "ASYNC_CODE_SHUTDOWN_GRACE"),
        ("images separated by spaces", {"ASYNC_CODE_ALLOWED_IMAGES": "python:3.12 node:22"}, "agent",
         "ASYNC_CODE_ALLOWED_IMAGES"),
        ("a model name with a space", {"ASYNC_CODE_ALLOWED_MODELS": "claude-sonnet-4-6, ,a b"},
         "agent", "ASYNC_CODE_ALLOWED_MODELS"),
        ("default model not allowed", {"ASYNC_CODE_ALLOWED_MODELS": "claude-haiku-4-5"}, "agent",
         "ASYNC_CODE_MODEL='claude-sonnet-4-6' is not in ASYNC_CODE_ALLOWED_MODELS"),
        ("an unknown agent enabled", {"ASYNC_CODE_AGENTS": "claude,gpt"}, "agent",
         "ASYNC_CODE_AGENTS: 'gpt' is not an agent; the agents are claude, claude-code, codex"),
        ("an unknown default agent", {"ASYNC_CODE_AGENT": "gpt"}, "agent",
         "ASYNC_CODE_AGENT: 'gpt' is not an agent"),
        ("default agent not enabled", {"ASYNC_CODE_AGENT": "codex", "ASYNC_CODE_AGENTS": "claude"},
         "agent", "ASYNC_CODE_AGENT='codex' is not in ASYNC_CODE_AGENTS"),
        ("an agent's model without its agent", {"ASYNC_CODE_AGENT_MODELS": "gpt-5.5"}, "agent",
         "ASYNC_CODE_AGENT_MODELS: 'gpt-5.5' must be an agent and its model, like codex=gpt-5.5"),
        ("an agent's model left empty", {"ASYNC_CODE_AGENTS": "claude,codex",
                                         "ASYNC_CODE_AGENT_MODELS": "codex="}, "agent",
         "ASYNC_CODE_AGENT_MODELS: 'codex=' must be an agent and its model"),
        ("a model for an agent not enabled", {"ASYNC_CODE_AGENT_MODELS": "codex=gpt-5.5",
                                              "ASYNC_CODE_ALLOWED_MODELS": "claude-sonnet-4-6,gpt-5.5"},
         "agent", "ASYNC_CODE_AGENT_MODELS names 'codex', which is not an enabled agent"),
        ("an agent's model not allowed", {"ASYNC_CODE_AGENTS": "claude,codex",
                                          "ASYNC_CODE_AGENT_MODELS": "codex=gpt-5.5"}, "agent",
         "ASYNC_CODE_AGENT_MODELS gives codex the model 'gpt-5.5', which is not in "
         "ASYNC_CODE_ALLOWED_MODELS"),
        ("token budget not a number", {"ASYNC_CODE_BUDGET_TOKENS": "1e6"}, "agent",
         "ASYNC_CODE_BUDGET_TOKENS"),
        ("zero token budget", {"ASYNC_CODE_BUDGET_TOKENS": "0"}, "agent", "ASYNC_CODE_BUDGET_TOKENS"),
        ("unicode digits as a token budget", {"ASYNC_CODE_BUDGET_TOKENS": "١٠٠"}, "agent",
         "ASYNC_CODE_BUDGET_TOKENS"),
        ("dollar sign in the usd budget", {"ASYNC_CODE_BUDGET_USD": "$5"}, "agent",
         "ASYNC_CODE_BUDGET_USD"),
        ("zero usd budget", {"ASYNC_CODE_BUDGET_USD": "0.00"}, "agent", "ASYNC_CODE_BUDGET_USD"),
        ("infinite usd budget", {"ASYNC_CODE_BUDGET_USD": "inf"}, "agent", "ASYNC_CODE_BUDGET_USD"),
        ("prices not json", {"ASYNC_CODE_PRICES": "{sonnet: 3}"}, "agent",
         "ASYNC_CODE_PRICES is not valid JSON"),
        ("prices not an object", {"ASYNC_CODE_PRICES": "[3, 15]"}, "agent",
         "ASYNC_CODE_PRICES must be a JSON object of models"),
        ("prices empty", {"ASYNC_CODE_PRICES": "{}"}, "agent",
         "ASYNC_CODE_PRICES must be a JSON object of models"),
        ("a price list instead of an object", {"ASYNC_CODE_PRICES": '{"claude-sonnet-4-6": [3, 15]}'},
         "agent", "claude-sonnet-4-6 must map to an object with input, output, cache_write, cache_read"),
        ("a priced model name with a space", {"ASYNC_CODE_PRICES": '{"claude sonnet": {}}'}, "agent",
         "'claude sonnet' is not a model name"),
        ("a price missing", {"ASYNC_CODE_PRICES": '{"m": {"input": 3, "output": 15}}'}, "agent",
         "m lacks cache_write, cache_read"),
        ("an unknown price", {"ASYNC_CODE_PRICES":
                              '{"m": {"input": 3, "output": 15, "cache_write": 3.75, '
                              '"cache_read": 0.3, "thinking": 1}}'}, "agent",
         "m has unknown key(s) thinking"),
        ("a negative price", {"ASYNC_CODE_PRICES":
                              '{"m": {"input": -3, "output": 15, "cache_write": 3.75, '
                              '"cache_read": 0.3}}'}, "agent", "m's input must be a number"),
        ("a price as text", {"ASYNC_CODE_PRICES":
                             '{"m": {"input": 3, "output": "15", "cache_write": 3.75, '
                             '"cache_read": 0.3}}'}, "agent", "m's output must be a number"),
        ("an infinite price", {"ASYNC_CODE_PRICES":
                               '{"m": {"input": 3, "output": 15, "cache_write": Infinity, '
                               '"cache_read": 0.3}}'}, "agent", "m's cache_write must be a number"),
        ("a boolean price", {"ASYNC_CODE_PRICES":
                             '{"m": {"input": 3, "output": 15, "cache_write": 3.75, '
                             '"cache_read": true}}'}, "agent", "m's cache_read must be a number"),
        ("a usd budget for a model with no price",
         {"ASYNC_CODE_BUDGET_USD": "5", "ASYNC_CODE_MODEL": "claude-opus-4-1"}, "agent",
         "claude-opus-4-1 has no price"),
        ("host as the setup network", {"ASYNC_CODE_SETUP_NETWORK": "host"}, "agent",
         "ASYNC_CODE_SETUP_NETWORK='host' cannot be taken away"),
        ("none as the setup network", {"ASYNC_CODE_SETUP_NETWORK": "none"}, "agent",
         "unset it so that setup runs offline"),
        ("container mode as the setup network", {"ASYNC_CODE_SETUP_NETWORK": "container:db"},
         "agent", "ASYNC_CODE_SETUP_NETWORK='container:db' is not a Docker network name"),
        ("setup network with a space", {"ASYNC_CODE_SETUP_NETWORK": "setup net"}, "agent",
         "is not a Docker network name"),
        ("mysql url", {"DATABASE_URL": "mysql://db/x"}, "store", "DATABASE_URL='mysql://db/x' is not supported"),
        ("unreadable postgres url", {"DATABASE_URL": "postgresql://u:pw@db/x?x=1"}, "store",
         "DATABASE_URL='postgresql://u:***@db/x?x=1' is not a PostgreSQL URL"),
        ("relative sqlite url", {"DATABASE_URL": "sqlite:///x.db"}, "store", "DATABASE_URL"),
        ("public url without scheme", {"ASYNC_CODE_PUBLIC_URL": "async-code.example.com"}, "setup",
         "ASYNC_CODE_PUBLIC_URL"),
        ("public url with a query", {"ASYNC_CODE_PUBLIC_URL": "https://x.example?a=1"}, "setup",
         "ASYNC_CODE_PUBLIC_URL"),
        ("proxy url not http", {"ASYNC_CODE_WEBHOOK_PROXY_URL": "ftp://smee.io/x"}, "setup",
         "ASYNC_CODE_WEBHOOK_PROXY_URL"),
        ("api url for setup", {"GITHUB_API_URL": "github.com"}, "setup", "GITHUB_API_URL"),
        ("empty label for setup", {"ASYNC_CODE_TRIGGER_LABEL": "x" * 51}, "setup",
         "ASYNC_CODE_TRIGGER_LABEL"),
    ],
    ids=lambda value: value if isinstance(value, str) and " " in value else "",
)
def test_each_bad_setting_is_named(case, change, needs, expected):
    settings = Settings.from_env({**GOOD, **change})
    problems = settings.problems(**{needs: True})
    assert len(problems) == 1, problems
    assert expected in problems[0]


@pytest.mark.parametrize(("env", "unregistered", "complete"), [
    ({}, True, False),
    ({"GITHUB_APP_SLUG": "mine", "ANTHROPIC_API_KEY": "k"}, True, False),
    ({"GITHUB_APP_ID": "1"}, False, False),
    ({"GITHUB_PRIVATE_KEY_PATH": "/k.pem"}, False, False),
    ({"GITHUB_PRIVATE_KEY": FAKE_PEM}, False, False),
    ({"GITHUB_WEBHOOK_SECRET": "s"}, False, False),
    ({"GITHUB_APP_ID": " "}, True, False),  # blank is unset
    (GOOD, False, True),
    ({**GOOD, "GITHUB_APP_ID": "not a number"}, False, True),  # set but wrong: reported
])
def test_setup_mode_is_for_a_service_with_no_app_setting_at_all(env, unregistered, complete):
    settings = Settings.from_env(env)
    assert (settings.app_unregistered, settings.app_credentials_complete) == (unregistered, complete)


@pytest.mark.parametrize(("env", "missing"), [
    ({}, ["ANTHROPIC_API_KEY"]), ({"ANTHROPIC_API_KEY": "  "}, ["ANTHROPIC_API_KEY"]),
    ({"ANTHROPIC_API_KEY": "sk-x"}, []),
])
def test_a_missing_model_key_is_not_a_start_up_problem(env, missing):
    settings = Settings.from_env({**GOOD, **env} if env else
                                 {k: v for k, v in GOOD.items() if k != "ANTHROPIC_API_KEY"})
    assert settings.missing_for_tasks() == missing
    assert settings.problems(webhooks=True, github=True, agent=True) == []


@pytest.mark.parametrize("url", ["https://async-code.example.com", "http://127.0.0.1:8080",
                                 "https://example.com/prefix/", "https://smee.io/AbC-12_x",
                                 "http://[::1]:8080"])
def test_good_public_urls(url):
    settings = Settings.from_env({"ASYNC_CODE_PUBLIC_URL": url, "ASYNC_CODE_WEBHOOK_PROXY_URL": url})
    assert settings.problems(setup=True) == []


@pytest.mark.parametrize("url", ["example.com", "https://", "https://a.example#x", "https://a b.c",
                                 "https://user:pw@example.com", "https://example.com:99999",
                                 "https://example.com:port", "javascript:alert(1)", "https://\x00a",
                                 "https://a\\b.example",
                                 "file:///etc/passwd"])
def test_bad_public_urls(url):
    problems = Settings.from_env({"ASYNC_CODE_PUBLIC_URL": url}).problems(setup=True)
    assert len(problems) == 1 and problems[0].startswith("ASYNC_CODE_PUBLIC_URL=")
def test_repository_ceilings_default_to_the_default_model_no_images_and_no_budget():
    settings = Settings.from_env({})
    assert settings.allowed_image_names == ()
    assert settings.allowed_model_names == (DEFAULT_MODEL,)
    assert (settings.agent, settings.enabled_agent_names) == ("claude", ("claude",))
    assert (settings.budget_token_ceiling, settings.budget_usd_ceiling) == (None, None)


def test_repository_ceilings_are_read_from_the_environment():
    settings = Settings.from_env({
        **GOOD,
        "ASYNC_CODE_ALLOWED_IMAGES": " python:3.12-bookworm, ghcr.io/acme/build@sha256:" + "a" * 64 + ",",
        "ASYNC_CODE_MODEL": "claude-haiku-4-5",
        "ASYNC_CODE_ALLOWED_MODELS": "claude-haiku-4-5,claude-sonnet-4-6",
        "ASYNC_CODE_BUDGET_TOKENS": "2000000",
        "ASYNC_CODE_BUDGET_USD": "7.50",
    })
    assert settings.problems(agent=True) == []
    assert settings.allowed_image_names == ("python:3.12-bookworm", "ghcr.io/acme/build@sha256:" + "a" * 64)
    assert settings.allowed_model_names == ("claude-haiku-4-5", "claude-sonnet-4-6")
    assert (settings.budget_token_ceiling, settings.budget_usd_ceiling) == (2_000_000, 7.5)


def test_prices_default_to_the_published_ones_and_the_setting_replaces_or_adds():
    assert Settings.from_env({}).price_of(DEFAULT_MODEL) == Price(3.0, 15.0, 3.75, 0.30)
    settings = Settings.from_env({**GOOD, "ASYNC_CODE_BUDGET_USD": "5",
                                  "ASYNC_CODE_ALLOWED_MODELS": "claude-sonnet-4-6,claude-opus-4-1",
                                  "ASYNC_CODE_PRICES": (
        '{"claude-sonnet-4-6": {"input": 2, "output": 10, "cache_write": 2.5, "cache_read": 0},'
        ' "claude-opus-4-1": {"input": 15, "output": 75, "cache_write": 18.75, "cache_read": 1.5}}')})
    assert settings.problems(agent=True) == []
    assert settings.price_of(DEFAULT_MODEL) == Price(2.0, 10.0, 2.5, 0.0)
    assert settings.price_of("claude-opus-4-1") == Price(15.0, 75.0, 18.75, 1.5)
    assert settings.price_of("claude-haiku-4-5") == Price(1.0, 5.0, 1.25, 0.10)
    assert settings.price_of("unknown-model") is None


@pytest.mark.parametrize(("value", "network"), [
    ("", None), ("  ", None), ("async-code-setup", "async-code-setup"), (" setup_net.1 ", "setup_net.1"),
    ("bridge", "bridge"),
])
def test_the_setup_network_is_optional(value, network):
    settings = Settings.from_env({**GOOD, "ASYNC_CODE_SETUP_NETWORK": value})
    assert settings.setup_network_name == network
    assert settings.problems(agent=True) == []


def test_tasks_needs_only_the_store_settings():
    assert Settings.from_env({}).problems() == []


def test_dotenv_fills_in_what_the_environment_lacks(tmp_path):
    dotenv = tmp_path / ".env"
    dotenv.write_text("GITHUB_APP_ID=555\nASYNC_CODE_MAX_TURNS=7\n")
    settings = load_settings({"ASYNC_CODE_MAX_TURNS": "9"}, dotenv_path=str(dotenv))
    assert (settings.github_app_id, settings.max_turns) == ("555", "9")


def run_cli(*args, env, cwd):
    return subprocess.run([sys.executable, "-m", "app", *args], env=env, cwd=cwd,
                          capture_output=True, text=True, timeout=60)


def base_env(tmp_path):
    keep = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "PYTHONPATH")}
    return {**keep, "ASYNC_CODE_DATA_DIR": str(tmp_path / "data")}


def test_serve_with_some_app_settings_lists_the_missing_ones_and_no_traceback(tmp_path):
    env = {**base_env(tmp_path), "GITHUB_APP_ID": "123"}
    result = run_cli("serve", env=env, cwd=tmp_path)
    assert result.returncode != 0
    for name in ("GITHUB_WEBHOOK_SECRET", "GITHUB_PRIVATE_KEY_PATH"):
        assert name in result.stderr
    assert "unset GITHUB_APP_ID" in result.stderr  # or register a new App from the setup page
    assert "ANTHROPIC_API_KEY" not in result.stderr  # missing, not wrong: requests are told
    assert "Traceback" not in result.stderr


def test_serve_with_workers_0_needs_only_the_webhook_secret(tmp_path):
    env = {**base_env(tmp_path), "GITHUB_APP_ID": "123"}
    result = run_cli("serve", "--workers", "0", env=env, cwd=tmp_path)
    assert result.returncode != 0
    assert "GITHUB_WEBHOOK_SECRET" in result.stderr
    assert "GITHUB_APP_ID must" not in result.stderr and "ANTHROPIC_API_KEY" not in result.stderr


def test_tasks_runs_with_no_settings_at_all(tmp_path):
    result = run_cli("tasks", "--json", env=base_env(tmp_path), cwd=tmp_path)
    assert (result.returncode, result.stdout.strip()) == (0, "[]"), result.stderr


@pytest.mark.parametrize(("text", "expected"), [
    ("512m", 512 * 1024**2), ("10g", 10 * 1024**3), ("1.5G", 1536 * 1024**2), ("4096", 4096),
    ("2t", 2 * 1024**4), (" 1k ", 1024), ("", None), ("-1g", None), ("10 g", None), ("1gb", None),
])
def test_size_in_bytes(text, expected):
    from app.settings import size_in_bytes

    assert size_in_bytes(text) == expected


def test_postgres_urls_choose_the_postgres_store_and_are_shown_without_password():
    for url in ("postgresql://u:pw@db:5432/x", "postgres://u:pw@db/x?sslmode=require"):
        settings = Settings.from_env({**GOOD, "DATABASE_URL": url})
        assert settings.problems() == [] and settings.on_postgres
        assert "pw" not in settings.database_shown and "u:***@db" in settings.database_shown
    assert not Settings.from_env({**GOOD, "DATABASE_URL": "sqlite:////x.db"}).on_postgres


def test_the_log_leaves_out_every_secret_of_the_settings(capsys):
    import logging

    from app.cli import configure_logging

    secrets_ = {"GITHUB_WEBHOOK_SECRET": "whsec-log-0123456789", "ANTHROPIC_API_KEY": "sk-ant-log-0123456789",
                "OPENAI_API_KEY": "sk-proj-log-0123456789", "SUPABASE_KEY": "sb-service-log-0123456789",
                "DATABASE_URL": "postgresql://async_code:db-pass-log-0123@127.0.0.1:5432/async_code"}
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        configure_logging(Settings.from_env(secrets_))
        logging.getLogger("test").warning("leaked: %s", " ".join(
            [*secrets_.values(), "ghs_" + "t" * 36]))
    finally:
        root.handlers[:], root.level = handlers, level
    logged = capsys.readouterr().err
    assert "leaked:" in logged
    for secret in ("whsec-log-0123456789", "sk-ant-log-0123456789", "sk-proj-log-0123456789",
                   "sb-service-log-0123456789", "db-pass-log-0123", "ghs_" + "t" * 36):
        assert secret not in logged
