# The `enspace` binary: one image for `enspace tokens`, `enspace api-node`
# and `enspace serve`.
FROM rust:1.89-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin enspace

FROM debian:bookworm-slim
RUN useradd --system --uid 10001 --home /data enspace \
    && mkdir -p /data /keys /event-key && chown enspace /data /keys /event-key
COPY --from=build /src/target/release/enspace /usr/local/bin/enspace
USER enspace
WORKDIR /data
ENV ENSPACE_DATA=/data
ENTRYPOINT ["enspace"]
CMD ["serve", "--listen", "0.0.0.0:8080"]
