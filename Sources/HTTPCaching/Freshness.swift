/// Freshness lifetime (RFC 9111 §4.2.1, §4.2.2).
public struct FreshnessConfiguration: Sendable, Equatable {
    /// The share of (Date - Last-Modified) used as a heuristic lifetime (§4.2.2 suggests 10%).
    public var heuristicFraction: Double
    /// The cap on a heuristic lifetime. Kept below 24 hours because a cache that cannot send
    /// Warning 113 must not serve a heuristically fresh response older than that (§4.2.2).
    public var heuristicCap: Int64

    /// The operator's lifetime for responses with no freshness information at all (no
    /// explicit freshness, no Last-Modified) and a heuristically cacheable status; 0 is off.
    public var defaultTTL: Int64

    public init(heuristicFraction: Double = 0.1, heuristicCap: Int64 = 86_399, defaultTTL: Int64 = 0) {
        self.heuristicFraction = heuristicFraction
        self.heuristicCap = min(heuristicCap, 86_399)
        self.defaultTTL = max(0, defaultTTL)
    }
}

public struct FreshnessLifetime: Sendable, Equatable {
    /// Seconds of freshness left at `age` (negative once stale), rounded down: the one rule for
    /// Cache-Status `ttl` (RFC 9211 §2.5) and the reports, whatever path answered. Rounding the
    /// age down first instead gave a miss a `ttl` one second above the hit that followed it.
    public func remaining(atAge age: Double) -> Int64 {
        Int64((Double(seconds) - age).rounded(.down))
    }

    public enum Source: String, Sendable, Equatable {
        case sMaxAge = "s-maxage"
        case maxAge = "max-age"
        case expires
        case heuristic
        /// The operator's default lifetime (`cache.default_ttl`).
        case operatorDefault = "default"
        /// No explicit freshness and no heuristic applies.
        case none
        /// Explicit freshness that is invalid or conflicting: the response is stale (§4.2.1).
        case invalid
    }

    public var seconds: Int64
    public var source: Source
    /// Whether the response's ``StoredResponse/lifetimeCap`` shortened `seconds`.
    public var capped = false

    public init(seconds: Int64, source: Source, capped: Bool = false) {
        self.seconds = seconds
        self.source = source
        self.capped = capped
    }

    public var isExplicit: Bool { source == .sMaxAge || source == .maxAge || source == .expires }

    /// Computes the lifetime of a response for a shared cache, first rule that applies:
    /// s-maxage, max-age, Expires - Date, heuristic (§4.2.1).
    ///
    /// - Parameter cacheControl: the directives that govern this cache (Cache-Control, or a
    ///   targeted field that takes precedence over it, RFC 9213).
    /// A ``StoredResponse/lifetimeCap`` shortens the result (its source stays the rule that
    /// gave it, so an explicit lifetime is still explicit).
    public static func of(
        _ response: StoredResponse,
        cacheControl: CacheControl,
        configuration: FreshnessConfiguration = .init()
    ) -> FreshnessLifetime {
        let lifetime = uncapped(response, cacheControl: cacheControl, configuration: configuration)
        guard let cap = response.lifetimeCap, cap < lifetime.seconds else { return lifetime }
        return FreshnessLifetime(seconds: max(0, cap), source: lifetime.source, capped: true)
    }

    private static func uncapped(
        _ response: StoredResponse,
        cacheControl: CacheControl,
        configuration: FreshnessConfiguration
    ) -> FreshnessLifetime {
        switch cacheControl.seconds("s-maxage") {
        case .value(let seconds): return .init(seconds: seconds, source: .sMaxAge)
        case .invalid: return .init(seconds: 0, source: .invalid)
        case .absent: break
        }
        switch cacheControl.seconds("max-age") {
        case .value(let seconds): return .init(seconds: seconds, source: .maxAge)
        case .invalid: return .init(seconds: 0, source: .invalid)
        case .absent: break
        }
        let expiresLines = response.headers.values("Expires")
        if !expiresLines.isEmpty {
            // Several differing Expires lines conflict; an unparseable one (e.g. "0") means
            // "already expired" (RFC 9111 §5.3).
            guard Set(expiresLines).count == 1, let expires = HTTPDate.parse(expiresLines[0]) else {
                return .init(seconds: 0, source: .invalid)
            }
            let date = response.dateValue ?? Int64(response.responseTime)
            return .init(seconds: max(0, expires - date), source: .expires)
        }
        // §4.2.2: heuristics only for a heuristically cacheable status, or any status when the
        // response is marked explicitly cacheable (`public`).
        guard StatusCodes.isHeuristicallyCacheable(response.status) || cacheControl.has("public") else {
            return .init(seconds: 0, source: .none)
        }
        guard let lastModified = response.lastModified else {
            return configuration.defaultTTL > 0
                ? .init(seconds: configuration.defaultTTL, source: .operatorDefault) : .init(seconds: 0, source: .none)
        }
        let date = response.dateValue ?? Int64(response.responseTime)
        let interval = max(0, date - lastModified)
        let heuristic = Int64(Double(interval) * configuration.heuristicFraction)
        return .init(seconds: min(heuristic, configuration.heuristicCap), source: .heuristic)
    }
}
