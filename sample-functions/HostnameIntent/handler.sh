# shellcheck shell=sh
# HostnameIntent: answers an Alexa skill request with the container's
# hostname, so repeated calls show the load spreading across replicas.
# Run by busybox sh under the watchdog (fprocess="sh /handler.sh").

# The request says nothing we need, but read it so the watchdog's write to
# our stdin never fails.
cat >/dev/null

# Hostnames are letters, digits, dots and dashes: nothing to escape in JSON.
host=$(hostname)
printf '{"version":"1.0","response":{"outputSpeech":{"type":"PlainText","text":"My hostname is %s"},"card":{"type":"Simple","title":"Hostname","content":"%s"},"shouldEndSession":true}}\n' "$host" "$host"
