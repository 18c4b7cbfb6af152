import EdgeTelemetry
import OutpostConfig
import Testing

@testable import CacheTransaction

/// Consistent hashing over `[cluster] peers` (docs/fleet.md): who owns a key, how many keys
/// move when the group changes, and how health decides who is live.
@Suite("CacheTransaction: peers and rendezvous hashing")
struct PeerSetTests {
    static let keys = (0..<20_000).map { "http://www.example.com/asset/\($0).js?v=\($0 % 7)" }
    static func nodes(_ count: Int) -> [String] { (1...count).map { "http://10.0.0.\($0):8080" } }

    static func owners(_ nodes: [String]) -> [String] {
        let seeds = nodes.map(Rendezvous.seed)
        return keys.map { nodes[Rendezvous.ranking($0, seeds: seeds)[0]] }
    }

    @Test("each of N nodes owns about 1/N of the keys", arguments: [2, 3, 4, 8])
    func balance(count: Int) {
        let owners = Self.owners(Self.nodes(count))
        for node in Self.nodes(count) {
            let share = Double(owners.filter { $0 == node }.count) / Double(Self.keys.count)
            #expect(abs(share - 1 / Double(count)) < 0.2 / Double(count), "\(node): \(share)")
        }
    }

    @Test("adding a node to N moves about 1/(N+1) of the keys, all of them to the new node", arguments: [2, 3, 7])
    func adding(count: Int) {
        let before = Self.owners(Self.nodes(count))
        let after = Self.owners(Self.nodes(count + 1))
        let moved = zip(before, after).filter { $0 != $1 }
        let share = Double(moved.count) / Double(Self.keys.count)
        #expect(abs(share - 1 / Double(count + 1)) < 0.2 / Double(count + 1), "moved \(share)")
        #expect(moved.allSatisfy { $0.1 == Self.nodes(count + 1).last! })
    }

    @Test("removing a node moves exactly its keys; the others keep theirs")
    func removing() {
        let nodes = Self.nodes(4)
        let before = Self.owners(nodes)
        let after = Self.owners(nodes.filter { $0 != nodes[1] })
        for (old, new) in zip(before, after) {
            if old == nodes[1] { #expect(new != nodes[1]) } else { #expect(old == new) }
        }
    }

    static func group(self index: Int, of count: Int, fall: Int = 2, rise: Int = 2) -> (PeerSet, Telemetry) {
        var cluster = OutpostConfiguration.Cluster()
        cluster.peers = nodes(count).compactMap { OriginURL(parsing: $0) }
        cluster.selfURL = cluster.peers[index]
        cluster.healthFall = fall
        cluster.healthRise = rise
        let telemetry = Telemetry()
        return (PeerSet(cluster, telemetry: telemetry)!, telemetry)
    }

    @Test("a node asks the owners ranked above itself, the owner first; none for a key it owns")
    func owners() {
        let (peers, _) = Self.group(self: 0, of: 3)
        let nodes = Self.nodes(3)
        let seeds = nodes.map(Rendezvous.seed)
        for key in Self.keys.prefix(300) {
            let ranking = Rendezvous.ranking(key, seeds: seeds).map { nodes[$0] }
            let expected = Array(ranking.prefix(while: { $0 != nodes[0] }))
            #expect(peers.owners(of: key).map(\.description) == expected)
        }
    }

    @Test("a peer that cannot be reached is skipped at once; its keys go to the next owner")
    func unreachableOwner() {
        let (peers, telemetry) = Self.group(self: 0, of: 3)
        let nodes = Self.nodes(3)
        let owned = Self.keys.first { peers.owners(of: $0).first?.description == nodes[1] }!
        peers.fetched(from: OriginURL(parsing: nodes[1])!, unreachable: true, failed: true)
        #expect(!peers.owners(of: owned).contains { $0.description == nodes[1] })
        let stats = telemetry.peers.statistics()[nodes[1]] as? [String: Any]
        #expect(stats?["live"] as? Bool == false && stats?["errors"] as? Int == 1 && stats?["requests"] as? Int == 1)
    }

    @Test(
        "health checks: health_fall failures in a row take a peer down, health_rise successes bring it back",
        arguments: [
            // (checks, live after each)
            ([false], [true]),
            ([false, false], [true, false]),
            ([false, true, false], [true, true, true]),
            ([false, false, true], [true, false, false]),
            ([false, false, true, true], [true, false, false, true]),
            ([false, false, true, false, true, true], [true, false, false, false, false, true]),
        ])
    func health(checks: [Bool], live: [Bool]) {
        let (peers, _) = Self.group(self: 0, of: 2)
        let peer = OriginURL(parsing: Self.nodes(2)[1])!
        var seen: [Bool] = []
        for ok in checks {
            peers.checked(peer, ok: ok)
            seen.append(peers.isLive(peer))
        }
        #expect(seen == live)
    }

    @Test("Outpost-Peer names a member other than this node")
    func peerField() {
        let (peers, _) = Self.group(self: 0, of: 3)
        #expect(peers.isPeer("http://10.0.0.2:8080") && peers.isPeer(" http://10.0.0.3:8080 "))
        #expect(!peers.isPeer("http://10.0.0.1:8080") && !peers.isPeer("http://10.0.0.9:8080") && !peers.isPeer("x"))
    }
}
