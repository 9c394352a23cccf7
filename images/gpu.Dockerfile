# syntax=docker/dockerfile:1
# The GPU stages (stage1 animal detection, stage2 species classification): one Dockerfile,
# `--build-arg STAGE=stage1|stage2`. Build context: images/ (see images/README.md).
FROM nvidia/cuda:12.4.1-cudnn-runtime-ubuntu22.04@sha256:2fcc4280646484290cc50dce5e65f388dd04352b07cbe89a635703bd1f9aedb6
ARG STAGE
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 \
    DEBIAN_FRONTEND=noninteractive MODEL_DIR=/opt/model
RUN test -n "$STAGE" || (echo "build with --build-arg STAGE=stage1|stage2" >&2; exit 1) \
 && apt-get update \
 && apt-get install -y --no-install-recommends python3=3.10.* python3-pip \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --gid 10001 stage && useradd --uid 10001 --gid 10001 --no-create-home --shell /usr/sbin/nologin stage
WORKDIR /app
COPY runtime/requirements-gpu.txt ./requirements.txt
RUN pip3 install -r requirements.txt
COPY models/${STAGE}/ /opt/model/
COPY runtime/stage_runtime.py runtime/onnx_model.py ${STAGE}/stage.py ./
USER 10001:10001
ENTRYPOINT ["python3", "/app/stage.py"]
