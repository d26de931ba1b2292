# VIPR: one image for every role (`vipr overlay|pvp|proxy|up|pstn|demo ...`).
#   docker build -t vipr .
#   docker compose up            # the demo topology (docker-compose.yml)
FROM python:3.11-slim

# gmpy2 (SRP arithmetic) builds against GMP/MPFR/MPC when no wheel fits
RUN apt-get update \
 && apt-get install -y --no-install-recommends libgmp-dev libmpfr-dev libmpc-dev gcc \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --home-dir /var/lib/vipr --create-home --shell /usr/sbin/nologin vipr

WORKDIR /opt/vipr
COPY pyproject.toml README.md ./
COPY vipr ./vipr
# /data holds keys, the database and sockets: owner-only (vipr creates its files 0600 anyway)
RUN pip install --no-cache-dir . && install -d -m 700 -o vipr -g vipr /data

USER vipr
ENV PYTHONUNBUFFERED=1
VOLUME ["/data"]
ENTRYPOINT ["vipr"]
CMD ["--help"]
