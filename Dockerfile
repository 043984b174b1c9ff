# syntax=docker/dockerfile:1
#
# bmgate: a static, CGO-free binary (embedded SQLite is pure Go) on a
# distroless base, running as an unprivileged user with its state in /data.
#
#   docker build -t bmgate .
#   docker run -d --name bmgate -v bmgate-data:/data \
#     -p 1587:1587 -p 1143:1143 -p 8444:8444 bmgate
#   docker exec -it bmgate bmgate user add alice
#   docker exec bmgate bmgate address new --user alice
#
# The secret key that encrypts the identities' private keys is created in
# /data/secret.key on first start (or give BMGATE_SECRET_KEY): back it up
# with the volume, losing it loses every identity.

FROM docker.io/library/golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .
# .git stays out of the build context, so the version is stamped here:
#   docker build --build-arg VERSION=v1.2.3 -t bmgate .
# Without it the binary calls itself <release>-dev (bmgate version).
ARG VERSION=
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 go build -trimpath -ldflags="-s -w -X main.version=${VERSION}" -o /out/bmgate ./cmd/bmgate
# The volume's mount point, owned by the runtime user so a fresh named
# volume inherits that ownership.
RUN mkdir -p /out/data && chown 65532:65532 /out/data && chmod 0700 /out/data

# distroless/static: no shell, no package manager; CA certificates, tzdata,
# /etc/passwd with the "nonroot" user (uid 65532) and a world-writable /tmp.
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/bmgate /usr/local/bin/bmgate
COPY --from=build --chown=65532:65532 /out/data /data
USER 65532:65532
# Listen on every interface of the container. Password logins then need TLS
# (allow_insecure_auth = auto allows plaintext only on loopback listeners);
# mount a certificate and set BMGATE_TLS_CERT/BMGATE_TLS_KEY, or clients
# accept the self-signed one made in /data. The admin listener stays on the
# container's loopback, where the health check reaches it.
ENV BMGATE_DATA=/data \
    BMGATE_SMTP=0.0.0.0:1587 \
    BMGATE_IMAP=0.0.0.0:1143 \
    BMGATE_P2P=0.0.0.0:8444 \
    BMGATE_ADMIN=127.0.0.1:8446
VOLUME ["/data"]
EXPOSE 1587 1143 8444
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["/usr/local/bin/bmgate", "healthcheck"]
ENTRYPOINT ["/usr/local/bin/bmgate"]
CMD ["serve"]
