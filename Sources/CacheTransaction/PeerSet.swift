import EdgeTelemetry
import HTTPCaching
import NIOConcurrencyHelpers
import OutpostConfig

/// The peer group of `[cluster] peers` as this node sees it: who owns a key (``Rendezvous``)
/// among the peers it believes live, and how each is doing (docs/fleet.md).
///
/// Liveness: every peer starts live. A peer that cannot be reached when a fetch asks it
/// (refused, connect timeout, DNS) is down at once; health checks (``PeerHealthChecks``) take
/// a live peer down after `health_fall` failures in a row and bring a down one back after
/// `health_rise` successes in a row, so a flapping peer does not take keys back and forth
/// on every check. This node itself is always live.
package final class PeerSet: Sendable {
    /// The request field a node puts on a fetch it sends to the peer that owns the key: its
    /// own `cluster.self`. A node answers such a request itself (from its store, its parent
    /// or the origin) and never forwards it to another peer.
    package static let header = "Outpost-Peer"

    package struct Member: Sendable, Equatable {
        package let url: OriginURL
        package let seed: UInt64
        package let isSelf: Bool
    }

    private struct Health {
        var live = true
        /// Checks in a row that disagree with `live` (failures while live, successes while down).
        var streak = 0
    }

    package let members: [Member]
    package let selfURL: OriginURL
    private let seeds: [UInt64]
    private let fall: Int
    private let rise: Int
    private let health: NIOLockedValueBox<[Health]>
    private let telemetry: Telemetry

    /// nil when `cluster.peers` is empty.
    package init?(_ cluster: OutpostConfiguration.Cluster, telemetry: Telemetry, keeping previous: PeerSet? = nil) {
        guard let selfURL = cluster.selfURL, !cluster.members.isEmpty else { return nil }
        self.selfURL = selfURL
        members = cluster.members.map {
            Member(url: $0, seed: Rendezvous.seed($0.description), isSelf: $0 == selfURL)
        }
        seeds = members.map(\.seed)
        fall = cluster.healthFall
        rise = cluster.healthRise
        self.telemetry = telemetry
        // A reload keeps what it knew of the peers it still has.
        var states = [Health](repeating: Health(), count: members.count)
        if let previous {
            let known = previous.health.withLockedValue { $0 }
            for (index, member) in members.enumerated() {
                if let old = previous.members.firstIndex(where: { $0.url == member.url }) { states[index] = known[old] }
            }
        }
        health = NIOLockedValueBox(states)
        telemetry.peers.setPeers(members.enumerated().map { (String(describing: $1.url), states[$0].live, $1.isSelf) })
    }

    /// The live peers to ask for `key`, its owner first, down to this node (excluded): empty
    /// when this node owns the key. A node asks the next one only when the one before could
    /// not be reached.
    package func owners(of key: String) -> [OriginURL] {
        let ranking = Rendezvous.ranking(key, seeds: seeds)
        let live = health.withLockedValue { $0.map(\.live) }
        var owners: [OriginURL] = []
        for index in ranking {
            if members[index].isSelf { break }
            if live[index] { owners.append(members[index].url) }
        }
        return owners
    }

    /// Whether `value` (an ``header`` field) names a member of this group other than this node.
    package func isPeer(_ value: String) -> Bool {
        guard let url = OriginURL(parsing: String(value.trimmingOWS())) else { return false }
        return members.contains { $0.url == url && !$0.isSelf }
    }

    /// A fetch sent to `peer`: counted, and a peer that could not be reached is down at once.
    package func fetched(from peer: OriginURL, unreachable: Bool, failed: Bool) {
        telemetry.peers.recordRequest(String(describing: peer), failed: failed || unreachable)
        guard unreachable, let index = members.firstIndex(where: { $0.url == peer }) else { return }
        set(index, live: false)
    }

    /// A health check of `peer` ended: ok or not.
    package func checked(_ peer: OriginURL, ok: Bool) {
        guard let index = members.firstIndex(where: { $0.url == peer }) else { return }
        let change: Bool? = health.withLockedValue { states in
            var state = states[index]
            defer { states[index] = state }
            guard ok != state.live else {
                state.streak = 0
                return nil
            }
            state.streak += 1
            guard state.streak >= (state.live ? fall : rise) else { return nil }
            state.live = ok
            state.streak = 0
            return ok
        }
        if let change { telemetry.peers.setLive(String(describing: peer), live: change) }
    }

    /// Whether `peer` is live as this node sees it.
    package func isLive(_ peer: OriginURL) -> Bool {
        guard let index = members.firstIndex(where: { $0.url == peer }) else { return false }
        return health.withLockedValue { $0[index].live }
    }

    /// The other members, for the health checks.
    package var others: [OriginURL] { members.filter { !$0.isSelf }.map(\.url) }

    private func set(_ index: Int, live: Bool) {
        let changed = health.withLockedValue { states in
            defer {
                states[index].live = live
                states[index].streak = 0
            }
            return states[index].live != live
        }
        if changed { telemetry.peers.setLive(String(describing: members[index].url), live: live) }
    }
}
