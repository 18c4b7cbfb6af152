import NIOConcurrencyHelpers

/// The journal took longer than `cluster.journal_timeout`.
struct JournalTimeout: Error, CustomStringConvertible {
    let seconds: Double
    var description: String { "no answer from the purge journal within \(seconds) s" }
}

/// Runs `operation`, or throws ``JournalTimeout`` after `seconds` without waiting for it to
/// notice its cancellation (a query on a connection that hangs may never end on its own).
func within<T: Sendable>(
    _ seconds: Double, _ operation: @escaping @Sendable () async throws -> T
) async throws -> T {
    let settled = NIOLockedValueBox(false)
    let timer = NIOLockedValueBox<Task<Void, Never>?>(nil)
    return try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<T, any Error>) in
        @Sendable func settle(_ result: Result<T, any Error>) {
            let first = settled.withLockedValue { done in
                defer { done = true }
                return !done
            }
            guard first else { return }
            continuation.resume(with: result)
            timer.withLockedValue { $0 }?.cancel()
        }
        let work = Task {
            do {
                settle(.success(try await operation()))
            } catch {
                settle(.failure(error))
            }
        }
        timer.withLockedValue {
            $0 = Task {
                guard (try? await Task.sleep(for: .milliseconds(Int64(seconds * 1000)))) != nil else { return }
                work.cancel()
                settle(.failure(JournalTimeout(seconds: seconds)))
            }
        }
        // The work may have finished before the timer existed.
        if settled.withLockedValue({ $0 }) { timer.withLockedValue { $0 }?.cancel() }
    }
}

/// Lets one caller at a time through (an async lock): catching up with the journal reads
/// and applies purges in order, and two catch-ups interleaved could record a later sequence
/// number before an earlier purge was applied.
actor SerialGate {
    private var busy = false
    private var waiting: [CheckedContinuation<Void, Never>] = []

    func enter() async {
        if busy {
            await withCheckedContinuation { waiting.append($0) }
        } else {
            busy = true
        }
    }

    func leave() {
        if waiting.isEmpty {
            busy = false
        } else {
            waiting.removeFirst().resume()
        }
    }
}
