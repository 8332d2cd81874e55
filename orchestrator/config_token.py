"""Where the bot token comes from, what is wrong with it, and who else can read it.

The token is looked for in this order; the first place that has one wins:

1. ``telegram.token_file`` (relative to the config file's folder): a file holding only the
   token; the safe route, since the token then never enters the process environment;
2. ``$CREDENTIALS_DIRECTORY/telegram_bot_token``: systemd's
   ``LoadCredential=telegram_bot_token:/etc/codex-orchestrator/token`` (same reason);
3. ``TELEGRAM_BOT_TOKEN`` in the environment. ``start`` removes it from ``os.environ`` once
   read, so children started later do not inherit it, but ``/proc/<bot pid>/environ`` keeps
   the environment the process started with, readable by every process of the same user;
4. a ``.env`` file in the current directory, then one beside the config file.

`secret_file_warnings` says which of the config file, the ``.env`` files and the token file
other users can read or write (``start`` logs them, ``doctor`` shows them).
"""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path
from typing import TYPE_CHECKING, Final

import msgspec
from dotenv import dotenv_values

from orchestrator import disk
from orchestrator.errors import ConfigError

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

__all__ = [
    "CREDENTIAL_NAME",
    "OPERATOR_TEXT",
    "TOKEN_NOT_IN_FILE",
    "TOKEN_VARIABLE",
    "FoundToken",
    "find_token",
    "secret_file_warnings",
    "token_error",
]

TOKEN_VARIABLE: Final = "TELEGRAM_BOT_TOKEN"

TOKEN_FILE_LIMIT: Final = 4096
"""Bytes read from a token file (a token is under 50): a larger file is the wrong one, and
its start fails the token's shape check."""

CREDENTIAL_NAME: Final = "telegram_bot_token"
"""The systemd credential name: ``LoadCredential=telegram_bot_token:/path/to/token``."""

TOKEN_NOT_IN_FILE: Final = (
    "token file",
    "the token is in the environment or .env, where Codex commands of the same user can read it",
    "put it in a file named by telegram.token_file (chmod 600), or use systemd "
    "LoadCredential=telegram_bot_token:/path",
)
"""``doctor``'s warning when the token did not come from a file: (check, problem, fix)."""

_TOKEN_SHAPE: Final = re.compile(r"^\d+:[A-Za-z0-9_-]{20,}$")
_PLACEHOLDER_MARK: Final = "replace-with"
"""`.env.example` ships ``TELEGRAM_BOT_TOKEN=123456789:replace-with-the-token-from-botfather``:
well-formed, so it must be recognised by this mark, not by its shape."""

_SHARED_BITS: Final = stat.S_IRWXG | stat.S_IRWXO
"""Any access by the group or by others."""

OPERATOR_TEXT: Final = "utf-8-sig"
"""The config's and token file's codec: UTF-8 less a Windows editor's byte order mark (read
as plain UTF-8, such a config failed at "line 1, column 1" and such a token was malformed)."""


class FoundToken(msgspec.Struct, frozen=True, kw_only=True):
    """The token, where it came from, and the files that hold it (the workspace must contain
    none of them): ``.env`` files that define it, and the token file."""

    value: str
    source: str
    from_file: bool
    files: tuple[tuple[str, Path], ...]


def find_token(
    environ: Mapping[str, str],
    cwd: Path,
    config_folder: Path,
    *,
    token_file: Path | None,
    shown: str,
) -> FoundToken:
    """Find the token (module docstring for the order).

    Raises:
        ConfigError: `token_file` is set but cannot be read.
    """
    files: list[tuple[str, Path]] = []
    dotenv_token, dotenv_source = "", ".env"
    for folder in dict.fromkeys((cwd.absolute(), config_folder)):
        dotenv = folder / ".env"
        if dotenv.is_file():
            value = (dotenv_values(dotenv).get(TOKEN_VARIABLE) or "").strip()
            if value:
                files.append(("the .env file", dotenv))
                if not dotenv_token:
                    dotenv_token, dotenv_source = value, str(dotenv)
    if token_file is not None:
        try:
            data = disk.read_operator_file(token_file, TOKEN_FILE_LIMIT)
            value = data.decode(OPERATOR_TEXT).strip()
        except (OSError, UnicodeDecodeError) as error:
            why = (
                "not a file"
                if isinstance(error, disk.NotARegularFile)
                else error.__class__.__name__
            )
            raise ConfigError(
                shown,
                "telegram.token_file",
                f"cannot read {token_file} ({why})",
                "put the token from @BotFather alone in that file (chmod 600), or remove the key",
            ) from None
        files.append(("the token file", token_file))
        return FoundToken(value=value, source=str(token_file), from_file=True, files=tuple(files))
    credentials = environ.get("CREDENTIALS_DIRECTORY", "")
    if credentials:
        credential = os.path.join(credentials, CREDENTIAL_NAME)
        if os.path.isfile(credential):
            data = disk.read_operator_file(Path(credential), TOKEN_FILE_LIMIT)
            value = data.decode(OPERATOR_TEXT).strip()
            return FoundToken(
                value=value,
                source=f"systemd credential {CREDENTIAL_NAME}",
                from_file=True,
                files=tuple(files),
            )
    if environ.get(TOKEN_VARIABLE):
        return FoundToken(
            value=environ[TOKEN_VARIABLE].strip(),
            source="environment",
            from_file=False,
            files=tuple(files),
        )
    return FoundToken(value=dotenv_token, source=dotenv_source, from_file=False, files=tuple(files))


def token_error(value: str, source: str, config_folder: Path) -> ConfigError | None:
    """What is wrong with the token (unset, the `.env.example` placeholder, malformed), if
    anything. `load_config` raises it for ``start``; ``doctor`` shows it in its token row."""
    if not value:
        return ConfigError(
            ".env",
            TOKEN_VARIABLE,
            "the bot token is not set",
            f"put the token from @BotFather in a file named by telegram.token_file (chmod 600), "
            f"or {TOKEN_VARIABLE}=<token> in the environment or in a .env file in the current "
            f"directory or in {config_folder}",
        )
    if _PLACEHOLDER_MARK in value:
        return ConfigError(
            source,
            TOKEN_VARIABLE,
            "still the placeholder from .env.example",
            f"put the token from @BotFather (/mybots → API Token) in {source}",
        )
    if not _TOKEN_SHAPE.match(value):
        return ConfigError(
            source,
            TOKEN_VARIABLE,
            "the bot token does not look like a Telegram token (<digits>:<35 characters>)",
            "copy the token exactly as @BotFather printed it",
        )
    return None


def secret_file_warnings(files: Iterable[tuple[str, Path]]) -> list[str]:
    """One line per file that the group or other users may read or write, with the fix."""
    warnings = []
    for what, path in files:
        try:
            mode = path.stat().st_mode
        except OSError:
            continue
        if mode & _SHARED_BITS:
            warnings.append(
                f"{what} {path} is open to other users (mode {stat.S_IMODE(mode):04o}): "
                f"run chmod 600 {path}"
            )
    return warnings
