/// Invalidation after unsafe methods (RFC 9111 §4.4).
public enum Invalidation {
    /// Methods known to be safe (RFC 9110 §9.2.1); every other method is unsafe here.
    public static let safeMethods: Set<String> = ["GET", "HEAD", "OPTIONS", "TRACE"]

    /// The keys to invalidate after a response to `method` on `target`: none for safe methods
    /// or error responses; otherwise the target and the Location / Content-Location URIs that
    /// share its host (§4.4: the host check keeps one origin from purging another's objects).
    public static func keys(method: String, target: CacheKey, status: Int, responseHeaders: HeaderFields) -> [CacheKey]
    {
        guard !safeMethods.contains(method), (200..<400).contains(status) else { return [] }
        var keys = [target]
        for field in ["Location", "Content-Location"] {
            guard let value = responseHeaders[field], let key = target.resolving(value) else { continue }
            if key.authority == target.authority, key.scheme == target.scheme, !keys.contains(key) {
                keys.append(key)
            }
        }
        return keys
    }
}
