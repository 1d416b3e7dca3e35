# The sandbox image every Paid run starts from.
#
# Built by `scripts/build-images`. The base `debian:bookworm-slim` is pulled
# from a registry when one is reachable; otherwise the script creates it
# locally from Debian packages (debootstrap + docker import).
FROM debian:bookworm-slim

# Optional agent CLIs, installed from PyPI when asked for:
#   --build-arg PIP_PACKAGES="aider-chat==0.86.1"
ARG PIP_PACKAGES=""

RUN set -eux; \
    export DEBIAN_FRONTEND=noninteractive; \
    if ! command -v python3 >/dev/null || ! command -v git >/dev/null; then \
        apt-get update; \
        apt-get install -y --no-install-recommends git bash python3 ca-certificates procps; \
        rm -rf /var/lib/apt/lists/*; \
    fi; \
    if [ -n "$PIP_PACKAGES" ]; then \
        apt-get update; \
        apt-get install -y --no-install-recommends python3-pip python3-venv; \
        python3 -m venv /opt/agent-venv; \
        /opt/agent-venv/bin/pip install --no-cache-dir $PIP_PACKAGES; \
        ln -s /opt/agent-venv/bin/* /usr/local/bin/ 2>/dev/null || true; \
        rm -rf /var/lib/apt/lists/*; \
    fi; \
    groupadd --gid 1000 agent; \
    useradd --uid 1000 --gid 1000 --create-home --home-dir /home/agent --shell /bin/bash agent

ENV HOME=/home/agent
USER agent
WORKDIR /workspace
CMD ["sleep", "infinity"]
