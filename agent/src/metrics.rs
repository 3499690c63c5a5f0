//! `GET /metrics`: the node's counters in the Prometheus text format, encoded by
//! `prometheus-client` from a registry filled at each scrape (the node keeps
//! the counts; a scrape only reads them).

use beethoven_tokio::{DropReason, Handle, Health, Mode, NodeStatus, TrackerRow};
use prometheus_client::encoding::text::encode;

use crate::handlers::HandlerCounts;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

type Labels = Vec<(&'static str, String)>;

/// The Prometheus text of `node`'s metrics now; `event_lines_dropped` is the
/// event stream's count (readers of `/v1/events` that fell behind), `handlers`
/// how the event handlers' runs ended.
pub(crate) fn render(node: &Handle, event_lines_dropped: u64, handlers: &HandlerCounts) -> String {
    let mut registry = Registry::with_prefix("beethoven");
    let rows = node.cluster_nodes();

    let by_status = count_by(
        &rows,
        "status",
        [NodeStatus::Online, NodeStatus::Offline],
        |row| row.status,
    );
    registry.register(
        "members",
        "Tracked nodes (this one included) by status",
        by_status,
    );
    let healths = [Health::Alive, Health::Suspect, Health::Dead, Health::Left];
    let by_health = count_by(&rows, "health", healths, |row| row.health);
    registry.register(
        "members_by_health",
        "Tracked nodes (this one included) by the failure detector's view",
        by_health,
    );
    let clustered = Gauge::<i64>::default();
    clustered.set(i64::from(node.mode() == Mode::Clustered));
    registry.register(
        "clustered",
        "1 while another node is online, else 0",
        clustered,
    );

    let stats = node.stats();
    let counters = [
        ("probes_sent", "Probes started", stats.probes_sent),
        (
            "probes_failed",
            "Probes that ended without any ack",
            stats.probes_failed,
        ),
        (
            "indirect_probes_sent",
            "Indirect probes (ping-req) sent for this node's probes",
            stats.indirect_probes_sent,
        ),
        (
            "suspicions_raised",
            "Members this node began to suspect",
            stats.suspicions_raised,
        ),
        (
            "refutations",
            "Suspicions (or deaths) of this node that it refuted",
            stats.refutations,
        ),
        (
            "deaths_declared",
            "Members this node declared dead",
            stats.deaths_declared,
        ),
        ("datagrams_sent", "UDP datagrams sent", stats.packets_sent),
        (
            "datagrams_received",
            "UDP datagrams received, dropped ones included",
            stats.packets_received,
        ),
        (
            "sent_bytes",
            "Bytes in the datagrams sent",
            stats.bytes_sent,
        ),
        (
            "received_bytes",
            "Bytes in the datagrams received",
            stats.bytes_received,
        ),
        (
            "anti_entropy_repairs",
            "Anti-entropy exchanges that found a difference",
            stats.anti_entropy_repairs,
        ),
        (
            "gossip_evicted",
            "Updates evicted from a full gossip queue",
            stats.gossip_evicted,
        ),
        (
            "stalls",
            "Times this node found itself paused or starved",
            stats.stalls,
        ),
        (
            "subscriber_lagged_updates",
            "Updates lost by subscribers that fell behind",
            node.lagged_updates(),
        ),
        (
            "event_lines_dropped",
            "Event stream lines lost by readers that fell behind (/v1/events, --events)",
            event_lines_dropped,
        ),
    ];
    for (name, help, value) in counters {
        let counter = Counter::<u64>::default();
        counter.inc_by(value);
        registry.register(name, help, counter);
    }
    let drops = Family::<Labels, Counter>::default();
    for reason in DropReason::ALL {
        drops
            .get_or_create(&vec![("reason", reason.as_str().to_owned())])
            .inc_by(stats.dropped(reason));
    }
    registry.register(
        "dropped_packets",
        "Datagrams (or updates) dropped, by reason",
        drops,
    );
    let io = node.io_errors();
    let io_errors = Family::<Labels, Counter>::default();
    io_errors
        .get_or_create(&vec![("op", "send".to_owned())])
        .inc_by(io.send);
    io_errors
        .get_or_create(&vec![("op", "recv".to_owned())])
        .inc_by(io.recv);
    registry.register(
        "socket_errors",
        "Socket errors the node went on from",
        io_errors,
    );

    let user = &stats.user_events;
    registry.register(
        "user_events",
        "User events: sent, delivered, payload copies received, and what was dropped, by reason",
        counts_by(
            "what",
            [
                ("sent", user.sent),
                ("delivered", user.delivered),
                ("copies_received", user.copies_received),
                ("duplicates", user.duplicates),
                ("too_old", user.too_old),
                ("rate_limited", user.rate_limited),
                ("queue_full", user.queue_full),
                ("pulls_sent", user.pulls_sent),
                ("gaps_skipped", user.gaps_skipped),
                ("invalid", user.invalid),
            ],
        ),
    );
    let queries = &stats.queries;
    registry.register(
        "queries",
        "Queries: sent, received, delivered here, filtered out, acks and responses sent and received, relayed, and what was dropped, by reason",
        counts_by(
            "what",
            [
                ("sent", queries.sent),
                ("received", queries.received),
                ("delivered", queries.delivered),
                ("filtered_out", queries.filtered_out),
                ("acks_sent", queries.acks_sent),
                ("responses_sent", queries.responses_sent),
                ("relayed", queries.relayed),
                ("responses_received", queries.responses_received),
                ("duplicates", queries.duplicates),
                ("late", queries.late),
                ("rate_limited", queries.rate_limited),
                ("invalid", queries.invalid),
            ],
        ),
    );

    registry.register(
        "handler_runs",
        "Event handler runs by how they ended (dropped: the handler's queue was full)",
        counts_by("outcome", handlers.outcomes()),
    );
    let mut text = String::new();
    // Writing into a String cannot fail.
    let _ = encode(&mut text, &registry);
    text
}

/// One counter per `(label value, count)`, labelled `key`.
fn counts_by<const N: usize>(
    key: &'static str,
    counts: [(&str, u64); N],
) -> Family<Labels, Counter> {
    let family = Family::<Labels, Counter>::default();
    for (value, count) in counts {
        family
            .get_or_create(&vec![(key, value.to_owned())])
            .inc_by(count);
    }
    family
}

/// How many of `rows` have each of `values` (read by `of`), labelled `key`.
fn count_by<T: PartialEq + std::fmt::Display, const N: usize>(
    rows: &[TrackerRow],
    key: &'static str,
    values: [T; N],
    of: impl Fn(&TrackerRow) -> T,
) -> Family<Labels, Gauge> {
    let family = Family::<Labels, Gauge>::default();
    for value in values {
        let count = rows.iter().filter(|row| of(row) == value).count();
        family
            .get_or_create(&vec![(key, value.to_string())])
            .set(count as i64);
    }
    family
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_the_names_of_the_json_api() {
        let mut registry = Registry::default();
        let family = count_by(&[], "status", [NodeStatus::Online], |row| row.status);
        registry.register("members", "by status", family);
        let mut text = String::new();
        encode(&mut text, &registry).expect("encodes into a string");
        assert!(text.contains("status=\"online\""), "{text}");
        assert_eq!(DropReason::UnexpectedSeal.as_str(), "unexpected_seal");
    }
}
