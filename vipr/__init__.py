"""VIPR: Verification Involving PSTN Reachability.

Learns direct SIP routes between VoIP providers, number by number, proven by PSTN calls.
"""

__version__ = "0.1.0"
