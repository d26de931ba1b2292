"""Issue 16 item 4 acceptance (proxy side): a SIPp call runs through a real `vipr proxy`
while its numbers and federation certificate change and it gets SIGHUP; the call completes
(BYE 200), a new TLS connection sees the new certificate, the listen address that cannot
change live is named in the log and kept, and a bad config is logged and the old one kept.
The test waits for status output and log lines, not for time."""

from __future__ import annotations

import asyncio
import signal
import ssl
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from tests.conftest import requires_tool
from tests.proxy.proxy_helpers import (
    A_NUMBER,
    B_NUMBER,
    Pki,
    ProxyProcess,
    finish,
    free_port,
    kill,
    make_pki,
    run,
    sipp_cmd,
    write_provider,
)
from vipr.proxy.federation_tls import issue_federation_cert

pytestmark = [requires_tool("sipp"), pytest.mark.timeout(120)]

NEW_NUMBER = "+14085559999"


async def until(what: str, cond: Callable[[], Awaitable[bool]], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not await cond():
        assert time.monotonic() < deadline, f"{what}: not within {timeout}s"
        await asyncio.sleep(0.05)


async def presented_cert(pki: Pki, port: int) -> bytes:
    """The certificate the proxy's federation listener presents on a new connection."""
    ctx: ssl.SSLContext = pki.client_ctx("b.example.org")
    _reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=ctx)
    try:
        der = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
        assert isinstance(der, bytes)
        return der
    finally:
        writer.close()
        await writer.wait_closed()


def der_of(pem: Path) -> bytes:
    return ssl.PEM_cert_to_DER_cert(pem.read_text())


async def test_sighup_mid_call_new_numbers_and_certificate(tmp_path: Path) -> None:
    pki = make_pki(tmp_path)
    a = write_provider(tmp_path, "a", "a.example.net", [A_NUMBER], pki)
    assert a.federation is not None
    old_cert, old_key = pki.leaf("a.example.net")
    proxy = await ProxyProcess(a).start()
    gw = await run(sipp_cmd("uas", a.gateway, calls=1), tmp_path)
    uac = None
    try:
        assert await presented_cert(pki, a.federation) == der_of(old_cert)
        # a call of 3 s to the PSTN gateway, answered, in progress across the reload
        uac = await run(sipp_cmd("uac", free_port(), remote=f"127.0.0.1:{a.internal}",
                                 service=B_NUMBER, calls=1, duration_ms=3000), tmp_path)

        async def answered() -> bool:
            st = await proxy.status()
            return st["dialogs"] == 1

        await until("call answered", answered)

        new_cert, new_key = issue_federation_cert(pki.ca, pki.dir / "ca" / "ca.key",
                                                  "a.example.net", tmp_path / "renewed")
        text = a.config.read_text()
        a.config.write_text(
            text.replace(str(old_cert), str(new_cert)).replace(str(old_key), str(new_key))
            .replace(f'"{A_NUMBER}"', f'"{A_NUMBER}", "{NEW_NUMBER}"')
            .replace(f"listen: \"127.0.0.1:{a.internal}\"", "listen: \"127.0.0.1:1\""))
        assert proxy.proc is not None
        proxy.proc.send_signal(signal.SIGHUP)

        async def reloaded() -> bool:
            return "reload done" in proxy.log_text()

        await until("reload done", reloaded)
        log = proxy.log_text()
        assert "proxy.interfaces.internal.listen cannot change while proxy runs" in log
        assert "numbers: 1 added, 0 removed" in log
        assert "interface federation: new TLS certificate for new connections" in log
        assert await presented_cert(pki, a.federation) == der_of(new_cert)

        rc, err = await finish(uac)      # SIPp's uac: INVITE, 200, ACK, pause, BYE, 200
        assert rc == 0, err + proxy.log_text()
        assert (await finish(gw))[0] == 0
        st = await proxy.status()
        assert st["dialogs"] == 0
        assert st["interfaces"]["internal"]["listen"].endswith(f":{a.internal}")  # type: ignore[index]

        a.config.write_text(text.replace("proxy:", "proxy: [", 1))   # not YAML
        proxy.proc.send_signal(signal.SIGHUP)

        async def failed() -> bool:
            return "reload failed" in proxy.log_text()

        await until("reload failed", failed)
        assert (await proxy.status())["dialogs"] == 0         # still serving
        assert await presented_cert(pki, a.federation) == der_of(new_cert)
    finally:
        await kill(uac)
        await kill(gw)
        await proxy.stop()
