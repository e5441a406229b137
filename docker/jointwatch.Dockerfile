# syntax=docker/dockerfile:1.7
# The jointwatch services (bridge, router, sink, ...): one image, the command picks the service.
# Build context is the repository root (see docker-compose.yml).
FROM python:3.11-slim-bookworm

COPY --from=ghcr.io/astral-sh/uv:0.13.9 /uv /usr/local/bin/uv
ENV UV_LINK_MODE=copy \
    UV_COMPILE_BYTECODE=1 \
    UV_PYTHON_DOWNLOADS=never \
    UV_PROJECT_ENVIRONMENT=/app/.venv

WORKDIR /app
# Dependencies first (cached while only the source changes), exactly as locked in uv.lock.
COPY pyproject.toml uv.lock README.md ./
RUN uv sync --frozen --no-dev --no-install-project
COPY schemas/ schemas/
COPY connectors/ connectors/
COPY jobs/ jobs/
COPY alerts/ alerts/
COPY simulator/ simulator/
COPY jointwatch/ jointwatch/
COPY config/ config/
COPY docker/create_topics.py docker/create_topics.py
# Editable install (uv's default), so jointwatch.settings.REPO_ROOT is /app and finds config/.
RUN uv sync --frozen --no-dev

# /state holds only the mounted secrets.yaml; any uid may run the services (compose sets `user:`).
RUN useradd --system --uid 10001 --home-dir /app jw && mkdir -p /state && chmod 1777 /state
ENV PATH=/app/.venv/bin:$PATH \
    JW_STATE_DIR=/state
USER jw
ENTRYPOINT ["jointwatch"]
CMD ["--help"]
