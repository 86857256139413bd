# The statspout collector as a container, one per Docker host (docker-compose.yml runs it).
#
#   docker build -t statspout/collector .
#   docker run -d --name statspout-collector --network host --cgroupns=host \
#     --group-add "$(stat -c %g /var/run/docker.sock)" \
#     -v /var/run/docker.sock:/var/run/docker.sock \
#     -v /sys/fs/cgroup:/host/sys/fs/cgroup:ro -v /proc:/host/proc:ro \
#     statspout/collector --connect tcp://ROUTER:5556
#
# BASE is any image with python3 and its venv module (Debian's python3-venv); the test suite
# builds one offline with debootstrap. Wheels in wheels/ (pip wheel . -w wheels) are installed
# without reaching an index; without them pip installs from the index pip is configured with.
# The image holds the whole package: `--entrypoint statspout-router` or `statspout-sink` run
# the router and the sinks from the same image.
ARG BASE=python:3.12-slim
FROM ${BASE}

COPY . /src
RUN python3 -m venv /opt/statspout \
 && if ls /src/wheels/*.whl >/dev/null 2>&1; then \
        /opt/statspout/bin/pip install --no-cache-dir --no-index --find-links /src/wheels statspout; \
    else \
        /opt/statspout/bin/pip install --no-cache-dir /src; \
    fi \
 && rm -rf /src \
 && useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin statspout

ENV PATH=/opt/statspout/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    STATSPOUT_COLLECTOR_PROC_ROOT=/host/proc \
    STATSPOUT_COLLECTOR_CGROUP_ROOT=/host/sys/fs/cgroup

# Not root: the Docker socket is reached through its group (--group-add, group_add in compose),
# the host's /proc and cgroup files are world-readable.
USER statspout
ENTRYPOINT ["statspout-collector"]
