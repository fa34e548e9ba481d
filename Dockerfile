# swarmbridge: the release binary built in a builder stage, run as a
# non-root user in a slim image. Everything it needs at run time (the
# migrations, the command catalog, the dashboard) is embedded in the binary.
FROM rust:1-bookworm AS builder
WORKDIR /src
COPY Cargo.toml Cargo.lock build.rs ./
COPY src ./src
COPY migrations ./migrations
COPY commands ./commands
COPY config ./config
COPY benches ./benches
COPY examples ./examples
RUN cargo build --release --locked --bin swarmbridge \
    && cp target/release/swarmbridge /usr/local/bin/swarmbridge

FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --home-dir /var/lib/swarmbridge --create-home swarmbridge
COPY --from=builder /usr/local/bin/swarmbridge /usr/local/bin/swarmbridge
USER swarmbridge
WORKDIR /var/lib/swarmbridge
ENV SWARMBRIDGE_LISTEN=0.0.0.0:7878 \
    SWARMBRIDGE_LOG_FORMAT=json
EXPOSE 7878
HEALTHCHECK --interval=10s --timeout=3s CMD ["/bin/sh", "-c", "exec 3<>/dev/tcp/127.0.0.1/7878"]
ENTRYPOINT ["swarmbridge"]
CMD ["serve"]
