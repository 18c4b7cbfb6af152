/// The request's own cache directives (RFC 9111 §5.2.1), with Pragma (§5.4) folded in.
public struct RequestDirectives: Sendable, Equatable {
    public var cacheControl: CacheControl

    /// - Parameter honour: an operator may ignore clients' directives (many CDNs do); the
    ///   parsed value is then empty.
    public init(_ headers: HeaderFields, honour: Bool = true) {
        // Most requests carry neither field: one pass over the fields, not three, on every hit.
        guard honour,
            headers.contains(where: {
                $0.name.equalsIgnoringASCIICase("Cache-Control") || $0.name.equalsIgnoringASCIICase("Pragma")
            })
        else {
            self.cacheControl = CacheControl()
            return
        }
        let cacheControl = CacheControl(headers)
        // §5.4: Pragma: no-cache counts as no-cache only when there is no Cache-Control.
        if !headers.contains("Cache-Control"),
            headers.listMembers("Pragma").contains(where: { $0.equalsIgnoringASCIICase("no-cache") })
        {
            self.cacheControl = CacheControl(directives: [.init(name: "no-cache", value: nil, quoted: false)])
        } else {
            self.cacheControl = cacheControl
        }
    }

    public var noStore: Bool { cacheControl.has("no-store") }
    public var noCache: Bool { cacheControl.has("no-cache") }
    public var onlyIfCached: Bool { cacheControl.has("only-if-cached") }
}
