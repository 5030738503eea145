# The schedexec operator and REST API image (`schedexec operator`, `schedexec api`).
#   docker build -t ghcr.io/schedexec/operator:0.1.0 .
# With the [otel] extra: OTEL_* in the environment turns traces on (docs/observability.md).
# BASE_IMAGE: a Python 3.11 image with `python` and `pip` on PATH. Offline
# builds (hack/devcluster/schedexec_devcluster/images.py) pass one built from
# Debian's packages instead of pulling python:3.11-slim.
ARG BASE_IMAGE=python:3.11-slim
FROM ${BASE_IMAGE}
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
COPY runner-image /src/runner-image
COPY pyproject.toml README.md /src/
COPY operator /src/operator
RUN pip install /src/runner-image "/src[otel]" && rm -rf /src
USER 65532:65532
ENTRYPOINT ["schedexec"]
CMD ["operator"]
