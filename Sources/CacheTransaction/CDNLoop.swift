import HTTPCaching

/// CDN-Loop (RFC 8586) for a fleet of Outposts: how a node marks the requests it sends, and
/// how it recognises one that has come round to it again.
///
/// Every request a node sends upstream — to a parent or to an origin — carries
/// `<fleet>; node=<this node>` after the request's own members. A node refuses (508) a
/// request that carries its own member: it has forwarded this request before. That catches an
/// edge configured as its own parent, parents in a cycle, and a request that left the fleet
/// and was sent back into it (it is refused when it comes to a node it has already passed).
/// The fleet's name alone is not a loop: several Outposts in a chain are normal, and one in
/// front of another that kept the default name must not refuse its requests. Members of
/// other CDNs are kept and passed on.
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

    /// The member this node adds to every request it sends upstream.
    package var member: String { "\(fleet); node=\(node)" }

    /// Whether a request with these header fields has come round to this node again.
    package func detects(in headers: HeaderFields) -> Bool {
        for member in headers.listMembers("CDN-Loop") {
            let parts = Self.parameters(member)
            guard let id = parts.first, id.equalsIgnoringASCIICase(fleet) else { continue }
            for parameter in parts.dropFirst() {
                guard let equals = parameter.firstIndex(of: "=") else { continue }
                let name = parameter[..<equals].trimmingOWS()
                var value = parameter[parameter.index(after: equals)...].trimmingOWS()
                // RFC 8586 parameters are token or quoted-string (RFC 9110 §5.6.6).
                if value.count >= 2, value.first == "\"", value.last == "\"" {
                    value = value.dropFirst().dropLast()
                }
                if name.equalsIgnoringASCIICase("node"), value == node { return true }
            }
        }
        return false
    }

    /// A member split at the `;` outside quoted strings.
    private static func parameters(_ member: String) -> [Substring] {
        var parts: [Substring] = []
        var start = member.startIndex
        var quoted = false
        var index = member.startIndex
        while index < member.endIndex {
            let character = member[index]
            if character == "\"" {
                quoted.toggle()
            } else if character == ";" && !quoted {
                parts.append(member[start..<index].trimmingOWS())
                start = member.index(after: index)
            }
            index = member.index(after: index)
        }
        parts.append(member[start...].trimmingOWS())
        return parts
    }
}
