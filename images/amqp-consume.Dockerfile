# The Kubernetes docs' job-wq-1 variant: amqp-consume takes one message and pipes its body (the item's name) to
# `python -P -m jobkit_worker --stdin`, which takes no message itself. See the README's amqp-consume
# section for what this means for lost and repeated items. Build the worker image first:
#   docker build -f images/amqp-consume.Dockerfile -t jobkit-worker-amqp-consume:0.1.0 .
ARG WORKER_IMAGE=jobkit-worker:0.1.0
FROM ${WORKER_IMAGE}
ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="jobkit-worker-amqp-consume" \
      org.opencontainers.image.description="amqp-jobkit's worker fed one item by Debian's amqp-consume" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="MIT"
USER 0
# Debian's amqp-tools follows the base image's release; pinning its version would break the
# build at the next security update.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends amqp-tools \
    && rm -rf /var/lib/apt/lists/*
COPY images/consume-one /usr/local/bin/consume-one
USER 10001:10001
ENTRYPOINT ["/usr/local/bin/consume-one"]
