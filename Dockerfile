# The async-code webhook service.
#
#   docker build -t async-code .
#   docker run -d -p 8080:8080 --env-file .env \
#       -v /var/run/docker.sock:/var/run/docker.sock \
#       -v /var/lib/async-code:/var/lib/async-code async-code
#
# A .env written by setup mode quotes its values, which --env-file keeps: the README's
# "Running in Docker" shows how to pass it.
#
# Sandboxes bind-mount work trees from the data directory by host path, so the
# data directory must be mounted at the same path inside and outside (a named
# or anonymous volume does not work).
#
# BASE_IMAGE may be any Debian-based image with python3 (>= 3.11) and its venv
# module (on plain Debian: python3 and python3-venv).
ARG BASE_IMAGE=python:3.12-slim-bookworm
FROM ${BASE_IMAGE}

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# git clones and pushes the repositories tasks work on (over HTTPS).
RUN apt-get update \
    && apt-get install -y --no-install-recommends git ca-certificates \
    && rm -rf /var/lib/apt/lists/*

# A virtualenv keeps the install independent of the base image's Python
# packaging (Debian's system Python refuses pip installs outside a venv).
ENV VIRTUAL_ENV=/opt/async-code
ENV PATH=/opt/async-code/bin:$PATH
RUN python3 -m venv /opt/async-code

COPY . /src
RUN pip install --no-cache-dir /src \
    && rm -rf /src

# The service runs as root on purpose: it starts sandbox containers through the
# host's Docker socket, which is root-equivalent anyway, and the socket's group
# id differs from host to host, so a fixed unprivileged user could not use it.
ENV ASYNC_CODE_DATA_DIR=/var/lib/async-code
RUN mkdir -p /var/lib/async-code

EXPOSE 8080
ENTRYPOINT ["async-code"]
CMD ["serve", "--host", "0.0.0.0", "--port", "8080"]
