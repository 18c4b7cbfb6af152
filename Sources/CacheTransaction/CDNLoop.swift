import HTTPCaching

/// CDN-Loop (RFC 8586) for a fleet of Outposts: how a node marks the requests it sends, and
/// how it recognises one that has come round to it again.
///
/// A request a node sends to its parent stays inside the fleet and carries
/// `<fleet>; node=<this node>`; a request it sends to an origin leaves the fleet and carries
/// `<fleet>`. A node refuses (508) a request carrying its own node's member (it forwarded this
/// request itself: an edge configured as its own parent, or parents in a cycle) or the
/// fleet's member without a node (the request left the fleet and an origin sent it back in).
/// Members of other CDNs are kept and passed on.
package struct CDNLoop: Sendable, Equatable {
    /// `cluster.name`.
    package let fleet: String
    /// This process's identifier, new at each start (a restarted node is another hop).
    package let node: String

    package init(fleet: String, node: String) {
        self.fleet = fleet
        self.node = node
    }

    /// A node identifier: eight random hex digits.
    package static func newNode() -> String {
        let value = UInt32.random(in: 0...UInt32.max)
        let hex = String(value, radix: 16)
        return String(repeating: "0", count: 8 - hex.count) + hex
    }

    /// The member this node adds to a request it sends to its parent.
    package var insideMember: String { "\(fleet); node=\(node)" }

    /// The member this node adds to a request it sends to an origin.
    package var leavingMember: String { fleet }

    /// Whether a request with these header fields has come round to this node again.
    package func detects(in headers: HeaderFields) -> Bool {
        for member in headers.listMembers("CDN-Loop") {
            let parts = member.split(separator: ";").map { $0.trimmingOWS() }
            guard let id = parts.first, id.equalsIgnoringASCIICase(fleet) else { continue }
            let node = parts.dropFirst().lazy.compactMap { parameter -> String? in
                let pair = parameter.split(separator: "=", maxSplits: 1).map { $0.trimmingOWS() }
                return pair.count == 2 && pair[0].equalsIgnoringASCIICase("node") ? String(pair[1]) : nil
            }.first
            guard let node else { return true }
            if node == self.node { return true }
        }
        return false
    }
}
