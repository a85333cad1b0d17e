# idsync: `idsync serve` in a container (docs/operations.md).
#
# Stage 1 installs the locked runtime dependencies (requirements.lock, hashed), then builds the
# wheel and installs it without resolving anything, into a virtual environment that has no pip.
# The simulator's starlette/uvicorn are an extra the image does not install. Stage 2 copies that environment onto a clean slim base: no build
# tools, no source tree, no dev dependencies. Migrations travel inside the wheel.

ARG PYTHON_IMAGE=python:3.11-slim

FROM ${PYTHON_IMAGE} AS builder
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
RUN python -m pip install "build==1.2.2.post1"
# Dependency layer: the runtime dependencies exactly as requirements.lock pins and hashes them
# (`make lock` rewrites it from pyproject.toml). It changes only when the lock does, so an edit to
# the code rebuilds the app layer below and nothing else.
COPY requirements.lock ./
RUN python -m venv --without-pip /opt/idsync \
    && python -m pip --python /opt/idsync/bin/python install --require-hashes --no-deps \
       -r requirements.lock
# App layer: idsync itself, without resolving anything (--no-deps): the lock above is the whole
# dependency set, and a missing pin fails the `pip check` here rather than at run time.
COPY pyproject.toml README.md LICENSE alembic.ini ./
COPY sync/ sync/
COPY migrations/ migrations/
RUN python -m build --wheel --outdir /dist \
    && python -m pip --python /opt/idsync/bin/python install --no-deps /dist/*.whl \
    && python -m pip --python /opt/idsync/bin/python check

FROM ${PYTHON_IMAGE}
ARG VERSION=0.1.0
ARG REVISION=unknown
ARG CREATED=unknown
LABEL org.opencontainers.image.title="idsync" \
      org.opencontainers.image.description="Keeps Protime people addressable by HR employee ids through custom external references." \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.licenses="MIT" \
      org.opencontainers.image.vendor="idsync" \
      org.opencontainers.image.documentation="README.md, docs/operations.md"
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
