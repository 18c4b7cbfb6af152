import HTTPCaching
import NIOCore
import Testing

@testable import CacheStore
@testable import CacheTransaction
@testable import OutpostConfig

/// The transaction's steps, event by event, without a store, an origin or a socket: the I/O
/// layer's part is played by the test (issue 12).
@Suite("CacheTransaction: the request transaction, step by step")
struct RequestTransactionTests {
    /// The caching rules with the default configuration, straight from HTTPCaching.
    struct Rules: TransactionRules {
        var honoursRequestDirectives = true
        var rangeFetchMaxSize = 64 << 20
        func governingCacheControl(_ response: StoredResponse) -> CacheControl {
            CacheControl(lines: response.headers.values("Cache-Control"))
        }
        func lifetime(of record: ObjectRecord, cacheControl: CacheControl?) -> FreshnessLifetime {
            FreshnessLifetime.of(record.response, cacheControl: cacheControl ?? governingCacheControl(record.response))
        }
        func reuseDecision(
            _ record: ObjectRecord, cacheControl: CacheControl, lifetime: FreshnessLifetime, age: Double,
            directives: RequestDirectives
        ) -> ReuseDecision {
            Reuse.decide(age: age, responseCacheControl: cacheControl, lifetime: lifetime, request: directives)
        }
        func storedPart(of record: ObjectRecord, covers request: ClientRequest) -> ClosedRange<Int64>? { nil }
        /// The request completing a stored part, when the test has one.
        var completion: ClientRequest?
        func completionRequest(for request: ClientRequest, part record: ObjectRecord) -> ClientRequest? { completion }
    }

    static let now = 1_000_000.0

    static func request(_ method: String = "GET", _ headers: [(String, String)] = []) -> ClientRequest {
        ClientRequest(
            method: RequestMethod(token: method), target: "/t", pathAndQuery: "/t", headers: HeaderFields(headers),
            key: CacheKey(scheme: "http", authority: "site.test", pathAndQuery: "/t"),
            origin: OriginURL(parsing: "http://origin.test")!, clientAddress: nil, body: nil)
    }

    /// A stored 200 whose response arrived `age` seconds before `now`.
    static func found(_ cacheControl: String, age: Double = 10) -> CacheStore.Lookup {
        var headers = HeaderFields([("Cache-Control", cacheControl), ("ETag", "\"v1\"")])
        headers.add("Date", HTTPDate.format(Int64(now - age)))
        let response = StoredResponse(status: 200, headers: headers, requestTime: now - age, responseTime: now - age)
        let record = ObjectRecord(
            id: 1, primaryKey: "http://site.test/t", secondaryKey: "", response: response, storedAt: now - age,
            bodyLength: 4, chunkSize: 4, chunkCount: 1)
        return .found(record, body: ByteBuffer(string: "body"))
    }

    /// Runs the transaction, answering each I/O action from `answers` in turn, and returns the
    /// steps' actions as short names.
    static func run(
        _ request: ClientRequest, rules: Rules = Rules(), _ answers: [RequestTransaction.Event]
    ) -> [String] {
        var transaction = RequestTransaction(request: request, rules: rules)
        var names: [String] = []
        var pending = answers[...]
        var event = RequestTransaction.Event.received
        while names.count < 20 {
            let action = transaction.next(event, rules: rules)
            names.append(Self.name(action))
            guard transaction.step != .done, let answer = pending.popFirst() else { break }
            event = answer
        }
        return names
    }

    static func name(_ action: RequestTransaction.Action) -> String {
        switch action {
        case .lookUp: "lookUp"
        case .askCoalescer: "askCoalescer"
        case .checkStoredSinceLookup: "checkStoredSinceLookup"
        case .releaseLead: "releaseLead"
        case .waitForLeader: "waitForLeader"
        case .pass(let status, let invalidate): "pass \(status.headerValue)\(invalidate ? " +invalidate" : "")"
        case .serve(_, _, let status, _, let refresh): "serve \(status.headerValue)\(refresh ? " +refresh" : "")"
        case .fetch(_, let plan, let key):
            "fetch \(plan.forward.rawValue)\(plan.collapsed ? " collapsed" : "")\(key != nil ? " leads" : "")"
                + (plan.revalidating != nil ? " validating" : "")
        case .answerFailure(let error, _): "answerFailure \(error.type)"
        case .onlyIfCachedMiss: "onlyIfCachedMiss"
        case .waitForLeaderEnd: "waitForLeaderEnd"
        case .serveLive(_, let status, _): "serveLive \(status.headerValue)"
        }
    }

    /// A leader's 200 streaming in (just received), varying on `vary` with the leader's value
    /// of it.
    static func live(_ cacheControl: String, vary: String? = nil, leaderValue: String = "") -> LiveBody {
        var headers = HeaderFields([("Cache-Control", cacheControl), ("ETag", "\"v1\"")])
        headers.add("Date", HTTPDate.format(Int64(now)))
        if let vary { headers.add("Vary", vary) }
        let response = StoredResponse(status: 200, headers: headers, requestTime: now, responseTime: now)
        let variant = Vary(headers)
        let secondaryKey = variant.secondaryKey(for: HeaderFields(vary.map { [($0, leaderValue)] } ?? []))
        let record = ObjectRecord(
            id: 3, primaryKey: "http://site.test/t", secondaryKey: secondaryKey, response: response, storedAt: now,
            bodyLength: 1 << 20, chunkSize: 1 << 18, chunkCount: 4)
        return LiveBody(
            record: record, variant: VariantRef(objectID: 3, secondaryKey: secondaryKey, varyNames: variant.fieldNames),
            purgeEpoch: 0)
    }

    @Test(
        "each path from receive to an answer",
        arguments: [
            ("POST", [(String, String)](), [RequestTransaction.Event](), ["pass outpost; fwd=method +invalidate"]),
            ("GET", [("Cache-Control", "no-store")], [], ["pass outpost; fwd=request; detail=\"no-store\""]),
            ("GET", [], [.lookupFailed], ["lookUp", "pass outpost; fwd=bypass; detail=\"store error\""]),
            ("GET", [], [.lookedUp(found("max-age=60"), now: now)], ["lookUp", "serve outpost; hit; ttl=50"]),
            (
                "GET", [], [.lookedUp(found("max-age=5, stale-while-revalidate=60"), now: now)],
                ["lookUp", "serve outpost; hit; ttl=-5; detail=\"stale-while-revalidate\" +refresh"]
            ),
            (
                "GET", [("Cache-Control", "max-stale")], [.lookedUp(found("max-age=5"), now: now)],
                ["lookUp", "serve outpost; hit; ttl=-5; detail=\"max-stale\""]
            ),
            (
                "GET", [], [.lookedUp(found("max-age=5"), now: now), .role(.leader)],
                ["lookUp", "askCoalescer", "fetch stale leads validating"]
            ),
            (
                "GET", [("Cache-Control", "no-cache")], [.lookedUp(found("max-age=60"), now: now), .role(.bypass)],
                ["lookUp", "askCoalescer", "fetch request validating"]
            ),
            (
                "GET", [("Cache-Control", "only-if-cached")], [.lookedUp(.noEntry, now: now)],
                ["lookUp", "onlyIfCachedMiss"]
            ),
            ("HEAD", [], [.lookedUp(.noEntry, now: now)], ["lookUp", "pass outpost; fwd=uri-miss"]),
            (
                "GET", [], [.lookedUp(.noMatchingVariant, now: now), .role(.leader), .storedSinceLookup(false)],
                ["lookUp", "askCoalescer", "checkStoredSinceLookup", "fetch vary-miss leads"]
            ),
            (
                "GET", [],
                [
                    .lookedUp(.noEntry, now: now), .role(.leader), .storedSinceLookup(true), .leadReleased,
                    .lookedUp(found("max-age=60", age: 0), now: now),
                ],
                [
                    "lookUp", "askCoalescer", "checkStoredSinceLookup", "releaseLead", "lookUp",
                    "serve outpost; hit; collapsed; ttl=60",
                ]
            ),
            (
                "GET", [],
                [
                    .lookedUp(.noEntry, now: now), .role(.follower), .leaderFinished(.stored),
                    .lookedUp(found("max-age=60", age: 0), now: now),
                ],
                ["lookUp", "askCoalescer", "waitForLeader", "lookUp", "serve outpost; hit; collapsed; ttl=60"]
            ),
            (
                "GET", [], [.lookedUp(.noEntry, now: now), .role(.follower), .leaderFinished(.notStored)],
                ["lookUp", "askCoalescer", "waitForLeader", "fetch uri-miss collapsed"]
            ),
            (
                "GET", [],
                [.lookedUp(.noEntry, now: now), .role(.follower), .leaderFinished(.failed(.connectionRefused("x")))],
                ["lookUp", "askCoalescer", "waitForLeader", "answerFailure connection_refused"]
            ),
            (
                // After waiting, a copy that must be validated is fetched alone (collapsed).
                "GET", [],
                [
                    .lookedUp(.noEntry, now: now), .role(.follower), .leaderFinished(.stored),
                    .lookedUp(found("no-cache"), now: now),
                ],
                ["lookUp", "askCoalescer", "waitForLeader", "lookUp", "fetch stale collapsed validating"]
            ),
            (
                // A leader storing a body that streams in: answered from it as it arrives.
                "GET", [],
                [.lookedUp(.noEntry, now: now), .role(.follower), .leaderStreaming(live("max-age=60"), now: now)],
                ["lookUp", "askCoalescer", "waitForLeader", "serveLive outpost; hit; collapsed; ttl=60"]
            ),
            (
                // It cannot answer this one (a coding, several ranges): wait for the commit, look again.
                "GET", [],
                [
                    .lookedUp(.noEntry, now: now), .role(.follower), .leaderStreaming(live("max-age=60"), now: now),
                    .liveBodyUnusable, .leaderFinished(.stored), .lookedUp(found("max-age=60", age: 0), now: now),
                ],
                [
                    "lookUp", "askCoalescer", "waitForLeader", "serveLive outpost; hit; collapsed; ttl=60",
                    "waitForLeaderEnd", "lookUp", "serve outpost; hit; collapsed; ttl=60",
                ]
            ),
            (
                // Another variant than the one streaming (RFC 9111 §4.1): as after the commit,
                // not answered by it.
                "GET", [("Accept-Language", "fr")],
                [
                    .lookedUp(.noEntry, now: now), .role(.follower),
                    .leaderStreaming(live("max-age=60", vary: "Accept-Language", leaderValue: "de"), now: now),
                    .leaderFinished(.stored), .lookedUp(.noMatchingVariant, now: now),
                ],
                ["lookUp", "askCoalescer", "waitForLeader", "waitForLeaderEnd", "lookUp", "fetch vary-miss collapsed"]
            ),
            (
                "GET", [("Accept-Language", "de")],
                [
                    .lookedUp(.noEntry, now: now), .role(.follower),
                    .leaderStreaming(live("max-age=60", vary: "Accept-Language", leaderValue: "de"), now: now),
                ],
                ["lookUp", "askCoalescer", "waitForLeader", "serveLive outpost; hit; collapsed; ttl=60"]
            ),
            (
                // A request that must validate even a fresh response waits for the commit,
                // then validates it alone.
                "GET", [("Cache-Control", "no-cache")],
                [
                    .lookedUp(.noEntry, now: now), .role(.follower), .leaderStreaming(live("max-age=60"), now: now),
                    .leaderFinished(.stored), .lookedUp(found("max-age=60", age: 0), now: now),
                ],
                [
                    "lookUp", "askCoalescer", "waitForLeader", "waitForLeaderEnd", "lookUp",
                    "fetch request collapsed validating",
                ]
            ),
            (
                // The leader's body broke off before this one could use it: fetch alone.
                "GET", [],
                [
                    .lookedUp(.noEntry, now: now), .role(.follower), .leaderStreaming(live("no-cache"), now: now),
                    .leaderFinished(.notStored),
                ],
                ["lookUp", "askCoalescer", "waitForLeader", "waitForLeaderEnd", "fetch uri-miss collapsed"]
            ),
            // An event the step does not expect is a bug: passed through, never served.
            (
                "GET", [],
                [.lookedUp(.noEntry, now: now), .role(.follower), .leaderFinished(.streaming(live("max-age=60")))],
                ["lookUp", "askCoalescer", "waitForLeader", "pass outpost; fwd=bypass; detail=\"transaction error\""]
            ),
            ("GET", [], [.role(.leader)], ["lookUp", "pass outpost; fwd=bypass; detail=\"transaction error\""]),
        ] as [(String, [(String, String)], [RequestTransaction.Event], [String])])
    func paths(
        method: String, headers: [(String, String)], answers: [RequestTransaction.Event], expected: [String]
    ) {
        #expect(Self.run(Self.request(method, headers), answers) == expected)
    }

    @Test("range_fetch_max_size = 0: a Range goes upstream alone, as sent")
    func rangeAlone() {
        var rules = Rules()
        rules.rangeFetchMaxSize = 0
        #expect(
            Self.run(Self.request("GET", [("Range", "bytes=0-9")]), rules: rules, [.lookedUp(.noEntry, now: Self.now)])
                == ["lookUp", "fetch uri-miss"])
        #expect(
            Self.run(
                Self.request("GET", [("Range", "bytes=0-9")]), [.lookedUp(.noEntry, now: Self.now), .role(.leader)]
            )
            .last == "checkStoredSinceLookup")
    }

    /// A stored 206 part of bytes 0-9 of 100.
    static func foundPart() -> CacheStore.Lookup {
        let response = StoredResponse(
            status: 206,
            headers: HeaderFields([
                ("Content-Range", "bytes 0-9/100"), ("ETag", "\"v1\""), ("Cache-Control", "max-age=60"),
            ]),
            requestTime: now, responseTime: now)
        let record = ObjectRecord(
            id: 2, primaryKey: "http://site.test/t", secondaryKey: "", response: response, storedAt: now,
            bodyLength: 10, chunkSize: 10, chunkCount: 1)
        return .found(record, body: nil)
    }

    @Test("a fetch whose response asks for another: the transaction plans it, once")
    func fetchAgain() {
        let request = Self.request("GET", [("Range", "bytes=0-9")])
        let rules = Rules()
        var transaction = RequestTransaction(request: request, rules: rules)
        #expect(Self.name(transaction.next(.received, rules: rules)) == "lookUp")
        #expect(Self.name(transaction.next(.lookedUp(.noEntry, now: Self.now), rules: rules)) == "askCoalescer")
        #expect(Self.name(transaction.next(.role(.bypass), rules: rules)) == "fetch uri-miss")
        #expect(transaction.step == .fetch)
        // A Range of an object over range_fetch_max_size: the range alone, not coalesced.
        let again = transaction.next(.fetchNeedsAnother(.rangeOfLargeObject), rules: rules)
        guard case .fetch(let outgoing, let plan, let key) = again else {
            Issue.record("expected a fetch, got \(Self.name(again))")
            return
        }
        #expect(outgoing.headers["Range"] == "bytes=0-9")
        #expect(plan.forwardsRange && plan.completing == nil)
        #expect(plan.detail == .other("range of a large object"))
        #expect(key == nil)
        // The range alone cannot ask for the range alone again: a bug, passed through.
        #expect(
            Self.name(transaction.next(.fetchNeedsAnother(.rangeOfLargeObject), rules: rules))
                == "pass outpost; fwd=bypass; detail=\"transaction error\"")
        #expect(transaction.step == .done)
    }

    @Test("a completion whose 206 cannot be joined to the stored part: the whole, without Range")
    func completionFallsBack() {
        var completion = Self.request("GET", [("Range", "bytes=10-"), ("If-Range", "\"v1\"")])
        completion.headers.add("X-Kept", "1")
        let rules = Rules(completion: completion)
        var transaction = RequestTransaction(request: Self.request(), rules: rules)
        _ = transaction.next(.received, rules: rules)
        let first = transaction.next(.lookedUp(Self.foundPart(), now: Self.now), rules: rules)
        guard case .fetch(let sent, let plan, nil) = first, plan.completing != nil else {
            Issue.record("expected the completion, got \(Self.name(first))")
            return
        }
        #expect(sent.headers["Range"] == "bytes=10-")
        let second = transaction.next(.fetchNeedsAnother(.partNotCombinable), rules: rules)
        guard case .fetch(let plain, let whole, nil) = second else {
            Issue.record("expected a plain fetch, got \(Self.name(second))")
            return
        }
        #expect(plain.headers["Range"] == nil && plain.headers["If-Range"] == nil && plain.headers["X-Kept"] == "1")
        #expect(!whole.forwardsRange && whole.forward == .partial)
        // Asking a whole fetch to combine parts is a bug.
        #expect(
            Self.name(transaction.next(.fetchNeedsAnother(.partNotCombinable), rules: rules))
                == "pass outpost; fwd=bypass; detail=\"transaction error\"")
    }
}
