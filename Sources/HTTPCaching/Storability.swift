/// What this cache does with a response that carries `Set-Cookie` (`cache.set_cookie`).
///
/// RFC 9111 §3.1 has a cache store every header field, Set-Cookie included, and replay it;
/// one user's session cookie then reaches every user who gets the hit. Varnish and
/// Cloudflare do not store such responses at all. The operator chooses.
public enum SetCookiePolicy: String, Sendable, Equatable, CaseIterable {
    /// Not stored: forwarded to the client that asked (hit-for-pass for the URL).
    case pass
    /// Stored like any response, without the Set-Cookie field (the client whose request
    /// fetched it gets the cookie; hits never carry it).
    case strip
    /// Stored with the field and replayed on hits, as RFC 9111 §3.1 says.
    case store
}

/// Whether a shared cache may store a response (RFC 9111 §3, §3.5).
public struct StoragePolicy: Sendable, Equatable {
    public var setCookie: SetCookiePolicy

    public init(setCookie: SetCookiePolicy = .pass) {
        self.setCookie = setCookie
    }
}

public enum StoreDecision: Sendable, Equatable {
    case store
    case doNotStore(reason: String)

    public var mayStore: Bool { self == .store }
    /// Why the response may not be stored; nil when it may.
    public var refusal: String? {
        if case .doNotStore(let reason) = self { return reason }
        return nil
    }
}

public enum Storability {
    /// Decides storage for a response to `requestMethod`.
    ///
    /// - Parameters:
    ///   - requestCacheControl: the request's Cache-Control (only `no-store` matters here).
    ///   - responseCacheControl: the directives governing this cache for the response.
    ///   - lifetime: the response's freshness lifetime, so that a response that could never
    ///     be reused (no lifetime and no validator) is not written at all.
    public static func decide(
        requestMethod: String,
        requestHeaders: HeaderFields,
        requestCacheControl: CacheControl,
        response: StoredResponse,
        responseCacheControl: CacheControl,
        lifetime: FreshnessLifetime,
        policy: StoragePolicy = .init()
    ) -> StoreDecision {
        let status = response.status
        // §3: the request method must be understood and cacheable; this cache stores GET.
        guard requestMethod == "GET" else { return .doNotStore(reason: "method") }
        // §3: final status only; 304 and 1xx are never stored as such (§4.3.4 handles 304).
        guard StatusCodes.isFinal(status), status != 304 else { return .doNotStore(reason: "status") }
        // §3: any final status may be stored; understanding it is required only for 206 (and
        // 304, above) and when the response says must-understand (§5.2.2.3). A status this
        // cache does not know gets no heuristic lifetime unless `public` (§4.2.2), so it is
        // stored only with explicit freshness or `public` (checked below).
        let mustUnderstand = responseCacheControl.has("must-understand")
        if mustUnderstand, !StatusCodes.isUnderstood(status) {
            return .doNotStore(reason: "status not understood")
        }
        // §3.3: a 206 is stored as a part of its representation when it is a single part with
        // its complete length; it answers ranges inside it. Combining parts (§3.4) further
        // needs a strong validator, checked when they are combined.
        if status == 206 {
            guard let range = response.headers["Content-Range"].flatMap(ContentRange.init(parsing:)),
                range.completeLength != nil
            else { return .doNotStore(reason: "partial content") }
            // RFC 9110 §14.4: a part longer than its Content-Range says is malformed.
            if let length = response.headers["Content-Length"].flatMap({ Int64($0.trimmingOWS()) }),
                length > range.length
            {
                return .doNotStore(reason: "partial content longer than its Content-Range")
            }
        }
        // §5.2.1.5: no-store on the request.
        guard !requestCacheControl.has("no-store") else { return .doNotStore(reason: "request no-store") }
        // §5.2.2.3: must-understand with an understood status overrides no-store.
        if responseCacheControl.has("no-store") && !mustUnderstand {
            return .doNotStore(reason: "no-store")
        }
        // §5.2.2.7: a shared cache must not store a private response.
        guard !responseCacheControl.has("private") else { return .doNotStore(reason: "private") }
        let isPublic = responseCacheControl.has("public")
        let hasSMaxAge = responseCacheControl.seconds("s-maxage").isPresent
        // §3.5: a request with Authorization is stored only when the response says so.
        if requestHeaders.contains("Authorization"),
            !(isPublic || hasSMaxAge || responseCacheControl.has("must-revalidate"))
        {
            return .doNotStore(reason: "authorization")
        }
        if policy.setCookie == .pass, response.headers.contains("Set-Cookie") {
            return .doNotStore(reason: "set-cookie")
        }
        // §4.1: Vary: * never matches, so storing it is pointless.
        if response.vary.isWildcard { return .doNotStore(reason: "vary *") }
        // §3: explicit freshness, `public`, or a heuristically cacheable status.
        let explicit = lifetime.isExplicit || lifetime.source == .invalid || isPublic
        guard explicit || StatusCodes.isHeuristicallyCacheable(status) else {
            return .doNotStore(reason: "no explicit freshness")
        }
        // A response that is never fresh and cannot be validated could never be reused.
        if lifetime.seconds == 0, response.headers["ETag"] == nil, response.headers["Last-Modified"] == nil {
            return .doNotStore(reason: "not reusable")
        }
        return .store
    }
}
