"""`runctl init`, `runctl config show`, `runctl config validate`."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from runctl_tui.cli.common import EXIT_FAILURE, EXIT_OK, Context, fail, print_json
from runctl_tui.core.config import effective_toml, example_toml, iter_keys
from runctl_tui.core.secrets import redact

ORDER = 10


def register(subparsers: Any) -> None:
    """Add `init` and `config` to the `runctl` parser."""
    init = subparsers.add_parser("init", help="write a commented .runctl.toml here")
    init.add_argument("--force", action="store_true", help="overwrite an existing file")
    init.add_argument(
        "--path", default=".runctl.toml", help="where to write (default: %(default)s)"
    )
    init.set_defaults(handler=cmd_init)

    config = subparsers.add_parser("config", help="show or validate the effective configuration")
    actions = config.add_subparsers(dest="config_command", metavar="ACTION", required=True)
    show = actions.add_parser("show", help="print the effective config, secrets redacted")
    show.add_argument("--json", action="store_true", help="as JSON")
    show.set_defaults(handler=cmd_show)
    validate = actions.add_parser("validate", help="check the config file and environment")
    validate.set_defaults(handler=cmd_validate)


def cmd_init(args: argparse.Namespace, context: Context) -> int:
    """Write the commented example configuration, refusing to overwrite without --force."""
    path = Path(args.path)
    if path.exists() and not args.force:
        return fail(f"{path} already exists; use --force to overwrite it", EXIT_FAILURE)
    path.write_text(example_toml(), encoding="utf-8")
    os.chmod(path, 0o600)
    print(f"Wrote {path}. Edit it, then check it with: runctl config validate")
    return EXIT_OK


def cmd_show(args: argparse.Namespace, context: Context) -> int:
    """Print the effective configuration with every secret redacted."""
    config = context.config
    if args.json:
        data: dict[str, Any] = {"source": str(config.source) if config.source else None}
        for section, key, value, meta in iter_keys(config):
            data.setdefault(section, {})[key] = redact(value) if meta["secret"] and value else value
        data["overrides"] = config.overrides
        print_json(data)
        return EXIT_OK
    origin = str(config.source) if config.source else "built-in defaults (no config file found)"
    print(f"# effective configuration from {origin}")
    print(effective_toml(config), end="")
    return EXIT_OK


def cmd_validate(args: argparse.Namespace, context: Context) -> int:
    """Load the configuration; errors surface as exit 3 from the CLI's error handling."""
    config = context.config
    origin = str(config.source) if config.source else "built-in defaults (no config file found)"
    print(
        f"OK: {origin}"
        + (f" (+{len(config.overrides)} from the environment)" if config.overrides else "")
    )
    return EXIT_OK
