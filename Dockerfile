# sluice's container image: `docker build -t <registry>/sluice:<version> .`
#
# Two stages: the build (Rust and cmake, which pingora's zlib-ng needs) and a distroless
# runtime with glibc and nothing else: no shell, no package manager. The chart runs
# /usr/local/bin/sluice as user 65532 with a read-only root filesystem.

FROM docker.io/library/rust:1.95-bookworm AS build
RUN apt-get update \
    && apt-get install -y --no-install-recommends cmake \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cargo build --release --locked --package sluice \
    && install -D -m 0755 target/release/sluice /out/sluice

FROM gcr.io/distroless/cc-debian12:nonroot AS runtime
COPY --from=build /out/sluice /usr/local/bin/sluice
USER 65532:65532
# 8080/8081 HTTP (external, cluster-local), 8443/8444 HTTPS, 9901 proxy admin,
# 9902 controller admin, 18000 xDS.
EXPOSE 8080 8081 8443 8444 9901 9902 18000
ENTRYPOINT ["/usr/local/bin/sluice"]
CMD ["--help"]
