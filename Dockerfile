# Static image without the emulators (--no-default-features drops the sandbox).
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --no-default-features --bin acr-attach

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /src/target/release/acr-attach /acr-attach
USER nonroot
ENTRYPOINT ["/acr-attach"]
