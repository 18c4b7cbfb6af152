import Synchronization

/// The requests the hit path passes on, from every traffic connection's ``PassHandler`` to
/// the server, which runs each in a task of its own (``RequestTask``) in its task group, so a
/// graceful shutdown still waits for them.
final class PassedRequests: Sendable {
    let requests: AsyncStream<PassedRequest>
    private let continuation: AsyncStream<PassedRequest>.Continuation
    private let submittedCount = Atomic<Int>(0)

    /// Requests passed on since the server began (for tests and diagnostics).
    var submitted: Int { submittedCount.load(ordering: .relaxed) }

    init() {
        (requests, continuation) = AsyncStream.makeStream(of: PassedRequest.self)
    }

    /// Hands `request` to the server. False when the server has stopped taking requests.
    func submit(_ request: PassedRequest) -> Bool {
        guard case .enqueued = continuation.yield(request) else { return false }
        submittedCount.add(1, ordering: .relaxed)
        return true
    }

    /// No more requests start; the ones handed over already are still run.
    func finish() { continuation.finish() }
}
