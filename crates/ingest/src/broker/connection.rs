//! One client connection to the embedded broker: CONNECT, then a read loop that hands each
//! publish to the pipeline before reading the next packet (backpressure), an acknowledgement
//! task that sends PUBACK/PUBREC in arrival order once the writer has committed the items, and
//! a write task that owns the socket's sending half.

use std::collections::{HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader, WriteHalf};
use tokio::sync::{Notify, Semaphore, mpsc, watch};

use super::codec::{self, CodecError, Packet, QoS};
use super::{Shared, Subscriber};
use crate::writer_thread::CommitCounter;

/// What the reader found on the socket.
enum Frame {
    /// A whole packet; its body is in the caller's buffer.
    Packet(u8),
    /// A packet bigger than the broker reads into memory.
    Oversized { first: u8, len: usize },
}

async fn read_frame<R: AsyncRead + Unpin>(
    r: &mut R,
    body: &mut Vec<u8>,
    max: usize,
) -> std::io::Result<Frame> {
    let first = r.read_u8().await?;
    let mut len = 0usize;
    for i in 0..4 {
        let b = r.read_u8().await?;
        len |= usize::from(b & 0x7F) << (7 * i);
        if b & 0x80 == 0 {
            if len > max {
                return Ok(Frame::Oversized { first, len });
            }
            body.clear();
            body.resize(len, 0);
            r.read_exact(body).await?;
            return Ok(Frame::Packet(first));
        }
    }
    Err(std::io::Error::new(
        std::io::ErrorKind::InvalidData,
        CodecError::BadLength,
    ))
}

/// Reads past an oversized PUBLISH without holding it: returns its packet id (if QoS > 0).
async fn skip_publish<R: AsyncRead + Unpin>(
    r: &mut R,
    first: u8,
    len: usize,
) -> std::io::Result<Option<u16>> {
    let topic_len = usize::from(r.read_u16().await?);
    let mut consumed = 2 + topic_len;
    // A topic longer than the packet would make us read into the next one: the stream is
    // no longer framed, so the connection ends.
    if consumed > len {
        return Err(std::io::ErrorKind::InvalidData.into());
    }
    let mut skip = r.take(topic_len as u64);
    tokio::io::copy(&mut skip, &mut tokio::io::sink()).await?;
    let qos = (first >> 1) & 3;
    let pkid = if qos > 0 {
        consumed += 2;
        Some(r.read_u16().await?)
    } else {
        None
    };
    let rest = len.saturating_sub(consumed) as u64;
    let mut skip = r.take(rest);
    let skipped = tokio::io::copy(&mut skip, &mut tokio::io::sink()).await?;
    if skipped < rest {
        return Err(std::io::ErrorKind::UnexpectedEof.into());
    }
    Ok(pkid)
}

async fn write_loop<S: AsyncWrite>(mut wr: WriteHalf<S>, mut rx: mpsc::Receiver<Vec<u8>>) {
    let mut buf = Vec::with_capacity(4096);
    while let Some(frame) = rx.recv().await {
        buf.clear();
        buf.extend_from_slice(&frame);
        // Coalesce what is already queued into one write.
        while buf.len() < 64 * 1024 {
            match rx.try_recv() {
                Ok(f) => buf.extend_from_slice(&f),
                Err(_) => break,
            }
        }
        if wr.write_all(&buf).await.is_err() || wr.flush().await.is_err() {
            return;
        }
    }
    let _ = wr.shutdown().await;
}

/// An acknowledgement waiting for the writer: sent once `after` of this connection's items
/// are committed. `permit` says whether it holds a slot of the pending-ack budget.
struct PendingAck {
    after: u64,
    frame: [u8; 4],
    permit: bool,
}

/// Sends acknowledgements in order as the writer commits.
async fn ack_loop(
    commits: Arc<CommitCounter>,
    pending: Arc<Mutex<VecDeque<PendingAck>>>,
    budget: Arc<Semaphore>,
    out: mpsc::Sender<Vec<u8>>,
    lost: Arc<Notify>,
) {
    loop {
        commits.changed().await;
        if commits.failed() {
            // The writer gave up on a batch holding our items: do not acknowledge them. The
            // connection closes, so the publisher knows they were not taken.
            lost.notify_one();
            return;
        }
        let done = commits.finished();
        let ready: Vec<PendingAck> = {
            let Ok(mut p) = pending.lock() else { return };
            let n = p.iter().take_while(|a| a.after <= done).count();
            p.drain(..n).collect()
        };
        for a in ready {
            if out.send(a.frame.to_vec()).await.is_err() {
                return;
            }
            if a.permit {
                budget.add_permits(1);
            }
        }
    }
}

/// Who a client is for the new-observer rate ([`crate::pipeline::Pipeline::for_client`]).
fn budget_key(identity: &super::auth::Identity, peer: SocketAddr) -> String {
    match (identity, peer.ip()) {
        (super::auth::Identity::User(name), _) => format!("user:{name}"),
        (_, std::net::IpAddr::V4(ip)) => ip.to_string(),
        (_, std::net::IpAddr::V6(ip)) => match ip.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => {
                let s = ip.segments();
                format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
            }
        },
    }
}

/// Serves one connection until it ends. `loopback` says whether it came through a loopback
/// listener (anonymous clients may be accepted there).
pub(super) async fn run<S>(
    stream: S,
    peer: SocketAddr,
    loopback: bool,
    shared: &Arc<Shared>,
    mut stop: watch::Receiver<bool>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let settings = &shared.settings;
    let stats = &shared.stats;
    let (rd, wr) = tokio::io::split(stream);
    let mut rd = BufReader::with_capacity(4096, rd);
    let (out_tx, out_rx) = mpsc::channel::<Vec<u8>>(settings.subscriber_queue.max(16));
    let writer = tokio::spawn(write_loop(wr, out_rx));
    let mut body = Vec::new();

    // CONNECT first, within the connect timeout.
    let first = match tokio::time::timeout(
        settings.connect_timeout,
        read_frame(&mut rd, &mut body, settings.max_packet),
    )
    .await
    {
        Ok(Ok(Frame::Packet(first))) => first,
        Ok(Ok(Frame::Oversized { .. })) | Ok(Err(_)) => {
            stats.incr("broker.malformed_packet");
            writer.abort();
            return;
        }
        Err(_) => {
            stats.incr("broker.connect_timeouts");
            writer.abort();
            return;
        }
    };
    let connect = match codec::decode(first, &body) {
        Ok(Packet::Connect(c)) => c,
        Ok(_) => {
            stats.incr("broker.not_connect_first");
            writer.abort();
            return;
        }
        Err(e) => {
            stats.incr(e.code());
            if matches!(e, CodecError::UnsupportedLevel(_)) {
                let _ = out_tx.send(codec::encode_connack(1)).await;
                drop(out_tx);
                let _ = writer.await;
            } else {
                writer.abort();
            }
            return;
        }
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let auth = &settings.auth;
    let refused = match auth.authenticate(connect.username, connect.password, loopback, now) {
        Ok(identity) => match &connect.will {
            // A will is a publish like any other: the same rules, checked up front.
            Some(w) => auth
                .authorize_publish(&identity, w.topic)
                .map(|()| identity)
                .map_err(|r| (r.code(), 5)),
            None => Ok(identity),
        },
        Err(r) => Err((r.code(), r.connack_code())),
    };
    let identity = match refused {
        Ok(identity) => identity,
        Err((counter, rc)) => {
            stats.incr(counter);
            stats.incr("broker.auth_refused");
            if let Some(n) = stats.should_log("broker.auth_refused") {
                tracing::info!(%peer, "refused an MQTT client ({counter}); {n} more refusals since last report");
            }
            let _ = out_tx.send(codec::encode_connack(rc)).await;
            drop(out_tx);
            let mut writer = writer;
            if tokio::time::timeout(Duration::from_secs(5), &mut writer)
                .await
                .is_err()
            {
                writer.abort();
            }
            return;
        }
    };
    // This client's own new-observer budget: a user of the password file by name, anyone
    // else (anonymous, or a token whose key it may have made up) by address, IPv6 by /64.
    let pipeline = shared
        .pipeline
        .as_ref()
        .map(|p| p.for_client(&budget_key(&identity, peer)));
    let id = shared
        .next_id
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let client_id = if connect.client_id.is_empty() {
        format!("meshlens-auto-{id}")
    } else {
        connect.client_id.to_owned()
    };
    let will = connect
        .will
        .as_ref()
        .map(|w| (w.topic.to_owned(), w.payload.to_vec(), w.retain));
    let keep_alive = (connect.keep_alive > 0)
        .then(|| Duration::from_millis(u64::from(connect.keep_alive) * 1500));
    // A second connection with the same client id takes over (MQTT 3.1.1 §3.1.4).
    let takeover = Arc::new(Notify::new());
    if let Ok(mut r) = shared.router.lock()
        && let Some((_, old)) = r.clients.insert(client_id.clone(), (id, takeover.clone()))
    {
        old.notify_one();
        stats.incr("broker.takeovers");
    }
    stats.incr("broker.connections");
    stats.source(&shared.source, |s| {
        s.connects += 1;
        s.clients = shared
            .connections
            .load(std::sync::atomic::Ordering::Acquire) as u64;
    });
    if out_tx.send(codec::encode_connack(0)).await.is_err() {
        writer.abort();
        return;
    }

    let commits = Arc::new(CommitCounter::default());
    let pending = Arc::new(Mutex::new(VecDeque::<PendingAck>::new()));
    let budget = Arc::new(Semaphore::new(settings.max_pending_acks.max(1)));
    let lost = Arc::new(Notify::new());
    let acker = tokio::spawn(ack_loop(
        commits.clone(),
        pending.clone(),
        budget.clone(),
        out_tx.clone(),
        lost.clone(),
    ));
    let queue_ack = |after: u64, frame: [u8; 4], permit: bool| {
        if let Ok(mut p) = pending.lock() {
            p.push_back(PendingAck {
                after,
                frame,
                permit,
            });
        }
        commits.wake();
    };
    // Items of this connection sent to the writer with an acknowledgement counter.
    let mut sent: u64 = 0;
    let mut qos2_inflight: HashSet<u16> = HashSet::new();
    let mut clean = false;

    loop {
        let read = async {
            match keep_alive {
                Some(d) => {
                    tokio::time::timeout(d, read_frame(&mut rd, &mut body, settings.max_packet))
                        .await
                        .unwrap_or_else(|_| Err(std::io::ErrorKind::TimedOut.into()))
                }
                None => read_frame(&mut rd, &mut body, settings.max_packet).await,
            }
        };
        // Each branch but the read ends the connection, so cancelling a half-read frame is
        // harmless.
        let frame = tokio::select! {
            f = read => f,
            _ = stop.changed() => { clean = true; break; }
            _ = takeover.notified() => break,
            _ = lost.notified() => {
                stats.incr("broker.closed_after_lost_commit");
                break;
            }
        };
        let first = match frame {
            Ok(Frame::Packet(first)) => first,
            Ok(Frame::Oversized { first, len }) if codec::packet_type(first) == codec::PUBLISH => {
                stats.incr("mqtt.messages");
                stats.incr("refused.too_large");
                stats.incr("broker.oversized");
                if let Some(n) = stats.should_log("broker.oversized") {
                    tracing::info!(%peer, "skipped a {len}-byte publish (over {} bytes); {n} more since last report", settings.max_packet);
                }
                match skip_publish(&mut rd, first, len).await {
                    Ok(Some(pkid)) => {
                        let frame = if (first >> 1) & 3 == 2 {
                            qos2_inflight.insert(pkid);
                            codec::encode_pubrec(pkid)
                        } else {
                            codec::encode_puback(pkid)
                        };
                        queue_ack(sent, frame, false);
                    }
                    Ok(None) => {}
                    Err(_) => break,
                }
                continue;
            }
            Ok(Frame::Oversized { .. }) => {
                stats.incr("broker.malformed_packet");
                break;
            }
            Err(e) => {
                if e.kind() == std::io::ErrorKind::TimedOut {
                    stats.incr("broker.keepalive_timeouts");
                }
                break;
            }
        };
        let packet = match codec::decode(first, &body) {
            Ok(p) => p,
            Err(e) => {
                stats.incr(e.code());
                if let Some(n) = stats.should_log("broker.protocol_error") {
                    tracing::info!(%peer, "closing an MQTT connection: {e}; {n} more since last report");
                }
                break;
            }
        };
        match packet {
            Packet::Publish(p) => {
                if let Err(r) = auth.authorize_publish(&identity, p.topic) {
                    // Dropped, counted, and acknowledged: MQTT 3.1.1 has no negative PUBACK,
                    // and a client that is never acknowledged only resends.
                    stats.incr(r.code());
                    if let Some(n) = stats.should_log("broker.publish_refused") {
                        tracing::info!(%peer, "dropped a publish to {:?} ({}); {n} more since last report", p.topic, r.code());
                    }
                    match (p.qos, p.pkid) {
                        (QoS::AtLeastOnce, Some(pkid)) => {
                            queue_ack(sent, codec::encode_puback(pkid), false)
                        }
                        (QoS::ExactlyOnce, Some(pkid)) => {
                            qos2_inflight.insert(pkid);
                            queue_ack(sent, codec::encode_pubrec(pkid), false);
                        }
                        _ => {}
                    }
                    continue;
                }
                shared.route(p.topic, p.payload, p.retain);
                match (p.qos, p.pkid) {
                    (QoS::ExactlyOnce, Some(pkid)) if qos2_inflight.contains(&pkid) => {
                        // A re-sent QoS 2 publish before PUBREL: already taken once.
                        queue_ack(sent, codec::encode_pubrec(pkid), false);
                    }
                    (QoS::AtMostOnce, _) | (_, None) => {
                        if let Some(pl) = &pipeline {
                            pl.publish_acked(p.topic, p.payload, false, None).await;
                        }
                    }
                    (qos, Some(pkid)) => {
                        // A client that does not read its acknowledgements runs out of budget;
                        // it must still be closable.
                        let permit = tokio::select! {
                            p = budget.acquire() => p,
                            _ = stop.changed() => { clean = true; break; }
                            _ = takeover.notified() => break,
                        };
                        let Ok(permit) = permit else { break };
                        permit.forget();
                        let queued = match &pipeline {
                            Some(pl) => {
                                pl.publish_acked(p.topic, p.payload, false, Some(&commits))
                                    .await
                            }
                            None => false,
                        };
                        if queued {
                            sent += 1;
                        }
                        let frame = if qos == QoS::ExactlyOnce {
                            qos2_inflight.insert(pkid);
                            codec::encode_pubrec(pkid)
                        } else {
                            codec::encode_puback(pkid)
                        };
                        queue_ack(sent, frame, true);
                    }
                }
            }
            Packet::PubRel(pkid) => {
                qos2_inflight.remove(&pkid);
                queue_ack(sent, codec::encode_pubcomp(pkid), false);
            }
            Packet::Subscribe(pkid, filters) => {
                let granted = vec![0u8; filters.len()];
                let owned: Vec<String> = filters.iter().map(|(f, _)| (*f).to_owned()).collect();
                let mut retained = Vec::new();
                if let Ok(mut r) = shared.router.lock() {
                    for (topic, payload) in &r.retained {
                        if owned.iter().any(|f| codec::matches(f, topic)) {
                            retained.push(codec::encode_publish(topic, payload, true));
                        }
                    }
                    let sub = r.subscribers.entry(id).or_insert_with(|| Subscriber {
                        filters: Vec::new(),
                        out: out_tx.clone(),
                    });
                    for f in owned {
                        if !sub.filters.contains(&f) && sub.filters.len() < 64 {
                            sub.filters.push(f);
                        }
                    }
                }
                if !send(&out_tx, codec::encode_suback(pkid, &granted), &mut stop).await {
                    break;
                }
                for frame in retained {
                    if out_tx.try_send(frame).is_err() {
                        stats.incr("broker.subscriber_shed");
                    }
                }
            }
            Packet::Unsubscribe(pkid, filters) => {
                if let Ok(mut r) = shared.router.lock()
                    && let Some(sub) = r.subscribers.get_mut(&id)
                {
                    sub.filters.retain(|f| !filters.contains(&f.as_str()));
                }
                if !send(&out_tx, codec::encode_unsuback(pkid).to_vec(), &mut stop).await {
                    break;
                }
            }
            Packet::PingReq => {
                if !send(&out_tx, codec::PINGRESP.to_vec(), &mut stop).await {
                    break;
                }
            }
            Packet::Disconnect => {
                clean = true;
                break;
            }
            // The broker only sends QoS 0, so these answer nothing of ours.
            Packet::PubAck(_) | Packet::PubRec(_) | Packet::PubComp(_) => {}
            Packet::Connect(_) => {
                stats.incr("broker.second_connect");
                break;
            }
        }
        if body.capacity() > 16 * 1024 {
            body = Vec::new();
        }
    }

    if let Ok(mut r) = shared.router.lock() {
        r.subscribers.remove(&id);
        if r.clients
            .get(&client_id)
            .is_some_and(|(owner, _)| *owner == id)
        {
            r.clients.remove(&client_id);
        }
    }
    // An unclean end publishes the will, as it would have been published (not retained
    // history: it happens now).
    if !clean && let Some((topic, payload, retain)) = will {
        shared.route(&topic, &payload, retain);
        if let Some(pl) = &pipeline {
            pl.publish(&topic, &payload, false).await;
        }
    }
    acker.abort();
    drop(out_tx);
    // Whatever is queued (a last acknowledgement) goes out if the client still reads; one
    // that does not cannot hold the task.
    let mut writer = writer;
    if tokio::time::timeout(Duration::from_secs(5), &mut writer)
        .await
        .is_err()
    {
        writer.abort();
        stats.incr("broker.stuck_writers");
    }
}

/// Queues a control packet; false when the connection should end (gone, or shutting down
/// while the client does not read).
async fn send(
    out: &mpsc::Sender<Vec<u8>>,
    frame: Vec<u8>,
    stop: &mut watch::Receiver<bool>,
) -> bool {
    tokio::select! {
        r = out.send(frame) => r.is_ok(),
        _ = stop.changed() => false,
    }
}
