"""faas_client against a real gateway (process provider, ephemeral
loopback port) and the real `faas` CLI: deploy from a notebook, call,
run experiments, read the rows, async calls, auth, and the mistakes a
notebook makes. The binaries come from `cargo build` (never built here):
$FAAS_GATEWAY_BIN, else <repo>/target/debug/gateway; $FAAS_CLI, else
<repo>/target/debug/faas."""

import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import zipfile

import pytest

from faas_client import FaasError, Function, Gateway
from faas_client import results, source

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
GATEWAY_BIN = os.environ.get("FAAS_GATEWAY_BIN") or os.path.join(REPO, "target", "debug", "gateway")
FAAS_CLI = os.environ.get("FAAS_CLI") or os.path.join(REPO, "target", "debug", "faas")

CALL_TYPES = dict(results.CALLS)


# ------------------------------------------------------------------ helpers


def eventually(check, limit=30.0, what="the condition"):
    """``check()``'s first truthy value, looked for every 50 ms up to
    ``limit`` seconds; a failure naming ``what`` after that."""
    deadline = time.monotonic() + limit
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, f"{what} did not happen within {limit} s"
        time.sleep(0.05)


class LocalGateway:
    """The real gateway binary on an ephemeral loopback port, with its own
    state, queue and secrets in a temporary folder; killed (with its
    functions) by ``stop``."""

    def __init__(self, env=()):
        assert os.access(GATEWAY_BIN, os.X_OK), (
            f"no gateway binary at {GATEWAY_BIN}: build it (cargo build -p gateway) "
            "or set FAAS_GATEWAY_BIN"
        )
        self.dir = tempfile.TemporaryDirectory(prefix="faas-client-test-")
        root = self.dir.name
        os.makedirs(os.path.join(root, "secrets"))
        extra = dict(env)
        environment = {
            "PATH": os.environ.get("PATH", ""),
            "RUST_LOG": "info",
            "secret_mount_path": os.path.join(root, "secrets"),
            "queue_path": os.path.join(root, "queue.redb"),
            "state_dir": os.path.join(root, "state"),
        }
        # Builds run the host's python3 and pip, which want a HOME.
        if "HOME" in os.environ:
            environment["HOME"] = os.environ["HOME"]
        if not any(k.startswith("basic_auth") for k in extra):
            environment["auth"] = "none"
        environment.update(extra)
        self.process = subprocess.Popen(
            [GATEWAY_BIN, "--provider", "process", "--port", "0", "--bind-address", "127.0.0.1", "--coap-port", "0", "--grpc-port", "0"],
            cwd=root,
            env=environment,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines = []
        self.listening = None
        threading.Thread(target=self._read_log, daemon=True).start()
        line = eventually(lambda: self.listening or self.process.poll() is not None, what="listening")
        if self.listening is None:
            raise AssertionError(f"the gateway exited ({self.process.returncode}):\n{self.log()}")
        addr = line.split("addr=", 1)[1].split()[0]
        self.url = "http://127.0.0.1:" + addr.rsplit(":", 1)[1]

    def _read_log(self):
        for line in self.process.stderr:
            self.lines.append(line.rstrip("\n"))
            if self.listening is None and "listening" in line:
                self.listening = line

    def log(self):
        return "\n".join(self.lines)

    def stop(self):
        self.process.kill()
        self.process.wait()
        self.dir.cleanup()


@pytest.fixture(scope="session", autouse=True)
def clean_environment():
    """No login or gateway of the developer's reaches the tests."""
    with pytest.MonkeyPatch.context() as mp, tempfile.TemporaryDirectory() as config:
        for name in ("FAAS_GATEWAY", "FAAS_USERNAME", "FAAS_PASSWORD", "FAAS_CLI"):
            mp.delenv(name, raising=False)
        mp.setenv("FAAS_CONFIG", os.path.join(config, "config.json"))
        yield


@pytest.fixture(scope="session")
def local_gateway(clean_environment):
    gateway = LocalGateway()
    yield gateway
    gateway.stop()


@pytest.fixture()
def gw(local_gateway):
    return Gateway(local_gateway.url, faas_cli=FAAS_CLI)


def assert_calls_typed(rows):
    """Every column of calls.csv, in order, each value of its column's type."""
    for row in rows:
        assert list(row) == results.CALL_COLUMNS
        for column, value in row.items():
            assert value is None or type(value) is CALL_TYPES[column], (column, value)


# ------------------------------------------------------------------ functions


def test_decorated_function_answers_like_its_local_self(gw):
    @gw.function(memory="128m")
    def hello_world(request, context):
        return {"message": "Hello " + request["name"], "length": len(request["name"])}

    assert isinstance(hello_world, Function)
    assert hello_world.name == "hello-world"
    assert hello_world.deployment["deployed"] in ("created", "updated")
    request = {"name": "Bob"}
    assert hello_world(request) == hello_world.local(request) == {"message": "Hello Bob", "length": 3}
    listed = {f["name"]: f for f in gw.functions()}
    assert listed["hello-world"]["limits"]["memory"] == "128m"
    assert gw.describe("hello-world")["envVars"]["FAAS_HANDLER"] == "hello_world.py:hello_world"


def test_deploy_takes_settings_and_the_same_source_is_not_built_again(gw):
    def settings_probe(request, context):
        import os

        return {"greeting": os.environ["GREETING"]}

    first = gw.deploy(
        settings_probe,
        name="probe",
        memory=96,
        cpu=0.5,
        requirements=[],
        labels={"team": "notebooks"},
        env={"GREETING": "hi"},
    )
    assert first["function"] == "probe"
    assert set(first) >= {"function", "image", "digest", "cached", "deployed"}
    status = gw.describe("probe")
    assert status["limits"] == {"memory": "96m", "cpu": "0.5"}
    assert status["labels"]["team"] == "notebooks"
    assert Function(gw, "probe")({}) == {"greeting": "hi"}
    again = gw.deploy(settings_probe, name="probe", memory=96, cpu=0.5, labels={"team": "notebooks"}, env={"GREETING": "hi"})
    assert again["cached"] is True and again["digest"] == first["digest"]
    gw.remove("probe")
    assert "probe" not in {f["name"] for f in gw.functions()}


def test_requirements_are_installed_at_build_time(gw, tmp_path):
    # A wheel made here, named by its path: pip installs it without a network.
    wheel = tmp_path / "faas_probe-1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as w:
        w.writestr("faas_probe.py", "VALUE = 42\n")
        w.writestr("faas_probe-1.0.dist-info/METADATA", "Metadata-Version: 2.1\nName: faas-probe\nVersion: 1.0\n")
        w.writestr(
            "faas_probe-1.0.dist-info/WHEEL",
            "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
        )
        w.writestr("faas_probe-1.0.dist-info/RECORD", "")

    @gw.function(requirements=[str(wheel)])
    def uses_probe(request, context):
        import faas_probe

        return {"value": faas_probe.VALUE + request.get("add", 0)}

    assert uses_probe({"add": 1}) == {"value": 43}


def test_a_failed_build_is_an_error_with_the_build_log(gw, tmp_path):
    missing = str(tmp_path / "not_there-1.0-py3-none-any.whl")

    def broken_requirements(request, context):
        return {}

    with pytest.raises(FaasError) as failure:
        gw.deploy(broken_requirements, requirements=[missing])
    assert failure.value.status == 422
    assert failure.value.message.startswith("deploy broken-requirements: ")
    assert "not_there" in failure.value.details, failure.value.details


def test_function_errors_are_faas_errors_with_the_functions_message(gw):
    @gw.function
    def divide(request, context):
        return {"ratio": request["a"] / request["b"]}

    assert divide({"a": 1, "b": 4}) == {"ratio": 0.25}
    with pytest.raises(FaasError) as failure:
        divide({"a": 1, "b": 0})
    assert failure.value.status == 500
    assert "division by zero" in failure.value.message
    with pytest.raises(FaasError) as unknown:
        Function(gw, "no-such-function")({})
    assert unknown.value.status == 404


def test_text_answers_come_back_as_text(gw):
    @gw.function
    def shout(request, context):
        return request["word"].upper() + "!"

    assert shout({"word": "hey"}) == "HEY!"


# ------------------------------------------------------------------ experiments


@pytest.fixture()
def square(gw):
    @gw.function(memory="128m")
    def square(request, context):
        return {"n": request["n"] ** 2}

    return square


SWEEP = {"payloads": [{"n": 1}, {"n": 2}], "memorySettings": [64, 128], "runs": 8, "threads": 2}


def check_sweep(rows):
    assert len(rows) == 16
    assert_calls_typed(rows)
    assert {r["memory"] for r in rows} == {"64m", "128m"}
    assert {r["function"] for r in rows} == {"square"}
    assert {r["experiment"] for r in rows} == {"square"}
    assert {r["payload_id"] for r in rows} == {0, 1}
    for r in rows:
        assert r["status"] == 200 and r["error"] is None, r
        assert r["client_ms"] > 0 and r["function_ms"] > 0 and r["bytes_out"] > 0
        assert isinstance(r["cold_start"], bool)


def test_an_experiment_gives_a_dataframe_of_every_call(gw, square, tmp_path):
    if os.environ.get("CI") == "true":
        # CI installs pandas: the DataFrame path must run there, not be skipped.
        import pandas
    else:
        pandas = pytest.importorskip("pandas", reason="pandas is optional; the list path is tested without it")
    out = str(tmp_path / "sweep")
    df = gw.run_experiment(square, SWEEP, out=out)
    assert isinstance(df, pandas.DataFrame)
    assert list(df.columns) == results.CALL_COLUMNS
    assert df.attrs["out"] == out
    assert str(df["start_unix_ns"].dtype) == "Int64" and str(df["status"].dtype) == "Int64"
    assert str(df["function_ms"].dtype) == "float64" and str(df["cold_start"].dtype) == "boolean"
    rows = [
        {k: (None if pandas.isna(v) else v.item() if hasattr(v, "item") else v) for k, v in r.items()}
        for r in df.to_dict("records")
    ]
    check_sweep(rows)
    # start_unix_ns is exact (it does not fit a float).
    with open(os.path.join(out, "calls.csv")) as f:
        first = f.read().splitlines()[1].split(",")
    assert int(df["start_unix_ns"].iloc[0]) == int(first[8])
    summary = gw.summary(df)
    assert set(summary["memory"]) == {"64m", "128m"}
    assert int(summary["n"].sum()) == 16 and int(summary["failures"].sum()) == 0


def test_an_experiment_gives_a_list_of_dicts_without_pandas(gw, square, monkeypatch, request):
    monkeypatch.setitem(sys.modules, "pandas", None)  # import pandas fails
    rows = gw.run_experiment("square", SWEEP)  # into a new temporary folder
    request.addfinalizer(lambda: shutil.rmtree(rows.out))
    assert type(rows) is results.Rows and isinstance(rows, list)
    check_sweep(rows)
    assert os.path.isfile(os.path.join(rows.out, "calls.csv"))
    summary = gw.summary(rows.out)
    assert {r["memory"] for r in summary} == {"64m", "128m"}
    assert all(type(r["n"]) is int and type(r["cold_start"]) is bool for r in summary)
    assert all(type(r["client_median_ms"]) is float for r in summary)
    report = gw.report(rows)
    assert report == os.path.join(rows.out, "report.html") and os.path.isfile(report)
    # The memory setting was put back after the sweep.
    assert gw.describe("square")["limits"]["memory"] == "128m"


def test_failing_calls_are_rows_not_exceptions(gw, monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "pandas", None)

    @gw.function
    def always_fails(request, context):
        raise RuntimeError("broken on purpose")

    rows = gw.run_experiment(always_fails, {"payloads": [{}], "runs": 4}, out=tmp_path / "fails")
    assert len(rows) == 4
    assert_calls_typed(rows)
    for r in rows:
        assert r["status"] == 500, r
        assert "broken on purpose" in r["error"], r


def test_a_bad_experiment_key_is_a_faas_error_naming_it(gw, square):
    with pytest.raises(FaasError) as failure:
        gw.run_experiment(square, {"runs": 2, "threds": 2})
    assert "unknown field `threds`" in failure.value.message
    with pytest.raises(FaasError) as unknown:
        gw.run_experiment("no-such-function", {"runs": 1})
    assert "no-such-function" in unknown.value.message
    with pytest.raises(ValueError, match="names function 'other'"):
        gw.run_experiment(square, {"function": "other"})


def test_a_missing_cli_is_named():
    with pytest.raises(FaasError, match="not an executable file"):
        Gateway("http://127.0.0.1:9", faas_cli="/nonexistent/faas").run_experiment("f", {})


# ------------------------------------------------------------------ async calls


def test_executions_show_an_async_call_finished(gw, square):
    call_id = square.invoke_async({"n": 7})
    assert isinstance(call_id, str) and call_id

    def finished():
        found = [e for e in gw.executions(function=square) if e["id"] == call_id]
        return found and found[0]["status"] in ("succeeded", "failed", "dead") and found[0]

    record = eventually(finished, what=f"{call_id} finishing")
    assert record["status"] == "succeeded" and record["statusCode"] == 200
    assert record["function"] == "square"
    assert call_id not in {e["id"] for e in gw.executions(include_completed=False)}
    assert call_id in {e["id"] for e in gw.executions(status="succeeded")}
    assert gw.wait(call_id)["statusCode"] == 200


# ------------------------------------------------------------------ auth


@pytest.fixture(scope="module")
def locked_gateway(clean_environment):
    gateway = LocalGateway({"basic_auth_user": "admin", "basic_auth_password": "s3cr3t-pw"})
    yield gateway
    gateway.stop()


def test_credentials_open_the_management_api(locked_gateway, monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "pandas", None)
    gw = Gateway(locked_gateway.url, "admin", "s3cr3t-pw", faas_cli=FAAS_CLI)

    @gw.function
    def locked(request, context):
        return {"ok": True}

    assert locked({}) == {"ok": True}
    assert "locked" in {f["name"] for f in gw.functions()}
    # The CLI gets the credentials too.
    rows = gw.run_experiment(locked, {"runs": 2}, out=tmp_path / "locked")
    assert [r["status"] for r in rows] == [200, 200]

    def anonymous_fn(request, context):
        return {}

    for stranger in (Gateway(locked_gateway.url), Gateway(locked_gateway.url, "admin", "wrong")):
        with pytest.raises(FaasError) as failure:
            stranger.deploy(anonymous_fn)
        assert failure.value.status == 401
        assert "credentials" in str(failure.value)


def test_credentials_come_from_the_environment(locked_gateway, monkeypatch):
    monkeypatch.setenv("FAAS_GATEWAY", locked_gateway.url)
    monkeypatch.setenv("FAAS_PASSWORD", "s3cr3t-pw")
    assert Gateway().info()["provider"]["orchestration"] == "process"


# ------------------------------------------------------------------ mistakes


def test_functions_without_source_of_their_own_are_refused(gw):
    with pytest.raises(ValueError, match="lambda"):
        gw.deploy(lambda request, context: {})
    with pytest.raises(ValueError, match="built in"):
        gw.deploy(len)

    def one_argument(request):
        return {}

    with pytest.raises(ValueError, match=r"cannot take \(request, context\)"):
        gw.deploy(one_argument)
    factor = 3

    def closure(request, context):
        return {"n": request["n"] * factor}

    with pytest.raises(ValueError, match="uses factor"):
        gw.deploy(closure)


def test_an_unreachable_gateway_is_a_faas_error():
    with pytest.raises(FaasError, match="connection refused") as failure:
        Gateway("http://127.0.0.1:9").functions()
    assert failure.value.status is None


def test_gateway_refusals_carry_status_and_message(gw):
    with pytest.raises(FaasError) as failure:
        gw.remove("no-such-function")
    assert failure.value.status == 404
    assert "no-such-function" in failure.value.message


# ------------------------------------------------------------------ the zip (no gateway)


def sample_decorator(**settings):
    return lambda f: f


@sample_decorator(
    memory="128m",
)
@sample_decorator()
def decorated(request, context):
    # The comment stays.
    return {"twice": request["n"] * 2}


def test_the_zip_holds_the_source_without_decorators_and_the_requirements():
    name, data = source.package(decorated, ["requests==2.31.0", " six "])
    assert name == "decorated.py"
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        assert sorted(z.namelist()) == ["decorated.py", "requirements.txt"]
        code = z.read("decorated.py").decode()
        assert z.read("requirements.txt").decode() == "requests==2.31.0\nsix\n"
        assert all(i.external_attr >> 16 == 0o100644 for i in z.infolist())
    assert code.startswith("def decorated(request, context):\n")
    assert "# The comment stays." in code and "@" not in code
    namespace = {}
    exec(code, namespace)
    assert namespace["decorated"]({"n": 2}, None) == {"twice": 4}
    # The same source makes the same bytes (the gateway builds it once).
    assert source.package(decorated, ["requests==2.31.0", "six"])[1] == data


def test_requirements_may_be_text_and_none_means_no_file():
    with zipfile.ZipFile(io.BytesIO(source.package(decorated, "numpy\n\n")[1])) as z:
        assert z.read("requirements.txt") == b"numpy\n"
    for nothing in (None, [], "", "  \n"):
        with zipfile.ZipFile(io.BytesIO(source.package(decorated, nothing)[1])) as z:
            assert z.namelist() == ["decorated.py"]


def test_a_function_named_like_a_module_does_not_hide_it():
    def json(request, context):  # noqa: F811 (the point of the test)
        return {}

    assert source.file_name(json) == "json_fn.py"
    assert source.function_name(decorated) == "decorated"


def test_handler_names_of_other_shapes_are_refused():
    def handle(request, context):
        return {}

    with pytest.raises(ValueError, match="OpenFaaS"):
        source.package(handle)


def test_csv_cells_are_typed_per_column(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "pandas", None)
    header = ",".join(results.CALL_COLUMNS)
    row = "e,1,f,128m,0.5,0,1,2,1796003490044542078,3.381,,1.4,2.6,0.0,0.0,,true,f-1,200,7,22,\n"
    (tmp_path / "calls.csv").write_text(header + "\n" + row)
    (r,) = results.calls(str(tmp_path))
    assert r["cpu"] == "0.5" and r["memory"] == "128m"
    assert r["start_unix_ns"] == 1796003490044542078
    assert r["connect_ms"] is None and r["max_rss_bytes"] is None and r["error"] is None
    assert r["cold_start"] is True and r["client_ms"] == 3.381
    assert_calls_typed([r])
    assert json.dumps(r)  # plain Python values
