# One image for the whole suite: docker-compose runs each service from it with
# `/app/.venv/bin/python -m services.<name>`; the default command is the supervisor.
FROM python:3.11-slim

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1

# make runs the same install as on a developer machine (the Makefile is the one recipe).
RUN apt-get update \
    && apt-get install --yes --no-install-recommends make \
    && rm -rf /var/lib/apt/lists/*

# The runtime user: owns only var/ (keys, SQLite files); the code and venv stay root's.
RUN groupadd --system --gid 10001 skybridge \
    && useradd --system --uid 10001 --gid skybridge --home-dir /app \
       --no-create-home --shell /usr/sbin/nologin skybridge

WORKDIR /app

# Dependencies and generated protos first, so that a code change does not reinstall them.
# `make install`: the venv from requirements.lock, then protos/generate.py into shared/gen.
COPY Makefile requirements.lock ./
COPY protos/ protos/
RUN make install

COPY . .
# var/keys exists (owned by the user) so that a named volume mounted there inherits it.
RUN mkdir -p var/keys && chown -R skybridge:skybridge var

USER skybridge

ENV SKYBRIDGE_HOST=0.0.0.0
EXPOSE 50051 50052 50053 50054

CMD ["/app/.venv/bin/python", "-m", "services"]
