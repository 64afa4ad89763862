# A stand-in for the registry's Redis image, for docker/smoke-test.sh only: it runs the fleet setup
# (docker-compose.fleet.yml, with REDIS_IMAGE pointing here) on machines that reach Debian's
# mirror but no container registry. Users of the fleet setup never need it.
#
# Its base is the smoke test's own Debian rootfs (the stand-in for python:3.11-slim, imported as
# localhost/bookworm-py:local), plus Debian's redis-server, which brings redis-cli for the
# compose file's health check. The build needs no context: it copies nothing in.
FROM localhost/bookworm-py:local

# The Debian mirror the rootfs was bootstrapped from may not be the one reachable now.
ARG DEBIAN_MIRROR=http://deb.debian.org/debian

# policy-rc.d answers "not now" to the package's start script: a build must not start a server.
# Whatever redis-server bookworm carries is the point of a stand-in, so the version is not pinned.
# The `redis` user is made first with the official image's ids (999:999), which the package's
# own setup then reuses, so USER below can name it by number.
# hadolint ignore=DL3008
RUN groupadd --system --gid 999 redis \
    && useradd --system --uid 999 --gid redis --home-dir /var/lib/redis --no-create-home \
        --shell /usr/sbin/nologin redis \
    && printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d \
    && chmod 0755 /usr/sbin/policy-rc.d \
    && printf 'deb %s bookworm main\n' "${DEBIAN_MIRROR}" >/etc/apt/sources.list \
    && apt-get update -qq \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends redis-server \
    && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /var/cache/apt/archives/*.deb \
        /usr/share/doc/* /usr/share/man/* /usr/sbin/policy-rc.d \
    && redis-server --version

# The package made the user's home; the compose file gives the command line (no persistence,
# a password), so nothing is written to disk.
USER 999:999
WORKDIR /var/lib/redis
EXPOSE 6379
CMD ["redis-server", "--save", "", "--appendonly", "no"]
