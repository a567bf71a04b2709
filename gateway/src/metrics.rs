//! Prometheus metrics: requests, errors and latency by upstream server and MCP method.
//!
//! Label values are bounded: the method label is the JSON-RPC method only when it is one MCP
//! defines, else "other", so an agent cannot grow the registry without limit.

use prometheus_client::{
    encoding::{EncodeLabelSet, text::encode},
    metrics::{counter::Counter, family::Family, gauge::Gauge, histogram::Histogram},
    registry::Registry,
};

/// Labels of the per-request series.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub server: String,
    pub method: &'static str,
}

/// Labels of the error series: what went wrong, and whose fault it was.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    pub server: String,
    pub method: &'static str,
    pub kind: &'static str,
}

/// Labels of the policy series.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DecisionLabels {
    pub server: String,
    pub decision: &'static str,
}

/// The gateway's metrics.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    pub requests: Family<RequestLabels, Counter>,
    pub errors: Family<ErrorLabels, Counter>,
    pub latency: Family<RequestLabels, Histogram>,
    pub connections: Gauge,
    pub decisions: Family<DecisionLabels, Counter>,
    pub list_hidden: Family<DecisionLabels, Counter>,
    pub reloads: Family<DecisionLabels, Counter>,
    /// Requests refused because their audit record could not be made durable.
    pub audit_refused: Counter,
    /// 1 once the audit log has failed (the alarm), else 0.
    pub audit_failed: Gauge,
    /// Agent TLS handshakes that failed (bad or missing client certificates among them).
    pub tls_handshake_failed: Counter,
    /// Audit records the OTLP collector refused on their own (skipped there).
    pub otlp_skipped: Counter,
    /// Each server's decision counters, found in their family once: counting a decision, which
    /// happens for every message, then allocates nothing.
    decision_cache: std::sync::RwLock<DecisionCache>,
}

/// The values of the decision label the cache keeps counters for.
const DECISION_LABELS: [&str; 3] = ["allow", "deny", "would_deny"];

type DecisionCache =
    std::collections::HashMap<String, [std::sync::OnceLock<Counter>; DECISION_LABELS.len()]>;

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

fn latency_histogram() -> Histogram {
    // 50 us .. ~26 s: a proxy hop at the bottom, slow tool calls at the top.
    Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(
        0.000_05, 2.0, 20,
    ))
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("agentgate");
        let requests = Family::<RequestLabels, Counter>::default();
        let errors = Family::<ErrorLabels, Counter>::default();
        let latency = Family::<RequestLabels, Histogram>::new_with_constructor(
            latency_histogram as fn() -> Histogram,
        );
        let connections = Gauge::default();
        registry.register(
            "requests",
            "MCP HTTP requests handled, by upstream server and method",
            requests.clone(),
        );
        registry.register(
            "errors",
            "Requests that failed or were refused, by server, method and kind",
            errors.clone(),
        );
        registry.register(
            "request_duration_seconds",
            "Time from request received to response headers sent, by server and method",
            latency.clone(),
        );
        registry.register(
            "open_connections",
            "Agent connections currently open",
            connections.clone(),
        );
        let decisions = Family::<DecisionLabels, Counter>::default();
        registry.register(
            "policy_decisions",
            "Policy decisions on messages, by server and decision (allow, deny, would_deny)",
            decisions.clone(),
        );
        let list_hidden = Family::<DecisionLabels, Counter>::default();
        registry.register(
            "policy_list_entries_hidden",
            "Entries left out of list results (decision would_deny: observe mode, left in)",
            list_hidden.clone(),
        );
        let reloads = Family::<DecisionLabels, Counter>::default();
        registry.register(
            "policy_reloads",
            "Policy reloads, by outcome (server label unused: \"-\")",
            reloads.clone(),
        );
        let audit_refused = Counter::default();
        registry.register(
            "audit_refused_requests",
            "Requests refused (fail-closed) because their audit record could not be written",
            audit_refused.clone(),
        );
        let audit_failed = Gauge::default();
        registry.register(
            "audit_log_failed",
            "1 when the audit log cannot be written (alarm: fail-closed requests are refused)",
            audit_failed.clone(),
        );
        let tls_handshake_failed = Counter::default();
        registry.register(
            "tls_handshakes_failed",
            "Agent TLS handshakes refused or timed out (bad or missing client certificates included)",
            tls_handshake_failed.clone(),
        );
        let otlp_skipped = Counter::default();
        registry.register(
            "audit_otlp_skipped_records",
            "Audit records the OTLP collector refused on their own (400 or 413), skipped there; they stay in the local log",
            otlp_skipped.clone(),
        );
        Self {
            decision_cache: Default::default(),
            tls_handshake_failed,
            otlp_skipped,
            audit_refused,
            audit_failed,
            registry,
            requests,
            errors,
            latency,
            connections,
            decisions,
            list_hidden,
            reloads,
        }
    }

    /// Counts a policy decision ("allow", "deny" or "would_deny") on a message to `server` (a
    /// configured server's name).
    pub fn decision(&self, server: &str, decision: &'static str) {
        let find = || {
            self.decisions
                .get_or_create(&DecisionLabels {
                    server: server.to_owned(),
                    decision,
                })
                .clone()
        };
        let Some(i) = DECISION_LABELS.iter().position(|d| *d == decision) else {
            find().inc();
            return;
        };
        let cache = self
            .decision_cache
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(counters) = cache.get(server) {
            counters[i].get_or_init(find).inc();
            return;
        }
        drop(cache);
        self.decision_cache
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .entry(server.to_owned())
            .or_default()[i]
            .get_or_init(find)
            .inc();
    }

    /// Counts list entries withheld (or, in observe mode, that would have been).
    pub fn list_hidden(&self, server: &str, n: u64, applied: bool) {
        self.list_hidden
            .get_or_create(&DecisionLabels {
                server: server.to_owned(),
                decision: if applied { "deny" } else { "would_deny" },
            })
            .inc_by(n);
    }

    /// Counts a reload attempt.
    pub fn reload(&self, ok: bool) {
        self.reloads
            .get_or_create(&DecisionLabels {
                server: "-".to_owned(),
                decision: if ok { "ok" } else { "refused" },
            })
            .inc();
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }
}

/// Every value of the method label: the methods MCP defines, what the gateway names itself,
/// and "other" (last) for anything else.
const METHOD_LABELS: [&str; 30] = [
    "initialize",
    "ping",
    "server/discover",
    "tools/list",
    "tools/call",
    "resources/list",
    "resources/templates/list",
    "resources/read",
    "resources/subscribe",
    "resources/unsubscribe",
    "prompts/list",
    "prompts/get",
    "completion/complete",
    "logging/setLevel",
    "subscriptions/listen",
    "tasks/get",
    "tasks/list",
    "tasks/result",
    "tasks/cancel",
    "notifications/initialized",
    "notifications/cancelled",
    "notifications/progress",
    "notifications/roots/list_changed",
    "response",
    "batch",
    "stream",
    "session/delete",
    "resource_metadata",
    "invalid",
    "other",
];

/// A bounded method label: one of `METHOD_LABELS`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MethodLabel(usize);

impl MethodLabel {
    /// The label of a JSON-RPC method, or of one of the gateway's own names ("stream", ...).
    pub fn of(method: &str) -> Self {
        let last = METHOD_LABELS.len() - 1;
        Self(
            METHOD_LABELS[..last]
                .iter()
                .position(|k| *k == method)
                .unwrap_or(last),
        )
    }

    pub fn as_str(self) -> &'static str {
        METHOD_LABELS[self.0]
    }
}

/// One server's request counter and latency histogram per method, found in the families once
/// and kept: the request path then skips hashing an owned label set on every request.
#[derive(Debug, Default)]
pub struct ServerSeries {
    by_method: [std::sync::OnceLock<(Counter, Histogram)>; METHOD_LABELS.len()],
}

impl Metrics {
    /// Counts a request to `server` and records its latency; `series` is that server's cache
    /// (none for a name that is not a configured server).
    pub fn request(
        &self,
        series: Option<&ServerSeries>,
        server: &str,
        method: MethodLabel,
        seconds: f64,
    ) {
        let find = || {
            let labels = RequestLabels {
                server: server.to_owned(),
                method: method.as_str(),
            };
            (
                self.requests.get_or_create(&labels).clone(),
                self.latency.get_or_create(&labels).clone(),
            )
        };
        let found;
        let (count, latency) = match series {
            Some(s) => s.by_method[method.0].get_or_init(find),
            None => {
                found = find();
                &found
            }
        };
        count.inc();
        latency.observe(seconds);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_series_with_bounded_labels() {
        let m = Metrics::new();
        m.requests
            .get_or_create(&RequestLabels {
                server: "s".into(),
                method: MethodLabel::of("tools/call").as_str(),
            })
            .inc();
        m.requests
            .get_or_create(&RequestLabels {
                server: "s".into(),
                method: MethodLabel::of("evil/\"x").as_str(),
            })
            .inc();
        let text = m.render();
        assert!(
            text.contains(r#"agentgate_requests_total{server="s",method="tools/call"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(r#"agentgate_requests_total{server="s",method="other"} 1"#),
            "{text}"
        );
    }

    #[test]
    fn decisions_are_counted_per_server_and_kind_through_the_cache() {
        let m = Metrics::new();
        for (server, decision) in [
            ("a", "allow"),
            ("a", "allow"),
            ("b", "allow"),
            ("a", "deny"),
            ("a", "would_deny"),
            ("a", "unheard_of"),
        ] {
            m.decision(server, decision);
        }
        let text = m.render();
        for line in [
            r#"agentgate_policy_decisions_total{server="a",decision="allow"} 2"#,
            r#"agentgate_policy_decisions_total{server="b",decision="allow"} 1"#,
            r#"agentgate_policy_decisions_total{server="a",decision="deny"} 1"#,
            r#"agentgate_policy_decisions_total{server="a",decision="would_deny"} 1"#,
            r#"agentgate_policy_decisions_total{server="a",decision="unheard_of"} 1"#,
        ] {
            assert!(text.contains(line), "{line} in {text}");
        }
        // Only the series counted so far exist: no zero-valued ones made up front.
        assert!(!text.contains(r#"server="b",decision="deny""#), "{text}");
    }

    #[test]
    fn cached_and_looked_up_requests_land_in_the_same_series() {
        let m = Metrics::new();
        let series = ServerSeries::default();
        let call = MethodLabel::of("tools/call");
        m.request(Some(&series), "s", call, 0.001);
        m.request(Some(&series), "s", call, 0.001);
        m.request(None, "s", call, 0.001);
        m.request(Some(&series), "s", MethodLabel::of("made/up"), 0.001);
        let text = m.render();
        for line in [
            r#"agentgate_requests_total{server="s",method="tools/call"} 3"#,
            r#"agentgate_request_duration_seconds_count{server="s",method="tools/call"} 3"#,
            r#"agentgate_requests_total{server="s",method="other"} 1"#,
        ] {
            assert!(text.contains(line), "{line} in {text}");
        }
        assert_eq!(MethodLabel::of("other").as_str(), "other");
        assert_eq!(MethodLabel::of("stream").as_str(), "stream");
    }
}
