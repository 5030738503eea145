# Arcanna.AI, an XSOAR integration from demisto/content, as it is (tests/thirdparty/demisto-content,
# PROVENANCE.md), on the runner's XSOAR runtime: its .py copied unmodified, nothing else of it.
#   docker build -f tests/components/xsoar/arcanna.Dockerfile -t ghcr.io/schedexec/xsoar-arcanna:dev tests
FROM ghcr.io/schedexec/runner:0.1.0
USER 0:0
# What XSOAR's python3 docker image gives an integration and this one imports: requests (and urllib3).
RUN pip install "requests>=2.28"
USER 65532:65532
COPY thirdparty/demisto-content/ArcannaAI/ArcannaAI.py /app/integration/
ENV SCHEDEXEC_XSOAR_INTEGRATION=/app/integration/ArcannaAI.py
