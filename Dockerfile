# syntax=docker/dockerfile:1
# The acr-attach operator image: one statically linked x86_64 musl binary (rustls with ring, no
# OpenSSL, built without the default `sandbox` feature, so no emulators) on distroless/static,
# running as the numeric non-root user 65532 so that `runAsNonRoot: true` pods start (the kubelet
# refuses a named user: "image has non-numeric user"). Only linux/amd64.
#
# The build stage runs .ci/static-build, the script CI runs, so the image's cargo command exists
# in one place only; that script also fails the build if the binary is not static.
#
# CA roots: the Azure client (reqwest with rustls-platform-verifier) loads the system roots via
# rustls-native-certs, which reads SSL_CERT_FILE / SSL_CERT_DIR when set and otherwise
# /etc/ssl/certs/ca-certificates.crt plus /etc/ssl/certs/; without any root it cannot build its
# client at all. distroless/static ships Debian's bundle at exactly that path, so nothing is copied
# and SSL_CERT_FILE stays unset (setting it would REPLACE the system roots, not add to them; extra
# CAs go through the chart's azure.extraCaConfigMap). The Kubernetes client trusts the in-cluster
# service-account CA.
#
# Base images are pinned by tag only; pin them by digest (name:tag@sha256:...) where you can
# resolve one; this project's own machines cannot reach a container registry to do it.
#
#   docker build --build-arg VERSION=0.1.0 --build-arg REVISION="$(git rev-parse HEAD)" -t acr-attach .

FROM rust:1.95.0-bookworm AS build
# musl-gcc compiles ring's C and assembly for the musl target (version pinned to bookworm's).
RUN apt-get update \
    && apt-get install -y --no-install-recommends musl-tools=1.2.3-1 \
    && rm -rf /var/lib/apt/lists/* \
    && rustup target add x86_64-unknown-linux-musl
WORKDIR /src
# The whole workspace: cargo needs every member's manifest and targets to resolve it, and the
# cache mounts below keep rebuilds incremental, so no manifest-only layer is attempted.
COPY . .
# The target directory is a cache mount, so the binary is copied out of it in the same step.
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/src/target,sharing=locked \
    bash .ci/static-build --no-install \
    && install -D -m 0755 target/x86_64-unknown-linux-musl/release/acr-attach /out/acr-attach

FROM gcr.io/distroless/static-debian12:nonroot
ARG VERSION=dev
ARG REVISION=unknown
LABEL org.opencontainers.image.title="acr-attach" \
      org.opencontainers.image.description="Kubernetes operator that keeps AKS kubelet identities attached to Azure Container Registries" \
      org.opencontainers.image.source="https://github.com/acr-attach/acr-attach" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}"
COPY --from=build /out/acr-attach /acr-attach
USER 65532:65532
ENTRYPOINT ["/acr-attach"]
