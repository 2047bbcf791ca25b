//! The CoAP endpoint, driven by a real CoAP client (the `coap` crate) and
//! by hand-made datagrams where the exchange itself is the point
//! (retransmissions, separate answers): calls by GET and POST, CON and
//! NON, block-wise payloads both ways, the error codes, async calls, and
//! the same credentials rule as HTTP.

use crate::util::*;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use coap::UdpCoAPClient;
use coap::request::RequestBuilder;
use coap_lite::block_handler::BlockValue;
use coap_lite::option_value::OptionValueU32;
use coap_lite::{CoapOption, MessageClass, MessageType, Packet, RequestType, ResponseType};
use http::StatusCode;
use tokio::net::UdpSocket;

const STACK: &str = r#"
functions:
  echo:
    fprocess: cat
  env:
    fprocess: env
  counter:
    fprocess: sh counter.sh
  slow:
    fprocess: sh slow.sh
  missing:
    fprocess: ./not-built-yet.sh
"#;

/// Counts its calls in a file beside the stack and answers the count.
const COUNTER: &str = "cat >/dev/null\necho x >> counter.log\nwc -l < counter.log\n";
/// Takes a second, counts its calls, echoes.
const SLOW: &str = "sleep 1\necho x >> slow.log\ncat\n";

fn files() -> [(&'static str, &'static str); 2] {
    [("counter.sh", COUNTER), ("slow.sh", SLOW)]
}

fn start(flags: &[&str]) -> (Gateway, SocketAddr) {
    let gw = Gateway::start(STACK, &files(), flags);
    let coap = gw.coap.expect("the gateway listens for CoAP");
    (gw, coap)
}

fn url(coap: SocketAddr, path: &str) -> String {
    format!("coap://{coap}/{path}")
}

fn code(packet: &Packet) -> ResponseType {
    match packet.header.code {
        MessageClass::Response(code) => code,
        other => panic!("not a response: {other:?}"),
    }
}

fn text(packet: &Packet) -> String {
    String::from_utf8_lossy(&packet.payload).into_owned()
}

async fn client(coap: SocketAddr) -> UdpCoAPClient {
    let mut client = UdpCoAPClient::new(coap).await.unwrap();
    client.set_receive_timeout(Duration::from_secs(10));
    client
}

/// A request datagram made by hand.
fn datagram(kind: MessageType, id: u16, method: RequestType, path: &[&str], body: &[u8]) -> Packet {
    let mut packet = Packet::new();
    packet.header.set_version(1);
    packet.header.set_type(kind);
    packet.header.code = MessageClass::Request(method);
    packet.header.message_id = id;
    packet.set_token(id.to_be_bytes().to_vec());
    for segment in path {
        packet.add_option(CoapOption::UriPath, segment.as_bytes().to_vec());
    }
    packet.payload = body.to_vec();
    packet
}

async fn socket(coap: SocketAddr) -> UdpSocket {
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    socket.connect(coap).await.unwrap();
    socket
}

async fn send(socket: &UdpSocket, packet: &Packet) {
    // Unlimited: some tests send more than coap-lite's usual 1280 bytes.
    socket
        .send(&packet.to_bytes_unlimited().unwrap())
        .await
        .unwrap();
}

/// Sends `packet` and returns the answer.
async fn exchange(socket: &UdpSocket, packet: &Packet) -> Packet {
    send(socket, packet).await;
    receive(socket).await.1
}

/// The next datagram, raw and parsed (at most 10 s).
async fn receive(socket: &UdpSocket) -> (Vec<u8>, Packet) {
    let mut buf = vec![0u8; 65_535];
    let n = tokio::time::timeout(Duration::from_secs(10), socket.recv(&mut buf))
        .await
        .expect("an answer within 10 s")
        .unwrap();
    buf.truncate(n);
    let packet = Packet::from_bytes(&buf).unwrap();
    (buf, packet)
}

#[tokio::test]
async fn get_and_post_call_the_function_confirmable_or_not() {
    let (gw, coap) = start(&[]);
    let client = client(coap).await;

    let posted = UdpCoAPClient::post(&url(coap, "echo"), b"hello over coap".to_vec())
        .await
        .unwrap();
    assert_eq!(code(&posted.message), ResponseType::Content);
    assert_eq!(text(&posted.message), "hello over coap");

    let got = UdpCoAPClient::get(&url(coap, "function/echo"))
        .await
        .unwrap();
    assert_eq!(code(&got.message), ResponseType::Content);
    assert_eq!(text(&got.message), "");

    // The function sees an HTTP call: method, path and query.
    let request = RequestBuilder::new("env/sub/path", RequestType::Put)
        .queries(vec![b"x=1".to_vec(), b"name=a b".to_vec()])
        .data(Some(b"ignored".to_vec()))
        .confirmable(false)
        .build();
    let answer = client.send(request).await.unwrap();
    assert_eq!(
        answer.message.header.get_type(),
        MessageType::NonConfirmable
    );
    assert_eq!(code(&answer.message), ResponseType::Content);
    let env = text(&answer.message);
    for line in [
        "Http_Method=PUT",
        "Http_Path=/sub/path",
        "Http_Query=x=1&name=a%20b",
    ] {
        assert!(env.lines().any(|l| l == line), "{line} not in:\n{env}");
    }

    // Counted like any call.
    assert_eq!(invocations(gw.addr, "echo", 200).await, 2);
}

#[tokio::test]
async fn a_retransmitted_request_is_answered_again_and_not_run_again() {
    let (gw, coap) = start(&[]);
    let socket = socket(coap).await;
    for (kind, id, count) in [
        (MessageType::Confirmable, 7001, "1"),
        (MessageType::NonConfirmable, 7002, "2"),
    ] {
        let request = datagram(kind, id, RequestType::Post, &["counter"], b"x");
        send(&socket, &request).await;
        let (first, answer) = receive(&socket).await;
        assert_eq!(code(&answer), ResponseType::Content);
        assert_eq!(text(&answer).trim(), count);
        assert_eq!(answer.get_token(), id.to_be_bytes());
        // The same message again (its ACK was lost, say): the same answer.
        send(&socket, &request).await;
        let (again, _) = receive(&socket).await;
        assert_eq!(again, first, "{kind:?}");
    }
    let log = std::fs::read_to_string(gw.dir.path().join("counter.log")).unwrap();
    assert_eq!(log.lines().count(), 2, "each request ran once: {log:?}");
}

#[tokio::test]
async fn a_slow_confirmable_call_is_acknowledged_first_then_answered_separately() {
    let (gw, coap) = start(&["--coap-ack-delay", "200ms"]);
    let socket = socket(coap).await;
    let request = datagram(
        MessageType::Confirmable,
        4242,
        RequestType::Post,
        &["slow"],
        b"late",
    );
    send(&socket, &request).await;
    let (_, ack) = receive(&socket).await;
    assert_eq!(ack.header.code, MessageClass::Empty);
    assert_eq!(ack.header.get_type(), MessageType::Acknowledgement);
    assert_eq!(ack.header.message_id, 4242);
    // Retransmitted while it runs: acknowledged again, not run again.
    send(&socket, &request).await;
    let (_, again) = receive(&socket).await;
    assert_eq!(again.header.code, MessageClass::Empty);

    let (_, answer) = receive(&socket).await;
    assert_eq!(answer.header.get_type(), MessageType::Confirmable);
    assert_eq!(answer.get_token(), 4242u16.to_be_bytes());
    assert_eq!(code(&answer), ResponseType::Content);
    assert_eq!(text(&answer), "late");
    // Unacknowledged, the answer comes again (ACK_TIMEOUT, 2 s).
    let (_, repeated) = receive(&socket).await;
    assert_eq!(repeated.header.message_id, answer.header.message_id);
    let mut ack = Packet::new();
    ack.header.set_version(1);
    ack.header.set_type(MessageType::Acknowledgement);
    ack.header.code = MessageClass::Empty;
    ack.header.message_id = answer.header.message_id;
    send(&socket, &ack).await;
    let log = std::fs::read_to_string(gw.dir.path().join("slow.log")).unwrap();
    assert_eq!(log.lines().count(), 1, "{log:?}");
}

#[tokio::test]
async fn a_64_kib_payload_travels_block_wise_both_ways() {
    let (_gw, coap) = start(&[]);
    let payload: Vec<u8> = (0..64 * 1024u32).map(|i| (i * 7 % 251) as u8).collect();
    let client = client(coap).await;
    let request = RequestBuilder::new("echo", RequestType::Post)
        .data(Some(payload.clone()))
        .build();
    let answer = client.send(request).await.unwrap();
    assert_eq!(code(&answer.message), ResponseType::Content);
    assert_eq!(answer.message.payload.len(), payload.len());
    assert!(answer.message.payload == payload, "the echo differs");
}

#[tokio::test]
async fn payloads_beyond_coap_max_body_are_refused_before_they_are_kept() {
    let (_gw, coap) = start(&["--coap-max-body", "4k"]);
    let socket = socket(coap).await;
    // One datagram over the limit.
    send(
        &socket,
        &datagram(
            MessageType::Confirmable,
            1,
            RequestType::Post,
            &["echo"],
            &[b'x'; 5000],
        ),
    )
    .await;
    let (_, answer) = receive(&socket).await;
    assert_eq!(code(&answer), ResponseType::RequestEntityTooLarge);
    assert!(
        text(&answer).contains("coap_max_body (4096 bytes)"),
        "{}",
        text(&answer)
    );
    let size1 = answer
        .get_first_option_as::<OptionValueU32>(CoapOption::Size1)
        .unwrap()
        .unwrap();
    assert_eq!(size1.0, 4096);
    // Blocks in order up to the limit, then one past it.
    for num in 0..4u16 {
        let mut block = datagram(
            MessageType::Confirmable,
            10 + num,
            RequestType::Post,
            &["echo"],
            &[b'x'; 1024],
        );
        block.add_option_as(
            CoapOption::Block1,
            BlockValue::new(num.into(), true, 1024).unwrap(),
        );
        send(&socket, &block).await;
        assert_eq!(
            code(&receive(&socket).await.1),
            ResponseType::Continue,
            "block {num}"
        );
    }
    let mut block = datagram(
        MessageType::Confirmable,
        20,
        RequestType::Post,
        &["echo"],
        &[b'x'; 1024],
    );
    block.add_option_as(CoapOption::Block1, BlockValue::new(4, true, 1024).unwrap());
    send(&socket, &block).await;
    let (_, answer) = receive(&socket).await;
    assert_eq!(code(&answer), ResponseType::RequestEntityTooLarge);
}

/// A body in blocks is taken in order, each block of its stated size: a
/// block out of order, or larger than its size says, is refused and
/// nothing of it kept; critical options the endpoint does not act on are
/// refused; a later block of an answer nobody kept is 4.08.
#[tokio::test]
async fn blocks_out_of_order_or_oversized_and_unknown_critical_options_are_refused() {
    let (_gw, coap) = start(&[]);
    let socket = socket(coap).await;
    // A POST to echo with one block option.
    let ask =
        |id: u16, option: CoapOption, (num, more, size): (usize, bool, usize), body: &[u8]| {
            let mut packet = datagram(
                MessageType::Confirmable,
                id,
                RequestType::Post,
                &["echo"],
                body,
            );
            packet.add_option_as(option, BlockValue::new(num, more, size).unwrap());
            packet
        };
    let block1 = CoapOption::Block1;
    // Block 3 with nothing before it.
    let answer = exchange(&socket, &ask(1, block1, (3, true, 64), &[b'a'; 64])).await;
    assert_eq!(
        code(&answer),
        ResponseType::RequestEntityIncomplete,
        "{}",
        text(&answer)
    );
    // Block 0 of 16 bytes carrying 8000: refused, not appended.
    let answer = exchange(&socket, &ask(2, block1, (0, true, 16), &[b'b'; 8000])).await;
    assert_eq!(code(&answer), ResponseType::BadRequest);
    assert!(
        text(&answer).contains("carries 8000 bytes"),
        "{}",
        text(&answer)
    );
    // A proper two-block body still works.
    let answer = exchange(&socket, &ask(3, block1, (0, true, 16), &[b'c'; 16])).await;
    assert_eq!(code(&answer), ResponseType::Continue);
    let answer = exchange(&socket, &ask(4, block1, (1, false, 16), b"end")).await;
    assert_eq!(text(&answer), format!("{}end", "c".repeat(16)));
    // Block 2 of an answer nobody kept.
    let answer = exchange(&socket, &ask(5, CoapOption::Block2, (2, false, 64), b"")).await;
    assert_eq!(code(&answer), ResponseType::RequestEntityIncomplete);
    // If-Match (critical, not acted on) and Proxy-Uri.
    let mut conditional = datagram(
        MessageType::Confirmable,
        6,
        RequestType::Put,
        &["echo"],
        b"x",
    );
    conditional.add_option(CoapOption::IfMatch, b"tag".to_vec());
    assert_eq!(
        code(&exchange(&socket, &conditional).await),
        ResponseType::BadOption
    );
    let mut proxied = datagram(MessageType::Confirmable, 7, RequestType::Get, &[], b"");
    proxied.add_option(CoapOption::ProxyUri, b"coap://elsewhere/x".to_vec());
    assert_eq!(
        code(&exchange(&socket, &proxied).await),
        ResponseType::ProxyingNotSupported
    );
}

/// An answer fetched in blocks is kept until its last block is served;
/// beyond `coap_max_transfers` such answers are refused, not kept.
#[tokio::test]
async fn answers_kept_for_block_wise_fetching_are_bounded() {
    let (_gw, coap) = start(&["--coap-max-transfers", "1"]);
    let big = vec![b'y'; 4000];
    let first = socket(coap).await;
    send(
        &first,
        &datagram(
            MessageType::Confirmable,
            10,
            RequestType::Post,
            &["echo"],
            &big,
        ),
    )
    .await;
    let (_, opened) = receive(&first).await;
    assert_eq!(code(&opened), ResponseType::Content);
    let block = opened
        .get_first_option_as::<BlockValue>(CoapOption::Block2)
        .unwrap()
        .unwrap();
    assert!(block.more && block.num == 0, "{block:?}");

    let second = socket(coap).await;
    let request = datagram(
        MessageType::Confirmable,
        11,
        RequestType::Post,
        &["echo"],
        &big,
    );
    send(&second, &request).await;
    let (_, refused) = receive(&second).await;
    assert_eq!(code(&refused), ResponseType::ServiceUnavailable);
    assert!(
        text(&refused).contains("coap_max_transfers"),
        "{}",
        text(&refused)
    );
    // A small answer still goes through.
    send(
        &second,
        &datagram(
            MessageType::Confirmable,
            12,
            RequestType::Post,
            &["echo"],
            b"small",
        ),
    )
    .await;
    assert_eq!(text(&receive(&second).await.1), "small");

    // The first client fetches the rest; then there is room again.
    let mut id = 20;
    let mut num = 1;
    loop {
        let mut next = datagram(
            MessageType::Confirmable,
            id,
            RequestType::Post,
            &["echo"],
            b"",
        );
        next.add_option_as(
            CoapOption::Block2,
            BlockValue::new(num, false, block.size()).unwrap(),
        );
        send(&first, &next).await;
        let (_, answer) = receive(&first).await;
        let got = answer
            .get_first_option_as::<BlockValue>(CoapOption::Block2)
            .unwrap()
            .unwrap();
        if !got.more {
            break;
        }
        id += 1;
        num += 1;
        assert!(num < 10, "more blocks than 4000 bytes make");
    }
    let request = datagram(
        MessageType::Confirmable,
        30,
        RequestType::Post,
        &["echo"],
        &big,
    );
    send(&second, &request).await;
    let (_, answer) = receive(&second).await;
    assert_eq!(code(&answer), ResponseType::Content, "{}", text(&answer));
}

#[tokio::test]
async fn the_gateways_errors_arrive_as_coap_codes() {
    let (_gw, coap) = start(&["--upstream-timeout", "300ms"]);
    let cases = [
        ("nobody", ResponseType::NotFound, "not found"),
        ("missing", ResponseType::ServiceUnavailable, "not-built-yet"),
        ("slow", ResponseType::GatewayTimeout, "upstream_timeout"),
        (
            "bad*name",
            ResponseType::BadRequest,
            "Invalid function name \"bad%2Aname\"",
        ),
    ];
    for (path, want, needle) in cases {
        let answer = UdpCoAPClient::post(&url(coap, path), b"x".to_vec())
            .await
            .unwrap();
        assert_eq!(
            code(&answer.message),
            want,
            "{path}: {}",
            text(&answer.message)
        );
        assert!(
            text(&answer.message).contains(needle),
            "{path}: {:?} lacks {needle:?}",
            text(&answer.message)
        );
    }
    let socket = socket(coap).await;
    send(
        &socket,
        &datagram(MessageType::Confirmable, 3, RequestType::Get, &[], b""),
    )
    .await;
    let (_, no_name) = receive(&socket).await;
    assert_eq!(code(&no_name), ResponseType::NotFound);
    assert!(text(&no_name).contains("name a function"));
    send(
        &socket,
        &datagram(
            MessageType::Confirmable,
            4,
            RequestType::Fetch,
            &["echo"],
            b"",
        ),
    )
    .await;
    let (_, fetch) = receive(&socket).await;
    assert_eq!(code(&fetch), ResponseType::MethodNotAllowed);
    // A ping (an empty confirmable message) is answered with a reset.
    let mut ping = Packet::new();
    ping.header.set_version(1);
    ping.header.set_type(MessageType::Confirmable);
    ping.header.code = MessageClass::Empty;
    ping.header.message_id = 5;
    send(&socket, &ping).await;
    let (_, reset) = receive(&socket).await;
    assert_eq!(reset.header.get_type(), MessageType::Reset);
    assert_eq!(reset.header.message_id, 5);
}

#[tokio::test]
async fn an_async_call_over_coap_is_queued_and_answers_its_id() {
    let (gw, coap) = start(&[]);
    let answer = UdpCoAPClient::post(&url(coap, "async-function/echo"), b"later".to_vec())
        .await
        .unwrap();
    assert_eq!(
        code(&answer.message),
        ResponseType::Created,
        "{}",
        text(&answer.message)
    );
    let queued: serde_json::Value = serde_json::from_slice(&answer.message.payload).unwrap();
    assert_eq!(queued["status"], "queued");
    let id = queued["id"].as_str().unwrap().to_owned();
    let path = format!("/system/executions/{id}");
    let done = eventually_async(Duration::from_secs(15), || async {
        let record = get(gw.addr, &path).await;
        serde_json::from_slice::<serde_json::Value>(&record.body)
            .is_ok_and(|v| v["status"] == "succeeded" && v["function"] == "echo")
    })
    .await;
    assert!(done, "{}", get(gw.addr, &path).await.text());
    let output = get(gw.addr, &format!("/system/executions/{id}/output")).await;
    assert_eq!(output.text(), "later");
}

#[tokio::test]
async fn with_auth_invoke_coap_calls_are_refused_as_http_calls_are() {
    let started = Instant::now();
    let gw = Gateway::start_with_env(
        STACK,
        &files(),
        &["--auth-invoke"],
        &[
            ("basic_auth_user", "admin"),
            ("basic_auth_password", "pw-coap-1"),
        ],
    );
    let coap = gw.coap.unwrap();
    let answer = UdpCoAPClient::post(&url(coap, "echo"), b"x".to_vec())
        .await
        .unwrap();
    assert_eq!(code(&answer.message), ResponseType::Unauthorized);
    assert_eq!(
        post(gw.addr, "/function/echo", "x").await.status,
        StatusCode::UNAUTHORIZED
    );
    assert!(started.elapsed() < Duration::from_secs(30));
}

/// aiocoap's command-line client (from PyPI, as an IoT developer would
/// use it): `./build.sh test` installs it into `target/python-client`, or
/// `FAAS_AIOCOAP_CLIENT` names it.
fn aiocoap_client() -> std::path::PathBuf {
    python_tool("FAAS_AIOCOAP_CLIENT", "aiocoap-client", "aiocoap")
}

fn aiocoap(args: &[&str]) -> (bool, String) {
    let output = std::process::Command::new(aiocoap_client())
        .args(args)
        .output()
        .unwrap();
    let mut text = String::from_utf8_lossy(&output.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&output.stderr));
    (output.status.success(), text)
}

#[tokio::test]
#[ignore = "needs aiocoap-client from PyPI: ./build.sh test installs it into target/python-client"]
async fn aiocoaps_client_calls_functions_in_one_message_or_in_blocks() {
    let (gw, coap) = start(&[]);
    let echo = url(coap, "echo");
    let (ok, out) = aiocoap(&["-m", "POST", "--payload", "hello from aiocoap", &echo]);
    assert!(ok, "{out}");
    assert_eq!(out, "hello from aiocoap");
    let (ok, out) = aiocoap(&["--non", "-m", "POST", "--payload", "non", &echo]);
    assert!(ok, "{out}");
    assert_eq!(out, "non");

    // 64 KiB of text: block-wise up and down.
    let big: String = (0..64 * 1024u32)
        .map(|i| char::from(b'a' + (i % 26) as u8))
        .collect();
    let file = gw.dir.path().join("big.txt");
    std::fs::write(&file, &big).unwrap();
    let (ok, out) = aiocoap(&[
        "-m",
        "POST",
        "--payload",
        &format!("@{}", file.display()),
        &echo,
    ]);
    assert!(ok, "{}", &out[..out.len().min(500)]);
    assert_eq!(out.len(), big.len());
    assert!(out == big, "the echo differs");

    let (ok, out) = aiocoap(&["-m", "POST", "--payload", "x", &url(coap, "nobody")]);
    assert!(
        !ok && out.contains("4.04") && out.contains("not found"),
        "{out}"
    );
    let (ok, out) = aiocoap(&[
        "-m",
        "POST",
        "--payload",
        "later",
        &url(coap, "async-function/echo"),
    ]);
    assert!(ok && out.contains("\"queued\""), "{out}");
}
