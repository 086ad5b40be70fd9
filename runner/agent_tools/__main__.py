"""What scripts/agent-tools asks of the pins and the manifest; not meant to be run by hand.

    python -m runner.agent_tools pin TOOL            package, member, integrity, version (tabs)
    python -m runner.agent_tools integrity FILE      the file's sha512 in npm's form
    python -m runner.agent_tools stale DIR           each tool to (re)install, one a line
    python -m runner.agent_tools record DIR TOOL VERSION
    python -m runner.agent_tools forwarder-version
    python -m runner.agent_tools verify DIR          exit 1 with the problems on stderr
"""

from __future__ import annotations

import sys
from pathlib import Path

from runner import agent_tools


def main(argv: list[str]) -> int:
    match argv:
        case ["pin", tool] if tool in agent_tools.NPM_PINS:
            pin = agent_tools.NPM_PINS[tool]
            print("\t".join((pin.package, pin.member, pin.integrity, pin.version)))
        case ["integrity", file]:
            print(agent_tools.npm_integrity(Path(file)))
        case ["stale", directory]:
            for tool in agent_tools.problems(Path(directory)):
                print(tool)
        case ["record", directory, tool, version]:
            agent_tools.record(Path(directory), tool, version)
        case ["forwarder-version"]:
            print(agent_tools.forwarder_version())
        case ["verify", directory]:
            try:
                agent_tools.verify(Path(directory))
            except agent_tools.AgentToolsError as error:
                print(error, file=sys.stderr)
                return 1
        case _:
            print(__doc__, file=sys.stderr)
            return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
