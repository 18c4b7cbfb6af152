import HTTPCaching

/// Building the header sections Outpost sends, both ways (RFC 9110 §7.6).
package enum ResponseHeaders {
    /// An upstream response head as forwarded to the client: no hop-by-hop fields and a Date
    /// when the origin sent none (RFC 9110 §6.6.1). ``stamp(_:via:cacheStatus:)`` adds this hop.
    static func forwarded(_ upstream: HeaderFields, date: Double) -> HeaderFields {
        var headers = HopByHop.stripped(upstream)
        if !headers.contains("Date") { headers.add("Date", HTTPDate.format(Int64(date))) }
        return headers
    }

    /// This hop's member of Via (RFC 9110 §7.6.3), by its pseudonym.
    package static func viaMember(_ pseudonym: String) -> String { "1.1 " + pseudonym }

    /// Adds this cache to a response it sends: its Via member and its Cache-Status entry
    /// (RFC 9211 §2). Every response from the pipeline goes through here; the hit path keeps
    /// the Via member in its prepared head and appends the entry as bytes (HitHandler).
    static func stamp(_ headers: inout HeaderFields, via pseudonym: String, cacheStatus: CacheStatus) {
        headers.add("Via", viaMember(pseudonym))
        headers.add("Cache-Status", cacheStatus.headerValue)
    }

    /// The request head sent upstream: no hop-by-hop fields, this hop in Via, the client's
    /// address appended to X-Forwarded-For and its scheme in X-Forwarded-Proto, and this
    /// node's member of CDN-Loop after the request's own (RFC 8586, ``CDNLoop``).
    static func upstreamRequest(
        _ client: HeaderFields, clientAddress: String?, host: String, via: String, cdnLoop: String
    ) -> HeaderFields {
        var headers = HopByHop.stripped(client)
        headers.remove("Host")
        headers.remove("Expect")
        // Only a fetch sent to the peer that owns the key carries it (docs/fleet.md).
        headers.remove(PeerSet.header)
        headers.add("Host", host)
        headers.add("Via", viaMember(via))
        if let clientAddress {
            if let existing = headers.combined("X-Forwarded-For") {
                headers.replace("X-Forwarded-For", with: existing + ", " + clientAddress)
            } else {
                headers.add("X-Forwarded-For", clientAddress)
            }
        }
        headers.replace("X-Forwarded-Proto", with: "http")
        headers.add("CDN-Loop", cdnLoop)
        return headers
    }

    /// Client conditionals and Range, removed when the cache wants the full response to store
    /// (RFC 9111 §4.3.2: the cache answers the client's condition itself).
    static let clientConditionals = [
        "If-None-Match", "If-Modified-Since", "If-Match", "If-Unmodified-Since", "If-Range",
    ]
}
