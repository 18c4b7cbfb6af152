import NIOConcurrencyHelpers

/// Tells the coalescer, exactly once, how a fetch for a coalesced key ended. It may be handed
/// off to work that outlives the request (a commit behind the client): the request's own
/// fallback (`.notStored` when it returns) is then skipped, and the handed-off work reports.
package final class FetchCompletion: Sendable {
    private let coalescer: Coalescer
    private let key: String?
    private let clock: any CacheClock
    private let state = NIOLockedValueBox<(finished: Bool, handedOff: Bool)>((false, false))

    init(coalescer: Coalescer, key: String?, clock: any CacheClock) {
        self.coalescer = coalescer
        self.key = key
        self.clock = clock
    }

    func callAsFunction(_ outcome: Coalescer.Outcome, _ uncacheable: Bool) {
        guard let key else { return }
        let first = state.withLockedValue { state in
            defer { state.finished = true }
            return !state.finished
        }
        if first { coalescer.finish(key, outcome: outcome, uncacheable: uncacheable, now: clock.now()) }
    }

    /// Followers of this fetch are answered from its body as it streams in (``LiveBody``).
    func publish(_ body: LiveBody) {
        guard let key else { return }
        coalescer.publish(key, body: body)
    }

    /// Whether this fetch leads requests coalesced on it.
    var leads: Bool { key != nil }

    /// Work that outlives the request will report the outcome.
    func handOff() { state.withLockedValue { $0.handedOff = true } }

    /// The request's own report, unless the outcome was handed off.
    func ifNotHandedOff(_ outcome: Coalescer.Outcome, _ uncacheable: Bool) {
        guard !state.withLockedValue({ $0.handedOff }) else { return }
        self(outcome, uncacheable)
    }
}

/// Moves a value that is not Sendable to a task when the sender no longer uses it (the object
/// writer of a fetch whose commit goes on behind the client).
package struct UncheckedTransfer<Value>: @unchecked Sendable {
    let value: Value
    init(_ value: Value) { self.value = value }
}
