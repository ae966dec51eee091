# syntax=docker/dockerfile:1.7
# hookbridge: a static binary on distroless (no shell, no libc, UID 65532).
#   docker build --build-arg VERSION=$(git describe --tags --always) -t hookbridge .
# Needs BuildKit (the default builder since Docker 23) for the cache mounts.

ARG GO_VERSION=1.26

FROM --platform=$BUILDPLATFORM golang:${GO_VERSION} AS build
ARG TARGETOS
ARG TARGETARCH
ARG VERSION=dev
WORKDIR /src
# Modules first: this layer survives source edits.
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod \
    go mod download
COPY . .
RUN --mount=type=cache,target=/go/pkg/mod \
    --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 GOOS=$TARGETOS GOARCH=$TARGETARCH \
    go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" -o /hookbridge ./cmd/hookbridge
# distroless has no mkdir: prepare the embedded JetStream directory here.
RUN mkdir -p /out/data

FROM gcr.io/distroless/static-debian12:nonroot
ARG VERSION=dev
ARG REVISION=unknown
LABEL org.opencontainers.image.title="hookbridge" \
      org.opencontainers.image.description="Verifies OpenAI webhooks and publishes them to NATS JetStream or Kafka, answering 2xx only after the broker ack" \
      org.opencontainers.image.source="https://github.com/hookbridge/hookbridge" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}"
COPY --from=build /hookbridge /hookbridge
COPY --from=build --chown=65532:65532 /out/data /data
# The embedded broker (the default) keeps its stream in /data and listens on
# 127.0.0.1:4222: containers sharing the network namespace (a pod's other
# containers) reach it, nothing else does. For workers in other containers set
# HOOKBRIDGE_EMBEDDED_NATS_ADDR=0.0.0.0:4222 and HOOKBRIDGE_EMBEDDED_NATS_TOKEN
# (or HOOKBRIDGE_EMBEDDED_NATS_NKEY_FILE): the bridge refuses to start an
# unauthenticated broker beyond loopback. Or use HOOKBRIDGE_BROKER=nats|kafka.
ENV HOOKBRIDGE_DATA_DIR=/data
VOLUME ["/data"]
# 8080 webhooks, 9090 admin (/healthz, /readyz, /metrics), 4222 embedded NATS
# (once HOOKBRIDGE_EMBEDDED_NATS_ADDR listens beyond loopback).
EXPOSE 8080 9090 4222
USER 65532:65532
# No shell in the image: the binary probes its own admin listener.
HEALTHCHECK --interval=10s --timeout=5s --start-period=15s --retries=3 \
    CMD ["/hookbridge", "probe", "http://127.0.0.1:9090/readyz"]
ENTRYPOINT ["/hookbridge"]
CMD ["serve"]
