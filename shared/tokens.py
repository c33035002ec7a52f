"""Mint bearer tokens for calling the suite.

    python -m shared.tokens mint --subject alice --tenant contoso --scope orbit.read
    python -m shared.tokens init        # create the development key pair if missing

The key pair is the one the services verify with (`SKYBRIDGE_JWT_PRIVATE_KEY` /
`SKYBRIDGE_JWT_PUBLIC_KEY`, by default under `var/keys/`).
"""

from __future__ import annotations

import argparse
import sys

from shared.auth import ensure_dev_keys, minter_from_settings
from shared.config import Settings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m shared.tokens", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("init", help="create the development key pair if it is missing")
    mint = commands.add_parser("mint", help="print a signed token")
    mint.add_argument("--subject", required=True, help="who the token is for")
    mint.add_argument("--tenant", required=True, help="the organisation it acts for")
    mint.add_argument("--scope", action="append", default=[], help="a scope (repeatable)")
    mint.add_argument("--ttl", type=float, default=3600.0, help="lifetime in seconds")
    args = parser.parse_args(argv)

    settings = Settings.from_env()
    if args.command == "init":
        created = ensure_dev_keys(settings.jwt_private_key_path, settings.jwt_public_key_path)
        state = "created" if created else "exists"
        print(f"{state}: {settings.jwt_private_key_path}")
        return 0
    if not args.scope:
        parser.error("give at least one --scope")
    print(minter_from_settings(settings).mint(args.subject, args.scope, args.tenant, args.ttl))
    return 0


if __name__ == "__main__":
    sys.exit(main())
