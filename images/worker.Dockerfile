# The worker image: `python -P -m jobkit_worker` takes one item from the queue, does it, acks,
# exits. Build, tag and push it with `make image IMAGE=registry/name:tag` and `make push`
# (docs/kubernetes.md); extend it with `FROM` and `pip install` (the virtualenv has pip).
#
# The base, pinned by digest: python:3.11-slim-bookworm. To move to a newer one, read its digest
# with `docker buildx imagetools inspect python:3.11-slim-bookworm` and change both lines.
ARG BASE=python:3.11-slim-bookworm@sha256:2e32f7d302adc1c37428355c1e646897c0c53f4fd60b6a551245fb90ee129f91

FROM ${BASE} AS build
RUN pip install --no-cache-dir uv==0.13.9
ENV UV_NO_CACHE=1 UV_LINK_MODE=copy UV_PYTHON_DOWNLOADS=never
COPY images/install-worker images/worker-requirements.txt /src/images/
COPY worker/ /src/worker/
RUN PYTHON=/usr/local/bin/python3 /src/images/install-worker /opt/jobkit

# Same base, so the virtualenv's interpreter link stays valid; no uv, no build tools.
FROM ${BASE}
ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="jobkit-worker" \
      org.opencontainers.image.description="amqp-jobkit's worker: one item from a RabbitMQ work queue per run" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="MIT" \
      org.opencontainers.image.base.name="docker.io/library/python:3.11-slim-bookworm"
COPY --from=build /opt/jobkit /opt/jobkit
ENV PATH=/opt/jobkit/bin:$PATH PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
# Numeric, so a pod's runAsNonRoot can check it (the Job also sets runAsUser 10001).
USER 10001:10001
WORKDIR /tmp
# -P: nothing is imported from the working directory, whatever a volume mounts there.
ENTRYPOINT ["python", "-P", "-m", "jobkit_worker"]
