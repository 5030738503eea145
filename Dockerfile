# The schedexec operator and REST API image (`schedexec operator`, `schedexec api`).
#   docker build -t ghcr.io/schedexec/operator:0.1.0 .
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
COPY runner-image /src/runner-image
COPY pyproject.toml README.md /src/
COPY operator /src/operator
RUN pip install /src/runner-image /src && rm -rf /src
USER 65532:65532
ENTRYPOINT ["schedexec"]
CMD ["operator"]
