# syntax=docker/dockerfile:1.7
# NovaCron core image: `novacron node` (StatefulSet), `novacron agent` (DaemonSet),
# `novacron gateway` (Deployment). Build from the repository root:
#   docker build -f images/core.Dockerfile -t ghcr.io/novacron/novacron:0.1.0 .
# Multi-stage: the wheel is built and installed into a venv in the build stage; the runtime
# stage gets only that venv on a slim Python, runs as uid 10001, writes nothing outside its
# volumes (read-only root filesystem: bytecode is compiled at build time, /tmp is an emptyDir).

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
# Dependencies first, in a layer that changes only with pyproject.toml/constraints.txt, so a
# rebuild after a code change reinstalls just the package.
COPY pyproject.toml constraints.txt ./
RUN python -m venv --without-pip /opt/novacron \
 && python -c "import tomllib; print(*tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies'], sep='\n')" > /tmp/requirements.txt \
 && python -m pip --python /opt/novacron/bin/python install -c constraints.txt -r /tmp/requirements.txt
COPY README.md ./
COPY src ./src
COPY operator/novacron_operator ./operator/novacron_operator
RUN python -m pip --python /opt/novacron/bin/python install --no-deps -c constraints.txt . \
 && /opt/novacron/bin/python -m compileall -q /opt/novacron/lib

FROM ${PYTHON_IMAGE} AS runtime
LABEL org.opencontainers.image.title="novacron" \
      org.opencontainers.image.description="NovaCron node, agent and gateway" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.source="https://github.com/novacron/novacron"
# No package manager tooling or build tools are needed at run time: drop pip/setuptools.
RUN python -m pip uninstall -y -q pip setuptools wheel 2>/dev/null; \
    groupadd --system --gid 10001 novacron \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /var/lib/novacron \
      --shell /usr/sbin/nologin novacron \
 && install -d -o 10001 -g 10001 -m 0750 /var/lib/novacron /etc/novacron
COPY --from=build /opt/novacron /opt/novacron
ENV PATH=/opt/novacron/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
USER 10001:10001
WORKDIR /var/lib/novacron
VOLUME ["/var/lib/novacron"]
# 8080 admin/client API (/healthz, /readyz), 7000 peers, 9090 /metrics, 8443 gateway clients
EXPOSE 8080 7000 9090 8443
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
  CMD ["python", "-c", "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=2).status != 200)"]
ENTRYPOINT ["novacron"]
CMD ["node"]
