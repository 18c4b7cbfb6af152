import HTTPCaching
import Testing

/// RFC 9111 §4, §4.2.4, §5.2.1 and RFC 8246: may a stored response be used?
@Suite("RFC 9111 §4: reuse")
struct ReuseTests {
    static func decide(_ fields: [(String, String)], request: [(String, String)] = [], at now: Double) -> ReuseDecision
    {
        let stored = response(200, [("Date", epochDate)] + fields)
        let cc = stored.cacheControl
        return Reuse.decide(
            stored: stored, responseCacheControl: cc, lifetime: FreshnessLifetime.of(stored, cacheControl: cc),
            request: RequestDirectives(HeaderFields(request)), now: now)
    }

    @Test(
        "§4.2 fresh while lifetime > current age",
        arguments: [(Double(1_000_000), true), (1_000_059, true), (1_000_060, false), (1_000_100, false)])
    func freshness(now: Double, fresh: Bool) {
        let decision = Self.decide([("Cache-Control", "max-age=60")], at: now)
        #expect((decision == .fresh) == fresh)
    }

    @Test(
        "§5.2.1 request directives",
        arguments: [
            ("max-age=5", Double(1_000_010), ReuseDecision.mustValidate(reason: .requestMaxAge)),
            ("max-age=50", 1_000_010, .fresh),
            ("min-fresh=55", 1_000_010, .mustValidate(reason: .requestMinFresh)),
            ("min-fresh=5", 1_000_010, .fresh),
            ("no-cache", 1_000_010, .mustValidate(reason: .requestNoCache)),
            ("max-stale", 1_000_500, .staleAllowed(reason: .maxStale)),
            ("max-stale=100", 1_000_100, .staleAllowed(reason: .maxStale)),
            ("max-stale=10", 1_000_100, .mustValidate(reason: .stale)),
        ])
    func requestDirectives(directive: String, now: Double, expected: ReuseDecision) {
        #expect(
            Self.decide([("Cache-Control", "max-age=60")], request: [("Cache-Control", directive)], at: now) == expected
        )
    }

    @Test("§5.4 Pragma: no-cache counts only without Cache-Control")
    func pragma() {
        #expect(
            Self.decide([("Cache-Control", "max-age=60")], request: [("Pragma", "no-cache")], at: 1_000_001)
                == .mustValidate(reason: .requestNoCache))
        #expect(
            Self.decide(
                [("Cache-Control", "max-age=60")], request: [("Pragma", "no-cache"), ("Cache-Control", "max-stale")],
                at: 1_000_001) == .fresh)
    }

    @Test("operators may ignore request directives")
    func ignoredDirectives() {
        let directives = RequestDirectives(HeaderFields([("Cache-Control", "no-cache")]), honour: false)
        #expect(!directives.noCache)
    }

    @Test("§5.2.2.4 response no-cache always validates")
    func responseNoCache() {
        #expect(
            Self.decide([("Cache-Control", "max-age=60, no-cache")], at: 1_000_001)
                == .mustValidate(reason: .responseNoCache))
    }

    @Test(
        "§4.2.4 must-revalidate, proxy-revalidate, s-maxage, no-cache forbid stale even with max-stale",
        arguments: ["max-age=1, must-revalidate", "max-age=1, proxy-revalidate", "s-maxage=1", "max-age=1, no-cache"])
    func forbidsStale(cacheControl: String) {
        let decision = Self.decide(
            [("Cache-Control", cacheControl)], request: [("Cache-Control", "max-stale")], at: 1_000_100)
        #expect(decision != .staleAllowed(reason: .maxStale))
        #expect(decision != .fresh)
    }

    @Test("RFC 8246 §2 immutable: a fresh response survives a reload")
    func immutable() {
        let reload = [("Cache-Control", "no-cache")]
        #expect(Self.decide([("Cache-Control", "max-age=600, immutable")], request: reload, at: 1_000_010) == .fresh)
        #expect(
            Self.decide(
                [("Cache-Control", "max-age=600, immutable")], request: [("Cache-Control", "max-age=0")], at: 1_000_010)
                == .fresh)
        // Once stale, immutable does not help.
        #expect(Self.decide([("Cache-Control", "max-age=5, immutable")], request: reload, at: 1_000_010) != .fresh)
    }
}
