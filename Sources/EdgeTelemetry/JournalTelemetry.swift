import Metrics
import Prometheus

/// The purge journal as this node sees it (docs/fleet.md): `outpost_journal_up` (1 while
/// connected and caught up) and `outpost_journal_applied_sequence` (the last journal purge
/// applied to this node's store).
package final class JournalTelemetry: Sendable {
    private let up: Metrics.Gauge
    private let applied: Metrics.Gauge

    init(factory: PrometheusMetricsFactory) {
        up = Metrics.Gauge(label: "outpost_journal_up", factory: factory)
        applied = Metrics.Gauge(label: "outpost_journal_applied_sequence", factory: factory)
    }

    package func set(up isUp: Bool) { up.record(isUp ? 1 : 0) }
    package func set(applied sequence: Int64) { applied.record(sequence) }
}
