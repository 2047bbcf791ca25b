//! The CoAP endpoint (RFC 7252 over UDP): `GET`/`POST coap://host/{name}`
//! calls the function with the payload as its body and answers 2.05 with
//! its output, through the same [`Front`] as an HTTP call: credentials,
//! routing, balancing, metrics, the async queue and scaling are one.
//!
//! `coap-lite` encodes and decodes messages; this module keeps the
//! exchanges and the block-wise transfers (RFC 7959, [`Blocks`]: a body
//! arriving in blocks is assembled in order, each block checked; an answer
//! too large for one message is kept for its blocks to be fetched): a
//! retransmitted request
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
use coap_lite::option_value::OptionValueU32;
use coap_lite::{
    CoapOption, CoapRequest, MessageClass, MessageType, Packet, RequestType, ResponseType,
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
    /// How long a stop waits for the calls under way.
    pub drain: Duration,
}

impl Limits {
    pub fn of(config: &crate::Config) -> Limits {
        Limits {
            max_body: config.coap_max_body,
            max_inflight: config.coap_max_inflight,
            exchanges: config.coap_exchanges,
            max_transfers: config.coap_max_transfers,
            ack_delay: config.coap_ack_delay,
            drain: config.upstream_timeout,
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

/// A transfer's key: the peer and the request (method and URI), as RFC
/// 7959 matches blocks to their transfer.
type TransferKey = (SocketAddr, String);

/// A Block1 or Block2 option's value: NUM, M and SZX (RFC 7959 2.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Block {
    num: u32,
    more: bool,
    szx: u8,
}

impl Block {
    /// The largest block size we use, 1024 bytes (SZX 6).
    const MAX_SZX: u8 = 6;

    /// A 0–3 byte option value; SZX 7 (BERT, for TCP only) is refused.
    fn parse(value: &[u8]) -> Result<Block, String> {
        if value.len() > 3 {
            return Err(format!(
                "a block option of {} bytes (at most 3)",
                value.len()
            ));
        }
        let n = value.iter().fold(0u32, |n, b| (n << 8) | u32::from(*b));
        let szx = (n & 7) as u8;
        if szx == 7 {
            return Err("block size exponent 7 (BERT) is for CoAP over TCP".to_owned());
        }
        Ok(Block {
            num: n >> 4,
            more: n & 8 != 0,
            szx,
        })
    }

    fn encode(self) -> Vec<u8> {
        let n = (self.num << 4) | (u32::from(self.more) << 3) | u32::from(self.szx);
        let bytes = n.to_be_bytes();
        let skip = bytes.iter().take_while(|b| **b == 0).count();
        bytes[skip..].to_vec()
    }

    fn size(self) -> usize {
        16 << self.szx
    }
}

/// The first `option` of `packet` as a block, if it has one.
fn block_option(packet: &Packet, option: CoapOption) -> Result<Option<Block>, String> {
    packet
        .get_option(option)
        .and_then(|values| values.front())
        .map(|value| Block::parse(value))
        .transpose()
}

/// A request body arriving in blocks.
struct Assembly {
    body: Vec<u8>,
    next: u32,
    szx: u8,
    last: Instant,
}

/// An answer kept for its blocks to be fetched.
struct Kept {
    code: ResponseType,
    format: Option<u16>,
    payload: Vec<u8>,
    etag: [u8; 4],
    last: Instant,
}

/// The block-wise transfers open, both ways, at most `cap` together, each
/// dropped after `TRANSFER_IDLE` without a block.
struct Blocks {
    incoming: HashMap<TransferKey, Assembly>,
    outgoing: HashMap<TransferKey, Kept>,
    cap: usize,
}

impl Blocks {
    fn forget_idle(&mut self) {
        let now = Instant::now();
        self.incoming
            .retain(|_, a| now.duration_since(a.last) < TRANSFER_IDLE);
        self.outgoing
            .retain(|_, k| now.duration_since(k.last) < TRANSFER_IDLE);
    }

    /// Whether a transfer for `key` may open (one for the same key is
    /// replaced, so it always may).
    fn has_room(&mut self, key: &TransferKey) -> bool {
        self.forget_idle();
        self.incoming.contains_key(key)
            || self.outgoing.contains_key(key)
            || self.incoming.len() + self.outgoing.len() < self.cap
    }
}

/// How a request's Block1 option was taken.
enum Arrived {
    /// Not in blocks, or its last block: call with this body (and, for a
    /// body that came in blocks, answer with this Block1 option).
    Whole(Vec<u8>, Option<Block>),
    /// A block before the last: answer this (2.31 Continue, or a refusal).
    Answer(ResponseType, String, Option<Block>),
}

struct Shared {
    exchanges: Exchanges,
    blocks: Blocks,
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
        Arc::new(Endpoint {
            socket: Arc::new(socket),
            front,
            shared: Mutex::new(Shared {
                exchanges: Exchanges::new(limits.exchanges as usize),
                blocks: Blocks {
                    incoming: HashMap::new(),
                    outgoing: HashMap::new(),
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
            // No datagram may end the endpoint: a panic in the codec is
            // that datagram's problem only.
            let handled = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                self.datagram(&buf[..n], peer)
            }));
            if handled.is_err() {
                tracing::warn!(%peer, "coap: a datagram could not be handled (dropped)");
            }
        }
        // Calls under way finish (within upstream_timeout) before the
        // provider stops their functions.
        let all = self.limits.max_inflight;
        let _ = tokio::time::timeout(self.limits.drain, self.inflight.acquire_many(all)).await;
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
        if let Some((code, reason)) = unsupported_option(&request.message) {
            self.reply_now(&mut shared, &mut request, key, code, reason);
            return;
        }
        // The gateway path it calls, made once: also the transfer's key.
        let target = http_target(&request.message);
        let transfer: TransferKey = (
            peer,
            format!(
                "{} {}",
                u8::from(request.message.header.code),
                target.as_deref().unwrap_or_default()
            ),
        );
        let block2 = match block_option(&request.message, CoapOption::Block2) {
            Ok(block2) => block2,
            Err(reason) => {
                self.reply_now(
                    &mut shared,
                    &mut request,
                    key,
                    ResponseType::BadOption,
                    reason,
                );
                return;
            }
        };
        // A later block of a kept answer: served from memory, no call.
        if let Some(block2) = block2.filter(|b| b.num > 0) {
            self.serve_block(&mut shared, &mut request, key, &transfer, block2);
            return;
        }
        let block1 = match self.arrive(&mut request, &mut shared.blocks, &transfer) {
            Arrived::Whole(body, block1) => {
                request.message.payload = body;
                block1
            }
            Arrived::Answer(code, reason, block1) => {
                if let Some(response) = request.response.as_mut() {
                    if let Some(block1) = block1 {
                        response
                            .message
                            .add_option(CoapOption::Block1, block1.encode());
                    }
                    if code == ResponseType::RequestEntityTooLarge {
                        let max = self.limits.max_body.min(u64::from(u32::MAX)) as u32;
                        response
                            .message
                            .add_option_as(CoapOption::Size1, OptionValueU32(max));
                    }
                }
                self.reply_now(&mut shared, &mut request, key, code, reason);
                return;
            }
        };
        let plan = Plan {
            target,
            block1,
            szx: block2.map_or(Block::MAX_SZX, |b| b.szx.min(Block::MAX_SZX)),
            transfer,
        };
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
            endpoint.call(request, key, confirmable, plan, permit).await;
        });
    }

    /// Answers at once (and remembers the answer for a retransmission).
    fn reply_now(
        &self,
        shared: &mut Shared,
        request: &mut CoapRequest<SocketAddr>,
        key: Key,
        code: ResponseType,
        reason: String,
    ) {
        set_reply(request, code, reason.into_bytes(), None);
        let bytes = self.finish(request);
        shared.exchanges.set(key, Exchange::Done(bytes.clone()));
        self.send_bytes(&bytes, key.0);
    }

    /// Block `block.num` of a kept answer, or 4.08 when none is kept.
    fn serve_block(
        &self,
        shared: &mut Shared,
        request: &mut CoapRequest<SocketAddr>,
        key: Key,
        transfer: &TransferKey,
        block: Block,
    ) {
        shared.blocks.forget_idle();
        let Some(kept) = shared.blocks.outgoing.get_mut(transfer) else {
            self.reply_now(
                shared,
                request,
                key,
                ResponseType::RequestEntityIncomplete,
                format!(
                    "no answer is kept for block {} (it idled out after {}s or was never made): ask again from block 0",
                    block.num,
                    TRANSFER_IDLE.as_secs()
                ),
            );
            return;
        };
        let szx = block.szx.min(Block::MAX_SZX);
        let size = 16usize << szx;
        let start = (block.num as usize).saturating_mul(size);
        if start >= kept.payload.len() {
            let reason = format!(
                "block {} of {size} bytes is past the answer's {} bytes",
                block.num,
                kept.payload.len()
            );
            self.reply_now(shared, request, key, ResponseType::BadOption, reason);
            return;
        }
        let end = (start + size).min(kept.payload.len());
        let more = end < kept.payload.len();
        kept.last = Instant::now();
        let (code, format, etag) = (kept.code, kept.format, kept.etag);
        set_reply(request, code, kept.payload[start..end].to_vec(), format);
        if !more {
            shared.blocks.outgoing.remove(transfer);
        }
        if let Some(response) = request.response.as_mut() {
            let reply = Block {
                num: block.num,
                more,
                szx,
            };
            response
                .message
                .add_option(CoapOption::Block2, reply.encode());
            response.message.add_option(CoapOption::ETag, etag.to_vec());
        }
        let bytes = self.finish(request);
        shared.exchanges.set(key, Exchange::Done(bytes.clone()));
        self.send_bytes(&bytes, key.0);
    }

    /// Takes a request's body: whole, or block by block (RFC 7959 2.5),
    /// each block in order and of its stated size, the total within
    /// `coap_max_body`, at most `coap_max_transfers` bodies arriving at
    /// once. Nothing is kept beyond those bounds.
    fn arrive(
        &self,
        request: &mut CoapRequest<SocketAddr>,
        blocks: &mut Blocks,
        transfer: &TransferKey,
    ) -> Arrived {
        let max = self.limits.max_body;
        let message = &mut request.message;
        let payload = std::mem::take(&mut message.payload);
        let announced = message
            .get_first_option_as::<OptionValueU32>(CoapOption::Size1)
            .and_then(Result::ok)
            .map_or(0, |size| u64::from(size.0));
        let too_large = || {
            Arrived::Answer(
                ResponseType::RequestEntityTooLarge,
                format!("the payload is larger than coap_max_body ({max} bytes)"),
                None,
            )
        };
        let block = match block_option(message, CoapOption::Block1) {
            Ok(Some(block)) => block,
            Ok(None) => {
                if payload.len() as u64 > max || announced > max {
                    return too_large();
                }
                return Arrived::Whole(payload, None);
            }
            Err(reason) => return Arrived::Answer(ResponseType::BadOption, reason, None),
        };
        if announced > max {
            blocks.incoming.remove(transfer);
            return too_large();
        }
        let size = block.size();
        if (block.more && payload.len() != size) || payload.len() > size {
            blocks.incoming.remove(transfer);
            return Arrived::Answer(
                ResponseType::BadRequest,
                format!(
                    "block {} carries {} bytes where its size says {size}",
                    block.num,
                    payload.len()
                ),
                None,
            );
        }
        if block.num == 0 {
            if !blocks.has_room(transfer) {
                return Arrived::Answer(
                    ResponseType::ServiceUnavailable,
                    format!(
                        "{} block-wise transfers are open (coap_max_transfers): try again shortly",
                        self.limits.max_transfers
                    ),
                    None,
                );
            }
            blocks.incoming.insert(
                transfer.clone(),
                Assembly {
                    body: Vec::new(),
                    next: 0,
                    szx: block.szx,
                    last: Instant::now(),
                },
            );
        }
        let in_order = blocks
            .incoming
            .get(transfer)
            .is_some_and(|a| a.next == block.num && a.szx == block.szx);
        let Some(assembly) = blocks.incoming.get_mut(transfer).filter(|_| in_order) else {
            blocks.incoming.remove(transfer);
            return Arrived::Answer(
                ResponseType::RequestEntityIncomplete,
                format!(
                    "block {} came without the blocks before it: send the body again from block 0",
                    block.num
                ),
                None,
            );
        };
        if (assembly.body.len() + payload.len()) as u64 > max {
            blocks.incoming.remove(transfer);
            return too_large();
        }
        assembly.body.extend_from_slice(&payload);
        assembly.next += 1;
        assembly.last = Instant::now();
        if block.more {
            return Arrived::Answer(ResponseType::Continue, String::new(), Some(block));
        }
        let body = blocks
            .incoming
            .remove(transfer)
            .map(|a| a.body)
            .unwrap_or_default();
        Arrived::Whole(body, Some(block))
    }

    /// Runs the call through the front and answers it: piggybacked on the
    /// ACK, or separately when the ACK went out first. The call's slot is
    /// given back when its answer is ready, not after the retransmissions.
    async fn call(
        self: Arc<Self>,
        mut request: CoapRequest<SocketAddr>,
        key: Key,
        confirmable: bool,
        plan: Plan,
        permit: tokio::sync::OwnedSemaphorePermit,
    ) {
        let peer = key.0;
        let mut acked = false;
        let (code, payload, format) = {
            let body = std::mem::take(&mut request.message.payload);
            let reply = self.invoke(&request, &plan.target, body);
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
        let settled = self.settle(&mut request, key, acked, plan, (code, payload, format));
        drop(permit);
        if let Some(bytes) = settled {
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
        // Retransmitted until acknowledged, for at most coap_max_inflight
        // answers at once (more are sent once).
        let (done, acknowledged) = oneshot::channel();
        {
            let mut unacked = self.lock_unacked();
            if unacked.len() >= self.limits.max_inflight as usize {
                drop(unacked);
                self.send_bytes(&bytes, peer);
                return;
            }
            unacked.insert((peer, id), done);
        }
        tokio::pin!(acknowledged);
        // ACK_TIMEOUT times a random factor from 1 to 1.5 (RFC 7252 4.8).
        let mut jitter = [0u8; 1];
        let _ = getrandom::fill(&mut jitter);
        let mut wait = ACK_TIMEOUT + ACK_TIMEOUT.mul_f64(f64::from(jitter[0]) / 510.0);
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

    /// Sets the answer, in blocks when it does not fit one (the rest kept
    /// for fetching, within `coap_max_transfers`), and remembers the
    /// exchange. The bytes to piggyback on the ACK, or `None` when the ACK
    /// went out already (the answer goes separately).
    fn settle(
        &self,
        request: &mut CoapRequest<SocketAddr>,
        key: Key,
        acked: bool,
        plan: Plan,
        (code, mut payload, format): (ResponseType, Vec<u8>, Option<u16>),
    ) -> Option<Arc<Vec<u8>>> {
        let mut shared = self.lock_shared();
        let size = 16usize << plan.szx;
        let mut first_block = None;
        if payload.len() > size {
            if shared.blocks.has_room(&plan.transfer) {
                let mut etag = [0u8; 4];
                let _ = getrandom::fill(&mut etag);
                let total = payload.len();
                let whole = std::mem::take(&mut payload);
                payload = whole[..size].to_vec();
                shared.blocks.outgoing.insert(
                    plan.transfer.clone(),
                    Kept {
                        code,
                        format,
                        payload: whole,
                        etag,
                        last: Instant::now(),
                    },
                );
                first_block = Some((etag, total));
            } else {
                let reason = format!(
                    "{} block-wise transfers are open (coap_max_transfers): try again shortly",
                    self.limits.max_transfers
                );
                set_reply(
                    request,
                    ResponseType::ServiceUnavailable,
                    reason.into_bytes(),
                    None,
                );
                if let Some(response) = request.response.as_mut() {
                    response
                        .message
                        .add_option_as(CoapOption::MaxAge, OptionValueU32(1));
                }
                return self.settled(&mut shared, request, key, acked);
            }
        }
        set_reply(request, code, payload, format);
        if let Some(response) = request.response.as_mut() {
            if let Some(block1) = plan.block1 {
                response
                    .message
                    .add_option(CoapOption::Block1, block1.encode());
            }
            if let Some((etag, total)) = first_block {
                let block = Block {
                    num: 0,
                    more: true,
                    szx: plan.szx,
                };
                response
                    .message
                    .add_option(CoapOption::Block2, block.encode());
                response.message.add_option(CoapOption::ETag, etag.to_vec());
                response.message.add_option_as(
                    CoapOption::Size2,
                    OptionValueU32(u32::try_from(total).unwrap_or(u32::MAX)),
                );
            }
        }
        self.settled(&mut shared, request, key, acked)
    }

    /// The exchange remembered: the answer itself, or (when it goes
    /// separately) the empty ACK a repeat of the request gets again.
    fn settled(
        &self,
        shared: &mut Shared,
        request: &mut CoapRequest<SocketAddr>,
        key: Key,
        acked: bool,
    ) -> Option<Arc<Vec<u8>>> {
        if !acked {
            let bytes = self.finish(request);
            shared.exchanges.set(key, Exchange::Done(bytes.clone()));
            return Some(bytes);
        }
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
        target: &Result<String, String>,
        body: Vec<u8>,
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
        let target = match target {
            Ok(target) => target.as_str(),
            Err(reason) => return (ResponseType::NotFound, reason.clone().into_bytes(), None),
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
        let http_request = match builder.body(Body::from(body)) {
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

/// What a call's answer needs from its request: the Block1 option to
/// acknowledge (a body that came in blocks), the block size the client
/// asked for (SZX), and the transfer an answer in blocks belongs to.
struct Plan {
    /// The gateway path to call, or why there is none.
    target: Result<String, String>,
    block1: Option<Block>,
    szx: u8,
    transfer: TransferKey,
}

/// A critical option (odd number, RFC 7252 5.4.1) this endpoint does not
/// act on: 4.02, or 5.05 for the proxy options.
fn unsupported_option(message: &Packet) -> Option<(ResponseType, String)> {
    // Uri-Host, Uri-Port, Uri-Path, Uri-Query, Accept, Block2, Block1.
    const UNDERSTOOD: [u16; 7] = [3, 7, 11, 15, 17, 23, 27];
    message
        .options()
        .map(|(number, _)| *number)
        .find(|n| n % 2 == 1 && !UNDERSTOOD.contains(n))
        .map(|n| match n {
            35 | 39 => (
                ResponseType::ProxyingNotSupported,
                "this endpoint is not a proxy (Proxy-Uri, Proxy-Scheme)".to_owned(),
            ),
            _ => (
                ResponseType::BadOption,
                format!("critical option {n} is not supported here"),
            ),
        })
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
