# warpcore server image: wheels are built in one stage, installed into a slim non-root runtime.
FROM python:3.11-slim-bookworm AS build
RUN apt-get update \
    && apt-get install -y --no-install-recommends build-essential=12.9 cmake=3.25.1-1 \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY constraints.txt pyproject.toml README.md ./
COPY client ./client
COPY server ./server
# llama-cpp-python compiles here. GGML_NATIVE=OFF builds for x86-64 with AVX2, FMA and F16C (x86-64-v3) rather
# than for the build host's CPU, so the image runs on any x86-64 CPU that has them. The CPU backend stays linked in:
# as dynamically loaded variants (GGML_BACKEND_DL) it is loaded only by ggml_backend_load_all(), which
# llama-cpp-python does not call, and every model load fails with "no backends are loaded".
ENV CMAKE_ARGS="-DGGML_NATIVE=OFF"
RUN pip wheel --no-cache-dir -c constraints.txt --wheel-dir /wheels ./client .

FROM python:3.11-slim-bookworm
RUN apt-get update \
    && apt-get install -y --no-install-recommends libgomp1=12.2.0-14+deb12u1 \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --create-home --uid 10001 warpcore \
    && mkdir /models \
    && chown warpcore /models
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir --no-index --find-links /wheels warpcore-server==0.1.0 \
    && rm -rf /wheels
USER 10001
ENV MODELS_PATH=/models \
    WARPCORE_HOST=0.0.0.0 \
    WARPCORE_PORT=50051
EXPOSE 50051
VOLUME ["/models"]
# `warpcore health` (the CLI of warpcore-client, installed with the server) exits 0 only while the server reports
# SERVING: not before the default model is loaded, nor once a shutdown has begun. Kubernetes ignores HEALTHCHECK
# and uses the gRPC probes of deploy/kubernetes instead.
HEALTHCHECK --interval=30s --timeout=10s --start-period=120s --retries=3 \
    CMD ["warpcore", "--target", "127.0.0.1:50051", "--timeout", "5", "health"]
ENTRYPOINT ["warpcore-server"]
