"""The VIPR usage over a RELOAD node (DESIGN §4): publish numbers, look them up.

The decisions (which names, fall-back order, Stat and fetch by key, signature checks, storage
times) are the sans-I/O `ViprLookup` and `ClaimStores` of core/vipr_usage.py; this shell sends
the requests they return through the node and reports the answers back.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Protocol

from vipr.metrics import FETCH_FAILURES
from vipr.reload.aio.storage_service import StorageNode
from vipr.reload.core.vipr_usage import ClaimStores, LookupResult, UsageRequest, ViprLookup
from vipr.reload.core.vipr_usage import verify_values as _verify_values
from vipr.reload.errors import ReloadError
from vipr.reload.wire.bodies import PVP_APPLICATION_ID, ErrorCode
from vipr.reload.wire.context import Received, ReloadContext
from vipr.reload.wire.security import TrustStore, message_certificates
from vipr.reload.wire.storage_bodies import DictionaryEntry, StoredData, StoreReq

__all__ = ["LookupResult", "PVP_APPLICATION_ID", "ViprPublisher", "lookup", "verified_values"]

log = logging.getLogger("vipr.reload.aio.vipr_usage")


class UsageNode(StorageNode, Protocol):
    context: ReloadContext


def verified_values(ans: Received, resource: bytes, trust: TrustStore,
                    now: float | None = None) -> list[StoredData]:
    """The VIPR values of a FetchAns whose signatures check out; bad ones are dropped."""
    rejected: list[str] = []
    out = _verify_values(ans.body, message_certificates(ans.message), resource, trust, now,
                         rejected)
    for why in rejected:
        log.warning("dropping a %s", why)
    return out


async def _outcome(node: UsageNode, r: UsageRequest,
                   timeout: float) -> Received | Exception:
    try:
        return await node.request(r.resource, r.body, timeout=timeout)
    except (ReloadError, OSError, TimeoutError) as e:  # Error answers, timeouts, link failures
        return e  # the core decides (the next copy, or a failed store)
    except Exception as e:  # a bug: logged with its traceback, then treated as a failure
        log.exception("request to %s failed", r.resource.hex())
        return e


async def lookup(node: UsageNode, number: str, *, timeout: float = 15.0) -> LookupResult:
    """Fetch the claims on `number`: `N`, then `COPY1N`, then `COPY2N` (DESIGN §4)."""
    core = ViprLookup(number, node.context.trust)
    pending = core.start()
    while pending:
        outcomes = await asyncio.gather(*(_outcome(node, r, timeout) for r in pending))
        nxt: list[UsageRequest] = []
        for r, o in zip(pending, outcomes, strict=True):
            if isinstance(o, Exception):
                FETCH_FAILURES.labels(core.copy_label).inc()
                code = int(getattr(o, "error_code", ErrorCode.REQUEST_TIMEOUT))
                nxt += core.on_failed(r.tag, code, repr(o))
            else:
                nxt += core.on_answer(r.tag, o.body, message_certificates(o.message), time.time())
        pending = nxt
    for note in core.notes:
        log.info("%s", note)
    assert core.result is not None
    return core.result


class ViprPublisher:
    """Publishes this provider's numbers from one node, signing with that node's identity."""

    def __init__(self, node: UsageNode, vservice: str, *, lifetime: float = 86400.0,
                 peer_id: bytes | None = None, clock: Callable[[], float] = time.time,
                 timeout: float = 15.0) -> None:
        self.node = node
        self.core = ClaimStores(node.context.creds, vservice.lower(), int(lifetime),
                                peer_id or node.node_id)
        self.clock = clock
        self.timeout = timeout

    @property
    def vservice(self) -> str:
        return self.core.vservice

    @property
    def peer_id(self) -> bytes:
        return self.core.peer_id

    @property
    def lifetime(self) -> int:
        """The lifetime (s) the next Stores carry; SIGHUP may change it."""
        return self.core.lifetime

    @lifetime.setter
    def lifetime(self, seconds: int) -> None:
        self.core.lifetime = seconds

    def _request(self, res: bytes, entry: DictionaryEntry) -> StoreReq:
        """One signed Store of `entry` at `res` (bench/overlay.py stores single names)."""
        return self.core.store_request(res, entry, self.clock())

    async def publish(self, number: str) -> int:
        """Store the claim under the three names; returns how many stores succeeded."""
        return await self._store_all(number, self.core.publish(number, self.clock()))

    async def withdraw(self, number: str) -> int:
        """Delete our claim (exists=false, DESIGN §4)."""
        return await self._store_all(number, self.core.withdraw(number, self.clock()))

    async def _store_all(self, number: str, stores: list[UsageRequest]) -> int:
        outcomes = await asyncio.gather(*(_outcome(self.node, r, self.timeout) for r in stores))
        ok = 0
        for r, o in zip(stores, outcomes, strict=True):
            if isinstance(o, Exception):  # one copy failing is tolerated; the caller retries
                log.info("store %s at %s failed: %r", number, r.resource.hex(), o)
            else:
                ok += ClaimStores.stored(o.body)
        return ok
