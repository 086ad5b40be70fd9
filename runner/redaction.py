"""Secrets taken out of what a task leaves behind, before it is stored or uploaded.

The agent works in a sandbox that never holds a secret, but what it prints can still carry one
(a token pasted into an issue, a key a test fixture echoes). Whatever leaves the runner as an
artifact goes through `Redactor` first: the service's own secrets by value, and anything shaped
like a GitHub token by its pattern.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from app.settings import Settings

REDACTED = "[redacted]"
# GitHub's token prefixes: installation (ghs_), OAuth (gho_), user-to-server (ghu_), personal
# (ghp_), and fine-grained personal tokens.
_GITHUB_TOKEN = r"gh[sopu]_[A-Za-z0-9_]{8,}|github_pat_[A-Za-z0-9_]{20,}"
_SHORTEST_SECRET = 8  # shorter values would redact ordinary words


class Redactor:
    def __init__(self, secrets: Iterable[str]):
        values = sorted({s for s in secrets if len(s) >= _SHORTEST_SECRET}, key=len, reverse=True)
        self._pattern = re.compile("|".join([*map(re.escape, values), _GITHUB_TOKEN]))

    def text(self, text: str) -> str:
        return self._pattern.sub(REDACTED, text)

    def value(self, value: Any) -> Any:
        """A JSON-like value with every string in it redacted, keys included."""
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, dict):
            return {self.value(key): self.value(item) for key, item in value.items()}
        if isinstance(value, (list, tuple)):
            return [self.value(item) for item in value]
        return value


def service_secrets(settings: Settings) -> list[str]:
    """The values of the service's secrets: the model keys, the webhook secret, the App's
    private key (whole, and each line of it, in case only part was printed), the Storage key and
    the database's password."""
    found = [settings.anthropic_api_key, settings.openai_api_key, settings.github_webhook_secret,
             settings.supabase_key, settings.database_password]
    try:
        pem = settings.private_key_pem() if (settings.github_private_key
                                             or settings.github_private_key_path) else ""
    except OSError:
        pem = ""
    if pem.strip():
        found += [pem.strip(), *(line.strip() for line in pem.splitlines()
                                 if "PRIVATE KEY" not in line)]
    return [value for value in found if value]


def redactor_for(settings: Settings) -> Redactor:
    return Redactor(service_secrets(settings))
