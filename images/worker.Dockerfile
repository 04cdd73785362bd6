# The worker image: `python -m worker` takes one item from the queue, does it, acks, exits.
# Build from the repository root:
#   docker build -f images/worker.Dockerfile -t jobkit-worker:0.1.0 .
FROM python:3.11-slim-bookworm AS build
RUN pip install --no-cache-dir uv==0.13.9
ENV UV_NO_CACHE=1 UV_LINK_MODE=copy UV_PYTHON_DOWNLOADS=never
COPY images/install-worker images/worker-requirements.txt /src/images/
COPY worker/ /src/worker/
RUN PYTHON=/usr/local/bin/python3 /src/images/install-worker /opt/jobkit

# Same base, so the virtualenv's interpreter link stays valid; no uv, no build tools.
FROM python:3.11-slim-bookworm
COPY --from=build /opt/jobkit /opt/jobkit
ENV PATH=/opt/jobkit/bin:$PATH PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
# Numeric, so a pod's runAsNonRoot can check it (the Job also sets runAsUser 10001).
USER 10001:10001
WORKDIR /tmp
ENTRYPOINT ["python", "-m", "worker"]
