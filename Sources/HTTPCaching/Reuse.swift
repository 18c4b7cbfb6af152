/// May a stored response answer this request, and how (RFC 9111 §4, §4.2.4, §5.2; RFC 8246)?
public enum ReuseDecision: Sendable, Equatable {
    /// Fresh: serve it.
    case fresh
    /// Stale, but something explicitly allows serving it now (§4.2.4); the reason names it.
    case staleAllowed(reason: StaleAllowance)
    /// Stale within its `stale-while-revalidate` window (RFC 5861 §3): serve it now and
    /// refresh it in the background.
    case staleWhileRevalidate
    /// It must be validated with the origin first; the reason says why.
    case mustValidate(reason: ValidationReason)
}

/// What lets a stale response be served without validation (RFC 9111 §4.2.4). The raw value
/// is the Cache-Status `detail` Outpost reports.
public enum StaleAllowance: String, Sendable, Equatable {
    /// The request's `max-stale` covers it (§5.2.1.2).
    case maxStale = "max-stale"
}

/// Why a stored response must be validated before it is used (RFC 9111 §4.3). The raw value
/// is the Cache-Status `detail` Outpost reports.
public enum ValidationReason: String, Sendable, Equatable {
    /// The response's `no-cache` (§5.2.2.4).
    case responseNoCache = "response no-cache"
    /// The request's `no-cache` or `Pragma: no-cache` (§5.2.1.4, §5.4).
    case requestNoCache = "request no-cache"
    /// The request's `max-age` is below the response's age (§5.2.1.1).
    case requestMaxAge = "request max-age"
    /// The request's `min-fresh` asks for more freshness than is left (§5.2.1.3).
    case requestMinFresh = "request min-fresh"
    /// Stale, and nothing allows serving it stale (§4.2.4).
    case stale = "stale"
    /// The operator soft-purged it: stale from that moment, validated before any reuse.
    case softPurge = "soft purge"
}

public enum Reuse {
    /// Decides how a stored response may be used for a request.
    ///
    /// Order: request `no-cache` / response `no-cache` (validate) → request `max-age` and
    /// `min-fresh` → fresh → stale allowances (request `max-stale`, unless the response forbids
    /// serving stale). An `immutable` response that is fresh is served even when the request
    /// says `no-cache` or `max-age=0` (RFC 8246 §2: a reload need not revalidate it).
    public static func decide(
        stored: StoredResponse,
        responseCacheControl: CacheControl,
        lifetime: FreshnessLifetime,
        request: RequestDirectives,
        now: Double
    ) -> ReuseDecision {
        decide(
            age: Age.current(of: stored, now: now), responseCacheControl: responseCacheControl, lifetime: lifetime,
            request: request)
    }

    /// The same decision for a response whose current age (RFC 9111 §4.2.3) is already known.
    public static func decide(
        age: Double,
        responseCacheControl: CacheControl,
        lifetime: FreshnessLifetime,
        request: RequestDirectives
    ) -> ReuseDecision {
        let lifetimeSeconds = Double(lifetime.seconds)
        let isFresh = lifetimeSeconds > age
        let requestCC = request.cacheControl

        if responseCacheControl.has("no-cache") {
            return .mustValidate(reason: .responseNoCache)
        }
        if isFresh && responseCacheControl.has("immutable") && lifetime.isExplicit {
            return .fresh
        }
        if request.noCache {
            return .mustValidate(reason: .requestNoCache)
        }
        switch requestCC.seconds("max-age") {
        case .value(let maxAge) where age > Double(maxAge):
            return .mustValidate(reason: .requestMaxAge)
        case .invalid:
            // An unusable max-age from the client is read as max-age=0: the conservative choice.
            return .mustValidate(reason: .requestMaxAge)
        default: break
        }
        switch requestCC.seconds("min-fresh") {
        case .value(let minFresh) where lifetimeSeconds - age < Double(minFresh):
            return .mustValidate(reason: .requestMinFresh)
        default: break
        }
        if isFresh { return .fresh }

        if forbidsStale(responseCacheControl) {
            return .mustValidate(reason: .stale)
        }
        let staleness = age - lifetimeSeconds
        if case .value(let window) = responseCacheControl.seconds("stale-while-revalidate"), staleness <= Double(window)
        {
            return .staleWhileRevalidate
        }
        switch requestCC.maxStale {
        case .unlimited:
            return .staleAllowed(reason: .maxStale)
        case .seconds(let limit) where staleness <= Double(limit):
            return .staleAllowed(reason: .maxStale)
        default:
            return .mustValidate(reason: .stale)
        }
    }

    /// May a stale response be served because the origin failed (RFC 5861 §4, RFC 9111
    /// §4.2.4)? Yes within the request's `stale-if-error` or `max-stale` window, or the
    /// response's own `stale-if-error` window, or — for a response without one — the
    /// operator's window (`cache.stale_if_error`), unless the request asked for a validated
    /// answer (`no-cache`, or `max-age=0`, which only the response's or the request's own
    /// windows override). Never when the response forbids serving stale.
    public static func staleIfErrorAllows(
        stored: StoredResponse,
        responseCacheControl: CacheControl,
        lifetime: FreshnessLifetime,
        request: RequestDirectives,
        operatorWindow: Int64 = 0,
        now: Double
    ) -> Bool {
        // A client that demanded validation (no-cache) does not get an unvalidated copy.
        guard !forbidsStale(responseCacheControl), !request.noCache else { return false }
        let staleness = Age.current(of: stored, now: now) - Double(lifetime.seconds)
        var windows: [Int64] = []
        switch responseCacheControl.seconds("stale-if-error") {
        case .value(let window):
            // The origin said how long; the operator's default does not stretch it.
            windows.append(window)
        case .invalid:
            break
        case .absent:
            if operatorWindow > 0, request.cacheControl.seconds("max-age") != .value(0) {
                windows.append(operatorWindow)
            }
        }
        if case .value(let window) = request.cacheControl.seconds("stale-if-error") { windows.append(window) }
        switch request.cacheControl.maxStale {
        case .unlimited: return true
        case .seconds(let window): windows.append(window)
        default: break
        }
        guard let window = windows.max() else { return false }
        return staleness <= Double(window)
    }

    /// A soft purge (the operator's word that the stored response is out of date) makes it
    /// stale from that moment: its lifetime ends at the age it had then. Staleness, and so
    /// stale-if-error and max-stale windows, count from the purge.
    public static func softPurged(
        _ lifetime: FreshnessLifetime, stored: StoredResponse, purgedAt: Double
    ) -> FreshnessLifetime {
        let ageThen = Int64(max(0, Age.current(of: stored, now: purgedAt)).rounded(.down))
        return FreshnessLifetime(seconds: min(lifetime.seconds, ageThen), source: lifetime.source)
    }

    /// `must-revalidate`, `proxy-revalidate`, `s-maxage` (§5.2.2.10) and `no-cache` forbid
    /// serving a stale response for any reason (§4.2.4).
    public static func forbidsStale(_ cacheControl: CacheControl) -> Bool {
        cacheControl.has("must-revalidate") || cacheControl.has("proxy-revalidate")
            || cacheControl.seconds("s-maxage").isPresent || cacheControl.has("no-cache")
    }
}
