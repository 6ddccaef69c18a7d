"""Applying PATCH bodies the way the API server does: JSON merge patch (RFC 7386) and JSON patch (RFC 6902)."""

from __future__ import annotations

import copy
from typing import Any

from gpuctl.sim.api.status import ApiError, bad_request

JSON = dict[str, Any]


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386: objects merge key by key, null removes, anything else replaces."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def json_patch(target: JSON, operations: list[Any]) -> JSON:
    """RFC 6902 add/remove/replace/test (what gpuctl sends); a failed test or a bad path is a 422 like the API server's."""
    doc: Any = copy.deepcopy(target)
    for op in operations:
        if not isinstance(op, dict) or "path" not in op or op.get("op") not in ("add", "remove", "replace", "test"):
            raise bad_request(f"the server rejected our request due to an error in our request: bad operation {op!r}")
        *parents, last = [_unescape(part) for part in str(op["path"]).split("/")[1:]]
        node = doc
        for part in parents:
            node = node[int(part)] if isinstance(node, list) else node.get(part) if isinstance(node, dict) else None
            if node is None:
                raise ApiError(422, "Invalid", f"the server rejected our request: path {op['path']} does not exist")
        kind = op["op"]
        if kind == "test":
            if not isinstance(node, dict) or node.get(last) != op.get("value"):
                raise ApiError(422, "Invalid", f"the server rejected our request: test of {op['path']} failed")
        elif kind == "remove":
            if not isinstance(node, dict) or last not in node:
                raise ApiError(422, "Invalid", f"the server rejected our request: unable to remove nonexistent key: {last}")
            del node[last]
        elif isinstance(node, dict):
            if kind == "replace" and last not in node:
                raise ApiError(
                    422,
                    "Invalid",
                    f"the server rejected our request: replace operation does not apply: doc is missing key: {op['path']}",
                )
            node[last] = copy.deepcopy(op.get("value"))
        else:
            raise ApiError(422, "Invalid", f"the server rejected our request: cannot {kind} {op['path']}")
    return doc


def _unescape(part: str) -> str:
    return part.replace("~1", "/").replace("~0", "~")
