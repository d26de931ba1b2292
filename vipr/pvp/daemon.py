"""`vipr pvp`: the PVP daemon — server, client and the pvp.sock local API (DESIGN §2, §5).

pvp.sock methods: `vcr_added` {"id"} → {"queued"}; `validate` {"number"} → {"outcome",
"detail"} (refused with "paused" while the store is unreachable); `status` {} → counters of
server and client, and "store": running | paused (vipr.pvp.pause).
"""

from __future__ import annotations

import asyncio
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from vipr.config import ProviderConfig
from vipr.daemon import notify_ready, on_reload, set_status, tune_gc
from vipr.e164 import E164Error, normalize_e164
from vipr.ipc import IpcError, IpcServer
from vipr.pvp.client import PvpClient
from vipr.pvp.outer import OuterTls
from vipr.pvp.pause import StoreWatch
from vipr.pvp.server import DomainPolicy, PvpServer, RateLimiter
from vipr.pvp.srp import gmpy2_release_gil
from vipr.pvp.vlog import ValidationLog
from vipr.store import Store, StoreError
from vipr.store.events import StoreEvent

__all__ = ["PvpDaemon", "pvp_main"]

log = logging.getLogger("vipr.pvp")

# Worker threads for SRP big-number work when offloading (off by default: srp.default_offload).
WORKERS = 2
HOUSEKEEPING_INTERVAL = 600.0  # seconds between retention purges


class PvpDaemon:
    def __init__(self, cfg: ProviderConfig, store: Store, *, offload: bool | None = None,
                 tls: OuterTls | None = None, **client_kw: Any) -> None:
        """`tls`: the outer TLS (DESIGN §5 profile v2); None = from the overlay section of
        `cfg`. The daemon has no plain mode."""
        self.cfg = cfg
        self.store = store
        self.executor = ThreadPoolExecutor(WORKERS, thread_name_prefix="pvp-srp",
                                           initializer=gmpy2_release_gil)
        self.vlog = ValidationLog(store)
        self.watch = StoreWatch(store)
        tls = tls or OuterTls.from_config(cfg)  # DESIGN §5 profile v2: always
        self.server = PvpServer(cfg, store, tls=tls, executor=self.executor, offload=offload,
                                vlog=self.vlog, watch=self.watch)
        self.client = PvpClient(cfg, store, tls=tls, executor=self.executor, offload=offload,
                                vlog=self.vlog, watch=self.watch, **client_kw)
        self._housekeeping: asyncio.Task[None] | None = None
        self._watching: asyncio.Task[None] | None = None
        self.ipc = IpcServer(cfg.runtime_dir / "pvp.sock", {
            "vcr_added": self._vcr_added, "validate": self._validate, "status": self._status,
        })

    async def start(self) -> None:
        await self.server.start()
        await self.ipc.start()
        await self.client.start()
        self._housekeeping = asyncio.create_task(self._housekeep())
        self._watching = asyncio.create_task(self.watch.run())

    async def purge(self) -> tuple[int, int]:
        """Retention (DESIGN §8): drop VCRs and validation records past their time."""
        now = time.time()
        vcrs = await self.store.purge_vcrs(now - self.cfg.retention.vcr)
        recs = await self.store.purge_validations(now - self.cfg.retention.validation_log)
        if vcrs or recs:
            log.info("retention: purged %d VCRs and %d validation records", vcrs, recs)
        return vcrs, recs

    async def _housekeep(self) -> None:
        while True:
            try:
                await self.purge()
            except StoreError as e:
                log.warning("retention purge failed: %s", e)
            await asyncio.sleep(HOUSEKEEPING_INTERVAL)

    async def close(self) -> None:
        for task in (self._housekeeping, self._watching):
            if task is not None:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        await self.ipc.close()
        await self.client.close()
        await self.server.close()
        await self.vlog.close()
        self.executor.shutdown(wait=False, cancel_futures=True)

    async def on_store_event(self, e: StoreEvent) -> None:
        if e.kind == "vcr_added":
            await self.client.enqueue(e.id)
        elif e.kind == "resync":   # the database is back: what failed meanwhile, at once
            await self.client.scan()

    async def _vcr_added(self, params: dict[str, Any]) -> dict[str, Any]:
        vid = params.get("id")
        if not isinstance(vid, int) or isinstance(vid, bool):
            raise IpcError("bad-request", "id must be an integer")
        return {"queued": await self.client.enqueue(vid)}

    async def _validate(self, params: dict[str, Any]) -> dict[str, Any]:
        number = params.get("number")
        if not isinstance(number, str):
            raise IpcError("bad-request", "number must be a string")
        try:
            number = normalize_e164(number)
        except E164Error as e:
            raise IpcError("bad-request", str(e)) from None
        if self.watch.paused:
            raise IpcError("paused", "pvp is paused: the database is unreachable "
                           f"({self.watch.reason}); try again when it answers")
        return (await self.client.validate_number(number)).to_dict()

    async def _status(self, params: dict[str, Any]) -> dict[str, Any]:
        return {"server": self.server.status(), "client": self.client.status(),
                "store": self.watch.status()}

    async def apply_config(self, cfg: ProviderConfig) -> None:
        """SIGHUP (`vipr.hot_reload`): the outer TLS certificates for new connections (the
        same Node-IDs: a node's identity cannot change live), the domain lists, the rate
        limit and the delays; open connections and validations in progress are untouched."""
        old = self.server.tls
        tls = OuterTls.from_config(cfg)
        if old is not None and tls.node_ids != old.node_ids:
            log.warning("reload: the overlay certificates name other Node-IDs (%s -> %s): "
                        "the node identity cannot change while pvp runs: kept; restart to "
                        "apply", ",".join(old.node_ids), ",".join(tls.node_ids))
            tls = old
        elif old is not None:
            log.info("outer TLS: new certificates for new connections (%s)", cfg.overlay.cert)
        for part in (self.server, self.client):
            part.cfg = cfg
            part.tls = tls
        if cfg.pvp.max_attempts_per_minute != self.server.limiter.limit:
            self.server.limiter = RateLimiter(cfg.pvp.max_attempts_per_minute)
        self.server.policy = DomainPolicy(cfg.pvp.allow_domains, cfg.pvp.deny_domains)

    def status_line(self) -> str:
        """STATUS= for systemd: listening, validations so far."""
        s, c = self.server.counters, self.client.counters
        host, port = self.server.address
        return (f"listening on {host}:{port}; validations served {s.ok} ok / {s.failed} "
                f"failed, requested {c.learned} learned / {c.failed} failed")


async def pvp_main(cfg: ProviderConfig, stop: asyncio.Event) -> None:
    async with Store.open(cfg.database) as store:
        d = PvpDaemon(cfg, store)
        try:
            await d.start()
            # Issue 15: a VCR recorded by a proxy on another host (PostgreSQL only).
            await store.listen(d.on_store_event)
            tune_gc()
            host, port = d.server.address
            on_reload(d.apply_config)     # SIGHUP (vipr.hot_reload)
            notify_ready(f"pvp server on {host}:{port}")
            set_status(d.status_line)
            log.info("pvp ready (server %s:%d, socket %s)", host, port, d.ipc.path)
            await stop.wait()
        finally:
            await d.close()
