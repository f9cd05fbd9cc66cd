# The service image: the API, the worker and the migrations run from it with different commands
# (docker-compose.yml). Build arguments choose the torch build:
#   TORCH_INDEX_URL  default: PyTorch's CPU wheels (a small image for CPU workers);
#                    empty: PyPI's default build, which on linux/x86_64 is the CUDA build (the
#                    compose file's gpu profile builds it so)
#   TORCH_VERSION    the torch release (2.13.0 is the one the project tests)
FROM python:3.11-slim AS build
ARG TORCH_VERSION=2.13.0
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
WORKDIR /src
RUN python -m venv /venv && /venv/bin/pip install --no-cache-dir --upgrade pip
# torch first, from the chosen index: a plain dependency resolution would pull PyPI's build
RUN /venv/bin/pip install --no-cache-dir ${TORCH_INDEX_URL:+--index-url "$TORCH_INDEX_URL"} "torch==$TORCH_VERSION"
COPY pyproject.toml README.md dvrl_cli.py ./
COPY dvrl_core dvrl_core
COPY dvrl_client dvrl_client
COPY service service
COPY api api
COPY worker worker
COPY migrations migrations
# a wheel, installed as users install it: the image runs without the source tree
RUN /venv/bin/pip wheel --no-cache-dir --no-deps --wheel-dir /dist . && /venv/bin/pip install --no-cache-dir /dist/*.whl

FROM python:3.11-slim
RUN apt-get update && apt-get install -y --no-install-recommends libgomp1 && rm -rf /var/lib/apt/lists/* && useradd --create-home --uid 10001 dvrl
COPY --from=build /venv /venv
WORKDIR /home/dvrl
ENV PATH=/venv/bin:$PATH PYTHONUNBUFFERED=1
USER dvrl
EXPOSE 8000
CMD ["dvrl", "serve", "--host", "0.0.0.0", "--port", "8000"]
