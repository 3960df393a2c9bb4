# One image with both binaries: hookway-controller and hookway-proxy.
# Build: docker build -t hookway:dev .
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --profile dist --locked -p hookway-proxy -p hookway-controller \
 && mkdir -p /out \
 && cp target/dist/hookway-proxy target/dist/hookway-controller /out/

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/hookway-proxy /out/hookway-controller /usr/local/bin/
COPY examples/quickstart /etc/hookway/manifests
USER 65532:65532
EXPOSE 8080 8443 9901
ENTRYPOINT ["/usr/local/bin/hookway-proxy"]
CMD ["--manifests", "/etc/hookway/manifests"]
