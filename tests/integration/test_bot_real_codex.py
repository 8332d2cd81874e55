"""The whole bot as a process, on the real Codex 0.153.4 and the mock model, driven through the
fake Telegram Bot API over HTTP: an exec approval answered with the inline buttons,
``/cancel`` of a running command with every process it left checked in /proc, and `doctor`."""

from __future__ import annotations

import os
import signal
import sys
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

import trio

from tests.bot_process import ENTRY, polling, write_config
from tests.fakes.mock_model import (
    Fail,
    HttpError,
    MockModel,
    Patch,
    Shell,
    Text,
    Turn,
    codex_env,
    last_item_type,
    last_user_text,
    open_mock_model,
    write_codex_home,
)
from tests.fakes.telegram_server import FakeTelegram, StoredMessage, open_fake_telegram
from tests.procfs import cmdline, living, tree, wait_until_gone

if TYPE_CHECKING:
    from collections.abc import AsyncIterator
    from pathlib import Path

TOKEN = "123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw"
ALICE = 4242
CEILING = 150


@asynccontextmanager
async def real_codex_edges(
    codex_binary: Path, tmp_path: Path, *, sandbox: str
) -> AsyncIterator[tuple[MockModel, FakeTelegram, Path]]:
    """The mock model (answering with `model_turns`), the fake Telegram, and a config for a bot
    whose two workers are the real Codex on that model, with `sandbox` and ``on-request``."""
    async with open_mock_model() as model, open_fake_telegram(TOKEN) as tg:
        model.responder = model_turns
        home = write_codex_home(tmp_path / "home", model.base_url)
        config = write_config(
            tmp_path,
            telegram_url=tg.base_url,
            user=ALICE,
            codex_command=[str(codex_binary), "mcp-server"],
            codex_env=codex_env(home),
            batch_window=0.1,
            # A profile outside the sandbox must name its users (profiles are permissions).
            profile={"sandbox": sandbox, "approval_policy": "on-request", "users": [ALICE]},
        )
        yield model, tg, config


def tool_output(body: dict[str, Any]) -> str:
    """The output of the last function call in a Responses API request."""
    for item in reversed(body.get("input", [])):
        if item.get("type") == "function_call_output":
            output = item.get("output", "")
            return output if isinstance(output, str) else str(output)
    return ""


def model_turns(body: dict[str, Any]) -> Turn:
    """Asks to escalate `touch` for prompts naming a file, touches "the file PATH" in the
    sandbox, patches notes.txt, sleeps for "sleep", fails as asked, else echoes."""
    if last_item_type(body) == "function_call_output":
        return [Text(f"Command finished. Output: {tool_output(body)[-300:]}")]
    if last_item_type(body) == "custom_tool_call_output":
        return [Text("Patch step finished.")]
    prompt = last_user_text(body)
    if "patch notes.txt" in prompt:
        return [Patch("*** Begin Patch\n*** Add File: notes.txt\n+from the patch\n*** End Patch\n")]
    if "patch notes2.txt" in prompt:
        return [Patch("*** Begin Patch\n*** Add File: notes2.txt\n+denied\n*** End Patch\n")]
    for name in ("approved.txt", "denied.txt"):
        if f"create {name}" in prompt:
            return [Shell(f"touch {name}", escalated=True, justification=f"to create {name}")]
    if prompt.rstrip().endswith("sleep for a while"):  # not when a recap quotes it
        return [Shell("sleep 300")]
    if "touch the file " in prompt:  # not escalated: the sandbox decides
        return [Shell(f"touch {prompt.split('touch the file ')[-1].split()[0]}")]
    if "start a server" in prompt:  # handed back to the model while it runs
        return [Shell("sleep 299", yield_ms=300)]
    if prompt.rstrip().endswith("fail this turn"):  # not when a recap quotes it
        return [HttpError(500)]
    if prompt.rstrip().endswith("outgrow the context"):
        return [Fail("Your input exceeds the context window.", code="context_length_exceeded")]
    return [Text(f"MOCK-REPLY: {prompt[-60:]}")]


def buttons(message: StoredMessage) -> dict[str, str]:
    """Button text → callback data of a message's inline keyboard."""
    markup = message.reply_markup or {}
    return {
        button["text"]: button["callback_data"]
        for row in markup.get("inline_keyboard", [])
        for button in row
    }


def approval_asking(tg: FakeTelegram, about: str) -> StoredMessage | None:
    for message in tg.messages(ALICE):
        if "Codex asks" in message.text and about in message.text and buttons(message):
            return message
    return None


async def answer_approval(tg: FakeTelegram, about: str, button: str) -> StoredMessage:
    """Wait for the approval message that mentions `about`, then press `button` on it."""
    await tg.wait_for(lambda t: approval_asking(t, about) is not None)
    message = approval_asking(tg, about)
    assert message is not None
    assert set(buttons(message)) == {"✅ Approve", "✅ For session", "⛔ Deny"}
    tg.push_callback(
        chat_id=ALICE,
        user_id=ALICE,
        message_id=message.message_id,
        data=buttons(message)[button],
    )
    return message


def count_texts(tg: FakeTelegram, fragment: str) -> int:
    return sum(fragment in text for text in tg.sent_texts(ALICE))


def has_text(tg: FakeTelegram, fragment: str) -> bool:
    return count_texts(tg, fragment) > 0


async def test_exec_and_patch_approvals_round_trip_through_telegram_buttons(
    codex_binary: Path, tmp_path: Path
) -> None:
    work = tmp_path / "work"
    with trio.fail_after(CEILING):
        async with real_codex_edges(codex_binary, tmp_path, sandbox="read-only") as edges:
            model, tg, config = edges
            async with polling(tg, config, TOKEN) as bot:
                tg.push_message(chat_id=ALICE, user_id=ALICE, text="please create approved.txt")
                approved = await answer_approval(tg, "$ touch approved.txt", "✅ Approve")
                await tg.wait_for(lambda t: has_text(t, "Command finished"))
                assert (work / "approved.txt").exists(), (
                    tg.sent_texts(ALICE),
                    [tool_output(b) for b in model.requests],
                )
                await tg.wait_for(lambda t: approved.text.startswith("✅ Approved: $ "))
                assert not buttons(approved)  # the keyboard is gone once answered

                tg.push_message(chat_id=ALICE, user_id=ALICE, text="please create denied.txt")
                denied = await answer_approval(tg, "$ touch denied.txt", "⛔ Deny")
                await tg.wait_for(lambda t: count_texts(t, "Command finished") == 2)
                assert not (work / "denied.txt").exists()
                await tg.wait_for(lambda t: denied.text.startswith("⛔ Denied: $ "))

                tg.push_message(chat_id=ALICE, user_id=ALICE, text="please patch notes.txt")
                patched = await answer_approval(tg, "• ", "✅ For session")
                assert "change files" in patched.text
                # Named from the working directory, in the list and in the diff's header.
                assert "• notes.txt\n\n--- notes.txt (add)\n+from the patch" in patched.text
                assert str(work) not in patched.text
                await tg.wait_for(lambda t: has_text(t, "Patch step finished."))
                assert (work / "notes.txt").read_text() == "from the patch\n"
                await tg.wait_for(lambda t: patched.text.startswith("✅ Approved for this session"))
                bot.process.send_signal(signal.SIGTERM)
    assert bot.process.returncode == 0, bot.text()
    answers = [call.params.get("text") for call in tg.calls_of("answerCallbackQuery")]
    assert answers == ["Approved", "Denied", "Approved"]
    outputs = [tool_output(body) for body in model.requests if tool_output(body)]
    assert "exited with code 0" in outputs[0]
    assert "rejected" in outputs[-1].lower()  # what the model is told after a denial


async def test_cancel_from_telegram_reaps_every_process_and_the_chat_goes_on(
    codex_binary: Path, tmp_path: Path
) -> None:
    with trio.fail_after(CEILING):
        async with real_codex_edges(codex_binary, tmp_path, sandbox="danger-full-access") as edges:
            model, tg, config = edges
            async with polling(tg, config, TOKEN) as bot:
                workers = tree(bot.process.pid) - {bot.process.pid}
                tg.push_message(chat_id=ALICE, user_id=ALICE, text="hello first")
                await tg.wait_for(lambda t: has_text(t, "MOCK-REPLY"))

                tg.push_message(chat_id=ALICE, user_id=ALICE, text="now sleep for a while")
                sleeper = await wait_for_sleep(bot.process.pid)
                everything = tree(bot.process.pid)
                busy = {pid for pid in workers if sleeper in tree(pid)}
                assert len(busy) == 1, (workers, sleeper)
                doomed = everything & set().union(*(tree(pid) for pid in busy)) | {sleeper}

                tg.push_message(chat_id=ALICE, user_id=ALICE, text="/cancel")
                await tg.wait_for(lambda t: has_text(t, "🛑 Cancelled after"))
                left = await wait_until_gone(doomed)
                assert left == set(), [cmdline(pid) for pid in left]
                assert living(workers - busy) == workers - busy  # the idle worker is untouched

                tg.push_message(chat_id=ALICE, user_id=ALICE, text="and after the cancel")
                await tg.wait_for(lambda t: count_texts(t, "MOCK-REPLY") == 2)
                replacement = tree(bot.process.pid) - {bot.process.pid} - workers
                assert replacement, "the killed worker was not replaced"
                everything |= tree(bot.process.pid)
                bot.process.send_signal(signal.SIGTERM)
    assert bot.process.returncode == 0, bot.text()
    assert living(everything - {bot.process.pid}) == set()
    assert count_texts(tg, "continued in a new one") == 1  # told once that the session moved
    assert count_texts(tg, "Note: a cancel stopped the Codex process that held your earlier") == 1
    last_prompt = last_user_text(model.requests[-1])
    assert "and after the cancel" in last_prompt
    # The fresh thread's recap names the cancelled request, as cancelled.
    assert "User asked: now sleep for a while" in last_prompt
    assert "the user cancelled this request" in last_prompt


async def answers_around_a_failure(tg: FakeTelegram, failing: str) -> None:
    """Alice's "hello first", then `failing` (a turn the model fails), then "the question
    after it", each waited for: two answers around the failure."""
    tg.push_message(chat_id=ALICE, user_id=ALICE, text="hello first")
    await tg.wait_for(lambda t: has_text(t, "MOCK-REPLY: hello first"))
    tg.push_message(chat_id=ALICE, user_id=ALICE, text=failing)
    await tg.wait_for(lambda t: has_text(t, "❌ Codex failed"))
    tg.push_message(chat_id=ALICE, user_id=ALICE, text="the question after it")
    await tg.wait_for(lambda t: count_texts(t, "MOCK-REPLY") == 2)


async def test_after_a_codex_error_the_next_answer_is_not_shifted(
    codex_binary: Path, tmp_path: Path
) -> None:
    """Codex 0.153.4 answers the turn after a failed one with the wrong text when the thread
    is continued: the bot starts a fresh thread with the recap instead."""
    with trio.fail_after(CEILING):
        async with real_codex_edges(codex_binary, tmp_path, sandbox="read-only") as edges:
            model, tg, config = edges
            async with polling(tg, config, TOKEN) as bot:
                await answers_around_a_failure(tg, "now fail this turn")
                tg.push_message(chat_id=ALICE, user_id=ALICE, text="and one more")
                await tg.wait_for(lambda t: count_texts(t, "MOCK-REPLY") == 3)
                bot.process.send_signal(signal.SIGTERM)
    assert bot.process.returncode == 0, bot.text()
    replies = [text for text in tg.sent_texts(ALICE) if "MOCK-REPLY" in text]
    assert "the question after it" in replies[1], replies
    assert "and one more" in replies[2], replies
    assert not has_text(tg, "without writing an answer")
    assert not has_text(tg, "codex_error")
    recap = [b for b in model.requests if "the question after it" in last_user_text(b)]
    assert "Summary of it so far" in last_user_text(recap[0])


async def test_status_says_how_full_the_context_is_and_a_full_one_starts_afresh(
    codex_binary: Path, tmp_path: Path
) -> None:
    """Once Codex finds the session full, the next message starts a fresh one with the
    summary; Codex's token counts name the model's window (258,400 for the mock's model), and
    /status shows how full the conversation's session (now the fresh one) is."""
    with trio.fail_after(CEILING):
        async with real_codex_edges(codex_binary, tmp_path, sandbox="read-only") as edges:
            model, tg, config = edges
            async with polling(tg, config, TOKEN) as bot:
                await answers_around_a_failure(tg, "now outgrow the context")
                tg.push_message(chat_id=ALICE, user_id=ALICE, text="/status")
                await tg.wait_for(lambda t: has_text(t, "Codex workers:"))
                bot.process.send_signal(signal.SIGTERM)
    assert bot.process.returncode == 0, bot.text()
    (status,) = [t for t in tg.sent_texts(ALICE) if "Codex workers:" in t]
    assert "Context: 18 of the model's 258,400 tokens (under 1%)" in status  # the mock's 11 + 7
    (failed,) = [t for t in tg.sent_texts(ALICE) if "❌ Codex failed" in t]
    assert "grown too long for the model to read at once" in failed, failed
    assert "Summary of it so far" in last_user_text(model.requests[-1])


async def test_a_command_handed_back_while_it_runs_is_stopped_when_codex_answers(
    codex_binary: Path, tmp_path: Path
) -> None:
    """Codex 0.153.4 answers while a command it handed back to the model still runs; nothing
    on this backend could stop it later, so it goes when the call ends, and the answer says
    so."""
    with trio.fail_after(CEILING):
        async with real_codex_edges(codex_binary, tmp_path, sandbox="read-only") as edges:
            _model, tg, config = edges
            async with polling(tg, config, TOKEN) as bot:
                tg.push_message(chat_id=ALICE, user_id=ALICE, text="please start a server")
                await tg.wait_for(lambda t: has_text(t, "⏹ Stopped when Codex answered"))
                left = {p for p in tree(bot.process.pid) if cmdline(p).startswith("sleep 299")}
                tg.push_message(chat_id=ALICE, user_id=ALICE, text="/cancel")
                await tg.wait_for(lambda t: has_text(t, "Nothing is running."))
                bot.process.send_signal(signal.SIGTERM)
    assert bot.process.returncode == 0, bot.text()
    assert left == set()  # gone before the answer was sent
    (answer,) = [t for t in tg.sent_texts(ALICE) if "⏹ Stopped when Codex answered" in t]
    assert "Process running with session ID" in answer  # what Codex told the model
    assert "sleep 299" in answer


async def test_a_denied_patch_is_not_reported_as_changed(
    codex_binary: Path, tmp_path: Path
) -> None:
    work = tmp_path / "work"
    with trio.fail_after(CEILING):
        async with real_codex_edges(codex_binary, tmp_path, sandbox="read-only") as edges:
            _model, tg, config = edges
            async with polling(tg, config, TOKEN) as bot:
                tg.push_message(chat_id=ALICE, user_id=ALICE, text="please patch notes2.txt")
                denied = await answer_approval(tg, "notes2.txt", "⛔ Deny")
                await tg.wait_for(lambda t: has_text(t, "Patch step finished."))
                await tg.wait_for(lambda t: denied.text.startswith("⛔ Denied"))
                bot.process.send_signal(signal.SIGTERM)
    assert bot.process.returncode == 0, bot.text()
    assert not (work / "notes2.txt").exists()
    [result] = [text for text in tg.sent_texts(ALICE) if "Patch step finished." in text]
    assert "Files changed" not in result, result


async def test_doctor_passes_against_the_real_codex(codex_binary: Path, tmp_path: Path) -> None:
    with trio.fail_after(CEILING):
        async with real_codex_edges(codex_binary, tmp_path, sandbox="workspace-write") as edges:
            config = edges[2]
            result = await trio.run_process(
                [sys.executable, "-c", ENTRY, "doctor", "--config", str(config)],
                env={**os.environ, "TELEGRAM_BOT_TOKEN": TOKEN},
                capture_stdout=True,
                capture_stderr=True,
                check=False,
            )
    output = (result.stdout + result.stderr).decode()
    assert result.returncode == 0, output
    assert "All checks passed." in output
    lines = output.splitlines()
    assert any("codex version" in line and "0.153.4" in line for line in lines), output
    assert any("custom model provider" in line for line in lines), output
    workers = [line for line in lines if "worker " in line and "codex-reply" in line]
    assert len(workers) == 2, output  # pool_size workers started and listed both tools
    assert TOKEN not in output


async def wait_for_sleep(root: int) -> int:
    """The pid of the `sleep 300` Codex started somewhere under `root`."""
    while True:
        for pid in tree(root):
            if cmdline(pid).startswith("sleep 300"):
                return pid
        await trio.sleep(0.05)
