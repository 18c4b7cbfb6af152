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
    }

    enum Role: Sendable {
        /// Fetch, then call ``Coalescer/finish(_:outcome:now:)`` exactly once.
        case leader
        /// Another request is fetching; wait for its outcome.
        case follower
        /// The URL is known uncacheable: fetch without coalescing.
        case bypass
    }

    private struct State {
        var inFlight: [String: [CheckedContinuation<Outcome, Never>]] = [:]
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
            state.inFlight[key] = []
            return .leader
        }
    }

    /// Waits for the leader of `key`. Returns at once with `.notStored` when the leader already
    /// finished, so a follower never waits on a fetch that is over.
    func wait(for key: String) async -> Outcome {
        await withCheckedContinuation { continuation in
            let registered = state.withLockedValue { state -> Bool in
                guard state.inFlight[key] != nil else { return false }
                state.inFlight[key]!.append(continuation)
                return true
            }
            if !registered { continuation.resume(returning: .notStored) }
        }
    }

    /// Ends the leader's fetch and wakes the followers.
    func finish(_ key: String, outcome: Outcome, uncacheable: Bool, now: Double) {
        let waiters = state.withLockedValue { state -> [CheckedContinuation<Outcome, Never>] in
            let waiters = state.inFlight.removeValue(forKey: key) ?? []
            if uncacheable && uncacheableTTL > 0 {
                state.uncacheableUntil[key] = now + uncacheableTTL
                // Bound the memory of marks: drop expired ones when the table grows.
                if state.uncacheableUntil.count > 100_000 {
                    state.uncacheableUntil = state.uncacheableUntil.filter { $0.value > now }
                }
            } else if case .stored = outcome {
                state.uncacheableUntil[key] = nil
            }
            return waiters
        }
        for waiter in waiters { waiter.resume(returning: outcome) }
    }

    /// Clears the uncacheable mark after a response for the key was stored outside coalescing.
    func markCacheable(_ key: String) {
        state.withLockedValue { _ = $0.uncacheableUntil.removeValue(forKey: key) }
    }

    /// Requests currently waiting on another request's fetch.
    package var waitingCount: Int { state.withLockedValue { $0.inFlight.values.reduce(0) { $0 + $1.count } } }
}
