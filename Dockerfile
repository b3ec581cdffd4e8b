# One image, two roles: the command picks it.
#   docker run IMAGE serve --host 0.0.0.0        the API (add --with-worker for both in one)
#   docker run IMAGE work                         the worker
#   docker run IMAGE migrate                      bring the schema up to date
#   docker run -p 8000:8000 -v presto:/data IMAGE dev --host 0.0.0.0
#                                                 everything in one container: embedded
#                                                 PostgreSQL and Redis, data in /data
# Configure with PRESTO_* environment variables (see README); compose.yaml runs the whole set.

FROM python:3.11-slim AS build
ENV UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=never \
    UV_PROJECT_ENVIRONMENT=/app/.venv
RUN python -m pip install --no-cache-dir uv==0.13.9
WORKDIR /src
# Dependencies first, from the lock file only, so they stay cached while the code changes.
COPY pyproject.toml uv.lock README.md ./
RUN uv sync --locked --no-dev --no-install-project
# The project itself as an installed package (not a link to this source tree): it carries its
# default settings, themes and migrations inside it.
COPY config ./config
COPY migrations ./migrations
COPY presto_deck ./presto_deck
RUN uv sync --locked --no-dev --no-editable

FROM python:3.11-slim
RUN useradd --system --uid 10001 --user-group --home-dir /app --no-create-home presto \
    && mkdir /data && chown presto:presto /data
COPY --from=build --chown=root:root /app/.venv /app/.venv
ENV PATH=/app/.venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    XDG_DATA_HOME=/data
VOLUME /data
WORKDIR /app
USER presto
EXPOSE 8000
# serve and dev answer /health/live on their port; a work container is healthy while it runs.
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s \
    CMD ["python", "-m", "presto_deck.healthcheck"]
ENTRYPOINT ["presto-deck"]
CMD ["serve", "--host", "0.0.0.0", "--port", "8000"]
