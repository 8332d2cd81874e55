"""The lenient second reading of a JSON-RPC line (`orchestrator.wire.jsonrpc.salvage`)."""

from __future__ import annotations

import msgspec

from orchestrator.wire.jsonrpc import salvage


def test_valid_json_of_an_unexpected_shape_is_kept() -> None:
    salvaged = salvage(b'{"id": 7.0, "result": {"a": [1, 2]}, "error": {"code": "x"}}')
    assert salvaged.readable
    assert salvaged.id == 7
    assert msgspec.json.decode(salvaged.result) == {"a": [1, 2]}
    assert salvaged.error is not None
    assert salvaged.error[0] == -32603


def test_a_request_keeps_its_method_and_params() -> None:
    salvaged = salvage(b'{"id": "r1", "method": "elicitation/create", "params": {"x": true}}')
    assert (salvaged.id, salvaged.method) == ("r1", "elicitation/create")
    assert msgspec.json.decode(salvaged.params) == {"x": True}
    assert salvaged.error is None


def test_garbage_is_unreadable_but_its_id_is_found() -> None:
    assert salvage(b'{"jsonrpc": "2.0", "id": 12, "result": {"con').id == 12
    assert not salvage(b'{"id": "abc", "result": [').readable
    assert salvage(b'{"id": "abc", "result": [').id == "abc"
    assert salvage(b"plain text").id is None
    assert not salvage(b"[1, 2]").readable


def test_nesting_past_the_recursion_limit_does_not_raise() -> None:
    deep = b'{"id": 3, "result": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    salvaged = salvage(deep)
    assert not salvaged.readable
    assert salvaged.id == 3


def test_booleans_are_not_ids() -> None:
    assert salvage(b'{"id": true, "result": 1}').id is None
