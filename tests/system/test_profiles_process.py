"""Profiles are permissions, with the bot as a process behind the fake Telegram: a user sees
and switches to only the profiles named for them, and never an absolute path; a config that
opens the sandbox to everyone does not start."""

from __future__ import annotations

import signal
from typing import TYPE_CHECKING

import trio

from tests.bot_process import cli_environment, polling, run_cli
from tests.fakes.codex_script import FakeCodex
from tests.fakes.telegram_server import open_fake_telegram
from tests.system.test_process import ALICE, CEILING, TOKEN, write_config

if TYPE_CHECKING:
    from pathlib import Path

BOB = 5353


def with_root_profile(config: Path, *, users: str) -> None:
    """Bob allowed too, and a profile ``root`` outside the sandbox working in ``root-work``."""
    (config.parent / "root-work").mkdir()
    text = config.read_text().replace(
        f"allowed_users = [{ALICE}]", f"allowed_users = [{ALICE}, {BOB}]"
    )
    config.write_text(
        f"{text}\n[profiles.root]\nworking_directory = 'root-work'\n"
        f"sandbox = 'danger-full-access'\napproval_policy = 'never'\n{users}"
    )


async def test_a_user_sees_and_uses_only_the_profiles_named_for_them(tmp_path: Path) -> None:
    fake = FakeCodex(tmp_path / "codex")
    with trio.fail_after(CEILING):
        async with open_fake_telegram(TOKEN) as tg:
            config = write_config(tmp_path, tg.base_url, fake)
            with_root_profile(config, users=f"users = [{ALICE}]\n")
            async with polling(tg, config, TOKEN) as bot:
                tg.push_message(chat_id=BOB, user_id=BOB, text="/profile list")
                await tg.wait_for(lambda t: len(t.sent_texts(BOB)) == 1)
                tg.push_message(chat_id=BOB, user_id=BOB, text="/profile root")
                await tg.wait_for(lambda t: len(t.sent_texts(BOB)) == 2)
                tg.push_message(chat_id=BOB, user_id=BOB, text="/profile nosuch")
                await tg.wait_for(lambda t: len(t.sent_texts(BOB)) == 3)
                tg.push_message(chat_id=ALICE, user_id=ALICE, text="/profile list")
                await tg.wait_for(lambda t: len(t.sent_texts(ALICE)) == 1)
                tg.push_message(chat_id=ALICE, user_id=ALICE, text="/profile root")
                await tg.wait_for(lambda t: len(t.sent_texts(ALICE)) == 2)
                bot.process.send_signal(signal.SIGTERM)
    assert bot.process.returncode == 0, bot.text()
    listing, refused, unknown = tg.sent_texts(BOB)
    assert listing == "Profiles:\n• default: work (active)"
    assert str(tmp_path) not in listing
    assert refused == "No profile named “root”. Profiles: default"
    assert unknown == "No profile named “nosuch”. Profiles: default"
    alice_listing, switched = tg.sent_texts(ALICE)
    assert alice_listing == "Profiles:\n• default: work (active)\n◦ root: root-work"
    assert switched.startswith("Switched to profile root (root-work), mode plan.")


async def test_a_profile_outside_the_sandbox_for_everyone_does_not_start(tmp_path: Path) -> None:
    fake = FakeCodex(tmp_path / "codex")
    config = write_config(tmp_path, "http://127.0.0.1:9", fake)
    with_root_profile(config, users="")
    code, output = await run_cli(
        ["start"],
        cwd=tmp_path,
        env=cli_environment(CODEX_CONF_PATH=str(config), TELEGRAM_BOT_TOKEN=TOKEN),
    )
    assert code == 2
    assert "profiles.root.users: not set, but the profile has sandbox" in output
    assert "Fix: name who may use it, e.g. users = [" in output
