# shellcheck shell=sh
# sleep: sleeps for the number of seconds in the request body, then says
# where it slept. "0.5" and ".5" work; an empty body means 1 second.
# Run by busybox sh under the watchdog (fprocess="sh /handler.sh").

body=$(cat)

reject() {
    printf 'sleep: expected a number of seconds such as 0.5, got %.60s\n' "$body" >&2
    exit 1
}

# Split on whitespace (no globbing) to drop a trailing newline.
set -f
# shellcheck disable=SC2086
set -- $body
set +f
[ "$#" -le 1 ] || reject
seconds=${1:-1}
case "$seconds" in
    . | *[!0-9.]* | *.*.*) reject ;;
esac

sleep "$seconds"
printf 'slept %ss on %s\n' "$seconds" "$(hostname)"
