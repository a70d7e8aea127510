#!/usr/bin/env bash
# The shoal-flink image's entrypoint, installed as /docker-entrypoint.sh: the command
# Flink's native Kubernetes integration starts in every pod (kubernetes.entry.path), with
# the roles Flink's own images take, so the Flink Kubernetes operator (and a plain
# `podman run`) can use this image in their place.
#
#   help                     this text
#   jobmanager [ARGS]        a session cluster's JobManager, in the foreground
#   standalone-job [ARGS]    an application cluster's JobManager: ARGS name the program,
#                            e.g. --job-classname org.apache.flink.client.python.PythonDriver
#                            -pym runtime.flink.main --job jobs.qoe:job ...
#   taskmanager [ARGS]       a TaskManager
#   history-server [ARGS]    Flink's history server
#   anything else            run as given. Native Kubernetes (the operator's default mode)
#                            passes `bash -c "kubernetes-jobmanager.sh kubernetes-application
#                            ..."` or `kubernetes-taskmanager.sh ...`: $FLINK_HOME/bin is on
#                            PATH, and conf/ is the operator's read-only ConfigMap, so
#                            nothing below is written to it.
#
# For the four roles, conf/config.yaml gets (through Flink's own config-parser-utils.sh):
#   jobmanager.rpc.address             $JOB_MANAGER_RPC_ADDRESS, default: `hostname -f`
#   blob.server.port                   6124 (a fixed port a TaskManager can be let through to)
#   taskmanager.numberOfTaskSlots      $TASK_MANAGER_NUMBER_OF_TASK_SLOTS, if set
#   then every `key: value` line of $FLINK_PROPERTIES (last, so it overrides the above;
#   "10 s" is written as "10s", other values with spaces are refused).
# In every mode: ENABLE_BUILT_IN_PLUGINS (jars of opt/, separated by ';') are linked into
# plugins/, and jemalloc is preloaded (RocksDB fragments glibc's heap) unless
# DISABLE_JEMALLOC=true.
set -euo pipefail

FLINK_HOME=${FLINK_HOME:-/opt/flink}
conf_dir=${FLINK_CONF_DIR:-$FLINK_HOME/conf}

usage() {
    sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'
}

die() {
    echo "error: docker-entrypoint: $*" >&2
    exit 1
}

trim() {
    local text=$1
    text=${text#"${text%%[![:space:]]*}"}
    printf '%s' "${text%"${text##*[![:space:]]}"}"
}

preload_jemalloc() {
    [ "${DISABLE_JEMALLOC:-false}" = true ] && return 0
    local lib
    for lib in /usr/lib/*-linux-gnu/libjemalloc.so.2; do
        if [ -f "$lib" ]; then
            export LD_PRELOAD="${LD_PRELOAD:+$LD_PRELOAD:}$lib"
            return 0
        fi
    done
    echo "warning: docker-entrypoint: jemalloc not found, glibc's allocator is used" >&2
}

enable_plugins() {
    local jars jar
    IFS=';' read -r -a jars <<< "${ENABLE_BUILT_IN_PLUGINS:-}"
    for jar in "${jars[@]}"; do
        jar=$(trim "$jar")
        [ -n "$jar" ] || continue
        [ -f "$FLINK_HOME/opt/$jar" ] || die "ENABLE_BUILT_IN_PLUGINS: $jar is not in $FLINK_HOME/opt"
        mkdir -p "$FLINK_HOME/plugins/${jar%.jar}"
        ln -sf "$FLINK_HOME/opt/$jar" "$FLINK_HOME/plugins/${jar%.jar}/$jar"
        echo "docker-entrypoint: plugin ${jar%.jar} enabled"
    done
}

configure() {
    local settings=() line key value
    settings+=("-Djobmanager.rpc.address=${JOB_MANAGER_RPC_ADDRESS:-$(hostname -f)}")
    settings+=("-Dblob.server.port=6124")
    if [ -n "${TASK_MANAGER_NUMBER_OF_TASK_SLOTS:-}" ]; then
        settings+=("-Dtaskmanager.numberOfTaskSlots=$TASK_MANAGER_NUMBER_OF_TASK_SLOTS")
    fi
    while IFS= read -r line; do
        [ -n "$(trim "$line")" ] || continue
        case "$line" in
            *:*) ;;
            *) die "FLINK_PROPERTIES: '$line' is not 'key: value'" ;;
        esac
        key=$(trim "${line%%:*}")
        value=$(trim "${line#*:}")
        [ -n "$key" ] || die "FLINK_PROPERTIES: '$line' has no key"
        # Flink's config-parser-utils.sh splits its arguments at spaces: "10 s" goes as
        # "10s" (the same duration or size to Flink), any other space is refused.
        if [[ "$value" =~ ^([0-9.]+)[[:space:]]+([A-Za-z]+)$ ]]; then
            value="${BASH_REMATCH[1]}${BASH_REMATCH[2]}"
        elif [[ "$value" =~ [[:space:]] ]]; then
            die "FLINK_PROPERTIES: the value of $key has spaces, which Flink's" \
                "config-parser-utils.sh cannot write: mount a config.yaml instead"
        fi
        settings+=("-D$key=$value")
    done <<< "${FLINK_PROPERTIES:-}"
    [ -w "$conf_dir/config.yaml" ] || die "$conf_dir/config.yaml is not writable"
    "$FLINK_HOME/bin/config-parser-utils.sh" "$conf_dir" "$FLINK_HOME/bin" "$FLINK_HOME/lib" \
        "${settings[@]}" >/dev/null || die "could not write $conf_dir/config.yaml"
}

start() {
    local role=$1 script=$2
    shift 2
    [ "$(id -u)" != 0 ] || echo "warning: docker-entrypoint: running Flink as root" >&2
    preload_jemalloc
    enable_plugins
    configure
    echo "docker-entrypoint: starting the $role"
    exec "$FLINK_HOME/bin/$script" start-foreground "$@"
}

case "${1:-help}" in
    help | -h | --help) usage ;;
    jobmanager) shift; start JobManager jobmanager.sh "$@" ;;
    standalone-job) shift; start "application's JobManager" standalone-job.sh "$@" ;;
    taskmanager) shift; start TaskManager taskmanager.sh "$@" ;;
    history-server) shift; start "history server" historyserver.sh "$@" ;;
    *)
        preload_jemalloc
        enable_plugins
        exec "$@"
        ;;
esac
