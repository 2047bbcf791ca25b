//! The gRPC endpoint, driven by clients generated from the `.proto` files
//! (tinyFaaS's, unchanged, and ours) over real HTTP/2 connections: calls,
//! bytes and metadata, streamed answers, async calls, the gateway's
//! refusals as status codes, deadlines, credentials; and once by Python's
//! `grpcio` with stubs generated from tinyFaaS's proto, as a tinyFaaS user
//! has them.

use crate::util::*;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use gateway::grpc::pb::faas::functions_client::FunctionsClient;
use gateway::grpc::pb::faas::{CallRequest, call_chunk};
use gateway::grpc::pb::tinyfaas::Data;
use gateway::grpc::pb::tinyfaas::tiny_faa_s_client::TinyFaaSClient;
use tonic::Code;
use tonic::transport::Channel;

const STACK: &str = r#"
functions:
  echo:
    fprocess: cat
  env:
    fprocess: env
  fails:
    fprocess: sh fails.sh
  slow:
    fprocess: sh slow.sh
  ticker:
    fprocess: sh ticker.sh
    environment:
      mode: stream
  dribble:
    fprocess: sh dribble.sh
    environment:
      mode: stream
  missing:
    fprocess: ./not-built-yet.sh
"#;

const FAILS: &str = "cat >/dev/null\necho 'no such thing' >&2\nexit 3\n";
const SLOW: &str = "sleep 3\necho x >> slow.log\ncat\n";
const TICKER: &str = "cat >/dev/null\necho one\nsleep 1\necho two\n";
/// Answers at once, finishes 3 s later.
const DRIBBLE: &str = "cat >/dev/null\necho first\nsleep 3\necho late\n";

fn start(flags: &[&str]) -> (Gateway, SocketAddr) {
    let gw = Gateway::start(
        STACK,
        &[
            ("fails.sh", FAILS),
            ("slow.sh", SLOW),
            ("ticker.sh", TICKER),
            ("dribble.sh", DRIBBLE),
        ],
        flags,
    );
    let grpc = gw.grpc.expect("the gateway listens for gRPC");
    (gw, grpc)
}

async fn channel(grpc: SocketAddr) -> Channel {
    Channel::from_shared(format!("http://{grpc}"))
        .unwrap()
        .connect()
        .await
        .unwrap()
}

fn call(function: &str, body: &[u8]) -> CallRequest {
    CallRequest {
        function: function.to_owned(),
        body: body.to_vec(),
        ..Default::default()
    }
}

#[tokio::test]
async fn tinyfaas_clients_call_functions_as_they_called_tinyfaas() {
    let (_gw, grpc) = start(&[]);
    let mut client = TinyFaaSClient::new(channel(grpc).await);
    let answer = client
        .request(Data {
            function_identifier: "echo".into(),
            data: "hello over grpc".into(),
        })
        .await
        .unwrap();
    assert_eq!(answer.get_ref().response, "hello over grpc");

    let unknown = client
        .request(Data {
            function_identifier: "nobody".into(),
            data: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), Code::NotFound, "{unknown:?}");
    assert!(
        unknown.message().contains("\"nobody\" not found"),
        "{unknown:?}"
    );
    let invalid = client
        .request(Data {
            function_identifier: "../system/functions".into(),
            data: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(invalid.code(), Code::InvalidArgument, "{invalid:?}");
    // A function's own failure: an error naming its status and message.
    let failed = client
        .request(Data {
            function_identifier: "fails".into(),
            data: "x".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(failed.code(), Code::Unknown, "{failed:?}");
    assert!(failed.message().contains("500"), "{failed:?}");
}

#[tokio::test]
async fn our_service_carries_bytes_metadata_status_and_the_call_id() {
    let (gw, grpc) = start(&[]);
    let mut client = FunctionsClient::new(channel(grpc).await);
    let bytes: Vec<u8> = (0..=255u8).cycle().take(100_000).collect();
    let reply = client.call(call("echo", &bytes)).await.unwrap();
    let duration = reply.metadata().get("x-duration-seconds").cloned();
    let reply = reply.into_inner();
    assert_eq!(reply.status, 200);
    assert!(reply.body == bytes, "the echo differs");
    assert_eq!(reply.call_id.len(), 36, "{reply:?}");
    assert!(
        duration.is_some(),
        "the watchdog's headers come back as metadata"
    );

    // Metadata in, as headers; method, path and query as asked.
    let mut request = tonic::Request::new(CallRequest {
        function: "env".into(),
        method: "put".into(),
        path: "/sub".into(),
        query: "x=1".into(),
        ..Default::default()
    });
    request
        .metadata_mut()
        .insert("x-trace", "trace-7".parse().unwrap());
    let env = String::from_utf8(client.call(request).await.unwrap().into_inner().body).unwrap();
    for line in [
        "Http_X_Trace=trace-7",
        "Http_Method=PUT",
        "Http_Path=/sub",
        "Http_Query=x=1",
    ] {
        assert!(env.lines().any(|l| l == line), "{line} not in:\n{env}");
    }
    // A function's failure is its answer, not a gRPC error.
    let failed = client.call(call("fails", b"x")).await.unwrap().into_inner();
    assert_eq!(failed.status, 500);
    assert!(String::from_utf8_lossy(&failed.body).contains("no such thing"));

    // Counted like any call.
    assert_eq!(invocations(gw.addr, "echo", 200).await, 1);
}

#[tokio::test]
async fn a_streamed_answer_arrives_as_the_function_writes_it() {
    let (_gw, grpc) = start(&[]);
    let mut client = FunctionsClient::new(channel(grpc).await);
    let mut stream = client
        .call_stream(call("ticker", b""))
        .await
        .unwrap()
        .into_inner();
    let head = stream.message().await.unwrap().unwrap();
    match head.part {
        Some(call_chunk::Part::Head(head)) => {
            assert_eq!(head.status, 200);
            assert!(!head.call_id.is_empty());
        }
        other => panic!("the head comes first: {other:?}"),
    }
    let mut pieces = Vec::new();
    while let Some(chunk) = stream.message().await.unwrap() {
        match chunk.part {
            Some(call_chunk::Part::Data(data)) => pieces.push((Instant::now(), data)),
            other => panic!("only data after the head: {other:?}"),
        }
    }
    let text: Vec<u8> = pieces.iter().flat_map(|(_, d)| d.clone()).collect();
    assert_eq!(String::from_utf8_lossy(&text), "one\ntwo\n");
    // "one" came a second before "two": streamed, not buffered.
    let first = pieces.first().unwrap().0;
    let last = pieces.last().unwrap().0;
    assert!(pieces.len() >= 2, "{pieces:?}");
    assert!(
        last - first >= Duration::from_millis(500),
        "{:?}",
        last - first
    );
}

#[tokio::test]
async fn the_gateways_refusals_are_grpc_status_codes_and_deadlines_hold() {
    let (gw, grpc) = start(&["--grpc-max-body", "8k"]);
    let mut client = FunctionsClient::new(channel(grpc).await);
    let cases = [
        ("nobody", Code::NotFound, "not found"),
        ("missing", Code::Unavailable, "not-built-yet"),
        ("bad name", Code::InvalidArgument, "invalid function name"),
    ];
    for (function, code, needle) in cases {
        let status = client.call(call(function, b"x")).await.unwrap_err();
        assert_eq!(status.code(), code, "{function}: {status:?}");
        assert!(status.message().contains(needle), "{function}: {status:?}");
    }
    let big = client
        .call(call("echo", &[b'x'; 20_000]))
        .await
        .unwrap_err();
    assert_eq!(big.code(), Code::ResourceExhausted, "{big:?}");

    // The deadline bounds the call, and the call is stopped with it.
    let mut request = tonic::Request::new(call("slow", b"late"));
    request.set_timeout(Duration::from_millis(400));
    let asked = Instant::now();
    let late = client.call(request).await.unwrap_err();
    assert_eq!(late.code(), Code::DeadlineExceeded, "{late:?}");
    assert!(
        asked.elapsed() < Duration::from_secs(2),
        "{:?}",
        asked.elapsed()
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        !gw.dir.path().join("slow.log").exists(),
        "the function ran on past the deadline"
    );
}

/// The deadline holds for the whole answer, not only its head: a function
/// that answers at once and finishes late is cut off at the deadline,
/// whole or streamed.
#[tokio::test]
async fn a_deadline_holds_until_the_last_byte() {
    let (_gw, grpc) = start(&[]);
    let mut client = FunctionsClient::new(channel(grpc).await);
    let mut request = tonic::Request::new(call("dribble", b""));
    request.set_timeout(Duration::from_millis(800));
    let asked = Instant::now();
    let late = client.call(request).await.unwrap_err();
    assert_eq!(late.code(), Code::DeadlineExceeded, "{late:?}");
    assert!(
        asked.elapsed() < Duration::from_secs(2),
        "{:?}",
        asked.elapsed()
    );

    let mut request = tonic::Request::new(call("dribble", b""));
    request.set_timeout(Duration::from_millis(800));
    let mut stream = client.call_stream(request).await.unwrap().into_inner();
    let mut text = Vec::new();
    let ended = loop {
        match stream.message().await {
            Ok(Some(chunk)) => {
                if let Some(call_chunk::Part::Data(data)) = chunk.part {
                    text.extend(data);
                }
            }
            Ok(None) => panic!("the stream ended without the deadline"),
            Err(status) => break status,
        }
    };
    assert_eq!(ended.code(), Code::DeadlineExceeded, "{ended:?}");
    assert_eq!(String::from_utf8_lossy(&text), "first\n");
}

#[tokio::test]
async fn an_async_call_answers_its_execution_id() {
    let (gw, grpc) = start(&[]);
    let mut client = FunctionsClient::new(channel(grpc).await);
    let queued = client
        .call_async(call("echo", b"later"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(queued.status, "queued");
    assert_eq!(queued.function, "echo");
    let path = format!("/system/executions/{}/output", queued.id);
    let done = eventually_async(Duration::from_secs(15), || async {
        get(gw.addr, &path).await.text() == "later"
    })
    .await;
    assert!(done, "{}", get(gw.addr, &path).await.text());
}

#[tokio::test]
async fn with_auth_invoke_a_call_needs_the_credentials_in_its_metadata() {
    let gw = Gateway::start_with_env(
        STACK,
        &[],
        &["--auth-invoke"],
        &[
            ("basic_auth_user", "admin"),
            ("basic_auth_password", "pw-grpc-1"),
        ],
    );
    let mut client = FunctionsClient::new(channel(gw.grpc.unwrap()).await);
    let refused = client.call(call("echo", b"x")).await.unwrap_err();
    assert_eq!(refused.code(), Code::Unauthenticated, "{refused:?}");
    let mut request = tonic::Request::new(call("echo", b"let me in"));
    request.metadata_mut().insert(
        "authorization",
        "Basic YWRtaW46cHctZ3JwYy0x".parse().unwrap(),
    );
    let reply = client.call(request).await.unwrap().into_inner();
    assert_eq!(reply.body, b"let me in");
}

/// A Python interpreter with `grpcio` and `grpcio-tools`: `./build.sh test`
/// installs them into `target/python-client`, or `FAAS_PYTHON` names one.
fn python() -> std::path::PathBuf {
    python_tool("FAAS_PYTHON", "python", "grpcio and grpcio-tools")
}

#[tokio::test]
#[ignore = "needs Python's grpcio and grpcio-tools: ./build.sh test installs them into target/python-client"]
async fn pythons_grpcio_calls_through_stubs_generated_from_tinyfaas_proto() {
    let (gw, grpc) = start(&[]);
    let out = gw.dir.path().join("stubs");
    std::fs::create_dir_all(&out).unwrap();
    let proto = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("proto");
    let generated = std::process::Command::new(python())
        .args(["-m", "grpc_tools.protoc", "-I"])
        .arg(&proto)
        .arg(format!("--python_out={}", out.display()))
        .arg(format!("--grpc_python_out={}", out.display()))
        .arg("tinyfaas.proto")
        .output()
        .unwrap();
    assert!(
        generated.status.success(),
        "{}",
        String::from_utf8_lossy(&generated.stderr)
    );
    assert!(out.join("tinyfaas_pb2.py").exists() && out.join("tinyfaas_pb2_grpc.py").exists());
    // What tinyFaaS's README shows a Python client doing.
    let script = format!(
        r#"
import grpc, sys
sys.path.insert(0, {out:?})
import tinyfaas_pb2, tinyfaas_pb2_grpc
with grpc.insecure_channel("{grpc}") as channel:
    stub = tinyfaas_pb2_grpc.TinyFaaSStub(channel)
    r = stub.Request(tinyfaas_pb2.Data(functionIdentifier="echo", data="hello from grpcio"))
    print(r.response)
    try:
        stub.Request(tinyfaas_pb2.Data(functionIdentifier="nobody", data=""))
    except grpc.RpcError as e:
        print(e.code().name, e.details())
    try:
        stub.Request(tinyfaas_pb2.Data(functionIdentifier="slow", data=""), timeout=0.5)
    except grpc.RpcError as e:
        print(e.code().name)
"#,
        out = out.display().to_string(),
    );
    let run = std::process::Command::new(python())
        .args(["-c", &script])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(
        run.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines[0], "hello from grpcio");
    assert!(
        lines[1].starts_with("NOT_FOUND") && lines[1].contains("not found"),
        "{stdout}"
    );
    assert_eq!(lines[2], "DEADLINE_EXCEEDED", "{stdout}");
}
