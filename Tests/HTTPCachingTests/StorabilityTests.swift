import HTTPCaching
import Testing

/// RFC 9111 §3: what a shared cache may store.
@Suite("RFC 9111 §3: storing responses")
struct StorabilityTests {
    static func decide(
        method: String = "GET", status: Int = 200, _ fields: [(String, String)], request: [(String, String)] = [],
        policy: StoragePolicy = .init()
    ) -> StoreDecision {
        let stored = response(status, [("Date", epochDate)] + fields)
        let requestHeaders = HeaderFields(request)
        return Storability.decide(
            requestMethod: method, requestHeaders: requestHeaders, requestCacheControl: CacheControl(requestHeaders),
            response: stored, responseCacheControl: stored.cacheControl,
            lifetime: FreshnessLifetime.of(stored, cacheControl: stored.cacheControl), policy: policy)
    }

    @Test(
        "§3 storable and not",
        arguments: [
            ("GET", 200, "max-age=60", true),
            ("POST", 200, "max-age=60", false),
            ("GET", 200, "no-store", false),
            ("GET", 200, "max-age=60, no-store", false),
            ("GET", 200, "private, max-age=60", false),
            ("GET", 200, "private=\"x\", max-age=60", false),
            ("GET", 200, "no-cache, max-age=60", true),
            ("GET", 200, "max-age=60, no-store, must-understand", true),
            ("GET", 302, "max-age=60", true),
            ("GET", 302, "", false),
            ("GET", 500, "max-age=60", true),
            // §3: any final status with explicit freshness; only must-understand asks that
            // the status be understood, and only `public` allows a heuristic lifetime.
            ("GET", 599, "max-age=60", true),
            ("GET", 299, "max-age=60", true),
            ("GET", 499, "s-maxage=60", true),
            ("GET", 599, "max-age=60, must-understand", false),
            ("GET", 599, "", false),
            ("GET", 304, "max-age=60", false),
            ("GET", 206, "max-age=60", false),
            ("GET", 404, "max-age=60", true),
            ("GET", 200, "public", false),
        ])
    func storable(method: String, status: Int, cacheControl: String, expected: Bool) {
        let fields = cacheControl.isEmpty ? [] : [("Cache-Control", cacheControl)]
        #expect(Self.decide(method: method, status: status, fields).mayStore == expected)
    }

    @Test("§3 heuristically cacheable statuses with a validator are stored without explicit freshness")
    func heuristicStatus() {
        #expect(Self.decide([("Last-Modified", HTTPDate.format(900_000))]).mayStore)
        #expect(Self.decide(status: 404, [("ETag", "\"a\"")]).mayStore)
        #expect(!Self.decide(status: 302, [("Last-Modified", HTTPDate.format(900_000))]).mayStore)
    }

    @Test("§3 / §4.2.2 a status this cache does not know: explicit freshness or `public`, never a bare heuristic")
    func unknownStatus() {
        let lastModified = ("Last-Modified", HTTPDate.format(900_000))
        #expect(
            Self.decide(status: 599, [("Date", HTTPDate.format(1_000_000)), ("Expires", HTTPDate.format(1_000_060))])
                .mayStore)
        #expect(!Self.decide(status: 499, [lastModified]).mayStore)
        #expect(Self.decide(status: 499, [lastModified, ("Cache-Control", "public")]).mayStore)
        let publicUnknown = StoredResponse(
            status: 499,
            headers: HeaderFields([("Date", HTTPDate.format(1_000_000)), lastModified, ("Cache-Control", "public")]),
            requestTime: 1_000_000, responseTime: 1_000_000)
        let lifetime = FreshnessLifetime.of(publicUnknown, cacheControl: publicUnknown.cacheControl)
        #expect(lifetime.source == .heuristic && lifetime.seconds == 10_000)
    }

    @Test("§5.2.1.5 request no-store")
    func requestNoStore() {
        #expect(
            Self.decide([("Cache-Control", "max-age=60")], request: [("Cache-Control", "no-store")])
                == .doNotStore(reason: "request no-store"))
    }

    @Test(
        "§3.5 Authorization: only public, s-maxage or must-revalidate",
        arguments: [
            ("max-age=60", false), ("public, max-age=60", true), ("s-maxage=60", true),
            ("max-age=60, must-revalidate", true),
        ])
    func authorization(cacheControl: String, expected: Bool) {
        let decision = Self.decide([("Cache-Control", cacheControl)], request: [("Authorization", "Bearer x")])
        #expect(decision.mayStore == expected)
    }

    @Test(
        "Set-Cookie: pass never stores, strip and store store what is otherwise storable",
        arguments: [
            (SetCookiePolicy.pass, "max-age=60", false),
            (.pass, "public, max-age=60", false),
            (.strip, "max-age=60", true),
            (.strip, "no-store", false),
            (.store, "max-age=60", true),
            (.store, "private, max-age=60", false),
        ])
    func setCookie(policy: SetCookiePolicy, cacheControl: String, stored: Bool) {
        let fields = [("Cache-Control", cacheControl), ("Set-Cookie", "session=alice")]
        #expect(Self.decide(fields, policy: StoragePolicy(setCookie: policy)).mayStore == stored)
        // Without the field, the policy changes nothing.
        #expect(
            Self.decide([("Cache-Control", cacheControl)], policy: StoragePolicy(setCookie: policy)).mayStore
                == Self.decide([("Cache-Control", cacheControl)]).mayStore)
        let written = HopByHop.storableHeaders(HeaderFields(fields + [("X", "1")]), setCookie: policy)
        #expect(written.contains("Set-Cookie") == (policy == .store))
        #expect(written.contains("X"))
    }

    @Test("§4.1 Vary: * is not stored")
    func varyStar() {
        #expect(Self.decide([("Cache-Control", "max-age=60"), ("Vary", "Accept, *")]) == .doNotStore(reason: "vary *"))
    }

    @Test("RFC 9110 §7.6.1 hop-by-hop fields are never stored or forwarded")
    func hopByHop() {
        let headers = HeaderFields([
            ("Connection", "close, X-Private"), ("X-Private", "1"), ("Keep-Alive", "timeout=5"),
            ("Transfer-Encoding", "chunked"), ("TE", "trailers"), ("Upgrade", "h2c"), ("Proxy-Connection", "x"),
            ("Content-Type", "text/plain"),
        ])
        #expect(HopByHop.stripped(headers).fields.map(\.name) == ["Content-Type"])
    }
}

@Suite("RFC 9111 §3.3: partial content")
struct PartialContentRuleTests {
    @Test(
        "RFC 9110 §14.4 Content-Range of a single part",
        arguments: [
            ("bytes 0-99/1000", ContentRange?.some(ContentRange(first: 0, last: 99, completeLength: 1000))),
            ("bytes 5-5/*", ContentRange(first: 5, last: 5, completeLength: nil)),
            ("BYTES 1-2/3", ContentRange(first: 1, last: 2, completeLength: 3)),
            ("bytes */1000", nil), ("bytes 9-1/100", nil), ("bytes 0-100/100", nil), ("items 0-1/2", nil), ("", nil),
        ])
    func parse(value: String, expected: ContentRange?) {
        #expect(ContentRange(parsing: value) == expected)
    }

    @Test("§3.3 a 206 is stored only as a single part with a complete length; no validator is needed to store it")
    func storable() {
        #expect(
            StorabilityTests.decide(
                status: 206, [("Cache-Control", "max-age=60"), ("Content-Range", "bytes 0-9/100"), ("ETag", "\"s\"")]
            ).mayStore)
        #expect(
            StorabilityTests.decide(
                status: 206, [("Cache-Control", "max-age=60"), ("Content-Range", "bytes 0-9/100"), ("ETag", "W/\"w\"")]
            ).mayStore)
        #expect(
            StorabilityTests.decide(status: 206, [("Cache-Control", "max-age=60"), ("Content-Range", "bytes 4-9/10")])
                .mayStore)
        #expect(
            !StorabilityTests.decide(
                status: 206, [("Cache-Control", "max-age=60"), ("Content-Range", "bytes 0-9/*"), ("ETag", "\"s\"")]
            ).mayStore)
        #expect(!StorabilityTests.decide(status: 206, [("Cache-Control", "max-age=60"), ("ETag", "\"s\"")]).mayStore)
        #expect(
            !StorabilityTests.decide(
                status: 206,
                [("Cache-Control", "max-age=60"), ("Content-Range", "bytes 0-9/100"), ("Content-Length", "11")]
            ).mayStore)
    }

    @Test(
        "§3.3 a part is kept as the bytes that arrived",
        arguments: [(6, "bytes 4-9/10"), (5, "bytes 4-8/10"), (1, "bytes 4-4/10"), (0, nil), (7, nil)]
            as [(Int, String?)])
    func receivedPart(count: Int, expected: String?) {
        let declared = ContentRange(first: 4, last: 9, completeLength: 10)
        #expect(declared.received(Int64(count))?.headerValue == expected)
    }

    static let date = "Sun, 22 Nov 2026 10:00:00 GMT"
    static let earlier = "Sun, 22 Nov 2026 09:00:00 GMT"

    @Test(
        "RFC 9110 §8.8: the strong validator of a response (entity tag first, else a strong Last-Modified)",
        arguments: [
            ([("ETag", "\"a\"")], "\"a\""),
            ([("ETag", "W/\"a\""), ("Last-Modified", earlier)], nil),
            ([("Last-Modified", earlier)], earlier),
            // §8.8.2.2: a Last-Modified equal to Date is weak.
            ([("Last-Modified", date)], nil),
            ([(String, String)](), nil),
        ])
    func strongValidator(fields: [(String, String)], ifRange: String?) {
        let response = response([("Date", Self.date)] + fields)
        #expect(StrongValidator(of: response)?.ifRangeValue == ifRange)
    }

    @Test("RFC 9111 §3.4 / RFC 9110 §13.1.5: same strong validator, and If-Range against a stored response")
    func sameValidator() {
        let tagged = response([("Date", Self.date), ("ETag", "\"a\"")])
        let otherTag = response([("Date", Self.date), ("ETag", "\"b\"")])
        let dated = response([("Date", Self.date), ("Last-Modified", Self.earlier)])
        let bare = response([("Date", Self.date)])
        #expect(StrongValidator.same(tagged, tagged))
        #expect(!StrongValidator.same(tagged, otherTag))
        #expect(StrongValidator.same(dated, dated))
        #expect(!StrongValidator.same(dated, tagged))
        #expect(!StrongValidator.same(bare, bare))
        #expect(StrongValidator.ifRangeMatches("\"a\"", stored: tagged))
        #expect(!StrongValidator.ifRangeMatches("W/\"a\"", stored: tagged))
        #expect(!StrongValidator.ifRangeMatches("\"a\"", stored: otherTag))
        #expect(StrongValidator.ifRangeMatches(Self.earlier, stored: dated))
        #expect(!StrongValidator.ifRangeMatches(Self.date, stored: dated))
        #expect(!StrongValidator.ifRangeMatches(Self.earlier, stored: bare))
    }
}
