"""The project's `faas` CLI, which runs experiments and draws their
reports: found, given the gateway and its credentials, and run."""

import os
import shutil
import signal
import subprocess

from .errors import FaasError


def locate(given=None):
    """The CLI: ``given``, else $FAAS_CLI, else ``faas`` on PATH."""
    path = given or os.environ.get("FAAS_CLI") or shutil.which("faas")
    if not path:
        raise FaasError(
            "the faas CLI was not found: give Gateway(faas_cli=PATH), set FAAS_CLI, "
            "or put faas on PATH"
        )
    if not (os.path.isfile(path) and os.access(path, os.X_OK)):
        raise FaasError(f"the faas CLI {path} is not an executable file")
    return os.fspath(path)


def run(cli, args, gateway, user=None, password=None):
    """Runs ``cli args`` aimed at ``gateway``; its stdout. A FaasError with
    its error line when it fails. Interrupted (Ctrl-C, a notebook's stop
    button), the CLI gets SIGINT too, so it puts the functions' settings
    back and keeps what it measured, before the interruption goes on."""
    env = dict(os.environ, FAAS_GATEWAY=gateway)
    if password is not None:
        env["FAAS_USERNAME"] = user
        env["FAAS_PASSWORD"] = password
    try:
        child = subprocess.Popen(
            [cli, *args],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
    except OSError as e:
        raise FaasError(f"cannot run the faas CLI {cli}: {e.strerror or e}") from None
    try:
        stdout, stderr = child.communicate()
    except KeyboardInterrupt:
        child.send_signal(signal.SIGINT)
        child.communicate()
        raise
    if child.returncode != 0:
        raise FaasError(_error_line(stderr) or f"faas {' '.join(args)} exited with {child.returncode}")
    return stdout


def _error_line(stderr):
    """The CLI's own error (its `faas: …` lines), else all it said."""
    lines = [line for line in stderr.splitlines() if line.strip()]
    errors = [line[len("faas: ") :] for line in lines if line.startswith("faas: ")]
    return "\n".join(errors or lines)
