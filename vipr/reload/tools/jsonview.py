"""JSON view of decoded RELOAD structures (debug CLI, logs)."""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Mapping
from enum import IntEnum
from typing import Any

from vipr.reload.wire.bodies import ErrorCode, ErrorResponse, LeaveReq, MessageCode, decode_body
from vipr.reload.wire.bodies import error_info_json as _error_info
from vipr.reload.wire.codec import ReloadDecodeError
from vipr.reload.wire.envelope import Message, decode_message
from vipr.reload.wire.storage_bodies import DataModel


def to_jsonable(obj: Any) -> Any:
    if isinstance(obj, bytes):
        return obj.hex()
    if isinstance(obj, IntEnum):
        return int(obj)
    if isinstance(obj, bool | int | float | str) or obj is None:
        return obj
    if isinstance(obj, tuple | list):
        return [to_jsonable(x) for x in obj]
    if isinstance(obj, Mapping):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        out: dict[str, Any] = {"_type": type(obj).__name__}
        for f in dataclasses.fields(obj):
            if f.name == "raw_contents":
                continue
            out[f.name] = to_jsonable(getattr(obj, f.name))
        return out
    return repr(obj)


def code_name(code: int) -> str:
    try:
        return MessageCode(code).name.lower()
    except ValueError:
        return f"unknown_0x{code:04x}"


def message_json(msg: Message, models: Mapping[int, DataModel] | None = None) -> dict[str, Any]:
    """Decoded message as a JSON-able dict (body decoded by message code)."""
    out: dict[str, Any] = {
        "header": to_jsonable(msg.header),
        "message_code": msg.code,
        "message": code_name(msg.code),
        "extensions": to_jsonable(msg.contents.extensions),
        "security": to_jsonable(msg.security),
    }
    body = decode_body(msg.code, msg.contents.body, models)
    out["body"] = to_jsonable(body)
    if isinstance(body, ErrorResponse):
        try:
            out["error"] = ErrorCode(body.error_code).name.lower()
        except ValueError:
            out["error"] = f"unknown_0x{body.error_code:04x}"
        out["error_info"] = to_jsonable(_error_info(body))
    if isinstance(body, LeaveReq) and body.overlay_specific_data:
        with contextlib.suppress(ReloadDecodeError):
            out["chord_leave_data"] = to_jsonable(body.leave_data())
    return out


def decode_to_json(data: bytes, models: Mapping[int, DataModel] | None = None) -> dict[str, Any]:
    return message_json(decode_message(data), models)
