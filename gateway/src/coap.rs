//! The CoAP endpoint (RFC 7252 over UDP): `GET`/`POST coap://host/{name}`
//! calls the function with the payload as its body and answers 2.05 with
//! its output, through the same [`Front`] as an HTTP call: credentials,
//! routing, balancing, metrics, the async queue and scaling are one.
//!
//! `coap-lite` encodes and decodes messages and does block-wise transfer
//! (RFC 7959); this module keeps the exchanges: a retransmitted request
//! (same peer and message id) is answered again from memory, never run
//! twice; a confirmable call that runs longer than `coap_ack_delay` is
//! acknowledged empty and answered separately, confirmably, until the
//! client acknowledges. Every buffer is bounded: payloads by
//! `coap_max_body`, exchanges remembered by `coap_exchanges`, transfers in
//! blocks by `coap_max_transfers`, calls at once by `coap_max_inflight`.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use coap_lite::block_handler::BlockValue;
use coap_lite::option_value::OptionValueU32;
use coap_lite::{
    BlockHandler, BlockHandlerConfig, CoapOption, CoapRequest, MessageClass, MessageType, Packet,
    RequestType, ResponseType,
};
use faas_common::shutdown::Shutdown;
use http::StatusCode;
use http_body_util::BodyExt;
use tokio::net::UdpSocket;
use tokio::sync::{Semaphore, oneshot};

use crate::server::Front;

/// How long an exchange is remembered (RFC 7252's EXCHANGE_LIFETIME).
const EXCHANGE_LIFETIME: Duration = Duration::from_secs(247);
/// RFC 7252's ACK_TIMEOUT and MAX_RETRANSMIT, for separate responses.
const ACK_TIMEOUT: Duration = Duration::from_secs(2);
const MAX_RETRANSMIT: u32 = 4;
/// How long a block-wise transfer may pause between blocks (coap-lite's
/// cache expiry).
const TRANSFER_IDLE: Duration = Duration::from_secs(120);
/// A payload that always fits one message of coap-lite's block size
/// (1152 bytes with the header and options): larger answers may go in
/// blocks.
const ONE_BLOCK: usize = 1024;
/// Largest datagram read (a CoAP message over UDP is one datagram).
const MAX_DATAGRAM: usize = 65_535;

/// CoAP's Content-Format numbers for the media types functions answer
/// with most (IANA's CoAP Content-Formats registry).
const CONTENT_FORMATS: &[(u16, &str)] = &[
    (0, "text/plain; charset=utf-8"),
    (40, "application/link-format"),
    (41, "application/xml"),
    (42, "application/octet-stream"),
    (47, "application/exi"),
    (50, "application/json"),
    (60, "application/cbor"),
];

/// What a CoAP endpoint needs of the configuration.
#[derive(Debug, Clone)]
pub struct Limits {
    pub max_body: u64,
    pub max_inflight: u32,
    pub exchanges: u32,
    pub max_transfers: u32,
    pub ack_delay: Duration,
}

impl Limits {
    pub fn of(config: &crate::Config) -> Limits {
        Limits {
            max_body: config.coap_max_body,
            max_inflight: config.coap_max_inflight,
            exchanges: config.coap_exchanges,
            max_transfers: config.coap_max_transfers,
            ack_delay: config.coap_ack_delay,
        }
    }
}

/// One request's place in the exchange memory.
enum Exchange {
    /// Being answered; `acked`: its empty ACK has been sent.
    Working { acked: bool },
    /// Answered: what to send again when the request comes again.
    Done(Arc<Vec<u8>>),
}

type Key = (SocketAddr, u16);

/// Exchanges by peer and message id, oldest first, at most `cap`.
struct Exchanges {
    map: HashMap<Key, Exchange>,
    order: VecDeque<(Key, Instant)>,
    cap: usize,
}

impl Exchanges {
    fn new(cap: usize) -> Exchanges {
        Exchanges {
            map: HashMap::new(),
            order: VecDeque::new(),
            cap,
        }
    }

    fn set(&mut self, key: Key, exchange: Exchange) {
        if let Some(known) = self.map.get_mut(&key) {
            *known = exchange;
            return;
        }
        let now = Instant::now();
        while let Some(&(old, at)) = self.order.front() {
            if now.duration_since(at) <= EXCHANGE_LIFETIME && self.order.len() < self.cap {
                break;
            }
            self.order.pop_front();
            self.map.remove(&old);
        }
        self.map.insert(key, exchange);
        self.order.push_back((key, now));
    }
}

/// Block-wise transfers open, by peer and path, with their last activity.
struct Transfers {
    open: HashMap<(SocketAddr, String), Instant>,
    cap: usize,
}

impl Transfers {
    /// Counts a transfer as open; false when `cap` are open already.
    fn open(&mut self, key: (SocketAddr, String)) -> bool {
        if !self.has_room(&key) {
            return false;
        }
        self.open.insert(key, Instant::now());
        true
    }

    /// Whether `key` is open or one more may open (idle ones forgotten).
    fn has_room(&mut self, key: &(SocketAddr, String)) -> bool {
        let now = Instant::now();
        self.open
            .retain(|_, at| now.duration_since(*at) < TRANSFER_IDLE);
        self.open.contains_key(key) || self.open.len() < self.cap
    }

    fn close(&mut self, key: &(SocketAddr, String)) {
        self.open.remove(key);
    }
}

struct Shared {
    exchanges: Exchanges,
    blocks: BlockHandler<SocketAddr>,
    transfers: Transfers,
}

/// A bound CoAP endpoint.
pub struct Endpoint {
    socket: Arc<UdpSocket>,
    front: Front,
    limits: Limits,
    shared: Mutex<Shared>,
    inflight: Arc<Semaphore>,
    /// Separate responses waiting for their ACK, by peer and message id.
    unacked: Mutex<HashMap<Key, oneshot::Sender<()>>>,
    next_id: AtomicU16,
}

impl Endpoint {
    pub fn new(socket: UdpSocket, front: Front, limits: Limits) -> Arc<Endpoint> {
        let blocks = BlockHandler::new(BlockHandlerConfig {
            cache_expiry_duration: TRANSFER_IDLE,
            ..BlockHandlerConfig::default()
        });
        Arc::new(Endpoint {
            socket: Arc::new(socket),
            front,
            shared: Mutex::new(Shared {
                exchanges: Exchanges::new(limits.exchanges as usize),
                blocks,
                transfers: Transfers {
                    open: HashMap::new(),
                    cap: limits.max_transfers as usize,
                },
            }),
            inflight: Arc::new(Semaphore::new(limits.max_inflight as usize)),
            unacked: Mutex::new(HashMap::new()),
            next_id: AtomicU16::new(fastrand_u16()),
            limits,
        })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.socket.local_addr()
    }

    /// Receives until `shutdown`; each request is answered on its own task.
    pub async fn serve(self: Arc<Self>, mut shutdown: Shutdown) {
        let mut buf = vec![0u8; MAX_DATAGRAM];
        loop {
            let (n, peer) = tokio::select! {
                _ = shutdown.wait() => break,
                received = self.socket.recv_from(&mut buf) => match received {
                    Ok(received) => received,
                    Err(e) => {
                        tracing::debug!(error = %e, "coap: receive failed");
                        continue;
                    }
                },
            };
            self.datagram(&buf[..n], peer);
        }
    }

    fn datagram(self: &Arc<Self>, bytes: &[u8], peer: SocketAddr) {
        let packet = match Packet::from_bytes(bytes) {
            Ok(packet) => packet,
            Err(e) => {
                // A confirmable message we cannot read is rejected (RST);
                // anything else is dropped silently (RFC 7252 4.2, 4.3).
                if bytes.len() >= 4 && bytes[0] >> 6 == 1 && (bytes[0] >> 4) & 3 == 0 {
                    let id = u16::from_be_bytes([bytes[2], bytes[3]]);
                    self.send(&empty(MessageType::Reset, id), peer);
                }
                tracing::debug!(%peer, error = %e, "coap: unreadable message");
                return;
            }
        };
        let id = packet.header.message_id;
        match (packet.header.code, packet.header.get_type()) {
            (MessageClass::Empty, MessageType::Acknowledgement | MessageType::Reset) => {
                let waiting = self.lock_unacked().remove(&(peer, id));
                if let Some(done) = waiting {
                    let _ = done.send(());
                }
            }
            // A ping: answered with RST (RFC 7252 4.3).
            (MessageClass::Empty, MessageType::Confirmable) => {
                self.send(&empty(MessageType::Reset, id), peer)
            }
            (MessageClass::Request(_), MessageType::Confirmable | MessageType::NonConfirmable) => {
                self.request(packet, peer)
            }
            _ => {}
        }
    }

    /// A request: answered again if seen before, by the block handler if
    /// it is part of a transfer in blocks, else called on its own task.
    fn request(self: &Arc<Self>, packet: Packet, peer: SocketAddr) {
        let key = (peer, packet.header.message_id);
        let confirmable = packet.header.get_type() == MessageType::Confirmable;
        let mut request = CoapRequest::from_packet(packet, peer);
        let mut shared = self.lock_shared();
        match shared.exchanges.map.get(&key) {
            Some(Exchange::Done(bytes)) => {
                let bytes = bytes.clone();
                drop(shared);
                self.send_bytes(&bytes, peer);
                return;
            }
            Some(Exchange::Working { acked }) => {
                if *acked && confirmable {
                    drop(shared);
                    self.send(&empty(MessageType::Acknowledgement, key.1), peer);
                }
                return;
            }
            None => {}
        }
        let transfer = (peer, request.get_path());
        if let Some(refusal) = self.refuse_block1(&mut request, &mut shared, &transfer) {
            let bytes = self.answer(&mut request, refusal.0, refusal.1.into_bytes(), None);
            shared.exchanges.set(key, Exchange::Done(bytes.clone()));
            drop(shared);
            self.send_bytes(&bytes, peer);
            return;
        }
        // Only a request in a block-wise transfer goes to the block handler
        // (it keeps a state for every request it sees).
        let handled = if in_blocks(&request.message) {
            shared.blocks.intercept_request(&mut request)
        } else {
            Ok(false)
        };
        match handled {
            Ok(false) => {}
            handled => {
                if let Err(e) = &handled {
                    let code = e.code.unwrap_or(ResponseType::BadRequest);
                    set_reply(&mut request, code, e.message.clone().into_bytes(), None);
                }
                if !block2_more(&request)
                    && request.message.get_option(CoapOption::Block2).is_some()
                {
                    shared.transfers.close(&transfer);
                }
                let bytes = self.finish(&mut request);
                shared.exchanges.set(key, Exchange::Done(bytes.clone()));
                drop(shared);
                self.send_bytes(&bytes, peer);
                return;
            }
        }
        let Ok(permit) = self.inflight.clone().try_acquire_owned() else {
            let message = format!(
                "{} CoAP calls are running (coap_max_inflight): try again shortly",
                self.limits.max_inflight
            );
            let bytes = self.answer(
                &mut request,
                ResponseType::ServiceUnavailable,
                message.into_bytes(),
                Some(1),
            );
            shared.exchanges.set(key, Exchange::Done(bytes.clone()));
            drop(shared);
            self.send_bytes(&bytes, peer);
            return;
        };
        shared
            .exchanges
            .set(key, Exchange::Working { acked: false });
        drop(shared);
        let endpoint = self.clone();
        tokio::spawn(async move {
            endpoint.call(request, key, confirmable, transfer).await;
            drop(permit);
        });
    }

    /// A Block1 transfer past `coap_max_body`, or one more than
    /// `coap_max_transfers`: the refusal to send (before anything is kept).
    fn refuse_block1(
        &self,
        request: &mut CoapRequest<SocketAddr>,
        shared: &mut Shared,
        transfer: &(SocketAddr, String),
    ) -> Option<(ResponseType, String)> {
        let max = self.limits.max_body;
        let announced = request
            .message
            .get_first_option_as::<OptionValueU32>(CoapOption::Size1)
            .and_then(Result::ok)
            .map_or(0, |size| u64::from(size.0));
        let block1 = request
            .message
            .get_first_option_as::<BlockValue>(CoapOption::Block1)
            .and_then(Result::ok);
        let end = match &block1 {
            Some(block) => {
                usize::from(block.num) as u64 * block.size() as u64
                    + request.message.payload.len() as u64
            }
            None => request.message.payload.len() as u64,
        };
        if end.max(announced) > max {
            shared.transfers.close(transfer);
            request.response.as_mut()?.message.add_option_as(
                CoapOption::Size1,
                OptionValueU32(max.min(u64::from(u32::MAX)) as u32),
            );
            return Some((
                ResponseType::RequestEntityTooLarge,
                format!("the payload is larger than coap_max_body ({max} bytes)"),
            ));
        }
        match block1 {
            Some(block) if block.more => {
                if !shared.transfers.open(transfer.clone()) {
                    return Some((
                        ResponseType::ServiceUnavailable,
                        format!(
                            "{} block-wise transfers are open (coap_max_transfers): try again shortly",
                            self.limits.max_transfers
                        ),
                    ));
                }
                None
            }
            Some(_) => {
                shared.transfers.close(transfer);
                None
            }
            None => None,
        }
    }

    /// Runs the call through the front and answers it: piggybacked on the
    /// ACK, or separately when the ACK went out first.
    async fn call(
        self: Arc<Self>,
        mut request: CoapRequest<SocketAddr>,
        key: Key,
        confirmable: bool,
        transfer: (SocketAddr, String),
    ) {
        let peer = key.0;
        let mut acked = false;
        let (code, payload, format) = {
            let reply = self.invoke(&request);
            tokio::pin!(reply);
            loop {
                tokio::select! {
                    reply = &mut reply => break reply,
                    _ = tokio::time::sleep(self.limits.ack_delay), if confirmable && !acked => {
                        acked = true;
                        self.lock_shared()
                            .exchanges
                            .set(key, Exchange::Working { acked: true });
                        self.send(&empty(MessageType::Acknowledgement, key.1), peer);
                    }
                }
            }
        };
        set_reply(&mut request, code, payload, format);
        if let Some(bytes) = self.settle(&mut request, key, acked, transfer) {
            self.send_bytes(&bytes, peer);
            return;
        }
        // Separate: a new confirmable message with the request's token.
        let Some(response) = request.response.as_mut() else {
            return;
        };
        let id = self.next_id();
        response.message.header.set_type(MessageType::Confirmable);
        response.message.header.message_id = id;
        let Ok(bytes) = response.message.to_bytes() else {
            return;
        };
        let (done, acknowledged) = oneshot::channel();
        self.lock_unacked().insert((peer, id), done);
        tokio::pin!(acknowledged);
        let mut wait = ACK_TIMEOUT;
        for _ in 0..=MAX_RETRANSMIT {
            self.send_bytes(&bytes, peer);
            if tokio::time::timeout(wait, &mut acknowledged).await.is_ok() {
                return;
            }
            wait *= 2;
        }
        self.lock_unacked().remove(&(peer, id));
        tracing::debug!(%peer, id, "coap: a separate response was never acknowledged");
    }

    /// Splits the answer into blocks when it does not fit one datagram and
    /// remembers the exchange. The bytes to piggyback on the ACK, or `None`
    /// when the ACK went out already (the answer goes separately).
    fn settle(
        &self,
        request: &mut CoapRequest<SocketAddr>,
        key: Key,
        acked: bool,
        transfer: (SocketAddr, String),
    ) -> Option<Arc<Vec<u8>>> {
        let mut shared = self.lock_shared();
        let large = request
            .response
            .as_ref()
            .is_some_and(|r| r.message.payload.len() > ONE_BLOCK);
        if large && !shared.transfers.has_room(&transfer) {
            // The answer would be kept for the client to fetch in blocks:
            // not beyond coap_max_transfers.
            set_reply(
                request,
                ResponseType::ServiceUnavailable,
                format!(
                    "{} block-wise transfers are open (coap_max_transfers): try again shortly",
                    self.limits.max_transfers
                )
                .into_bytes(),
                None,
            );
            if let Some(response) = request.response.as_mut() {
                response
                    .message
                    .add_option_as(CoapOption::MaxAge, OptionValueU32(1));
            }
        } else if large || request.message.get_option(CoapOption::Block2).is_some() {
            match shared.blocks.intercept_response(request) {
                Ok(true) => {
                    // The rest is fetched block by block: open until its
                    // last block is served (or it idles out).
                    shared.transfers.open(transfer);
                }
                Ok(false) => {}
                Err(e) => set_reply(
                    request,
                    ResponseType::InternalServerError,
                    e.message.into_bytes(),
                    None,
                ),
            }
        }
        if !acked {
            let bytes = self.finish(request);
            shared.exchanges.set(key, Exchange::Done(bytes.clone()));
            return Some(bytes);
        }
        // Separate: a repeat of the request gets the empty ACK again.
        let ack = empty(MessageType::Acknowledgement, key.1)
            .to_bytes()
            .unwrap_or_default();
        shared.exchanges.set(key, Exchange::Done(Arc::new(ack)));
        None
    }

    /// The call as an HTTP request through the front; its answer as a
    /// CoAP code, payload and Content-Format.
    async fn invoke(
        &self,
        request: &CoapRequest<SocketAddr>,
    ) -> (ResponseType, Vec<u8>, Option<u16>) {
        let message = &request.message;
        let method = match message.header.code {
            MessageClass::Request(RequestType::Get) => http::Method::GET,
            MessageClass::Request(RequestType::Post) => http::Method::POST,
            MessageClass::Request(RequestType::Put) => http::Method::PUT,
            MessageClass::Request(RequestType::Delete) => http::Method::DELETE,
            _ => {
                return (
                    ResponseType::MethodNotAllowed,
                    b"CoAP calls are GET, POST, PUT or DELETE".to_vec(),
                    None,
                );
            }
        };
        let target = match http_target(message) {
            Ok(target) => target,
            Err(reason) => return (ResponseType::NotFound, reason.into_bytes(), None),
        };
        let mut builder = http::Request::builder().method(method).uri(target);
        if let Some(format) = uint_option(message, CoapOption::ContentFormat)
            && let Some(media) = media_type(format)
        {
            builder = builder.header(http::header::CONTENT_TYPE, media);
        }
        if let Some(format) = uint_option(message, CoapOption::Accept)
            && let Some(media) = media_type(format)
        {
            builder = builder.header(http::header::ACCEPT, media);
        }
        let http_request = match builder.body(Body::from(message.payload.clone())) {
            Ok(r) => r,
            Err(e) => {
                return (
                    ResponseType::BadRequest,
                    format!("cannot make a call of this request: {e}").into_bytes(),
                    None,
                );
            }
        };
        let response = self
            .front
            .call(
                request.source.unwrap_or(([0, 0, 0, 0], 0).into()),
                http_request,
            )
            .await;
        let status = response.status();
        let format = response
            .headers()
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(content_format);
        let max = self.limits.max_body;
        let body = http_body_util::Limited::new(response.into_body(), max as usize);
        match body.collect().await {
            Ok(collected) => (code_of(status), collected.to_bytes().to_vec(), format),
            Err(e) if e.is::<http_body_util::LengthLimitError>() => (
                ResponseType::InternalServerError,
                format!("the function's answer is larger than coap_max_body ({max} bytes)")
                    .into_bytes(),
                None,
            ),
            Err(e) => (
                ResponseType::BadGateway,
                format!("the function's answer broke off: {e}").into_bytes(),
                None,
            ),
        }
    }

    /// Sets a reply on `request` and returns it encoded (block-wise when it
    /// does not fit one datagram).
    fn answer(
        &self,
        request: &mut CoapRequest<SocketAddr>,
        code: ResponseType,
        payload: Vec<u8>,
        max_age: Option<u32>,
    ) -> Arc<Vec<u8>> {
        set_reply(request, code, payload, None);
        if let (Some(age), Some(response)) = (max_age, request.response.as_mut()) {
            response
                .message
                .add_option_as(CoapOption::MaxAge, OptionValueU32(age));
        }
        self.finish(request)
    }

    /// The response encoded, with a fresh message id for a NON request's
    /// answer (a piggybacked ACK keeps the request's).
    fn finish(&self, request: &mut CoapRequest<SocketAddr>) -> Arc<Vec<u8>> {
        let Some(response) = request.response.as_mut() else {
            return Arc::new(Vec::new());
        };
        if response.message.header.get_type() == MessageType::NonConfirmable {
            response.message.header.message_id = self.next_id();
        }
        Arc::new(response.message.to_bytes().unwrap_or_else(|e| {
            tracing::warn!(error = %e, "coap: cannot encode an answer");
            Vec::new()
        }))
    }

    fn send(&self, packet: &Packet, peer: SocketAddr) {
        if let Ok(bytes) = packet.to_bytes() {
            self.send_bytes(&bytes, peer);
        }
    }

    fn send_bytes(&self, bytes: &[u8], peer: SocketAddr) {
        if bytes.is_empty() {
            return;
        }
        // UDP: a full socket buffer drops the datagram, as the network
        // may; the client retransmits.
        if let Err(e) = self.socket.try_send_to(bytes, peer) {
            tracing::debug!(%peer, error = %e, "coap: send failed");
        }
    }

    fn next_id(&self) -> u16 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    fn lock_shared(&self) -> std::sync::MutexGuard<'_, Shared> {
        self.shared.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn lock_unacked(&self) -> std::sync::MutexGuard<'_, HashMap<Key, oneshot::Sender<()>>> {
        self.unacked.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn fastrand_u16() -> u16 {
    let mut bytes = [0u8; 2];
    let _ = getrandom::fill(&mut bytes);
    u16::from_ne_bytes(bytes)
}

/// An empty message (ACK or RST) for message `id`.
fn empty(kind: MessageType, id: u16) -> Packet {
    let mut packet = Packet::new();
    packet.header.set_version(1);
    packet.header.set_type(kind);
    packet.header.code = MessageClass::Empty;
    packet.header.message_id = id;
    packet
}

fn set_reply(
    request: &mut CoapRequest<SocketAddr>,
    code: ResponseType,
    payload: Vec<u8>,
    format: Option<u16>,
) {
    if let Some(response) = request.response.as_mut() {
        response.set_status(code);
        response.message.payload = payload;
        response.message.clear_option(CoapOption::ContentFormat);
        if let Some(format) = format {
            response
                .message
                .add_option_as(CoapOption::ContentFormat, OptionValueU32(u32::from(format)));
        }
    }
}

/// Whether a request is part of a block-wise transfer.
fn in_blocks(message: &Packet) -> bool {
    message.get_option(CoapOption::Block1).is_some()
        || message.get_option(CoapOption::Block2).is_some()
}

/// Whether the response being sent says more blocks follow.
fn block2_more(request: &CoapRequest<SocketAddr>) -> bool {
    request
        .response
        .as_ref()
        .and_then(|r| {
            r.message
                .get_first_option_as::<BlockValue>(CoapOption::Block2)
        })
        .and_then(Result::ok)
        .is_some_and(|b| b.more)
}

/// The gateway path a CoAP request calls: `/{name}[/rest]` and
/// `/function/{name}[/rest]` call, `/async-function/{name}[/rest]` queues;
/// Uri-Query options become the query string.
fn http_target(message: &Packet) -> Result<String, String> {
    let segments: Vec<&[u8]> = message
        .get_option(CoapOption::UriPath)
        .map(|list| list.iter().map(Vec::as_slice).collect())
        .unwrap_or_default();
    let (prefix, rest) = match segments.first().copied() {
        None | Some(b"") => {
            return Err("name a function: coap://host/{name}".to_owned());
        }
        Some(b"function") if segments.len() > 1 => ("/function", &segments[1..]),
        Some(b"async-function") if segments.len() > 1 => ("/async-function", &segments[1..]),
        Some(_) => ("/function", &segments[..]),
    };
    let mut target = String::from(prefix);
    for segment in rest {
        target.push('/');
        target.extend(percent_encode(segment));
    }
    if let Some(queries) = message.get_option(CoapOption::UriQuery) {
        for (i, query) in queries.iter().enumerate() {
            target.push(if i == 0 { '?' } else { '&' });
            // `key=value`: the `=` stays, the rest is encoded.
            let mut parts = query.splitn(2, |b| *b == b'=');
            target.extend(percent_encode(parts.next().unwrap_or_default()));
            if let Some(value) = parts.next() {
                target.push('=');
                target.extend(percent_encode(value));
            }
        }
    }
    Ok(target)
}

fn percent_encode(bytes: &[u8]) -> impl Iterator<Item = char> + '_ {
    bytes.iter().flat_map(|&b| {
        let unreserved = b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~');
        let hex = |n: u8| {
            char::from_digit(u32::from(n), 16)
                .unwrap_or('0')
                .to_ascii_uppercase()
        };
        let chars = if unreserved {
            [b as char, '\0', '\0']
        } else {
            ['%', hex(b >> 4), hex(b & 0xf)]
        };
        chars.into_iter().filter(|c| *c != '\0')
    })
}

fn uint_option(message: &Packet, option: CoapOption) -> Option<u16> {
    message
        .get_first_option_as::<OptionValueU32>(option)
        .and_then(Result::ok)
        .and_then(|v| u16::try_from(v.0).ok())
}

fn media_type(format: u16) -> Option<&'static str> {
    CONTENT_FORMATS
        .iter()
        .find(|(n, _)| *n == format)
        .map(|(_, media)| *media)
}

/// A Content-Type's CoAP Content-Format, when it has one.
fn content_format(content_type: &str) -> Option<u16> {
    let essence = content_type.split(';').next()?.trim().to_ascii_lowercase();
    CONTENT_FORMATS
        .iter()
        .find(|(_, media)| media.split(';').next() == Some(essence.as_str()))
        .map(|(n, _)| *n)
}

/// An HTTP status as the CoAP code that means the same (RFC 8075's
/// mapping; 202, an async call queued, is 2.01 Created).
fn code_of(status: StatusCode) -> ResponseType {
    match status.as_u16() {
        200 => ResponseType::Content,
        201 | 202 => ResponseType::Created,
        204 => ResponseType::Changed,
        304 => ResponseType::Valid,
        400 => ResponseType::BadRequest,
        401 => ResponseType::Unauthorized,
        403 => ResponseType::Forbidden,
        404 => ResponseType::NotFound,
        405 => ResponseType::MethodNotAllowed,
        406 => ResponseType::NotAcceptable,
        409 => ResponseType::Conflict,
        412 => ResponseType::PreconditionFailed,
        413 => ResponseType::RequestEntityTooLarge,
        415 => ResponseType::UnsupportedContentFormat,
        422 => ResponseType::UnprocessableEntity,
        429 => ResponseType::TooManyRequests,
        501 => ResponseType::NotImplemented,
        502 => ResponseType::BadGateway,
        503 | 507 => ResponseType::ServiceUnavailable,
        504 => ResponseType::GatewayTimeout,
        s if (200..300).contains(&s) => ResponseType::Content,
        s if (400..500).contains(&s) => ResponseType::BadRequest,
        _ => ResponseType::InternalServerError,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packet(path: &[&str], query: &[&str]) -> Packet {
        let mut p = Packet::new();
        for segment in path {
            p.add_option(CoapOption::UriPath, segment.as_bytes().to_vec());
        }
        for q in query {
            p.add_option(CoapOption::UriQuery, q.as_bytes().to_vec());
        }
        p
    }

    #[test]
    fn coap_paths_become_the_gateways_call_paths() {
        let cases: &[(&[&str], &[&str], &str)] = &[
            (&["hello"], &[], "/function/hello"),
            (&["function", "hello", "a b"], &[], "/function/hello/a%20b"),
            (
                &["async-function", "hello"],
                &["x=1", "flag"],
                "/async-function/hello?x=1&flag",
            ),
            (&["hello"], &["q=a&b"], "/function/hello?q=a%26b"),
            (&["function"], &[], "/function/function"),
        ];
        for (path, query, want) in cases {
            assert_eq!(http_target(&packet(path, query)).unwrap(), *want);
        }
        assert!(
            http_target(&packet(&[], &[]))
                .unwrap_err()
                .contains("name a function")
        );
    }

    #[test]
    fn statuses_map_to_the_codes_clients_expect() {
        assert_eq!(code_of(StatusCode::OK), ResponseType::Content);
        assert_eq!(code_of(StatusCode::ACCEPTED), ResponseType::Created);
        assert_eq!(code_of(StatusCode::NOT_FOUND), ResponseType::NotFound);
        assert_eq!(
            code_of(StatusCode::PAYLOAD_TOO_LARGE),
            ResponseType::RequestEntityTooLarge
        );
        assert_eq!(
            code_of(StatusCode::SERVICE_UNAVAILABLE),
            ResponseType::ServiceUnavailable
        );
        assert_eq!(
            code_of(StatusCode::GATEWAY_TIMEOUT),
            ResponseType::GatewayTimeout
        );
        assert_eq!(code_of(StatusCode::IM_A_TEAPOT), ResponseType::BadRequest);
        assert_eq!(content_format("application/json; charset=utf-8"), Some(50));
        assert_eq!(content_format("text/plain"), Some(0));
        assert_eq!(content_format("text/html"), None);
        assert_eq!(media_type(42), Some("application/octet-stream"));
    }

    #[test]
    fn exchanges_forget_the_oldest_beyond_their_cap() {
        let mut exchanges = Exchanges::new(3);
        let peer: SocketAddr = ([127, 0, 0, 1], 1).into();
        for id in 0..5u16 {
            exchanges.set((peer, id), Exchange::Done(Arc::new(vec![id as u8])));
        }
        assert_eq!(exchanges.map.len(), 3);
        assert!(!exchanges.map.contains_key(&(peer, 0)) && !exchanges.map.contains_key(&(peer, 1)));
        assert!(matches!(exchanges.map.get(&(peer, 4)), Some(Exchange::Done(b)) if b[0] == 4));
        // Set again (Working, then Done): one entry, not two.
        exchanges.set((peer, 9), Exchange::Working { acked: false });
        exchanges.set((peer, 9), Exchange::Done(Arc::new(vec![9])));
        assert_eq!(exchanges.map.len(), 3);
    }
}
