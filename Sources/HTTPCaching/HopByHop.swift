/// Fields that belong to one connection (RFC 9110 §7.6.1) or must never be replayed from storage.
public enum HopByHop {
    /// Always hop-by-hop; the fields a message's Connection names are too.
    static let fixedNames = [
        "connection", "keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding", "upgrade",
        "proxy-authenticate", "proxy-authorization",
    ]

    /// The message's fields without the hop-by-hop ones (for forwarding either way).
    public static func stripped(_ headers: HeaderFields) -> HeaderFields {
        // Runs on every forwarded request and response: names are compared case-insensitively
        // in place (no lower-cased copy and hash per field), and Connection is read only when
        // present.
        let listed = headers.contains("Connection") ? headers.listMembers("Connection") : []
        func isHopByHop(_ name: String) -> Bool {
            fixedNames.contains { $0.equalsIgnoringASCIICase(name) }
                || listed.contains { $0.equalsIgnoringASCIICase(name) }
        }
        guard headers.contains(where: { isHopByHop($0.name) }) else { return headers }
        var copy = headers
        copy.remove { isHopByHop($0.name) }
        return copy
    }

    /// The fields of a response that may be written to storage: no hop-by-hop fields (RFC 9111
    /// §3.1), and no Set-Cookie unless the policy is ``SetCookiePolicy/store``. Age is kept:
    /// it is the age_value of the age calculation, and replaced by the current age on each use.
    public static func storableHeaders(_ headers: HeaderFields, setCookie: SetCookiePolicy = .strip) -> HeaderFields {
        var copy = stripped(headers)
        if setCookie != .store { copy.remove("Set-Cookie") }
        return copy
    }
}
