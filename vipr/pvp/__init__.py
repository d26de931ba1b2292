"""PVP: the VIPR validation protocol (DESIGN §5): credentials, messages, TLS-SRP over asyncio,
server (terminating side, issues tickets), client (originating side, learns routes), daemon."""
