"""Schema drift: every method and field name the app-server wire modules send or read exists
in the JSON schema that the pinned Codex 0.171.0 generates (``codex app-server
generate-json-schema``). The server ignores unknown params fields silently and we decode
tolerantly, so a renamed field would otherwise fail only as missing data at runtime
(measured on Codex 0.171.0)."""

from __future__ import annotations

import json
import subprocess
from typing import TYPE_CHECKING, Any

import msgspec
import msgspec.inspect as mi
import pytest

from orchestrator.wire.codex_app_server import (
    CLIENT_NOTIFICATIONS,
    CLIENT_REQUESTS,
    CODEX_APP_SERVER_VERSION,
    EXPERIMENTAL_METHODS,
    SERVER_REQUESTS,
)
from orchestrator.wire.codex_app_server_notifications import ITEM_TYPES, SERVER_NOTIFICATIONS
from orchestrator.wire.jsonrpc import Incoming, RpcError
from tests.integration.app_server_fixtures import app_server_codex

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

__all__ = ["app_server_codex"]

Schema = dict[str, Any]


class Bundle:
    """The generated ``codex_app_server_protocol.schemas.json`` with $ref resolution."""

    def __init__(self, folder: Path) -> None:
        self.root: Schema = json.loads(
            (folder / "codex_app_server_protocol.schemas.json").read_text()
        )

    def resolve(self, node: Schema) -> Schema:
        while "$ref" in node:
            target: Any = self.root
            for part in node["$ref"].removeprefix("#/").split("/"):
                target = target[part]
            node = target
        return node

    def definition(self, name: str) -> Schema | None:
        definitions = self.root["definitions"]
        found = definitions.get(name) or definitions["v2"].get(name)
        return found if isinstance(found, dict) else None

    def methods(self, union: str) -> dict[str, Schema]:
        """Method name → its message schema, for ClientRequest, ServerNotification, …"""
        return {
            entry["properties"]["method"]["enum"][0]: entry
            for entry in self.root["definitions"][union]["oneOf"]
        }

    def objects(self, node: Schema) -> Iterator[Schema]:
        """Every object schema `node` can be: through $ref, anyOf/oneOf/allOf and array items."""
        node = self.resolve(node)
        if "properties" in node:
            yield node
        for key in ("anyOf", "oneOf", "allOf"):
            for member in node.get(key, []):
                yield from self.objects(member)
        if isinstance(node.get("items"), dict):
            yield from self.objects(node["items"])


def structs_in(kind: Any) -> Iterator[mi.StructType]:
    """The struct types inside a field type (through unions and lists)."""
    if isinstance(kind, mi.StructType):
        yield kind
    elif isinstance(kind, mi.UnionType):
        for member in kind.types:
            yield from structs_in(member)
    elif isinstance(kind, (mi.ListType, mi.TupleType, mi.FrozenSetType, mi.SetType)):
        yield from structs_in(getattr(kind, "item_type", None))


def missing_fields(
    bundle: Bundle, struct: type[msgspec.Struct], node: Schema, path: str
) -> list[str]:
    """Fields of `struct` (recursively) that the schema `node` does not have."""
    info = mi.type_info(struct)
    assert isinstance(info, mi.StructType)
    return _missing(bundle, info, node, path)


def _missing(bundle: Bundle, info: mi.StructType, node: Schema, path: str) -> list[str]:
    candidates = list(bundle.objects(node))
    if info.tag_field is not None:
        candidates = [
            candidate
            for candidate in candidates
            if info.tag in candidate["properties"].get(info.tag_field, {}).get("enum", [])
        ]
        if not candidates:
            return [f"{path} (no variant tagged {info.tag_field}={info.tag!r})"]
    properties: Schema = {}
    for candidate in candidates:
        properties.update(candidate["properties"])
    missing: list[str] = []
    for field in info.fields:
        where = f"{path}.{field.encode_name}"
        if field.encode_name not in properties:
            missing.append(where)
            continue
        if properties[field.encode_name] is True:  # "result": true (anything)
            continue
        for sub in structs_in(field.type):
            missing += _missing(bundle, sub, properties[field.encode_name], where)
    return missing


def generate(binary: Path, out: Path, home: Path, *, experimental: bool) -> Bundle:
    home.mkdir(exist_ok=True)
    argv = [str(binary), "app-server", "generate-json-schema", "--out", str(out)]
    subprocess.run(
        [*argv, "--experimental"] if experimental else argv,
        check=True,
        capture_output=True,
        timeout=120,
        env={"HOME": str(home), "CODEX_HOME": str(home), "PATH": "/usr/bin:/bin"},
    )
    return Bundle(out)


@pytest.fixture(scope="module")
def schemas(
    app_server_codex: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Bundle, Bundle]:
    """(stable, experimental) schemas of the pinned binary."""
    version = subprocess.run(
        [str(app_server_codex), "--version"], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    assert CODEX_APP_SERVER_VERSION in version
    folder = tmp_path_factory.mktemp("schema")
    stable = generate(app_server_codex, folder / "stable", folder / "home", experimental=False)
    experimental = generate(app_server_codex, folder / "exp", folder / "home", experimental=True)
    return stable, experimental


def test_every_method_we_use_exists(schemas: tuple[Bundle, Bundle]) -> None:
    stable, experimental = schemas
    requests = experimental.methods("ClientRequest")
    assert set(CLIENT_REQUESTS) <= set(requests)
    stable_requests = stable.methods("ClientRequest")
    assert set(CLIENT_REQUESTS) - EXPERIMENTAL_METHODS <= set(stable_requests)
    assert not EXPERIMENTAL_METHODS & set(stable_requests)  # the opt-in is really needed
    assert set(stable.methods("ClientNotification")) >= CLIENT_NOTIFICATIONS
    assert set(SERVER_NOTIFICATIONS) <= set(stable.methods("ServerNotification"))
    assert set(SERVER_REQUESTS) <= set(stable.methods("ServerRequest"))


def test_every_field_we_send_or_read_exists(schemas: tuple[Bundle, Bundle]) -> None:
    _stable, bundle = schemas
    missing: list[str] = []
    checked = 0
    for union, table in (("ClientRequest", CLIENT_REQUESTS), ("ServerRequest", SERVER_REQUESTS)):
        messages = bundle.methods(union)
        for method, (params, result) in table.items():
            params_node = messages[method]["properties"]["params"]
            missing += missing_fields(bundle, params, params_node, f"{method} params")
            # Nullable params (``account/rateLimits/read``) are an anyOf of the $ref and null.
            ref = params_node.get("$ref") or next(
                member["$ref"] for member in params_node.get("anyOf", []) if "$ref" in member
            )
            name = ref.rsplit("/", 1)[1].removesuffix("Params") + "Response"
            response = bundle.definition(name)
            assert response is not None, f"no {name} for {method}"
            missing += missing_fields(bundle, result, response, f"{method} result")
            checked += 2
    notifications = bundle.methods("ServerNotification")
    for method, params in SERVER_NOTIFICATIONS.items():
        node = notifications[method]["properties"]["params"]
        missing += missing_fields(bundle, params, node, f"{method} params")
        checked += 1
    thread_item = bundle.definition("ThreadItem")
    assert thread_item is not None
    for item in ITEM_TYPES:
        missing += missing_fields(bundle, item, thread_item, f"ThreadItem {item.__name__}")
    envelopes = [
        bundle.definition(name) for name in ("JSONRPCRequest", "JSONRPCResponse", "JSONRPCError")
    ]
    merged: Schema = {"anyOf": envelopes}
    missing += missing_fields(bundle, Incoming, merged, "message")
    error = bundle.definition("JSONRPCErrorError")
    assert error is not None
    missing += missing_fields(bundle, RpcError, error, "error")
    assert checked == 2 * (len(CLIENT_REQUESTS) + len(SERVER_REQUESTS)) + len(SERVER_NOTIFICATIONS)
    assert missing == []


def test_the_checker_sees_a_misspelt_field(schemas: tuple[Bundle, Bundle]) -> None:
    _stable, bundle = schemas

    class Misspelt(msgspec.Struct, rename="camel"):
        thread_id: str
        exclude_turn: bool  # the schema says excludeTurns

    node = bundle.methods("ClientRequest")["thread/resume"]["properties"]["params"]
    assert missing_fields(bundle, Misspelt, node, "thread/resume params") == [
        "thread/resume params.excludeTurn"
    ]
