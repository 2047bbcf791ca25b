//! protoload: calls one function over one protocol with N concurrent
//! clients, each on its own connection (or UDP socket), one call at a
//! time, for a fixed time; prints one line:
//!
//! `PROTO CLIENTS CALLS SECONDS RATE P50_US P90_US P99_US ERRORS CPU_S`
//!
//! (CPU_S: the load generator's own CPU time, user + system, warm-up
//! included.)
//!
//! ```text
//! protoload PROTO ADDR FUNCTION CLIENTS SECONDS [WARMUP_SECONDS]
//! ```
//!
//! PROTO is `http` (POST /function/FUNCTION over HTTP/1.1 keep-alive),
//! `coap` (confirmable POST coap://ADDR/FUNCTION), `grpc`
//! (`faas.v1.Functions/Call`) or `tinyfaas` (tinyFaaS's
//! `TinyFaaS/Request`). The body is `x`. Calls during the warm-up are made
//! but not counted.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use bytes::Bytes;
use coap_lite::{CoapOption, MessageClass, MessageType, Packet, RequestType};
use gateway::grpc::pb::faas::CallRequest;
use gateway::grpc::pb::faas::functions_client::FunctionsClient;
use gateway::grpc::pb::tinyfaas::Data;
use gateway::grpc::pb::tinyfaas::tiny_faa_s_client::TinyFaaSClient;
use http_body_util::{BodyExt, Full};
use tokio::net::{TcpStream, UdpSocket};

#[derive(Clone, Copy, PartialEq)]
enum Proto {
    Http,
    Coap,
    Grpc,
    TinyFaas,
}

struct Args {
    proto: Proto,
    addr: SocketAddr,
    function: String,
    clients: usize,
    seconds: f64,
    warmup: f64,
}

fn parse() -> Result<Args, String> {
    let a: Vec<String> = std::env::args().skip(1).collect();
    if a.len() < 5 {
        return Err("usage: protoload http|coap|grpc|tinyfaas ADDR FUNCTION CLIENTS SECONDS [WARMUP_SECONDS]".into());
    }
    let proto = match a[0].as_str() {
        "http" => Proto::Http,
        "coap" => Proto::Coap,
        "grpc" => Proto::Grpc,
        "tinyfaas" => Proto::TinyFaas,
        other => return Err(format!("unknown protocol {other:?}")),
    };
    Ok(Args {
        proto,
        addr: a[1].parse().map_err(|e| format!("ADDR {:?}: {e}", a[1]))?,
        function: a[2].clone(),
        clients: a[3].parse().map_err(|e| format!("CLIENTS: {e}"))?,
        seconds: a[4].parse().map_err(|e| format!("SECONDS: {e}"))?,
        warmup: a
            .get(5)
            .map_or(Ok(1.0), |w| w.parse())
            .map_err(|e| format!("WARMUP: {e}"))?,
    })
}

/// One client's connection, whichever the protocol.
enum Client {
    Http(hyper::client::conn::http1::SendRequest<Full<Bytes>>),
    Coap { socket: UdpSocket, id: u16 },
    Grpc(FunctionsClient<tonic::transport::Channel>),
    TinyFaas(TinyFaaSClient<tonic::transport::Channel>),
}

impl Client {
    async fn connect(proto: Proto, addr: SocketAddr) -> Result<Client, String> {
        let grpc = || async move {
            tonic::transport::Channel::from_shared(format!("http://{addr}"))
                .map_err(|e| e.to_string())?
                .connect()
                .await
                .map_err(|e| format!("cannot connect to {addr}: {e}"))
        };
        Ok(match proto {
            Proto::Http => {
                let stream = TcpStream::connect(addr)
                    .await
                    .map_err(|e| format!("cannot connect to {addr}: {e}"))?;
                let _ = stream.set_nodelay(true);
                let (send, connection) =
                    hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                        .await
                        .map_err(|e| e.to_string())?;
                tokio::spawn(connection);
                Client::Http(send)
            }
            Proto::Coap => {
                let socket = UdpSocket::bind("127.0.0.1:0")
                    .await
                    .map_err(|e| e.to_string())?;
                socket.connect(addr).await.map_err(|e| e.to_string())?;
                Client::Coap { socket, id: 1 }
            }
            Proto::Grpc => Client::Grpc(FunctionsClient::new(grpc().await?)),
            Proto::TinyFaas => Client::TinyFaas(TinyFaaSClient::new(grpc().await?)),
        })
    }

    /// One call; its answer checked to be a success with a body.
    async fn call(&mut self, function: &str) -> Result<(), String> {
        match self {
            Client::Http(send) => {
                send.ready().await.map_err(|e| e.to_string())?;
                let request = http::Request::post(format!("/function/{function}"))
                    .header(http::header::HOST, "bench")
                    .body(Full::new(Bytes::from_static(b"x")))
                    .map_err(|e| e.to_string())?;
                let response = send
                    .send_request(request)
                    .await
                    .map_err(|e| e.to_string())?;
                let status = response.status();
                let body = response
                    .into_body()
                    .collect()
                    .await
                    .map_err(|e| e.to_string())?;
                if !status.is_success() || body.to_bytes().is_empty() {
                    return Err(format!("http {status}"));
                }
            }
            Client::Coap { socket, id } => {
                *id = id.wrapping_add(1);
                let mut packet = Packet::new();
                packet.header.set_version(1);
                packet.header.set_type(MessageType::Confirmable);
                packet.header.code = MessageClass::Request(RequestType::Post);
                packet.header.message_id = *id;
                packet.set_token(id.to_be_bytes().to_vec());
                packet.add_option(CoapOption::UriPath, function.as_bytes().to_vec());
                packet.payload = b"x".to_vec();
                let bytes = packet.to_bytes().map_err(|e| e.to_string())?;
                socket.send(&bytes).await.map_err(|e| e.to_string())?;
                let mut buf = [0u8; 2048];
                loop {
                    let n = tokio::time::timeout(Duration::from_secs(5), socket.recv(&mut buf))
                        .await
                        .map_err(|_| "coap: no answer in 5 s".to_owned())?
                        .map_err(|e| e.to_string())?;
                    let answer = Packet::from_bytes(&buf[..n]).map_err(|e| e.to_string())?;
                    if answer.header.message_id != *id {
                        continue;
                    }
                    if !matches!(answer.header.code, MessageClass::Response(c) if !c.is_error())
                        || answer.payload.is_empty()
                    {
                        return Err(format!("coap {:?}", answer.header.code));
                    }
                    break;
                }
            }
            Client::Grpc(client) => {
                let reply = client
                    .call(CallRequest {
                        function: function.to_owned(),
                        body: b"x".to_vec(),
                        ..Default::default()
                    })
                    .await
                    .map_err(|e| e.to_string())?
                    .into_inner();
                if reply.status != 200 || reply.body.is_empty() {
                    return Err(format!("grpc status {}", reply.status));
                }
            }
            Client::TinyFaas(client) => {
                let reply = client
                    .request(Data {
                        function_identifier: function.to_owned(),
                        data: "x".into(),
                    })
                    .await
                    .map_err(|e| e.to_string())?;
                if reply.get_ref().response.is_empty() {
                    return Err("tinyfaas: empty answer".into());
                }
            }
        }
        Ok(())
    }
}

/// Latencies (µs) counted after `counting`, and errors.
async fn run_client(
    args: &Args,
    counting: Instant,
    end: Instant,
) -> Result<(Vec<u32>, u64), String> {
    let mut client = Client::connect(args.proto, args.addr).await?;
    let mut latencies = Vec::with_capacity(100_000);
    let mut errors = 0;
    loop {
        let started = Instant::now();
        if started >= end {
            break;
        }
        let ok = client.call(&args.function).await;
        let took = started.elapsed();
        if started >= counting {
            match ok {
                Ok(()) => latencies.push(u32::try_from(took.as_micros()).unwrap_or(u32::MAX)),
                Err(e) => {
                    if errors == 0 {
                        eprintln!("protoload: {e}");
                    }
                    errors += 1;
                }
            }
        }
        if errors > 0 && ok_is_fatal(args.proto) {
            client = Client::connect(args.proto, args.addr).await?;
        }
    }
    Ok((latencies, errors))
}

/// After an error an HTTP connection may be unusable: start a new one.
fn ok_is_fatal(proto: Proto) -> bool {
    proto == Proto::Http
}

/// This process's CPU time so far (user + system, from /proc; clock
/// ticks of 10 ms).
fn own_cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name (which may hold spaces): utime is the
    // 12th, stime the 13th.
    let rest = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (ticks(11) + ticks(12)) / 100.0
}

fn percentile(sorted: &[u32], p: f64) -> u32 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn main() -> ExitCode {
    let args = match parse() {
        Ok(args) => args,
        Err(e) => {
            eprintln!("protoload: {e}");
            return ExitCode::from(2);
        }
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio");
    let name = ["http", "coap", "grpc", "tinyfaas"][args.proto as usize];
    let result = runtime.block_on(async {
        let start = Instant::now();
        let counting = start + Duration::from_secs_f64(args.warmup);
        let end = counting + Duration::from_secs_f64(args.seconds);
        let args = std::sync::Arc::new(args);
        let mut tasks = Vec::new();
        for _ in 0..args.clients {
            let args = args.clone();
            tasks.push(tokio::spawn(async move {
                run_client(&args, counting, end).await
            }));
        }
        let mut all = Vec::new();
        let mut errors = 0;
        for task in tasks {
            let (latencies, e) = task.await.map_err(|e| e.to_string())??;
            all.extend(latencies);
            errors += e;
        }
        Ok::<_, String>((all, errors, args.clients, args.seconds))
    });
    match result {
        Ok((mut all, errors, clients, seconds)) => {
            all.sort_unstable();
            println!(
                "{name} {clients} {} {seconds} {:.1} {} {} {} {errors} {:.2}",
                all.len(),
                all.len() as f64 / seconds,
                percentile(&all, 50.0),
                percentile(&all, 90.0),
                percentile(&all, 99.0),
                own_cpu_seconds(),
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("protoload: {e}");
            ExitCode::FAILURE
        }
    }
}
