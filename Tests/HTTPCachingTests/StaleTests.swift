import HTTPCaching
import Testing

/// RFC 5861, RFC 9111 §4.2.4 and RFC 9213: serving stale and targeted cache control.
@Suite("RFC 5861 / RFC 9213: stale responses and targeted fields")
struct StaleTests {
    static func decide(_ cacheControl: String, request: [(String, String)] = [], at now: Double) -> ReuseDecision {
        let stored = response([("Date", epochDate), ("Cache-Control", cacheControl)])
        return Reuse.decide(
            stored: stored, responseCacheControl: stored.cacheControl,
            lifetime: FreshnessLifetime.of(stored, cacheControl: stored.cacheControl),
            request: RequestDirectives(HeaderFields(request)), now: now)
    }

    static func staleIfError(
        _ cacheControl: String, request: [(String, String)] = [], operatorWindow: Int64 = 0, at now: Double
    ) -> Bool {
        let stored = response([("Date", epochDate), ("Cache-Control", cacheControl)])
        return Reuse.staleIfErrorAllows(
            stored: stored, responseCacheControl: stored.cacheControl,
            lifetime: FreshnessLifetime.of(stored, cacheControl: stored.cacheControl),
            request: RequestDirectives(HeaderFields(request)), operatorWindow: operatorWindow, now: now)
    }

    @Test(
        "RFC 5861 §3 stale-while-revalidate: inside the window serve and refresh; outside validate",
        arguments: [
            (Double(1_000_005), ReuseDecision.fresh),
            (1_000_050, .staleWhileRevalidate),
            (1_000_070, .staleWhileRevalidate),
            (1_000_071, .mustValidate(reason: .stale)),
        ])
    func staleWhileRevalidate(now: Double, expected: ReuseDecision) {
        #expect(Self.decide("max-age=10, stale-while-revalidate=60", at: now) == expected)
    }

    @Test(
        "RFC 9111 §4.2.4 must-revalidate, proxy-revalidate, s-maxage and no-cache override stale-while-revalidate",
        arguments: [
            "max-age=10, stale-while-revalidate=60, must-revalidate", "s-maxage=10, stale-while-revalidate=60",
            "max-age=10, proxy-revalidate, stale-while-revalidate=60",
        ])
    func swrForbidden(cacheControl: String) {
        #expect(Self.decide(cacheControl, at: 1_000_020) == .mustValidate(reason: .stale))
    }

    @Test("RFC 5861 §3 a request no-cache still validates inside the window")
    func swrAndRequestNoCache() {
        #expect(
            Self.decide(
                "max-age=10, stale-while-revalidate=60", request: [("Cache-Control", "no-cache")], at: 1_000_020)
                == .mustValidate(reason: .requestNoCache))
    }

    @Test(
        "RFC 5861 §4 stale-if-error windows from the response, the request, max-stale or the operator",
        arguments: [
            ("max-age=10, stale-if-error=60", [(String, String)](), Int64(0), Double(1_000_050), true),
            ("max-age=10, stale-if-error=60", [], 0, 1_000_080, false),
            ("max-age=10", [("Cache-Control", "stale-if-error=100")], 0, 1_000_080, true),
            ("max-age=10", [("Cache-Control", "max-stale")], 0, 1_009_000, true),
            ("max-age=10", [], 300, 1_000_200, true),
            ("max-age=10", [], 0, 1_000_020, false),
            ("max-age=10, stale-if-error=60, must-revalidate", [], 0, 1_000_020, false),
            ("max-age=10, stale-if-error=60, no-cache", [], 0, 1_000_020, false),
            ("s-maxage=10, stale-if-error=60", [], 0, 1_000_020, false),
            ("max-age=10, stale-if-error=60", [("Cache-Control", "no-cache")], 0, 1_000_020, false),
            // The operator's window applies to responses without a window of their own, not
            // past one they give, and not to a request that asked for max-age=0.
            ("max-age=10, stale-if-error=60", [], 86_400, 1_000_080, false),
            ("max-age=10, stale-if-error=60", [], 86_400, 1_000_050, true),
            ("max-age=10", [], 86_400, 1_086_000, true),
            ("max-age=10", [], 86_400, 1_087_000, false),
            ("max-age=10", [("Cache-Control", "max-age=0")], 86_400, 1_000_020, false),
            ("max-age=10", [("Cache-Control", "no-cache")], 86_400, 1_000_020, false),
            ("max-age=10, must-revalidate", [], 86_400, 1_000_020, false),
            ("max-age=10, proxy-revalidate", [], 86_400, 1_000_020, false),
            ("s-maxage=10", [], 86_400, 1_000_020, false),
            ("max-age=10, no-cache", [], 86_400, 1_000_020, false),
        ])
    func staleIfError(cacheControl: String, request: [(String, String)], window: Int64, now: Double, expected: Bool) {
        #expect(Self.staleIfError(cacheControl, request: request, operatorWindow: window, at: now) == expected)
    }

    @Test("RFC 9213 §2.1 the first valid targeted field governs; Cache-Control otherwise")
    func governing() {
        let targets = TargetedCacheControl.targets(operatorField: "Outpost-Cache-Control")
        let both = HeaderFields([
            ("Cache-Control", "no-store"), ("CDN-Cache-Control", "max-age=60"), ("Outpost-Cache-Control", "max-age=5"),
        ])
        #expect(TargetedCacheControl.governing(both, targets: targets).seconds("max-age") == .value(5))
        let cdnOnly = HeaderFields([("Cache-Control", "no-store"), ("CDN-Cache-Control", "max-age=60")])
        let cdn = TargetedCacheControl.governing(cdnOnly, targets: targets)
        #expect(cdn.seconds("max-age") == .value(60))
        #expect(!cdn.has("no-store"))
        let plain = HeaderFields([("Cache-Control", "max-age=7")])
        #expect(TargetedCacheControl.governing(plain, targets: targets).seconds("max-age") == .value(7))
    }

    @Test(
        "RFC 9213 §2.2 targeted fields are Structured Field dictionaries; an invalid one is ignored",
        arguments: [
            ("max-age=60", CacheControl.Seconds.value(60), false),
            ("max-age=60, private", .value(60), true),
            ("foobar, max-age=3600", .value(3600), false),
            ("max-age=\"60\"", .invalid, false),
            ("max-age=1.5", .invalid, false),
        ])
    func structuredField(value: String, maxAge: CacheControl.Seconds, isPrivate: Bool) throws {
        let parsed = try #require(TargetedCacheControl.parse([value]))
        #expect(parsed.seconds("max-age") == maxAge)
        #expect(parsed.has("private") == isPrivate)
    }

    @Test(
        "RFC 9213 §2.2 invalid dictionaries fall back to Cache-Control",
        arguments: ["max-age=60, &&&&", "MaX-aGe=60", "max-age =60"])
    func invalidTargeted(value: String) {
        #expect(TargetedCacheControl.parse([value]) == nil)
        let headers = HeaderFields([("Cache-Control", "no-store"), ("CDN-Cache-Control", value)])
        #expect(TargetedCacheControl.governing(headers, targets: ["CDN-Cache-Control"]).has("no-store"))
    }

    @Test("operator default lifetime applies only without any freshness information")
    func defaultTTL() {
        let configuration = FreshnessConfiguration(defaultTTL: 120)
        let bare = response([("Date", epochDate)])
        #expect(
            FreshnessLifetime.of(bare, cacheControl: bare.cacheControl, configuration: configuration).seconds == 120)
        let explicit = response([("Date", epochDate), ("Cache-Control", "max-age=5")])
        #expect(
            FreshnessLifetime.of(explicit, cacheControl: explicit.cacheControl, configuration: configuration).seconds
                == 5)
        let notCacheable = response(302, [("Date", epochDate)])
        #expect(
            FreshnessLifetime.of(notCacheable, cacheControl: notCacheable.cacheControl, configuration: configuration)
                .seconds == 0)
        #expect(FreshnessLifetime.of(bare, cacheControl: bare.cacheControl).seconds == 0)
    }
}
