# Signet node image. Build: docker build -t signet .   Run: see compose.yaml.
FROM python:3.11-slim AS build
# pdqhash, py-tlsh and pyicu compile from source (pyicu against the system ICU).
RUN apt-get update && apt-get install -y --no-install-recommends build-essential \
    libicu-dev pkg-config \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY pyproject.toml setup.py README.md alembic.ini ./
COPY app ./app
COPY migrations ./migrations
RUN python -m venv /opt/signet \
    && /opt/signet/bin/pip install --no-cache-dir --upgrade pip \
    && /opt/signet/bin/pip install --no-cache-dir '.[media]'

FROM python:3.11-slim
# pysodium (the identifier OPRF) loads the system libsodium; pyicu the system ICU (same Debian
# release as the build stage).
RUN apt-get update && apt-get install -y --no-install-recommends libsodium23 libicu72 \
    && rm -rf /var/lib/apt/lists/*
RUN useradd --system --uid 10001 --home /var/lib/signet signet \
    && mkdir -p /var/lib/signet && chown signet /var/lib/signet
COPY --from=build /opt/signet /opt/signet
ENV PATH=/opt/signet/bin:$PATH \
    SIGNET_DATA_DIR=/var/lib/signet \
    SIGNET_HOST=0.0.0.0 \
    SIGNET_PORT=8000
USER signet
WORKDIR /var/lib/signet
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s CMD python -c "import urllib.request,sys; urllib.request.urlopen('http://127.0.0.1:8000/healthz'); sys.exit(0)"
ENTRYPOINT ["signet"]
CMD ["serve"]
