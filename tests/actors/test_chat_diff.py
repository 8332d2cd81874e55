"""``/diff`` on a real git repository whose configuration (the agent's to write) names
programs: the fsmonitor hook, a filter driver with a clean and a process command, a textconv
and an external diff. git runs outside Codex's sandbox, so none of them may run; the diff is
still right."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast

from actors.chat_diff import NO_CHANGES, NOT_A_REPOSITORY, show_diff

if TYPE_CHECKING:
    from pathlib import Path


@dataclass
class _Out:
    said: list[str] = field(default_factory=list)
    shown: list[tuple[str, bytes]] = field(default_factory=list)

    async def say(self, text: str, **_: Any) -> None:
        self.said.append(text)

    async def show(self, slot: str, text: str, **kw: Any) -> None:
        self.shown.append((text, kw["document"]))


@dataclass
class _Profile:
    working_directory: str


@dataclass
class _Chat:
    profile: _Profile
    out: _Out = field(default_factory=_Out)


def git(work: Path, *args: str) -> None:
    subprocess.run(["git", "-C", str(work), *args], check=True, capture_output=True)


async def test_diff_runs_no_program_the_repository_names(tmp_path: Path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    chat = _Chat(_Profile(str(work)))
    await show_diff(cast("Any", chat))
    assert chat.out.said == [NOT_A_REPOSITORY]

    git(work, "init", "-q")
    (work / "f.txt").write_text("a\n")
    git(work, "add", "f.txt")
    git(work, "-c", "user.name=t", "-c", "user.email=t@e", "commit", "-qm", "x")
    await show_diff(cast("Any", chat))
    assert chat.out.said[-1] == NO_CHANGES

    marks = tmp_path / "ran"
    (work / ".gitattributes").write_text("* filter=evil diff=evil\n")
    for key, command in (
        ("filter.evil.clean", f"sh -c 'touch {marks}-clean; cat'"),
        ("filter.evil.process", f"sh -c 'touch {marks}-process'"),
        ("diff.evil.textconv", f"sh -c 'touch {marks}-textconv; cat'"),
        ("diff.evil.command", f"sh -c 'touch {marks}-command'"),
        ("diff.external", f"sh -c 'touch {marks}-external'"),
        ("core.fsmonitor", f"touch {marks}-fsmonitor"),
    ):
        git(work, "config", key, command)
    (work / "f.txt").write_text("a\nb\n")
    await show_diff(cast("Any", chat))
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("ran")) == []
    [(summary, patch)] = chat.out.shown
    assert "+1 -0  f.txt" in summary
    assert "new (not in git yet)  .gitattributes" in summary
    assert b"+b\n" in patch
