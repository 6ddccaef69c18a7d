# gpuctl in a container: `gpuctl top`/`gpuctl snapshot` in-cluster (service
# account credentials) or against a mounted kubeconfig.
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY gpuctl ./gpuctl
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.11-slim
RUN useradd --create-home --uid 10001 gpuctl
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels
USER 10001
ENV TERM=xterm-256color
ENTRYPOINT ["gpuctl"]
CMD ["snapshot"]
