# The controller image: only the built wheel and its pinned dependencies.
#
# Stage 1 builds the wheel from pyproject.toml and controller/ (the only files
# .dockerignore lets in) and installs it into a virtualenv. Stage 2 copies just
# that virtualenv onto a clean slim base: no sources, tests, fixtures, dev
# tools, compilers, pip or setuptools reach the final image.
#
#   docker build -t canary-controller:0.1.0 .
#   docker build --build-arg PYTHON_IMAGE=python:3.11-slim@sha256:<digest> .
ARG PYTHON_IMAGE=python:3.11-slim

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml ./
COPY controller/ controller/
RUN pip wheel --no-deps --wheel-dir /dist . \
 && python -m venv /opt/venv \
 && /opt/venv/bin/pip install /dist/canary_controller-*.whl \
 && /opt/venv/bin/pip uninstall --yes pip setuptools

FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="canary-controller" \
      org.opencontainers.image.description="Canary deployment controller for Kubernetes" \
      org.opencontainers.image.licenses="Apache-2.0"
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp
COPY --from=build /opt/venv /opt/venv
# A numeric user, so the kubelet can verify runAsNonRoot without /etc/passwd.
USER 10001:10001
EXPOSE 8080
ENTRYPOINT ["canary-controller"]
CMD ["run"]
