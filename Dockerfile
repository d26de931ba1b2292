# VIPR: one image for every role (`vipr overlay|pvp|proxy|up|pstn|demo ...`).
#   docker build -t vipr .              (podman build --format docker -t vipr . likewise)
#   docker run --rm --network host vipr demo
#   docker compose up -d                # the demo topology (docker-compose.yml)
# Build arguments:
#   BASE      the base image: any Debian-like image with python3 (>= 3.11) and its venv module.
#             Default: the public Python image. tests/testnet/test_container.py builds on a
#             Debian 12 image made with mmdebstrap, since no image registry is reachable there.
#   PIP_CERT  a CA bundle for pip inside the build (a TLS-intercepting proxy), e.g.
#             --build-arg PIP_CERT=/etc/ssl/certs/ca-certificates.crt with that directory
#             mounted read-only (podman build -v /etc/ssl/certs:/etc/ssl/certs:ro).
ARG BASE=python:3.11-slim

# ---- build: a virtualenv in /opt/vipr holding vipr and its dependencies (wheels only: the
# dependencies ship manylinux wheels, so no compiler is needed here or later)
FROM ${BASE} AS build
ARG PIP_CERT=
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 PIP_ONLY_BINARY=:all:
WORKDIR /src
COPY pyproject.toml README.md ./
COPY vipr ./vipr
RUN python3 -m venv /opt/vipr \
 && PIP_CERT="${PIP_CERT}" /opt/vipr/bin/pip install --no-binary=vipr . \
 && /opt/vipr/bin/vipr --version

# ---- runtime: the base image, the virtualenv, a non-root user; nothing to compile with
FROM ${BASE}
RUN (getent group vipr || groupadd --system vipr) \
 && useradd --system --gid vipr --home-dir /var/lib/vipr --create-home \
            --shell /usr/sbin/nologin vipr \
 && install -d -m 700 -o vipr -g vipr /data
COPY --from=build /opt/vipr /opt/vipr
ENV PATH=/opt/vipr/bin:$PATH PYTHONUNBUFFERED=1 HOME=/var/lib/vipr
USER vipr
WORKDIR /data
VOLUME ["/data"]
# the example config's ports: RELOAD link, PVP, SIP internal/pstn (UDP), SIP federation (TLS)
EXPOSE 6084/tcp 7061/tcp 5060/udp 5062/udp 5061/tcp
# `vipr health` asks the roles of VIPR_CONFIG (set it, e.g. -e VIPR_CONFIG=/data/provider.yaml)
# on their local status sockets; exit 0 healthy, 1 not (yet).
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 \
  CMD ["vipr", "health"]
ENTRYPOINT ["vipr"]
CMD ["--help"]
