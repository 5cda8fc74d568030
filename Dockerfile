# syntax=docker/dockerfile:1
# The sigil image: the one `sigil` binary on distroless, as a non-root user, no shell.
#   docker build -t sigil:dev .
# tests/e2e/chart.rs checks that this file builds the crate's binary with features that exist.

ARG RUST_VERSION=1.95
FROM rust:${RUST_VERSION}-bookworm AS builder
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --no-default-features --bin sigil \
    && install -D -m 0755 target/release/sigil /out/sigil

# glibc (bookworm's, like the builder) and CA certificates; no shell, no package manager.
# Note: if Git over ssh goes through the system `ssh` client, this image has none: use a Debian slim
# runtime with openssh-client instead.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=builder /out/sigil /sigil
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/sigil"]
CMD ["controller"]
