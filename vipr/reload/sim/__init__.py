"""The overlay simulator: N instances of the real `ChordProtocol` over an in-memory network in
simulated time (network.py). Used by tests/reload/test_sim.py and bench/overlay_sim.py."""
