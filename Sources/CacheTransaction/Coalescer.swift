import NIOConcurrencyHelpers

/// Request coalescing (collapsed forwarding): at most one fetch per URL in flight; the other
/// requests for it wait for that fetch and then look in the store again.
///
/// When the leader's fetch fails (the origin refused, timed out or broke the connection), the
/// waiters share its failure at once: each answers with the leader's error (or its stale copy
/// where stale-if-error allows), instead of each asking the failing origin again and waiting
/// as long (ten waiters on a hanging URL made ten origin requests and waited twice the
/// response timeout).
///
/// When the fetch's response could not be stored, the waiters go upstream on their own and the
/// URL is remembered as uncacheable for `uncacheable_ttl` so that later requests for it are
/// not serialised behind one another (Varnish calls this hit-for-miss). A later storable
/// response clears the mark.
package final class Coalescer: Sendable {
    enum Outcome: Sendable, Equatable {
        /// The leader stored a response: look it up again.
        case stored
        /// The leader's response was not stored: fetch on your own.
        case notStored
        /// The leader's fetch failed with this error: answer with it (or stale), do not refetch.
        case failed(ProxyError)
        /// The leader is storing this body and it is streaming in: answer from it, or wait
        /// for its commit (``LiveBody/settled()``).
        case streaming(LiveBody)
    }

    enum Role: Sendable {
        /// Fetch, then call ``Coalescer/finish(_:outcome:now:)`` exactly once.
        case leader
        /// Another request is fetching; wait for its outcome.
        case follower
        /// The URL is known uncacheable: fetch without coalescing.
        case bypass
    }

    private struct Flight {
        var waiters: [CheckedContinuation<Outcome, Never>] = []
        var live: LiveBody?

        /// Sets the published body and hands back the waiters it answers.
        mutating func publish(_ body: LiveBody) -> [CheckedContinuation<Outcome, Never>] {
            live = body
            defer { waiters = [] }
            return waiters
        }
    }

    private struct State {
        var inFlight: [String: Flight] = [:]
        var uncacheableUntil: [String: Double] = [:]
    }

    private let state = NIOLockedValueBox(State())
    private let uncacheableTTL: Double

    init(uncacheableTTL: Double) {
        self.uncacheableTTL = uncacheableTTL
    }

    /// Decides this request's role for `key` at `now`.
    func role(for key: String, now: Double) -> Role {
        state.withLockedValue { state in
            if let until = state.uncacheableUntil[key] {
                if until > now { return .bypass }
                state.uncacheableUntil[key] = nil
            }
            if state.inFlight[key] != nil { return .follower }
            state.inFlight[key] = Flight()
            return .leader
        }
    }

    /// Waits for the leader of `key`. Returns at once with `.notStored` when the leader already
    /// finished, so a follower never waits on a fetch that is over, and with `.streaming` when
    /// the leader has published its body.
    func wait(for key: String) async -> Outcome {
        await withCheckedContinuation { continuation in
            let now = state.withLockedValue { state -> Outcome? in
                guard state.inFlight[key] != nil else { return .notStored }
                // A body that broke off is not handed out: wait for the leader's end instead.
                if let live = state.inFlight[key]!.live, !live.hasFailed { return .streaming(live) }
                state.inFlight[key]!.waiters.append(continuation)
                return nil
            }
            if let now { continuation.resume(returning: now) }
        }
    }

    /// The leader of `key` is storing `body` as it streams in: its waiters, and followers
    /// until it finishes, are answered from it.
    func publish(_ key: String, body: LiveBody) {
        // One lookup of the key (hashing a URL is most of the cost of this call).
        let waiters = state.withLockedValue { $0.inFlight[key]?.publish(body) } ?? []
        for waiter in waiters { waiter.resume(returning: .streaming(body)) }
    }

    /// Ends the leader's fetch and wakes the followers.
    func finish(_ key: String, outcome: Outcome, uncacheable: Bool, now: Double) {
        let flight = state.withLockedValue { state -> Flight in
            let flight = state.inFlight.removeValue(forKey: key) ?? Flight()
            if uncacheable && uncacheableTTL > 0 {
                state.uncacheableUntil[key] = now + uncacheableTTL
                // Bound the memory of marks: drop expired ones when the table grows.
                if state.uncacheableUntil.count > 100_000 {
                    state.uncacheableUntil = state.uncacheableUntil.filter { $0.value > now }
                }
            } else if case .stored = outcome {
                state.uncacheableUntil[key] = nil
            }
            return flight
        }
        for waiter in flight.waiters { waiter.resume(returning: outcome) }
        flight.live?.settle(outcome)
    }

    /// Clears the uncacheable mark after a response for the key was stored outside coalescing.
    func markCacheable(_ key: String) {
        state.withLockedValue { _ = $0.uncacheableUntil.removeValue(forKey: key) }
    }

    /// The body the leader of `key` published, if it has (for tests and diagnostics).
    package func publishedBody(for key: String) -> LiveBody? {
        state.withLockedValue { $0.inFlight[key]?.live }
    }

    /// Requests currently waiting on another request's fetch (not those already answered from
    /// its body as it streams in).
    package var waitingCount: Int { state.withLockedValue { $0.inFlight.values.reduce(0) { $0 + $1.waiters.count } } }
}
