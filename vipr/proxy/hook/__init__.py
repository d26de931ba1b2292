"""The proxy role's HTTP/JSON hook for an existing SIP edge (DESIGN §11)."""
