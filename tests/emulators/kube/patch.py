"""The three patch formats the official client sends, applied the way the API server applies them.

Which format arrives is decided by the client, not by the caller: in kubernetes-client 37
`AppsV1Api.patch_*` sends `application/strategic-merge-patch+json` for a dict body and
`application/json-patch+json` for a list body; `CustomObjectsApi.patch_*` sends
`application/merge-patch+json` unless `_content_type` says otherwise. The difference matters:
a strategic merge of `containers` merges by `name` and keeps a sidecar, a merge patch replaces the
list and drops it. Custom resources have no strategic-merge schema, so the server answers 415.
"""

from __future__ import annotations

import copy
from typing import Any

import jsonpatch

from .status import ApiError, bad_request, unprocessable, unsupported_media_type

STRATEGIC = "application/strategic-merge-patch+json"
MERGE = "application/merge-patch+json"
JSON_PATCH = "application/json-patch+json"
APPLY = "application/apply-patch+yaml"

# Lists merged element-by-element, with the key that identifies an element (from the Go types'
# `patchMergeKey` tags). Lists not named here are replaced whole, as for `atomic` lists.
_MERGE_KEYS = {
    "containers": "name",
    "initContainers": "name",
    "ephemeralContainers": "name",
    "env": "name",
    "volumes": "name",
    "volumeMounts": "mountPath",
    "volumeDevices": "devicePath",
    "imagePullSecrets": "name",
    "hostAliases": "ip",
    "topologySpreadConstraints": "topologyKey",
    "conditions": "type",
    "ownerReferences": "uid",
}
_CONTAINER_LISTS = {"containers", "initContainers", "ephemeralContainers"}


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386: objects merge recursively, null deletes, anything else (lists too) replaces."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def _merge_key(field: str, parent: str) -> str | None:
    if field == "ports":
        return "containerPort" if parent in _CONTAINER_LISTS else "port"
    return _MERGE_KEYS.get(field)


def _strategic_dict(target: Any, patch: dict[str, Any], parent: str) -> Any:
    directive = patch.get("$patch")
    if directive == "delete":
        return None
    body = {k: v for k, v in patch.items() if not k.startswith("$")}
    if directive == "replace":
        return copy.deepcopy(body)
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in body.items():
        if value is None:
            result.pop(key, None)
        elif isinstance(value, dict):
            merged = _strategic_dict(result.get(key), value, key)
            if merged is None:
                result.pop(key, None)
            else:
                result[key] = merged
        elif isinstance(value, list):
            result[key] = _strategic_list(result.get(key), value, key, parent)
        else:
            result[key] = copy.deepcopy(value)
    return result


def _strategic_list(target: Any, patch: list[Any], field: str, parent: str) -> list[Any]:
    key = _merge_key(field, parent)
    if key is None or not all(isinstance(item, dict) for item in patch):
        return copy.deepcopy(patch)
    if any(item.get("$patch") == "replace" for item in patch):
        return [copy.deepcopy(i) for i in patch if "$patch" not in i]
    result = [copy.deepcopy(i) for i in (target if isinstance(target, list) else [])]
    for item in patch:
        if key not in item:
            raise bad_request(f"map: {item} does not contain declared merge key: {key}")
        index = next((n for n, cur in enumerate(result) if isinstance(cur, dict) and cur.get(key) == item[key]), None)
        if item.get("$patch") == "delete":
            if index is not None:
                result.pop(index)
            continue
        if index is None:
            result.append(_strategic_dict({}, item, field))
        else:
            result[index] = _strategic_dict(result[index], item, field)
    return result


def strategic_merge_patch(target: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    """Strategic merge for built-in kinds: keyed lists merge by key, `$patch: delete|replace` honoured."""
    if not isinstance(patch, dict):
        raise bad_request("strategic merge patch must be a JSON object")
    return _strategic_dict(target, patch, "") or {}


def json_patch(target: dict[str, Any], operations: Any) -> dict[str, Any]:
    """RFC 6902 operations; a failed `test` or a bad path is a 422 as on the real server."""
    if not isinstance(operations, list):
        raise bad_request("json patch must be a JSON array of operations")
    try:
        return jsonpatch.JsonPatch(operations).apply(copy.deepcopy(target))
    except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException, KeyError, TypeError) as exc:
        raise unprocessable(f"the server rejected our request due to an error in our request: {exc}") from exc


def apply(content_type: str, target: dict[str, Any], patch: Any, *, builtin: bool) -> dict[str, Any]:
    """Dispatch on the request's media type; unknown or unsupported types raise the real 415."""
    media = content_type.split(";")[0].strip().lower()
    if media == STRATEGIC and builtin:
        return strategic_merge_patch(target, patch)
    if media == MERGE:
        if not isinstance(patch, dict):
            raise bad_request("merge patch must be a JSON object")
        return merge_patch(target, patch)
    if media == JSON_PATCH:
        return json_patch(target, patch)
    if media == APPLY:
        raise ApiError(415, "UnsupportedMediaType", "server-side apply is not modelled by the emulator")
    accepted = (JSON_PATCH, MERGE, APPLY) if not builtin else (JSON_PATCH, MERGE, APPLY, STRATEGIC)
    raise unsupported_media_type(accepted)
