# Builds gipam's plugin rootfs for people without a Rust toolchain:
#
#   docker build -t gipam-rootfs .
#   mkdir -p plugin/rootfs && docker export "$(docker create gipam-rootfs)" | tar -x -C plugin/rootfs
#   cp config.json plugin/ && docker plugin create org/gipam:latest plugin
#
# (`make plugin-docker` does exactly this.) The first stage needs the Rust
# image from a registry; `make plugin` builds the same rootfs without Docker.

FROM rust:1-alpine AS build
RUN apk add --no-cache musl-dev
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY benches ./benches
RUN cargo build --release --locked --target x86_64-unknown-linux-musl \
 && mkdir -p /out/run/docker/plugins /out/data /out/tmp \
 && cp target/x86_64-unknown-linux-musl/release/gipam /out/gipam

FROM scratch
COPY --from=build /out/ /
ENTRYPOINT ["/gipam"]
