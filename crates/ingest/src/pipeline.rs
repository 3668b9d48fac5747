//! What happens to one MQTT publish, whoever delivered it: an upstream broker's subscription
//! ([`crate::mqtt`]) or the embedded broker's own connections ([`crate::broker`]). Parse,
//! filter, decode, count, and hand the item to the writer, waiting for room when the writer is
//! behind, so that a slow disk slows the sender down instead of losing what it sent.

use std::sync::Arc;

use tokio::sync::mpsc;

use crate::config::SourceConfig;
use crate::decode::{Decoder, Outcome};
use crate::message::{self, Message};
use crate::mqtt::{invalid_frame_counter, refusal_counter, refused_advert_counter};
use crate::stats::Stats;
use crate::writer_thread::{CommitCounter, WriterMsg, now_ms};

/// One source's way into the writer. Cheap to clone: one per connection is fine.
#[derive(Clone)]
pub struct Pipeline {
    cfg: Arc<SourceConfig>,
    decoder: Arc<Decoder>,
    writer: mpsc::Sender<WriterMsg>,
    stats: Arc<Stats>,
    /// The configured source's name, for the writer's counters.
    source: Arc<str>,
    /// Whose new-observer budget this pipeline's items spend: the source's own, or one
    /// client's of the embedded broker ([`Pipeline::for_client`]).
    budget: Arc<str>,
}

impl std::fmt::Debug for Pipeline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pipeline")
            .field("source", &self.cfg.name)
            .finish_non_exhaustive()
    }
}

impl Pipeline {
    /// A pipeline for the source `cfg` (its name keys the per-source counters).
    pub fn new(
        cfg: SourceConfig,
        decoder: Arc<Decoder>,
        writer: mpsc::Sender<WriterMsg>,
        stats: Arc<Stats>,
    ) -> Pipeline {
        let source: Arc<str> = Arc::from(cfg.name.as_str());
        Pipeline {
            cfg: Arc::new(cfg),
            decoder,
            writer,
            stats,
            budget: source.clone(),
            source,
        }
    }

    /// The same pipeline for one client of the source (an embedded broker's connection):
    /// its items spend a new-observer budget of their own, keyed `<source>/<client>`, so one
    /// abusive publisher cannot use up everybody's; refusals still count under the source.
    pub fn for_client(&self, client: &str) -> Pipeline {
        let mut p = self.clone();
        p.budget = Arc::from(format!("{}/{client}", self.source));
        p
    }

    /// The source's name.
    pub fn source_name(&self) -> &str {
        &self.cfg.name
    }

    /// The counters this pipeline adds to.
    pub fn stats(&self) -> &Arc<Stats> {
        &self.stats
    }

    /// Takes one publish. `retained` is true when the broker delivered it from its retained
    /// store (history, replayed on subscribe) rather than as it was published. Returns once the
    /// item is queued for the writer (or refused and counted); while the writer's queue is full
    /// it waits, which is the backpressure every caller relies on.
    pub async fn publish(&self, topic: &str, payload: &[u8], retained: bool) {
        self.publish_acked(topic, payload, retained, None).await;
    }

    /// [`Pipeline::publish`], counting the item on `ack` once the writer has committed it.
    /// Returns whether an item went to the writer with `ack` (false: refused or filtered,
    /// counted, nothing to wait for).
    pub async fn publish_acked(
        &self,
        topic: &str,
        payload: &[u8],
        retained: bool,
        ack: Option<&Arc<CommitCounter>>,
    ) -> bool {
        let stats = &*self.stats;
        let cfg = &*self.cfg;
        stats.incr("mqtt.messages");
        let received_at = now_ms();
        stats.source(&cfg.name, |s| {
            s.messages += 1;
            s.last_message_at = Some(received_at);
        });
        let item = match message::parse(topic, payload) {
            Ok(Message::Packet(p, sent_at)) => {
                let iata = p.region.as_deref().unwrap_or(&p.observer.iata);
                if !cfg.accepts_iata(iata) {
                    stats.incr("filtered.iata");
                    return false;
                }
                let (item, outcome) = crate::packet_item(&self.decoder, p, sent_at, received_at);
                match outcome {
                    Outcome::Packet => stats.incr("packets"),
                    Outcome::RefusedAdvert(reason) => {
                        stats.incr("packets");
                        stats.incr(refused_advert_counter(reason));
                    }
                    Outcome::InvalidFrame(code) => {
                        stats.incr(invalid_frame_counter(code));
                        if let Some(n) = stats.should_log("invalid_frame") {
                            tracing::info!(source = %cfg.name, "invalid frame ({code}); {n} more since last report");
                        }
                    }
                }
                item
            }
            Ok(Message::Status(s)) => {
                stats.incr("statuses");
                stats.add("statuses.implausible_fields", u64::from(s.implausible));
                crate::status_item(s, received_at, retained)
            }
            Err(r) => {
                stats.incr(refusal_counter(r));
                if let Some(n) = stats.should_log(refusal_counter(r)) {
                    tracing::info!(source = %cfg.name, "refused a message on {topic:?}: {r}; {n} more since last report");
                }
                return false;
            }
        };
        let msg = WriterMsg::From {
            item,
            ack: ack.cloned(),
            source: self.source.clone(),
            budget: self.budget.clone(),
        };
        // Waits when the writer is behind: backpressure, not loss.
        if self.writer.send(msg).await.is_err() {
            stats.incr("writer.closed");
            return false;
        }
        ack.is_some()
    }
}
