# One image for the web server, the Celery worker and beat.
# The trainer runs in its own image on the cluster (JINGTIAO_TRAINER_IMAGE); the
# platform image carries the trainer extra too, for the local executor.
# Front-end libraries from the npm registry at build time, never a CDN at run time.
FROM node:20-bookworm-slim AS frontend
WORKDIR /src
COPY package.json package-lock.json ./
COPY bin/vendor.mjs bin/vendor.mjs
RUN npm ci --no-audit --no-fund --loglevel=error && node bin/vendor.mjs vendor

FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 \
    JINGTIAO_DATA_ROOT=/data STATIC_ROOT=/app/staticfiles

RUN apt-get update \
 && apt-get install -y --no-install-recommends curl gettext libjemalloc2 \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --create-home --uid 10001 jingtiao

WORKDIR /app
COPY pyproject.toml README.md ./
COPY config config
COPY accounts accounts
COPY finetune finetune
COPY scheduler scheduler
COPY trainer trainer
COPY templates templates
COPY static static
COPY --from=frontend /src/vendor static/vendor
COPY locale locale
COPY manage.py ./
# TORCH_INDEX_URL picks the torch build (a CPU-only or a vendor's MLU index);
# empty takes the default one from the package index.
ARG TORCH_INDEX_URL=
RUN pip install ${TORCH_INDEX_URL:+--index-url "$TORCH_INDEX_URL"} torch==2.13.0 \
 && pip install ".[trainer]" \
 && SECRET_KEY=build python manage.py collectstatic --no-input -v0

USER 10001
VOLUME ["/data"]
EXPOSE 8000
CMD ["gunicorn", "config.wsgi", "--bind", "0.0.0.0:8000", "--workers", "3", "--threads", "4"]
