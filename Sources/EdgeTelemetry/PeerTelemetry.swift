import Metrics
import NIOConcurrencyHelpers
import Prometheus

/// What this node sees of its `[cluster] peers` (docs/fleet.md): fetches sent to each peer
/// that owns a key, those that failed, and which peers are live. In /stats under `peers`;
/// in /metrics as `outpost_peer_requests_total`, `outpost_peer_errors_total` and
/// `outpost_peer_up`, each with a `peer` label (the peer's URL).
package final class PeerTelemetry: Sendable {
    private struct Peer {
        var live: Bool
        var isSelf: Bool
        var requests = 0
        var errors = 0
    }

    private let factory: PrometheusMetricsFactory
    private let peers = NIOLockedValueBox<[String: Peer]>([:])

    init(factory: PrometheusMetricsFactory) {
        self.factory = factory
    }

    /// The group as configured (at start and on reload): URL, live, whether it is this node.
    package func setPeers(_ members: [(url: String, live: Bool, isSelf: Bool)]) {
        peers.withLockedValue { peers in
            var next: [String: Peer] = [:]
            for member in members {
                var peer = peers[member.url] ?? Peer(live: member.live, isSelf: member.isSelf)
                peer.live = member.live
                peer.isSelf = member.isSelf
                next[member.url] = peer
            }
            peers = next
        }
        for member in members {
            up(member.url).record(member.live ? 1 : 0)
            // The counters are exported from the start, at 0, so that a rate over them is
            // defined before the first request or error (and a dashboard finds them).
            _ = requestsCounter(member.url)
            _ = errorsCounter(member.url)
        }
    }

    package func setLive(_ url: String, live: Bool) {
        peers.withLockedValue { $0[url]?.live = live }
        up(url).record(live ? 1 : 0)
    }

    /// A fetch sent to the peer `url`; `failed` when it could not be reached or answered badly.
    package func recordRequest(_ url: String, failed: Bool) {
        peers.withLockedValue { peers in
            peers[url]?.requests += 1
            if failed { peers[url]?.errors += 1 }
        }
        requestsCounter(url).increment()
        if failed { errorsCounter(url).increment() }
    }

    private func requestsCounter(_ url: String) -> Metrics.Counter {
        Metrics.Counter(label: "outpost_peer_requests_total", dimensions: [("peer", url)], factory: factory)
    }

    private func errorsCounter(_ url: String) -> Metrics.Counter {
        Metrics.Counter(label: "outpost_peer_errors_total", dimensions: [("peer", url)], factory: factory)
    }

    /// `peers` in /stats: one object per member, keyed by URL.
    package func statistics() -> [String: Any] {
        let peers = peers.withLockedValue { $0 }
        var result: [String: Any] = [:]
        for (url, peer) in peers {
            result[url] = ["live": peer.live, "self": peer.isSelf, "requests": peer.requests, "errors": peer.errors]
        }
        return result
    }

    private func up(_ url: String) -> Metrics.Gauge {
        Metrics.Gauge(label: "outpost_peer_up", dimensions: [("peer", url)], factory: factory)
    }
}
