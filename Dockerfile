# One image for `aijobs migrate`, `aijobs api` and `aijobs worker` (and the other commands).
#
#   docker build -t aijobs .                                   # on debian:bookworm-slim
#   docker build --build-arg BASE=aijobs-base:bookworm -t aijobs .   # on a locally made base
#
# BASE is any Debian-like image; what it lacks of python3 (with venv), libpq5 and tini is
# installed with apt. scripts/make-base-image.sh makes one that lacks nothing, for machines
# that reach no image registry. EXTRAS are aijobs' extras to install (e.g. "offline"); psycopg
# runs on the system's libpq5, so the image needs no `binary` extra.
ARG BASE=debian:bookworm-slim

FROM ${BASE} AS system
SHELL ["/bin/sh", "-eu", "-c"]
RUN need=""; \
    command -v python3 >/dev/null || need="$need python3"; \
    python3 -c 'import ensurepip, venv' 2>/dev/null || need="$need python3-venv"; \
    ldconfig -p | grep -q 'libpq\.so\.5' || need="$need libpq5"; \
    command -v tini >/dev/null || need="$need tini"; \
    [ -e /etc/ssl/certs/ca-certificates.crt ] || need="$need ca-certificates"; \
    if [ -n "$need" ]; then \
        apt-get update; \
        DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $need; \
        rm -rf /var/lib/apt/lists/*; \
    fi

FROM system AS build
ARG EXTRAS=""
RUN python3 -m venv /opt/aijobs
COPY pyproject.toml README.md /src/
COPY src /src/src
# deploy/wheels/ is empty in git. Filled with aijobs' wheel and its dependencies' (`pip wheel
# --wheel-dir deploy/wheels '.[EXTRAS]'`, as scripts/image-test.sh does), the build installs
# from it alone and needs no network; empty, pip builds /src and reads the package index.
COPY deploy/wheels/ /wheels/
RUN if ls /wheels/aijobs-*.whl >/dev/null 2>&1; \
    then what="aijobs${EXTRAS:+[$EXTRAS]}"; from="--no-index --find-links /wheels"; \
    else what="/src${EXTRAS:+[$EXTRAS]}"; from=""; fi; \
    /opt/aijobs/bin/pip install --no-cache-dir --disable-pip-version-check --quiet $from "$what" \
    && /opt/aijobs/bin/pip uninstall --yes --quiet pip \
    && find /opt/aijobs -name '__pycache__' -prune -exec rm -rf {} + \
    && /opt/aijobs/bin/python -m compileall -q /opt/aijobs/lib

FROM system
RUN useradd --system --uid 10001 --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin aijobs
COPY --from=build /opt/aijobs /opt/aijobs
COPY deploy/healthcheck.py /opt/aijobs/healthcheck.py
ENV PATH=/opt/aijobs/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    API_HOST=0.0.0.0 \
    LOG_FORMAT=json
USER 10001:10001
WORKDIR /tmp
EXPOSE 8000
# The API answers /healthz; a worker answers on METRICS_PORT when it serves one. See the script.
HEALTHCHECK --interval=10s --timeout=4s --start-period=30s --retries=3 \
    CMD ["/opt/aijobs/bin/python", "/opt/aijobs/healthcheck.py"]
# tini is PID 1: it passes SIGTERM/SIGINT to aijobs (which drains) and reaps the children of
# `aijobs api --workers N`. The exit code is aijobs' own, except that an end by SIGTERM
# (uvicorn re-raises it after its graceful shutdown: 143) counts as the clean stop it is.
ENTRYPOINT ["/usr/bin/tini", "-g", "-e", "143", "--", "aijobs"]
CMD ["api"]
