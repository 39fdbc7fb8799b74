# Multi-stage build: wheels in a builder, a slim non-root runtime with no secret baked in.
FROM python:3.12-slim AS builder
WORKDIR /src
COPY pyproject.toml constraints.txt README.md ./
COPY uaa ./uaa
COPY accounts ./accounts
COPY tokens ./tokens
RUN pip wheel --no-cache-dir --wheel-dir /wheels -c constraints.txt .

FROM python:3.12-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 UAA_STATIC_MANIFEST=1 UAA_VAR_DIR=/tmp/uaa
# /var/lib/uaa/witness, /var/lib/uaa/metrics-worker: where docker-compose mounts the audit-witness and
# worker-metrics volumes (a new volume takes this owner).
RUN useradd --create-home --uid 10001 uaa && install -d -o uaa -g uaa /var/lib/uaa/witness /var/lib/uaa/metrics-worker
WORKDIR /app
COPY --from=builder /wheels /wheels
# Dependencies from wheels; the project itself runs from source in /app (BASE_DIR), not site-packages.
RUN rm /wheels/uaa-*.whl && pip install --no-cache-dir --no-index /wheels/* && rm -rf /wheels
COPY manage.py ./
COPY uaa ./uaa
COPY accounts ./accounts
COPY tokens ./tokens
COPY templates ./templates
COPY static ./static
# collectstatic needs importable settings only; DEBUG=1 supplies throwaway local values for this step.
RUN DEBUG=1 python manage.py collectstatic --noinput && rm -rf /tmp/uaa
USER uaa
# !!! gunicorn listens on the container's own loopback (127.0.0.1:8000) unless UAA_BIND says otherwise, and no
# port is EXPOSEd: a plain `docker run -p 8000:8000` reaches nothing. That is deliberate. Sync workers run one
# whole request at a time, which is safe only behind a proxy that buffers requests
# (deploy/nginx/uaa.conf.template, the proxy service of docker-compose.yml). Facing clients directly, one
# idle socket per worker stops the server until --timeout (30 s) kills the worker (slowloris); a threaded or
# async worker class only raises the number of sockets needed. Set UAA_BIND=0.0.0.0:8000 only where just the
# proxy can reach the container (docker-compose.yml's web service binds the internal backend network).
# Forwarded headers are believed from UAA_TRUSTED_PROXIES only: X-Forwarded-For by UAA, X-Forwarded-Proto by
# gunicorn (--forwarded-allow-ips, the same value). The image's default is its own loopback (a proxy in the
# same container or pod); docker-compose.yml sets the backend network. Never '*'. --forwarder-headers= : no
# header, not even the proxy's, sets SCRIPT_NAME or PATH_INFO (a SCRIPT_NAME the path lacked was a 500).
ENV UAA_TRUSTED_PROXIES=127.0.0.1
CMD ["sh", "-c", "exec gunicorn uaa.wsgi:application --config python:uaa.gunicorn_config --bind \"${UAA_BIND:-127.0.0.1:8000}\" --workers 4 --worker-class sync --timeout 30 --graceful-timeout 30 --limit-request-line 8190 --forwarded-allow-ips \"$UAA_TRUSTED_PROXIES\" --forwarder-headers="]
