"""RELOAD test fixtures: RSA-2048 keys are slow, so CAs and node certificates are session-wide."""

from __future__ import annotations

import pytest
from reload_pki import Pki, make_pki


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))
