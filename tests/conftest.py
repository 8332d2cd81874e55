"""Test-suite charter.

Rules every test here follows (docs/architecture.md, "Rules of the house"):

- Actor logic runs under the ``autojump_clock`` fixture: backoffs, long polls, drain graces and
  intensity windows all pass in virtual time. A deadlock jumps straight to the test's
  ``trio.fail_after`` ceiling and fails at once instead of hanging CI.
- No test sleeps on the wall clock to synchronise. Tests wait on events the fakes expose,
  ``nursery.start``/``task_status``, or ``trio.testing.wait_all_tasks_blocked``.
- Edges are real protocols: the fake Telegram Bot API is an HTTP server on 127.0.0.1
  (``tests/fakes/telegram_server.py``), the fake Codex is a stdio MCP server
  (``tests/fakes/codex_mcp_server.py``), the mock model is a Responses-API SSE server
  (``tests/fakes/mock_model.py``). Tests that use real sockets or subprocesses run on the real
  clock (never autojump while real I/O is in flight) and are bounded by ``trio.fail_after``.
- Tests marked ``integration`` start real subprocesses (the fake MCP server or the real Codex
  0.153.4 against the mock model); they clean up every process they start, checked in /proc.
- No network beyond loopback; no secrets in output.
"""
