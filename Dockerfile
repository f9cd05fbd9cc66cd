# The service image: API, worker and migrations run from it with different commands.
FROM python:3.11-slim AS build
WORKDIR /src
RUN python -m venv /venv && /venv/bin/pip install --no-cache-dir --upgrade pip
# the CPU build of torch first: an unpinned torch would pull a multi-GB CUDA build
RUN /venv/bin/pip install --no-cache-dir torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu
COPY pyproject.toml README.md alembic.ini dvrl_cli.py ./
COPY dvrl_core dvrl_core
COPY service service
COPY api api
COPY worker worker
COPY migrations migrations
RUN /venv/bin/pip install --no-cache-dir .

FROM python:3.11-slim
RUN apt-get update && apt-get install -y --no-install-recommends libgomp1 \
    && rm -rf /var/lib/apt/lists/* && useradd --create-home --uid 10001 dvrl
COPY --from=build /venv /venv
COPY --from=build /src/alembic.ini /src/migrations /app/
WORKDIR /app
ENV PATH=/venv/bin:$PATH PYTHONUNBUFFERED=1
USER dvrl
EXPOSE 8000
CMD ["dvrl", "serve", "--host", "0.0.0.0", "--port", "8000"]
