# syntax=docker/dockerfile:1
#
# segwatch container image: `docker build -t segwatch .` from the repository
# root. The default command is the demo (synthetic traffic, metrics on
# :9108); for a sensor, run `segwatch run --config ...` (see deploy/README.md).
#
# The binary carries the file capability cap_net_raw=eip, so the non-root
# user below can capture. Consequences for the container runtime:
#   - NET_RAW must be in the container's capability set (Docker's default set
#     has it; with `--cap-drop ALL`, add `--cap-add NET_RAW`), or exec fails
#     with "operation not permitted";
#   - no_new_privs must be off (no `--security-opt no-new-privileges`;
#     Kubernetes: allowPrivilegeEscalation: true), or the kernel ignores the
#     file capabilities and capture fails.

FROM rust:1.95-bookworm AS build
# Unpinned Debian packages: the bookworm suite only takes security fixes.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends libpcap-dev \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
# The release build with the libpcap backend, exactly the locked dependencies.
RUN cargo build --release --locked --features pcap \
    && install -D -m 0755 target/release/segwatch /out/segwatch

FROM debian:bookworm-slim
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends libpcap0.8 ca-certificates libcap2-bin \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 segwatch \
    && useradd --system --uid 10001 --gid segwatch --no-create-home \
        --home-dir /nonexistent --shell /usr/sbin/nologin segwatch \
    && install -d -o segwatch -g segwatch -m 0750 /var/log/segwatch
COPY --from=build /out/segwatch /usr/bin/segwatch
COPY policies/ /usr/share/segwatch/policies/
RUN setcap cap_net_raw=eip /usr/bin/segwatch \
    && /usr/bin/segwatch --version
USER 10001:10001
EXPOSE 9108
ENTRYPOINT ["/usr/bin/segwatch"]
CMD ["demo", "--metrics-listen", "0.0.0.0:9108"]
