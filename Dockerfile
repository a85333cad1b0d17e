# idsync: `idsync serve` in a container (docs/operations.md).
#
# Stage 1 builds the wheel and installs it, with its runtime dependencies only, into a virtual
# environment that has no pip. Stage 2 copies that environment onto a clean slim base: no build
# tools, no source tree, no dev dependencies. Migrations travel inside the wheel.

ARG PYTHON_IMAGE=python:3.11-slim

FROM ${PYTHON_IMAGE} AS builder
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
RUN python -m pip install "build==1.2.2.post1"
COPY pyproject.toml README.md alembic.ini ./
COPY sync/ sync/
COPY migrations/ migrations/
RUN python -m build --wheel --outdir /dist \
    && python -m venv --without-pip /opt/idsync \
    && python -m pip --python /opt/idsync/bin/python install /dist/*.whl

FROM ${PYTHON_IMAGE}
# ca-certificates follows Debian's security updates: a pinned version would freeze stale roots and
# break the build as soon as the archive drops it, hence unpinned (hadolint DL3008).
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/*
RUN groupadd --system --gid 10001 idsync \
    && useradd --system --uid 10001 --gid idsync --home-dir /var/lib/idsync --no-create-home \
       --shell /usr/sbin/nologin idsync \
    && install -d -o idsync -g idsync -m 0750 /var/lib/idsync
COPY --from=builder /opt/idsync /opt/idsync
ENV PATH=/opt/idsync/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    IDSYNC_DATABASE_URL=sqlite:////var/lib/idsync/idsync.db \
    IDSYNC_HTTP__PORT=9464 \
    IDSYNC_LOG__FORMAT=json
WORKDIR /var/lib/idsync
VOLUME ["/var/lib/idsync"]
EXPOSE 9464
USER 10001:10001
# Python, not curl (the slim base has none): 0 when /healthz answers 200, 1 otherwise.
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import os, sys, urllib.request as u; p = os.environ.get('IDSYNC_HTTP__PORT', '9464'); sys.exit(0 if u.urlopen(f'http://127.0.0.1:{p}/healthz', timeout=4).status == 200 else 1)"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["idsync"]
CMD ["serve"]
