import Logging
import NIOConcurrencyHelpers

/// Logs a recurring condition at most once per interval, with how many times it happened.
package final class RateLimitedLog: Sendable {
    private let interval: Duration
    private let state = NIOLockedValueBox<(last: ContinuousClock.Instant?, count: Int)>((nil, 0))

    package init(interval: Duration) { self.interval = interval }

    /// Counts one occurrence; logs (with the count since the last line) when the interval has passed.
    package func note(_ logger: Logger, _ message: (Int) -> (Logger.Message, Logger.Metadata)) {
        let now = ContinuousClock.now
        let due = state.withLockedValue { state -> Int? in
            state.count += 1
            if let last = state.last, now - last < interval { return nil }
            state.last = now
            defer { state.count = 0 }
            return state.count
        }
        guard let count = due else { return }
        let (text, metadata) = message(count)
        logger.warning(text, metadata: metadata)
    }
}
