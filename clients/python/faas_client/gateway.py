"""The gateway as a notebook sees it: deploy Python functions, call them,
run experiments on them and read the results (FaaSET's workflow)."""

import base64
import functools
import json
import os
import tempfile
import time
import urllib.parse

from . import cli, results, source
from .errors import FaasError
from .http import Transport

DEFAULT_URL = "http://127.0.0.1:8080"
# A build waits longer than an API call: the gateway's own build_timeout
# (10 minutes by default) answers 504 before this gives up.
BUILD_TIMEOUT = 660
FINAL_STATUSES = ("succeeded", "failed", "dead")


class Gateway:
    """A faas gateway.

    ``url``, ``user`` and ``password`` default to $FAAS_GATEWAY,
    $FAAS_USERNAME (else ``admin``) and $FAAS_PASSWORD; the credentials go
    with every ``/system/…`` call (HTTP basic auth). ``timeout`` bounds each
    call, in seconds; ``faas_cli`` is the `faas` binary experiments run with
    (default: $FAAS_CLI, else ``faas`` on PATH).

    >>> gw = Gateway("http://127.0.0.1:8080", user="admin", password="s3cr3t")
    >>> @gw.function(memory="256m")
    ... def hello(request, context):
    ...     return {"message": "Hello " + request["name"]}
    >>> hello({"name": "Bob"})
    {'message': 'Hello Bob'}
    """

    def __init__(self, url=None, user=None, password=None, timeout=60, faas_cli=None):
        self.url = (url or os.environ.get("FAAS_GATEWAY") or DEFAULT_URL).rstrip("/")
        if password is None:
            password = os.environ.get("FAAS_PASSWORD") or None
        if user is None:
            user = os.environ.get("FAAS_USERNAME") or "admin"
        self.user = user
        self._password = password
        self.timeout = timeout
        self.faas_cli = faas_cli
        self._http = Transport(self.url, user, password, timeout)

    def __repr__(self):
        auth = f", user={self.user!r}" if self._password is not None else ""
        return f"Gateway({self.url!r}{auth})"

    # ------------------------------------------------------------ functions

    def deploy(
        self,
        fn,
        name=None,
        memory=None,
        cpu=None,
        requirements=None,
        labels=None,
        env=None,
        replicas=None,
    ):
        """Builds the Python function ``fn`` on the gateway and deploys it
        (or updates it); the build's result
        ``{"function", "image", "digest", "cached", "deployed"}``.

        ``fn`` has FaaSET's shape, ``def f(request, context)``: ``request``
        is the JSON object sent, the dict it returns is the answer. Only its
        own source is sent, so it imports what it uses inside its body.
        ``name`` defaults to the function's name with ``_`` as ``-``;
        ``memory`` is ``"256m"`` (or MB as a number, like FaaSET), ``cpu``
        ``0.5`` or ``"500m"``; ``requirements`` a list of pip specifications
        (or requirements.txt's text), installed from PyPI at build time;
        ``labels`` and ``env`` dicts; ``replicas`` how many run (default 1).

        >>> def add(request, context):
        ...     return {"sum": request["a"] + request["b"]}
        >>> gw.deploy(add, memory=128)["deployed"]
        'created'
        """
        if name is None:
            name = fn.name if isinstance(fn, Function) else source.function_name(fn)
        file, archive = source.package(fn, requirements)
        envs = [f"FAAS_HANDLER={file}:{source.original(fn).__name__}"]
        for key, value in (env or {}).items():
            if not key or "=" in key:
                raise ValueError(f"env: {key!r} is not a variable name")
            envs.append(f"{key}={value}")
        body = {
            "name": name,
            "env": "python",
            "threads": 1 if replicas is None else int(replicas),
            "zip": base64.b64encode(archive).decode(),
            "envs": envs,
        }
        limits = {}
        if memory is not None:
            limits["memory"] = _memory(memory)
        if cpu is not None:
            limits["cpu"] = str(cpu)
        if limits:
            body["limits"] = limits
        if labels:
            body["labels"] = {str(k): str(v) for k, v in labels.items()}
        answer = self._http.call(
            "POST",
            "/system/builds",
            json.dumps(body).encode(),
            {"Content-Type": "application/json", "Accept": "application/json"},
            timeout=max(self.timeout, BUILD_TIMEOUT),
            what=f"deploy {name}: ",
        )
        return answer.json()

    def function(self, fn=None, *, name=None, **settings):
        """Decorator: deploys the function now (FaaSET's
        ``@cloud_function``) and replaces it with a :class:`Function` that
        calls the deployed one. Takes :meth:`deploy`'s settings.

        >>> @gw.function(memory="128m", requirements=["numpy"])
        ... def mean(request, context):
        ...     import numpy
        ...     return {"mean": float(numpy.mean(request["values"]))}
        >>> mean({"values": [1, 2, 3]})
        {'mean': 2.0}
        >>> mean.local({"values": [1, 2, 3]})
        {'mean': 2.0}
        """

        def decorate(f):
            result = self.deploy(f, name=name, **settings)
            return Function(self, result["function"], f, result)

        return decorate(fn) if fn is not None else decorate

    def functions(self):
        """The deployed functions' statuses (``GET /system/functions``)."""
        return self._http.call("GET", "/system/functions").json()

    def describe(self, name):
        """One function's status (``GET /system/function/NAME``)."""
        name = getattr(name, "name", name)
        path = f"/system/function/{_segment(name)}"
        return self._http.call("GET", path, what=f"describe {name}: ").json()

    def remove(self, name):
        """Removes a function (a Function object or its name)."""
        name = getattr(name, "name", name)
        self._http.call(
            "DELETE",
            "/system/functions",
            json.dumps({"functionName": name}).encode(),
            {"Content-Type": "application/json"},
            what=f"remove {name}: ",
        )

    def info(self):
        """The gateway's provider, orchestration, version and how it
        enforces limits (``GET /system/info``)."""
        return self._http.call("GET", "/system/info").json()

    # ------------------------------------------------------------ async calls

    def executions(self, function=None, status=None, include_completed=True):
        """Async calls' records, oldest first (``GET /system/executions``):
        of one function, in one status (``queued``, ``running``,
        ``succeeded``, ``failed``, ``dead``), or only the unfinished ones
        with ``include_completed=False``.

        >>> call_id = hello.invoke_async({"name": "Ann"})
        >>> [e["status"] for e in gw.executions("hello") if e["id"] == call_id]
        ['succeeded']
        """
        query = {"include_completed": "true" if include_completed else "false"}
        if function is not None:
            query["function"] = getattr(function, "name", function)
        if status is not None:
            query["status"] = status
        path = "/system/executions?" + urllib.parse.urlencode(query)
        return self._http.call("GET", path).json()

    def execution(self, call_id):
        """One async call's record (``GET /system/executions/ID``)."""
        return self._http.call("GET", f"/system/executions/{_segment(call_id)}").json()

    def wait(self, call_id, timeout=None):
        """The record of an async call once it has finished (succeeded,
        failed or dead), looked at every 50 ms to 1 s; a FaasError after
        ``timeout`` seconds (default: the gateway's ``timeout``).

        >>> gw.wait(hello.invoke_async({"name": "Ann"}))["statusCode"]
        200
        """
        limit = self.timeout if timeout is None else timeout
        deadline = time.monotonic() + limit
        pause = 0.05
        while True:
            record = self.execution(call_id)
            if record.get("status") in FINAL_STATUSES:
                return record
            if time.monotonic() + pause > deadline:
                raise FaasError(f"{call_id} has not finished after {limit} s: {record.get('status')}")
            time.sleep(pause)
            pause = min(pause * 2, 1.0)

    # ------------------------------------------------------------ experiments

    def run_experiment(self, fn_or_name, experiment, out=None):
        """Runs an experiment on a deployed function with ``faas experiment
        run``; every call's row from ``calls.csv``.

        ``experiment`` takes FaaSET's keys (``payloads``, ``memorySettings``,
        ``runs``, ``threads``, ``iterations``, ``shufflePayloads``) and the
        CLI's (``warmup``, ``mode``, ``async``, ``rate``, ``timeout``, …);
        its ``function`` is ``fn_or_name``'s. ``out`` is the results folder
        (default: a new temporary one). The rows are a pandas DataFrame when
        pandas is importable (the folder in ``df.attrs["out"]``), else a
        list of dicts (the folder in ``rows.out``). Failed calls are rows
        with their ``status`` and ``error``; a FaasError is raised only when
        the run itself fails (a bad key, an unknown function).

        >>> df = gw.run_experiment(hello, {
        ...     "payloads": [{"name": "Bob"}, {"name": "Joe"}],
        ...     "memorySettings": [128, 256], "runs": 50, "threads": 4})
        >>> df.groupby("memory")["function_ms"].median()  # doctest: +SKIP
        """
        name = _name_of(fn_or_name)
        given = experiment.get("function")
        if given is not None and given != name:
            raise ValueError(f"the experiment names function {given!r}, not {name!r}")
        spec = dict(experiment, function=name)
        binary = cli.locate(self.faas_cli)
        made = out is None
        out = tempfile.mkdtemp(prefix=f"faas-{name}-") if made else os.fspath(out)
        out = os.path.abspath(out)
        try:
            with tempfile.TemporaryDirectory(prefix="faas-experiment-") as scratch:
                # The file's name is the experiment's default name (the
                # rows' `experiment` column).
                path = os.path.join(scratch, f"{name}.json")
                with open(path, "w", encoding="utf-8") as f:
                    json.dump(spec, f)
                try:
                    self._cli(["experiment", "run", path, "--out", out], binary)
                except FaasError as e:
                    # The file is this call's scratch copy: name the
                    # experiment, not the file.
                    e.message = e.message.replace(f"experiment file {path}: ", "experiment: ")
                    e.args = (e.message,)
                    raise
        except FaasError:
            if made and not os.listdir(out):
                os.rmdir(out)
            raise
        return results.calls(out)

    def summary(self, out):
        """summary.csv of a results folder (or of what
        :meth:`run_experiment` returned): per function, memory, CPU,
        payload and cold/warm, the calls' statistics."""
        return results.summary(results.folder_of(out))

    def report(self, out):
        """Draws a results folder's plots with ``faas experiment report``;
        the path of its report.html (``IPython.display.IFrame(path, 900,
        600)`` shows it)."""
        folder = results.folder_of(out)
        printed = self._cli(["experiment", "report", folder]).strip().splitlines()
        return printed[-1] if printed else os.path.join(folder, "report.html")

    def _cli(self, args, binary=None):
        binary = binary or cli.locate(self.faas_cli)
        return cli.run(binary, args, self.url, self.user, self._password)


class Function:
    """A deployed function, called like the Python function it came from.

    ``Function(gw, "name")`` reaches one deployed some other way (no
    ``.local`` then).

    >>> hello({"name": "Bob"})          # POST /function/hello
    {'message': 'Hello Bob'}
    >>> hello.local({"name": "Bob"})    # the Python function, here
    {'message': 'Hello Bob'}
    >>> hello.invoke_async({"name": "Bob"})
    'c0ffee…'
    """

    def __init__(self, gateway, name, fn=None, deployment=None):
        self.gateway = gateway
        self.name = name
        self.fn = fn
        self.deployment = deployment
        if fn is not None:
            functools.update_wrapper(self, fn)

    def __repr__(self):
        return f"<Function {self.name} on {self.gateway.url}>"

    def __call__(self, request=None, timeout=None):
        """POSTs ``request`` (JSON; ``{}`` when None) to ``/function/NAME``;
        the decoded JSON answer, or its text when it is not JSON. A
        FaasError with the status and message when the call fails."""
        answer = self.gateway._http.call(
            "POST",
            f"/function/{_segment(self.name)}",
            _json_body(request),
            {"Content-Type": "application/json"},
            auth=False,
            timeout=timeout,
            what=f"{self.name}: ",
        )
        return answer.json() if answer.is_json else answer.text()

    def local(self, request=None, context=None):
        """Calls the original Python function here, with the same request."""
        if self.fn is None:
            raise FaasError(f"{self.name} was not deployed from Python here: it has no local code")
        return self.fn({} if request is None else request, context)

    def invoke_async(self, request=None):
        """Queues a call (``POST /async-function/NAME``); its execution id,
        for :meth:`Gateway.execution` and :meth:`Gateway.executions`."""
        answer = self.gateway._http.call(
            "POST",
            f"/async-function/{_segment(self.name)}",
            _json_body(request),
            {"Content-Type": "application/json"},
            auth=False,
            what=f"{self.name}: ",
        )
        return answer.headers.get("X-Call-Id") or answer.json()["id"]


def _memory(memory):
    """A memory limit as the gateway takes it; a number is MB (FaaSET)."""
    if isinstance(memory, (int, float)) and not isinstance(memory, bool):
        if memory <= 0 or memory != int(memory):
            raise ValueError(f"memory: {memory} is not a whole number of MB")
        return f"{int(memory)}m"
    return str(memory)


def _json_body(request):
    return json.dumps({} if request is None else request).encode()


def _name_of(fn_or_name):
    if isinstance(fn_or_name, str):
        return fn_or_name
    if isinstance(fn_or_name, Function):
        return fn_or_name.name
    return source.function_name(fn_or_name)


def _segment(text):
    return urllib.parse.quote(str(text), safe="")
