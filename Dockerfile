# podgate image: a static musl binary on an empty base (~6 MB, no shell).
#
#   docker build -t podgate:dev .
#   docker run --rm podgate:dev version
#
# .ci/deploy-checks.sh builds the binary exactly as the build stage does
# (same target, same flags) and assembles the same final stage with buildah.
# Keep the two in step when changing either.

# ---------------------------------------------------------------------------
# Build stage
# ---------------------------------------------------------------------------
# Pinned to the toolchain the project is developed and tested with. The full
# (non-slim) image is used because it ships `cc`, which rustc uses as the link
# driver for the musl target; no C code is compiled. For byte-for-byte
# reproducible builds, pin the digest as well (rust:1.95.0-bookworm@sha256:…).
FROM rust:1.95.0-bookworm AS build

# Fully static binary: the final image has no libc to link against.
ARG TARGET=x86_64-unknown-linux-musl
# No-op when the target is already installed; the official image ships only
# the host (gnu) target.
# musl-gcc compiles mimalloc, the static binary's allocator (musl's own
# allocator cost 2.6x the CPU per request under load, measured).
# llvm-tools (llvm-profdata), python3 (the training app) and h2load (the
# training load) are for the profile-guided build, scripts/pgo/build.sh.
# hadolint ignore=DL3008
RUN rustup target add "${TARGET}" \
 && rustup component add llvm-tools \
 && apt-get update \
 && apt-get install -y --no-install-recommends musl-tools nghttp2-client python3 \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /src

# --- Dependency layer -------------------------------------------------------
# Copy only the manifest and the lock file, then build the dependencies against
# placeholder sources. This layer is reused for as long as Cargo.toml and
# Cargo.lock do not change, so editing src/ recompiles podgate alone.
COPY Cargo.toml Cargo.lock ./
# Build settings (mimalloc compiled with lazy arena commit).
COPY .cargo ./.cargo
# The profile-guided build: instrumented build, training run, final build.
COPY scripts/pgo ./scripts/pgo
# 1. Drop the [[bench]], [[example]] and [[test]] tables: their sources are
#    not in this layer and Cargo refuses a manifest whose declared targets are
#    missing. They do not affect dependency resolution, so Cargo.lock still
#    applies (--locked) and the compiled dependencies stay valid for the real
#    manifest copied later.
# 2. Create a placeholder for every remaining `path = "….rs"` (lib and bins)
#    plus the default src/main.rs and src/lib.rs.
# 3. Build the instrumented dependencies (the first step of
#    scripts/pgo/build.sh; fat LTO happens at the final link, so the cached
#    rlibs are reused). The final, profile-using build cannot be cached: its
#    flags name a profile made from the real sources.
# 4. Forget the placeholder podgate build, so the real sources are always
#    compiled even if their timestamps are older than the placeholders'.
# .ci/deploy-checks.sh runs the RUN below verbatim (it finds it by the next
# comment line) and then checks that the real build reuses every dependency.
# deploy-checks: dependency layer
RUN awk '/^[[:space:]]*\[/ { skip = ($0 ~ /^[[:space:]]*\[\[(bench|example|test)\]\]/) } !skip' \
        Cargo.toml > Cargo.deps.toml \
 && mv Cargo.deps.toml Cargo.toml \
 && for f in src/main.rs src/lib.rs \
        $(sed -n 's/^[[:space:]]*path[[:space:]]*=[[:space:]]*"\([^"]*\.rs\)".*/\1/p' Cargo.toml); do \
        mkdir -p "$(dirname "$f")" && echo 'fn main() {}' > "$f"; \
    done \
 && PGO_STEP=instrumented bash scripts/pgo/build.sh "${TARGET}" \
 && cargo clean --release --target "${TARGET}" --target-dir target/pgo-gen -p podgate \
 && rm -rf src

# --- podgate itself ---------------------------------------------------------
# The real manifest replaces the trimmed one. Only what the binary is built
# from is copied (tests, benches and examples are not needed; .dockerignore
# keeps the context small). If a build.rs is added, copy it here too.
COPY Cargo.toml Cargo.lock ./
# Build settings (mimalloc compiled with lazy arena commit).
COPY .cargo ./.cargo
COPY src ./src
# Same command as .ci/deploy-checks.sh runs: builds instrumented, runs it for
# about 20 s on loopback under a request mix, then builds with the profile
# (1.17x the requests/s on GET 1 KiB, see scripts/pgo/build.sh). The
# release profile (Cargo.toml) already strips symbols and keeps
# panic=unwind on purpose.
RUN bash scripts/pgo/build.sh "${TARGET}" \
 && cp "target/${TARGET}/release/podgate" /podgate

# ---------------------------------------------------------------------------
# Final stage: the binary and nothing else
# ---------------------------------------------------------------------------
# podgate only talks plain HTTP to 127.0.0.1 (no TLS, no DNS, no time zones),
# so it needs no CA bundle, resolver files or tzdata. A drop-in alternative
# with those files and an /etc/passwd entry for uid 65532 is
# gcr.io/distroless/static-debian12:nonroot.
FROM scratch

# COPY makes it owned by root (mode 0755 from the build), so the runtime user
# cannot replace its own binary even without readOnlyRootFilesystem.
COPY --from=build /podgate /usr/local/bin/podgate

# scratch has no PATH at all. Setting it lets `kubectl exec POD -c podgate --
# podgate status` (and `docker exec … podgate check`) find the binary by name:
# the runtime resolves the command against the image's PATH.
ENV PATH=/usr/local/bin

# Numeric uid:gid (scratch has no /etc/passwd to look a name up in), the
# conventional "nonroot" id of distroless images; the Kubernetes manifests set
# runAsUser 65532 to match. Listening on :80 as this user needs
# net.ipv4.ip_unprivileged_port_start=0 (see k8s/README.md), or set
# PODGATE_LISTEN=0.0.0.0:8080.
USER 65532:65532

# 80: proxied traffic (PODGATE_LISTEN). 9901: admin port with /livez, /readyz,
# /metrics, /status (PODGATE_ADMIN_LISTEN). Documentation only.
EXPOSE 80 9901

# podgate drains on SIGTERM (the Docker and Kubernetes default): readiness
# goes 503, it keeps serving PODGATE_DRAIN_DELAY (5s), then waits up to
# PODGATE_SHUTDOWN_TIMEOUT (20s) for in-flight requests. `docker stop` waits
# only 10s by default: use `docker stop -t 30`.
STOPSIGNAL SIGTERM

# For plain Docker/Compose only; Kubernetes ignores HEALTHCHECK and uses the
# probes in k8s/. Exec form (there is no shell): `podgate check` exits 1 when
# the app behind podgate does not answer, which is what "healthy" should mean
# for a sidecar.
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
    CMD ["/usr/local/bin/podgate", "check"]

# Absolute path: no lookup needed. Extra arguments become a subcommand
# (`docker run podgate:dev config`); none runs the proxy.
ENTRYPOINT ["/usr/local/bin/podgate"]

LABEL org.opencontainers.image.title="podgate" \
      org.opencontainers.image.description="HTTP sidecar proxy in front of a web app on 127.0.0.1:8000 in a Kubernetes pod" \
      org.opencontainers.image.licenses="Apache-2.0"
