#!/bin/sh
# The image's entrypoint: runs "$@" (by default `gapline ...`) as whatever uid `docker run --user`
# chose, the uids the image's /etc/passwd does not know included.
#
# A uid with no passwd entry breaks every caller of getpwuid(): Python's getpass.getuser() (DVC
# hashes it into its site cache path, MLflow tags runs with it), git and libgit2, `id -un`, ...
# For such a uid this script gives it an entry through nss_wrapper (Debian's libnss-wrapper): a
# copy of /etc/passwd and /etc/group with the uid and gid added, made visible to this process and
# its children by LD_PRELOAD. /etc/passwd itself stays read-only. A HOME the uid cannot write
# to (the image's /home/gapline belongs to uid 10001) is replaced by a fresh one under /tmp.
# A gid /etc/group lacks gets a group entry the same way. Known uids and gids (10001, root, ...)
# with a writable HOME run unchanged. Two temporary folders per run (HOME, the passwd copies)
# are left in the container's /tmp: gone with `docker run --rm`.
set -eu

uid=$(id -u)
gid=$(id -g)

if [ ! -w "${HOME:-/nonexistent}" ]; then
    if home=$(mktemp -d "${TMPDIR:-/tmp}/gapline-home.XXXXXX" 2>/dev/null); then
        export HOME="$home"
    else
        echo "gapline-entrypoint: warning: HOME=${HOME:-} is not writable and no temporary one could be made" >&2
    fi
fi

if ! getent passwd "$uid" >/dev/null 2>&1 || ! getent group "$gid" >/dev/null 2>&1; then
    lib=""
    for candidate in /usr/lib/*/libnss_wrapper.so /usr/lib/libnss_wrapper.so /usr/lib64/libnss_wrapper.so; do
        if [ -f "$candidate" ]; then lib=$candidate; break; fi
    done
    nss=""
    if [ -n "$lib" ]; then
        nss=$(mktemp -d "${TMPDIR:-/tmp}/gapline-nss.XXXXXX" 2>/dev/null) || nss=""
    fi
    if [ -n "$nss" ]; then
        name=gapline-$uid
        cat /etc/passwd >"$nss/passwd"
        if ! getent passwd "$uid" >/dev/null 2>&1; then
            printf '%s:x:%s:%s:gapline (uid %s):%s:/bin/sh\n' "$name" "$uid" "$gid" "$uid" "${HOME:-/}" >>"$nss/passwd"
        fi
        cat /etc/group >"$nss/group"
        if ! getent group "$gid" >/dev/null 2>&1; then
            printf 'gapline-g%s:x:%s:\n' "$gid" "$gid" >>"$nss/group"
        fi
        export NSS_WRAPPER_PASSWD="$nss/passwd" NSS_WRAPPER_GROUP="$nss/group"
        export LD_PRELOAD="$lib${LD_PRELOAD:+ $LD_PRELOAD}"
    else
        echo "gapline-entrypoint: warning: uid $uid or gid $gid has no entry and nss_wrapper is unavailable" >&2
    fi
fi

exec "$@"
